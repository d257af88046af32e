"""Spike scanner: the event-driven accumulation pass of CONV and ATTENTION over one output tile."""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from spikeforge.interface.descriptor import DESCRIPTOR_LAYOUT, OPCODES
from spikeforge.interface.layout import cat_fields, spike_row_layout
from spikeforge.ops.conv import SCAN_ROW_QUEUE

from .logic import check_params, delayed, spike_group
from .spike_memory import READ_LATENCY
from .spike_to_event import SpikeToEvent

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
    x − dx + 1}``. Spike channel ``ci·planes + plane`` is read from group ``in_base``.

    Rows are those with ``t < T`` (``t = 0`` for a ``static`` input) or, for ATTENTION, ``t = t_sel``.
    The reads run ahead of the events, decoupled by a queue of row words (:data:`ROW_QUEUE` credits),
    because spike-memory words arrive :data:`~spikeforge.hw.spike_memory.READ_LATENCY` cycles after
    their reads. Per slot (ci, tap, plane): the weight row and occupancy word are fetched; once the word
    has arrived and the previous slot's rows are read, it is loaded into the row search (a register),
    the slot's weight row, channel, plane and tap into the issue side's registers, and the next slot is
    fetched in that same cycle; then each occupied row is read, one per cycle while a credit is free. So
    the next slot's word is on its way while the rows are read: a slot costs the reads
    ``max(READ_LATENCY, 1 + its rows' reads)`` cycles. Each word, masked to the tap's columns, enters
    the queue with its slot's weight row, plane and target row; the events take one row after another
    (the next taken a cycle before it starts) at ``max(1, k)`` cycles per row. A pass takes
    :func:`spikeforge.ops.conv.scan_pass_cycles` cycles from the one after ``start`` to ``done``
    included (its last row's last event, or its last slot's search). Weight rows follow one another in
    (ci, tap, plane) order, continuing from the previous pass unless ``rewind``.

    Ports
    -----
    desc : In(DESCRIPTOR_LAYOUT)
        The descriptor (``op``, ``kernel3``, ``static``, ``cin``, ``planes``, ``T``, ``H``, ``W``,
        ``in_base``, ``weight_base``), stable during the pass.
    t_sel : In(DESCRIPTOR_LAYOUT["T"].shape)
        ATTENTION: the timestep whose rows are scanned.
    start : In(1)
        Begin a pass (the first weight fetch is next cycle).
    rewind : In(1)
        With ``start``: the first weight row is ``desc.weight_base``; otherwise the row after the
        previous pass's last (CONV tiles follow one another in the weight memory).
    done : Out(1)
        The last cycle of the pass.
    weight_en, weight_addr : Out
        Weight-row read (``weight_addr`` of ``range(weight_rows)``).
    weight_data : In(ArrayLayout(signed(weight_bits), n_pe))
        The row read one cycle earlier (held while ``weight_en`` is low).
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
        m.submodules.row_scanner = row_scanner = SpikeToEvent(p.max_T * p.max_h)
        m.submodules.scanner = scanner = SpikeToEvent(p.max_w)
        is_attention = d.op == OPCODES["ATTENTION"]

        # ---- the reads: slot by slot, the weight row and occupancy word, then the occupied rows ----
        # The fetch side (these counters) runs one slot ahead of the issue side: the next slot is fetched
        # when the current one's occupancy word is loaded, so its word is on its way while the current
        # slot's rows are read.
        ci = Signal.like(d.cin)              # input channel (weight column)
        plane = Signal.like(d.planes)
        channel = Signal.like(d.cin)         # spike channel: ci * planes + plane
        channel_base = Signal.like(d.cin)    # ci * planes
        dy, dx = Signal(range(3)), Signal(range(3))
        row = Signal.like(d.weight_base)     # weight row of (ci, tap)

        def group_of(ch):
            return spike_group(p, d.in_base, ch >> lb)

        # the issue side: what the loaded slot's row reads and their entries need, captured at its load
        # (the weight row changes the cycle after the next slot's fetch)
        issue_row = Signal(self.weight_data.shape())
        issue_group, issue_lane = Signal.like(self.occ_group), Signal.like(self.occ_lane)
        issue_plane = Signal.like(plane)
        issue_dy, issue_dx = Signal(range(3)), Signal(range(3))
        x_mask = Signal(p.max_w)             # the slot's reachable columns
        last_slot = Signal()                 # the loaded slot is the pass's last

        row_t, row_y = Signal(max(1, p.t_bits)), Signal(max(1, p.h_bits))
        m.d.comb += [self.scan_addr.eq(cat_fields(spike_row_layout(p), group=issue_group, t=row_t, y=row_y)),
                     self.scan_lane.eq(issue_lane)]

        # tap geometry of the fetched slot: the rows and columns of the input the tap (dy, dx) reaches
        tap_dy = Mux(d.kernel3, dy, 1)
        tap_dx = Mux(d.kernel3, dx, 1)
        first_row = Mux(tap_dy == 2, 1, 0)
        last_row = Mux(tap_dy == 0, d.H - 2, d.H - 1)
        first_col = Mux(tap_dx == 2, 1, 0)
        last_col = Mux(tap_dx == 0, d.W - 2, d.W - 1)
        tap_is_last = ~d.kernel3 | ((dy == 2) & (dx == 2))
        scan_T = Mux(d.static, 1, d.T)

        # the rows the fetched slot's tap reaches, in time (t < T, or t_sel) and in height: a register,
        # ready before the occupancy word (the tap changes the cycle after the previous slot's load, at
        # least READ_LATENCY cycles before the word is loaded)
        rows_mask = Signal(p.max_T * p.max_h)
        reached = []
        for b in range(p.max_T * p.max_h):
            row_t_, row_y_ = b >> p.h_bits, b & (p.max_h - 1)
            in_time = Mux(is_attention, row_t_ == self.t_sel, row_t_ < scan_T)
            reached.append(in_time & (row_y_ >= first_row) & (row_y_ <= last_row) & ~((d.H == 1) & (tap_dy != 1)))
        m.d.sync += rows_mask.eq(Cat(*reached))

        # a read is issued only against a credit: a place in the row queue for its word
        credits = Signal(range(ROW_QUEUE + 1), init=ROW_QUEUE)
        issue, pop = Signal(), Signal()
        m.d.sync += credits.eq(credits - issue + pop)
        entry = data.StructLayout({"word": p.max_w, "t": max(1, p.t_bits), "y": max(1, p.h_bits), "dx": 2,
                                   "shift": 3, "row": self.weight_data.shape()})
        issued = Signal(entry)
        m.d.comb += [issued.t.eq(row_t), issued.y.eq(row_y - issue_dy + 1), issued.dx.eq(issue_dx),
                     issued.shift.eq(issue_plane), issued.row.eq(issue_row)]

        # whether the row search has rows left, kept in a register: the slot's end is decided from a
        # flip-flop, not from the 32-bit search. While it has none, the search takes the occupancy word
        # every cycle (only a slot's load counts), so its load is a flip-flop, not the load's decision.
        rows_empty = Signal(init=1)
        m.d.comb += [row_scanner.word.eq(self.occ_data & rows_mask), row_scanner.load.eq(rows_empty)]
        # the last fetch's occupancy word is there: a register, set READ_LATENCY cycles after the fetch
        # (the age counts on and wraps, harmlessly: only a fetch clears occ_ready)
        occ_ready = Signal()
        occ_age = Signal(range(max(2, READ_LATENCY)))
        m.d.sync += occ_age.eq(occ_age + 1)
        with m.If(occ_age == READ_LATENCY - 2):
            m.d.sync += occ_ready.eq(1)

        def issue_row_read():
            index = row_scanner.index
            m.d.comb += [row_t.eq(index >> p.h_bits), row_y.eq(index[:p.h_bits])]
            with m.If(credits != 0):
                m.d.comb += [row_scanner.advance.eq(1), self.scan_en.eq(1), issue.eq(1)]
                m.d.sync += rows_empty.eq(row_scanner.last)

        def fetch(row_addr, ch):
            m.d.comb += [self.weight_en.eq(1), self.weight_addr.eq(row_addr),
                         self.occ_en.eq(1), self.occ_group.eq(group_of(ch)),
                         self.occ_lane.eq(ch[:lb] if lb else 0)]
            m.d.sync += [occ_age.eq(0), occ_ready.eq(0)]

        def fetch_next():
            # every slot's weight row is fetched in (ci, tap, plane) order, empty slots too: the weight
            # reader serves rows in that order
            with m.If(plane != d.planes - 1):
                m.d.sync += [plane.eq(plane + 1), channel.eq(channel + 1)]
                fetch(row, channel + 1)
            with m.Else():
                m.d.sync += [plane.eq(0), channel.eq(channel_base), row.eq(row + 1)]
                with m.If(tap_is_last):
                    m.d.sync += [dy.eq(0), dx.eq(0)]
                    with m.If(ci == d.cin - 1):
                        m.d.sync += last_slot.eq(1)
                    with m.Else():
                        next_base = channel_base + d.planes
                        m.d.sync += [ci.eq(ci + 1), channel_base.eq(next_base), channel.eq(next_base)]
                        fetch(row + 1, next_base)
                with m.Else():
                    with m.If(dx == 2):
                        m.d.sync += [dx.eq(0), dy.eq(dy + 1)]
                    with m.Else():
                        m.d.sync += dx.eq(dx + 1)
                    fetch(row + 1, channel_base)

        def load_slot():
            # the occupied rows the tap reaches are in the row search's register (its lowest-row search
            # starts from a flip-flop next cycle); the slot goes to the issue side, the next is fetched
            m.d.sync += [rows_empty.eq(row_scanner.word == 0), issue_row.eq(self.weight_data),
                         issue_group.eq(group_of(channel)), issue_lane.eq(channel[:lb] if lb else 0),
                         issue_plane.eq(plane), issue_dy.eq(tap_dy), issue_dx.eq(tap_dx),
                         x_mask.eq(Cat(*[(i >= first_col) & (i <= last_col) for i in range(p.max_w)]))]
            fetch_next()

        finished = Signal()                  # every slot's rows are read
        issuer_done = Signal()               # ... as of this cycle
        drained = Signal()                   # no read in flight, no row queued, held or going on

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [ci.eq(0), plane.eq(0), channel.eq(0), channel_base.eq(0), dy.eq(0), dx.eq(0),
                                 last_slot.eq(0)]
                    with m.If(self.rewind):
                        m.d.sync += row.eq(d.weight_base)
                    m.next = "FETCH"
            with m.State("FETCH"):
                fetch(row, channel)
                m.next = "OCC_WAIT"
            with m.State("OCC_WAIT"):
                # the occupancy word arrives READ_LATENCY cycles after the fetch (here when the previous
                # slot's rows were read before)
                with m.If(occ_ready):
                    load_slot()
                    m.next = "ROWS"
            with m.State("ROWS"):
                with m.If(~rows_empty):
                    issue_row_read()
                with m.Elif(last_slot):
                    m.d.comb += issuer_done.eq(1)
                    with m.If(drained):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "FINISH"
                with m.Elif(occ_ready):
                    load_slot()
                with m.Else():
                    m.next = "OCC_WAIT"
            with m.State("FINISH"):
                m.d.comb += finished.eq(1)
                with m.If(drained):
                    m.next = "IDLE"

        # ---- the words: READ_LATENCY cycles after their reads, into the row queue ---------------------
        arriving, arriving_entry, arriving_mask = delayed(m, [issue, issued.as_value(), x_mask], "arriving",
                                                          READ_LATENCY)
        m.submodules.queue = queue = SyncFIFO(width=entry.size, depth=ROW_QUEUE)
        stored = Signal(entry)
        m.d.comb += [stored.eq(arriving_entry), stored.word.eq(self.scan_data & arriving_mask),
                     queue.w_en.eq(arriving), queue.w_data.eq(stored)]

        # ---- the events: one row after another, each taken from the queue a cycle before it starts --
        held, held_valid = Signal(entry), Signal()   # the next row, taken from the queue
        current, active = Signal(entry), Signal()    # the row being scanned, and whether it goes on
        starting = Signal()
        m.d.comb += [starting.eq(held_valid & ~active), pop.eq(queue.r_rdy & (~held_valid | starting)),
                     queue.r_en.eq(pop)]
        with m.If(pop):
            m.d.sync += [held.eq(queue.r_data), held_valid.eq(1)]
        with m.Elif(starting):
            m.d.sync += held_valid.eq(0)
        scanned = Signal(entry)                      # the row whose events go out this cycle
        m.d.comb += [scanned.eq(Mux(starting, held, current)),
                     scanner.word.eq(held.word), scanner.load.eq(starting), scanner.advance.eq(scanner.valid)]
        in_row = starting | active
        with m.If(starting):
            m.d.sync += current.eq(held)
        m.d.sync += active.eq(in_row & ~scanner.last)
        with m.If(in_row & scanner.valid):
            target_x = scanner.index - scanned.dx + 1
            m.d.comb += [self.event_valid.eq(1), self.event_row.eq(scanned.row), self.event_shift.eq(scanned.shift),
                         self.event_addr.eq(Cat(target_x[:p.w_bits], scanned.y[:p.h_bits], scanned.t[:p.t_bits]))]
        # the pass ends with its last row (every read returned, queued and taken), or with the reads
        m.d.comb += [drained.eq((credits == ROW_QUEUE) & ~(held_valid & ~starting) & ~(in_row & ~scanner.last)),
                     self.done.eq((issuer_done | finished) & drained)]
        return m
