"""Spike scanner: the event-driven accumulation pass of CONV and ATTENTION over one output tile."""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from spikeforge.interface.descriptor import DESCRIPTOR_LAYOUT, OPCODES
from spikeforge.interface.external import ROW_READ_LATENCY
from spikeforge.interface.layout import cat_fields, spike_row_layout
from spikeforge.ops.conv import SCAN_ROW_QUEUE

from .logic import LANES_PER_COPY, check_params, delayed, replicated, spike_group
from .spike_memory import READ_LATENCY
from .spike_to_event import SpikeToEvent, search, searched_layout

__all__ = ["SpikeScanner", "ROW_QUEUE"]

#: Row words in flight or queued for the events at most (credits of the row reads): the spike memory's
#: READ_LATENCY, the queue's cycle and the row taken a cycle ahead, so the events stay fed whenever the
#: reads run ahead.
ROW_QUEUE = SCAN_ROW_QUEUE


class SpikeScanner(wiring.Component):
    """One accumulation pass: for each input channel ``ci`` of ``desc.cin``, each bit plane and each
    tap (9 for ``kernel3``, else 1), fetch the weight row once, pick the occupied bitmap rows ``{t, y}``
    the tap reaches (a :class:`SpikeToEvent` over the occupancy word), scan each (a second one over
    the row, columns outside the tap's reach masked off) and emit one accumulator event per spike:
    the spike at ``(t, y, x)`` adds the row, shifted by the plane, to accumulator ``{t, y − dy + 1,
    x − dx + 1}``. Spike channel ``ci·planes + plane`` is read from group ``in_base``. A neighbouring input
    tile (``tile_dy``, ``tile_dx`` off 0: the tile above or below, left or right of the output tile) has
    only its edge row (column) next to the output tile scanned, with the one kernel row (column) that
    reaches across; the target wraps modulo ``max_h`` (``max_w``) onto the output tile's edge.

    Rows are those with ``t < T`` (``t = 0`` for a ``static`` input) or, for ATTENTION, ``t = t_sel``.
    The reads run ahead of the events, decoupled by a queue of row words (:data:`ROW_QUEUE` credits),
    because spike-memory words arrive :data:`~spikeforge.hw.spike_memory.READ_LATENCY` cycles after
    their reads. Per slot (ci, tap, plane): the weight row and occupancy word are fetched; the word,
    masked to the rows the tap reaches, is registered, and once it is and the previous slot's rows are
    read (``READ_LATENCY + 1`` cycles after the fetch at the earliest), the slot is loaded into the row
    search, and the next slot is fetched in that same cycle; then each occupied row is read, one per
    cycle while a credit is free. So the next slot's word is on its way while the rows are read: a slot
    costs the reads ``max(READ_LATENCY + 1, 1 + its rows' reads)`` cycles. Each word, masked to the
    tap's columns and shifted so that a spike's bit is its target column, enters the queue with its
    slot's weight row, plane and target row; the events take one row after another (the next taken a
    cycle before it starts) at ``max(1, k)`` cycles per row, and leave through registers a cycle later.
    A pass takes :func:`spikeforge.ops.conv.scan_pass_cycles` cycles from the one after ``start`` (a
    cycle of setup: the first fetch is the next) to ``done`` included (the cycle its last event is on
    the event ports, or the one after its last slot's search). Weight rows follow one another in (ci,
    tap, plane) order, continuing from the previous pass unless ``rewind``.

    For the clock, every output is a flip-flop or one gate of flip-flops: the fetch address, group and
    lane, the next slot's counters and its "last" decisions are registered a cycle after each fetch
    (fetches are at least READ_LATENCY + 1 cycles apart); the desc fields are taken into registers
    while idle (desc is stable from ``start`` to ``done``); the next row to read waits in a register. The
    row queue and the rows taken from it come in slices (the fields before the weight row, then the row per
    :data:`~spikeforge.hw.logic.LANES_PER_COPY` lanes), each slice a queue of its own, with its own copies
    of the write enable and of the rows' load conditions.

    Ports
    -----
    desc : In(DESCRIPTOR_LAYOUT)
        The descriptor (``op``, ``kernel3``, ``static``, ``cin``, ``planes``, ``T``, ``H``, ``W``,
        ``tile_dy``, ``tile_dx``, ``in_base``, ``weight_base``), stable during the pass.
    t_sel : In(DESCRIPTOR_LAYOUT["T"].shape)
        ATTENTION: the timestep whose rows are scanned.
    start : In(1)
        Begin a pass (the first weight fetch is two cycles later).
    rewind : In(1)
        With ``start``: the first weight row is ``desc.weight_base``; otherwise the row after the
        previous pass's last (CONV tiles follow one another in the weight memory).
    done : Out(1)
        The last cycle of the pass.
    weight_en, weight_addr : Out
        Weight-row read (``weight_addr`` of ``range(weight_rows)``).
    weight_data : In(ArrayLayout(signed(weight_bits), n_pe))
        The row requested :data:`~spikeforge.interface.external.ROW_READ_LATENCY` cycles earlier (the
        weight table's; ATTENTION's scratch rows, a block RAM, one cycle), held while ``weight_en`` is low;
        taken at the slot's load, ``READ_LATENCY + 1`` cycles after its fetch at the earliest.
    occ_en, occ_group, occ_lane : Out
        Occupancy read of a spike channel (:class:`SpikeMemory`).
    occ_data : In(max_T * max_h)
        The occupancy word, READ_LATENCY cycles after ``occ_en``.
    scan_en, scan_addr, scan_lane : Out
        Bitmap row read of a spike channel (:class:`SpikeMemory`).
    scan_data : In(max_w)
    event_valid, event_addr, event_row, event_shift : Out
        One accumulation event per cycle (:class:`AccumulatorArray`): word ``{t, y, x}``, the weight
        row and its left shift (the bit plane).
    """

    def __init__(self, params):
        self.params = p = check_params(params)
        row = data.ArrayLayout(signed(p.weight_bits), p.n_pe)
        spike_addr = max(1, p.group_bits + p.t_bits + p.h_bits)
        lane = max(1, p.lane_bits)
        super().__init__({
            "desc": In(DESCRIPTOR_LAYOUT), "t_sel": In(DESCRIPTOR_LAYOUT["T"].shape),
            "start": In(1), "rewind": In(1), "done": Out(1),
            "weight_en": Out(1), "weight_addr": Out(range(p.weight_rows)), "weight_data": In(row),
            "occ_en": Out(1), "occ_group": Out(max(1, p.group_bits)), "occ_lane": Out(lane),
            "occ_data": In(p.max_T * p.max_h),
            "scan_en": Out(1), "scan_addr": Out(spike_addr), "scan_lane": Out(lane), "scan_data": In(p.max_w),
            "event_valid": Out(1), "event_addr": Out(max(1, p.t_bits + p.h_bits + p.w_bits)),
            "event_row": Out(row), "event_shift": Out(3),   # AccumulatorArray.event_shift
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        d = self.desc
        lb = p.lane_bits
        m.submodules.row_scanner = row_scanner = SpikeToEvent(p.max_T * p.max_h, presearched=True)
        m.submodules.scanner = scanner = SpikeToEvent(p.max_w)

        def by_tap(values, tap):
            return Mux(tap == 0, values[0], Mux(tap == 1, values[1], values[2]))

        # ---- the pass's constants, from desc at start: from the second cycle on the scanner reads no desc
        # field, so its address and mask logic starts from flip-flops
        kernel3, planes, last_plane = Signal(), Signal.like(d.planes), Signal.like(d.planes)
        # a neighbouring input tile (tile_dy, tile_dx off 0): the kernel rows (columns) that reach across,
        # and the one input row (column) they read, next to the output tile
        first_dy, last_dy, first_dx, last_dx = (Signal(range(3), name=name)
                                                for name in ("first_dy", "last_dy", "first_dx", "last_dx"))
        below, above, right, left = (Signal(name=f"tile_{name}") for name in ("below", "above", "right", "left"))
        last_ci, in_base = Signal.like(d.cin), Signal.like(d.in_base)
        height, width, attention = Signal.like(d.H), Signal.like(d.W), Signal()
        scan_T, selected = Signal.like(d.T), Signal.like(self.t_sel)
        # the timesteps scanned: t < T (t = 0 for a static input), or t_sel for ATTENTION; per tap row dy:
        # the rows {t, y} it reaches (y − dy + 1 inside the image, t scanned); per tap column dx: the
        # columns it reaches. Registered from the constants, one cycle a step (the first slot's row mask is
        # needed READ_LATENCY + 1 cycles after its fetch, its column mask later still).
        in_time = Signal(p.max_T)
        m.d.sync += in_time.eq(Cat(Mux(attention, t == selected, scan_T > t) for t in range(p.max_T)))
        row_masks = [Signal(p.max_T * p.max_h, name=f"row_mask{dy}") for dy in range(3)]
        col_masks = [Signal(p.max_w, name=f"col_mask{dx}") for dx in range(3)]

        def reaches(i, tap, size):
            inside = size > i + (tap == 0)
            return inside & (i >= 1) if tap == 2 else inside

        def reaches_within(i, tap, size, before, after, last):
            """Input row (column) ``i`` reaches the output tile through kernel row (column) ``tap``: within the
            tile, or as the edge next to it of the tile before (after) it."""
            return Mux(before | after, (before & (i == last)) | (after & (i == 0)), reaches(i, tap, size))

        for tap in range(3):
            m.d.sync += [row_masks[tap].eq(Cat(in_time[b >> p.h_bits]
                                               & reaches_within(b & (p.max_h - 1), tap, height, above, below,
                                                                p.max_h - 1)
                                               for b in range(p.max_T * p.max_h))),
                         col_masks[tap].eq(Cat(reaches_within(x, tap, width, left, right, p.max_w - 1)
                                               for x in range(p.max_w)))]

        # ---- the fetch side: the next slot (ci, tap, plane) to fetch. Its counters change only at a fetch,
        # at least READ_LATENCY cycles apart; what the fetch needs (its spike group, whether it is the last
        # slot) and the counters' values for the slot after it are registered from them a cycle later,
        # so every fetch output is a flip-flop and a fetch only loads the counters.
        ci = Signal.like(d.cin)              # input channel (weight column)
        plane = Signal.like(d.planes)
        channel = Signal.like(d.cin)         # spike channel: ci * planes + plane
        channel_base = Signal.like(d.cin)    # ci * planes
        dy, dx = Signal(range(3)), Signal(range(3))
        row = Signal.like(d.weight_base)     # weight row of (ci, tap)
        counters = [ci, plane, channel, channel_base, dy, dx, row]
        ci_, plane_, channel_, channel_base_, dy_, dx_, row_ = following = \
            [Signal.like(counter, name=f"{counter.name}_after") for counter in counters]
        group = Signal.like(self.occ_group)
        last = Signal()                      # the slot is the pass's last
        plane_wraps, tap_wraps = plane == last_plane, ~kernel3 | ((dy == last_dy) & (dx == last_dx))
        m.d.sync += [group.eq(spike_group(p, in_base, channel >> lb)),
                     last.eq(plane_wraps & tap_wraps & (ci == last_ci))]
        # every slot's weight row is fetched in (ci, tap, plane) order, empty slots too: the weight reader
        # serves rows in that order (past the last slot the counters run on harmlessly: nothing is fetched)
        m.d.sync += [counter_.eq(counter) for counter_, counter in zip(following, counters)]
        with m.If(~plane_wraps):
            m.d.sync += [plane_.eq(plane + 1), channel_.eq(channel + 1)]
        with m.Else():
            m.d.sync += [plane_.eq(0), channel_.eq(channel_base), row_.eq(row + 1)]
            with m.If(tap_wraps):
                next_base = channel_base + planes
                m.d.sync += [dy_.eq(first_dy), dx_.eq(first_dx), ci_.eq(ci + 1), channel_base_.eq(next_base),
                             channel_.eq(next_base)]
            with m.Elif(dx == last_dx):
                m.d.sync += [dx_.eq(first_dx), dy_.eq(dy + 1)]
            with m.Else():
                m.d.sync += dx_.eq(dx + 1)
        m.d.comb += [self.weight_addr.eq(row), self.occ_group.eq(group), self.occ_lane.eq(channel[:lb] if lb else 0)]

        # the fetched slot, waiting for its occupancy word; its masks are registered from its tap
        fetched_group, fetched_lane = Signal.like(self.occ_group), Signal.like(self.occ_lane)
        fetched_plane = Signal.like(plane)
        fetched_dy, fetched_dx = Signal(range(3)), Signal(range(3))
        fetched_last = Signal()              # the fetched slot is the pass's last
        rows_mask = Signal(p.max_T * p.max_h)
        m.d.sync += rows_mask.eq(by_tap(row_masks, fetched_dy))

        # the loaded slot, whose rows are read: captured at its load
        issue_row = Signal(self.weight_data.shape())
        issue_group, issue_lane = Signal.like(self.occ_group), Signal.like(self.occ_lane)
        issue_plane = Signal.like(plane)
        issue_dy, issue_dx = Signal(range(3)), Signal(range(3))

        # the last fetch's occupancy word is there, masked to the slot's rows and searched in a register (the
        # row search starts from flip-flops): READ_LATENCY + 1 cycles after the fetch (the age counts on and
        # wraps, harmlessly: only a fetch clears occ_ready). The register keeps the word from then on
        # (occ_data holds it for one cycle only) until the next fetch
        occ_word, occ_ready = Signal(searched_layout(p.max_T * p.max_h)), Signal()
        with m.If(~occ_ready):
            m.d.sync += occ_word.eq(search(self.occ_data & rows_mask))
        occ_age = Signal(range(max(2, READ_LATENCY)))
        m.d.sync += occ_age.eq(occ_age + 1)

        running = Signal()
        # until the pass's first fetch, the counters stay at the first slot and the constants follow desc
        # (valid from start on): their enable is a flip-flop, not start
        with m.If(~running):
            m.d.sync += [ci.eq(0), plane.eq(0), channel.eq(0), channel_base.eq(0), dy.eq(first_dy), dx.eq(first_dx),
                         kernel3.eq(d.kernel3), planes.eq(d.planes), last_plane.eq(d.planes - 1),
                         last_ci.eq(d.cin - 1), in_base.eq(d.in_base), height.eq(d.H), width.eq(d.W),
                         attention.eq(d.op == OPCODES["ATTENTION"]), scan_T.eq(Mux(d.static, 1, d.T)),
                         selected.eq(self.t_sel)]
            for (before, after, first_tap, last_tap), shift in (((above, below, first_dy, last_dy), d.tile_dy),
                                                                ((left, right, first_dx, last_dx), d.tile_dx)):
                # two's complement: 0b11 the tile before (only kernel row/column 0 reaches across), 0b01 after (2)
                m.d.sync += [before.eq(shift == 0b11), after.eq(shift == 0b01),
                             first_tap.eq(Mux(shift == 0b01, 2, 0)), last_tap.eq(Mux(shift == 0b11, 0, 2))]

        fetch = Signal()
        with m.If(fetch):
            m.d.comb += [self.weight_en.eq(1), self.occ_en.eq(1)]
            m.d.sync += [occ_age.eq(0),
                         fetched_group.eq(group), fetched_lane.eq(self.occ_lane), fetched_plane.eq(plane),
                         fetched_dy.eq(Mux(kernel3, dy, 1)), fetched_dx.eq(Mux(kernel3, dx, 1)),
                         fetched_last.eq(last)]
            m.d.sync += [counter.eq(counter_) for counter, counter_ in zip(counters, following)]

        # ---- the row reads: the row search takes the slot's occupancy word at its load and keeps the
        # next row to read in a register (the candidate), so the read's address is a flip-flop. A read is
        # issued only against a credit: a place in the row queue for its word.
        credits = Signal(range(ROW_QUEUE + 1), init=ROW_QUEUE)
        pop = Signal()
        # every credit back (nothing read is on its way or queued), kept in a register with the count, for
        # the end of the pass (done starts the next unit)
        credits_next, all_credits = credits - self.scan_en + pop, Signal(init=1)
        m.d.sync += [credits.eq(credits_next), all_credits.eq(credits_next == ROW_QUEUE)]
        cand_valid = Signal()
        cand_index = Signal.like(row_scanner.index)
        cand_t, cand_y = cand_index[p.h_bits:][:max(1, p.t_bits)], cand_index[:p.h_bits]
        m.d.comb += [self.scan_en.eq(cand_valid & (credits != 0)),
                     self.scan_addr.eq(cat_fields(spike_row_layout(p), group=issue_group, t=cand_t, y=cand_y)),
                     self.scan_lane.eq(issue_lane)]
        # the pass: fetching from its first fetch (two cycles after start) on, and slots are left to load
        # (armed). A slot loads when its occupancy word is there and the previous slot's rows are read:
        # loading is a register, from the next values of the three, so the fetch is one gate of flip-flops.
        armed, loading = Signal(), Signal()
        first_fetch, = delayed(m, [self.start], "setup", 2)
        m.d.comb += [fetch.eq(first_fetch | (loading & ~fetched_last)),
                     row_scanner.word.eq(occ_word), row_scanner.load.eq(loading),
                     row_scanner.advance.eq(loading | self.scan_en)]
        with m.If(row_scanner.advance):
            m.d.sync += cand_index.eq(row_scanner.index)
        cand_valid_next = Mux(row_scanner.advance, row_scanner.valid, cand_valid)
        occ_ready_next = ~fetch & (occ_ready | (occ_age == READ_LATENCY - 1))
        armed_next = first_fetch | (armed & ~(loading & fetched_last))
        m.d.sync += [cand_valid.eq(cand_valid_next), occ_ready.eq(occ_ready_next), armed.eq(armed_next),
                     loading.eq(armed_next & occ_ready_next & ~cand_valid_next)]
        with m.If(first_fetch):
            m.d.sync += running.eq(1)
        # the slot's row reads use these only while a row is to be read: they follow the fetched slot while
        # none is (the last time at its load), so their enable is a flip-flop, not the load's decision
        assert ROW_READ_LATENCY <= READ_LATENCY + 1, "a slot's weight row must be there by its load"
        with m.If(~cand_valid):
            m.d.sync += [issue_row.eq(self.weight_data), issue_group.eq(fetched_group), issue_lane.eq(fetched_lane),
                         issue_plane.eq(fetched_plane), issue_dy.eq(fetched_dy), issue_dx.eq(fetched_dx)]

        entry = data.StructLayout({"word": p.max_w, "t": max(1, p.t_bits), "y": max(1, p.h_bits), "shift": 3,
                                   "row": self.weight_data.shape()})
        issued = Signal(entry)
        m.d.comb += [issued.t.eq(cand_t), issued.y.eq(cand_y - issue_dy + 1), issued.shift.eq(issue_plane),
                     issued.row.eq(issue_row)]

        with m.If(self.start & self.rewind):
            m.d.sync += row.eq(d.weight_base)
        # the pass ends once every slot is loaded and its rows read, and nothing is in flight: no read, no
        # row queued, held or being scanned (its last event is on the event ports then)
        quiet = Signal()
        m.d.comb += self.done.eq(running & ~armed & ~cand_valid & quiet)
        with m.If(self.done):
            m.d.sync += running.eq(0)

        # ---- the words: READ_LATENCY cycles after their reads, into the row queue, masked to the tap's
        # columns and rotated by it, so that a spike's bit is its target column x − dx + 1 (modulo max_w:
        # the edge column of a neighbouring tile lands on the output tile's edge; within a tile the mask
        # leaves no bit that would wrap).
        # The queue, and the registers that take rows from it, come in slices of the entry: the fields before
        # the weight row, then the row per LANES_PER_COPY lanes. Each slice is a queue of its own, written with
        # its own copy of the read's valid bit, and loads its registers under its own copies of the flags (one
        # write enable, or one load condition, reached some 140 bits across the chip in 13–14 ns). The queues
        # are written and read together: the first one's r_rdy stands for all.
        row_at, row_slice = entry["row"].offset, LANES_PER_COPY * p.weight_bits
        slices = [(0, row_at)] + [(begin, min(begin + row_slice, entry.size))
                                  for begin in range(row_at, entry.size, row_slice)]
        reading, reading_entry, reading_dx = delayed(m, [self.scan_en, issued.as_value(), issue_dx], "reading",
                                                     READ_LATENCY - 1)
        arriving_entry, arriving_dx = delayed(m, [reading_entry, reading_dx], "arriving")
        arriving = replicated(m, reading, len(slices), "arriving")
        queues = [SyncFIFO(width=end - begin, depth=ROW_QUEUE) for begin, end in slices]
        masked = self.scan_data & by_tap(col_masks, arriving_dx)
        stored = Signal(entry)
        m.d.comb += [stored.eq(arriving_entry),
                     stored.word.eq(by_tap([masked.rotate_left(1), masked, masked.rotate_right(1)], arriving_dx))]
        for i, ((begin, end), queue, write) in enumerate(zip(slices, queues, arriving)):
            m.submodules[f"queue{i}"] = queue
            m.d.comb += [queue.w_en.eq(write), queue.w_data.eq(stored.as_value()[begin:end]), queue.r_en.eq(pop)]

        # ---- the events: one row after another, each taken from the queue a cycle before it starts; an
        # event is registered (ev_*) with its row (current), so the array's inputs are flip-flops
        held = Signal(entry)                         # the next row, taken from the queue
        current = Signal(entry)                      # the row being scanned
        # whether held holds a row and whether the row goes on next cycle: a copy of each for the logic, one
        # per slice for its registers' enables
        held_valid_next, active_next = Signal(), Signal()
        held_valid, *held_valid_rows = replicated(m, held_valid_next, 1 + len(slices), "held_valid")
        active, *active_rows = replicated(m, active_next, 1 + len(slices), "active")
        starting = Signal()                          # held starts: registered, from the next values
        taking = Signal()                            # held is free or starts: it takes the queue's head
        m.d.comb += [taking.eq(~(held_valid & active)), pop.eq(queues[0].r_rdy & taking),
                     held_valid_next.eq(Mux(taking, queues[0].r_rdy, held_valid))]
        # (the rows' registers load whenever they may, valid or not: their enables are one gate of the
        # slice's copies, apart from the logic's)
        for (begin, end), queue, held_valid_row, active_row in zip(slices, queues, held_valid_rows, active_rows):
            with m.If(~(held_valid_row & active_row)):
                m.d.sync += held.as_value()[begin:end].eq(queue.r_data)
            with m.If(~active_row):
                m.d.sync += current.as_value()[begin:end].eq(held.as_value()[begin:end])
        m.d.comb += [scanner.word.eq(held.word), scanner.load.eq(starting), scanner.advance.eq(scanner.valid)]
        in_row = starting | active
        m.d.comb += active_next.eq(in_row & ~scanner.last)
        m.d.sync += starting.eq(held_valid_next & ~active_next)
        ev_x = Signal.like(scanner.index)
        m.d.sync += [self.event_valid.eq(in_row & scanner.valid), ev_x.eq(scanner.index)]
        m.d.comb += [self.event_row.eq(current.row), self.event_shift.eq(current.shift),
                     self.event_addr.eq(Cat(ev_x[:p.w_bits], current.y[:p.h_bits], current.t[:p.t_bits]))]
        m.d.comb += quiet.eq(all_credits & ~held_valid & ~active)
        return m
