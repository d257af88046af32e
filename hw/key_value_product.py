"""Key-value product: the attention's Kᵀ·V rows of one tile and timestep, by AND-and-count."""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.descriptor import DESCRIPTOR_LAYOUT
from spikeforge.interface.layout import cat_fields, spike_row_layout
from spikeforge.ops.attention import KEY_VALUE_STAGES

from .logic import (FITS_PARTS, LANES_PER_COPY, check_params, delayed, descriptor_copy, enabled_parts, fits_parts,
                    high_bits, lane_copies, lane_groups, popcount, replicated, spike_group)
from .spike_memory import READ_LATENCY

__all__ = ["KeyValueProduct"]


class KeyValueProduct(wiring.Component):
    """For timestep ``t_sel`` and the ``n_pe`` value channels ``j`` of ``tile``, writes for each key
    channel ``i`` of ``desc.cin`` the weight row ``weight_base + i`` holding, in lane ``j``, the number
    of positions where both ``k_i`` and ``v_j`` spike, summed over all ``H`` rows of ``W`` bits (a
    popcount of ``k_i(row) AND v_j(row)``), or 0 where ``j`` is outside the head of ``i`` (heads of
    ``head_dim`` channels). These scratch rows are then accumulated by the Q spikes
    (:class:`SpikeScanner`).

    K channel ``i`` lives in group ``k_base + i / n_pe``, bank ``i mod n_pe``; the V rows of a tile are
    one group read. One row ``y`` of one ``i`` per cycle, through
    :data:`~spikeforge.ops.attention.KEY_VALUE_STAGES` pipeline stages after the read (the read's further
    cycles, the ANDed rows registered straight from the spike memory, their popcounts, the counts, the row
    write and its check). The pass takes ``cin · H + KEY_VALUE_STAGES`` cycles from the one after ``start``
    to ``done`` included.

    Ports
    -----
    desc : In(DESCRIPTOR_LAYOUT)
        The descriptor (``cin``, ``H``, ``head_dim``, ``k_base``, ``v_base``, ``weight_base``, ``check_bits``),
        from :data:`~spikeforge.interface.descriptor.DESCRIPTOR_SETTLE_CYCLES` cycles before ``start`` to
        ``done``: the product copies these fields into registers, and derives its loop bounds and
        range-check mask from the copies a cycle later.
    tile : In(DESCRIPTOR_LAYOUT["tiles"].shape)
        The value-channel tile, stable during the pass.
    t_sel : In(DESCRIPTOR_LAYOUT["T"].shape)
        The timestep.
    start : In(1)
        Begin the pass (the first reads are next cycle).
    done : Out(1)
        The last cycle of the pass (it writes the last row).
    scan_en, scan_addr, scan_lane : Out
        K row read (:class:`SpikeMemory` ``scan_*``).
    scan_data : In(max_w)
    group_addr : Out
        V rows read (:class:`SpikeMemory` ``group_addr``).
    group_data : In(ArrayLayout(max_w, n_pe))
    weight_en, weight_addr, weight_data : Out
        Write of one Kᵀ·V row into the scratch memory (``range(scratch_rows)``).
    overflow : Out(1)
        A count of the row written this cycle does not fit ``check_bits`` (the attention's
        ``count_bits``, which holds every count of the attention; the row itself is exact in the
        build's ``weight_bits``).
    run_next : In(1, init=1)
        The product advances in the next cycle (low: it stands still then): its control and each part of
        :data:`~spikeforge.hw.logic.LANES_PER_COPY` lanes run under their own registered copy of it
        (:func:`~spikeforge.hw.logic.enabled_parts`).
    """

    def __init__(self, params):
        self.params = p = check_params(params)
        addr = max(1, p.group_bits + p.t_bits + p.h_bits)
        super().__init__({
            "desc": In(DESCRIPTOR_LAYOUT), "tile": In(DESCRIPTOR_LAYOUT["tiles"].shape),
            "t_sel": In(DESCRIPTOR_LAYOUT["T"].shape), "start": In(1), "done": Out(1),
            "scan_en": Out(1), "scan_addr": Out(addr), "scan_lane": Out(max(1, p.lane_bits)),
            "scan_data": In(p.max_w),
            "group_addr": Out(addr), "group_data": In(data.ArrayLayout(p.max_w, p.n_pe)),
            "weight_en": Out(1), "weight_addr": Out(range(p.scratch_rows)),
            "weight_data": Out(data.ArrayLayout(signed(p.weight_bits), p.n_pe)),
            "overflow": Out(1), "run_next": In(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        lb = p.lane_bits
        tile, t_sel = self.tile, self.t_sel
        d = descriptor_copy(m, self.desc, ("cin", "H", "head_dim", "k_base", "v_base", "weight_base"))
        # derived from the copies a cycle later: the last loop indices; the mask of the range check
        # (decoded from the descriptor, then the mask)
        last_ci, last_y = Signal.like(d.cin, name="last_ci"), Signal.like(d.H, name="last_y")
        last_count = Signal.like(d.head_dim, name="last_count")
        m.d.sync += [last_ci.eq(d.cin - 1), last_y.eq(d.H - 1), last_count.eq(d.head_dim - 1)]
        count_high = high_bits(m, p.acc_bits, self.desc.check_bits, "count_high", p.n_pe)
        ci = Signal.like(d.cin)              # key channel i
        y = Signal.like(d.H)
        head_start = Signal.like(d.cin)      # first channel of the head of i
        head_end = Signal(len(d.cin) + 1)    # head_start + head_dim, kept with it
        head_count = Signal.like(d.head_dim)  # i - head_start

        def spike_row(group):
            return cat_fields(spike_row_layout(p), group=group, t=t_sel, y=y)

        # request stage
        pending, last = Signal(), Signal()
        flush = Signal(range(KEY_VALUE_STAGES))
        row_addr = Signal.like(d.weight_base)
        above, below = Signal(p.n_pe, name="above"), Signal(p.n_pe, name="below")   # the lanes of the head of i
        with m.FSM():
            with m.State("IDLE"):
                # the counters start over while idle, rather than at start (a register enable fewer on
                # its path)
                m.d.sync += [ci.eq(0), y.eq(0), head_start.eq(0), head_end.eq(d.head_dim), head_count.eq(0)]
                with m.If(self.start):
                    m.next = "KV"
            with m.State("KV"):
                m.d.comb += [self.scan_en.eq(1), self.scan_addr.eq(spike_row(spike_group(p, d.k_base, ci >> lb))),
                             self.scan_lane.eq(ci[:lb] if lb else 0),
                             self.group_addr.eq(spike_row(spike_group(p, d.v_base, tile)))]
                lanes = [Cat(Const(lane, lb), tile) for lane in range(p.n_pe)]
                m.d.sync += [pending.eq(1), last.eq(y == last_y), row_addr.eq(d.weight_base + ci),
                             above.eq(Cat(*[j >= head_start for j in lanes])),
                             below.eq(Cat(*[j < head_end for j in lanes]))]
                with m.If(y == last_y):
                    m.d.sync += y.eq(0)
                    with m.If(head_count == last_count):
                        m.d.sync += [head_count.eq(0), head_start.eq(head_end), head_end.eq(head_end + d.head_dim)]
                    with m.Else():
                        m.d.sync += head_count.eq(head_count + 1)
                    with m.If(ci == last_ci):
                        m.d.sync += ci.eq(0)
                        m.next = "KV_FLUSH"
                    with m.Else():
                        m.d.sync += ci.eq(ci + 1)
                with m.Else():
                    m.d.sync += y.eq(y + 1)
            with m.State("KV_FLUSH"):
                m.d.sync += [pending.eq(0), flush.eq(flush + 1)]
                with m.If(flush == KEY_VALUE_STAGES - 1):
                    m.d.sync += flush.eq(0)
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"

        # the read's further cycles (the spike memory registers its words on their way); the lanes of the
        # head, their bounds checked apart a stage earlier, ANDed into the first of them
        read_valid, read_last, read_addr, read_mask = delayed(m, [pending, last, row_addr, above & below], "read",
                                                              READ_LATENCY - 1)
        # the lanes' registers in parts of LANES_PER_COPY lanes, each under its own enable (one net to them all,
        # across the chip, took most of a cycle), with its own copies of the flags below; a signal per lane
        lane_parts = [Module() for _ in range(lane_copies(p.n_pe))]

        def per_lane(name, shape):
            return [Signal(shape, name=f"{name}{lane}") for lane in range(p.n_pe)]

        # stage 1: the K row AND each lane's V row, into registers straight from the spike memory
        both = per_lane("both", p.max_w)
        for lane in range(p.n_pe):
            lane_parts[lane // LANES_PER_COPY].d.sync += both[lane].eq(self.scan_data & self.group_data[lane])
        both_valid, both_last, both_addr, both_mask = delayed(m, [read_valid, read_last, read_addr, read_mask],
                                                              "both")
        # stage 2: the positions where both spike, per lane
        ones = per_lane("ones", range(p.max_w + 1))
        for lane in range(p.n_pe):
            lane_parts[lane // LANES_PER_COPY].d.sync += ones[lane].eq(popcount(both[lane]))
        ones_valid, ones_last, ones_addr = delayed(m, [both_valid, both_last, both_addr], "ones")
        # (and a copy of the flags per lane: each drives the clock enables and selects of a lane's count
        # and row)
        lane_valid, lane_last = ([flag for part, lanes in zip(lane_parts, lane_groups(p.n_pe))
                                  for flag in replicated(part, value, len(lanes), f"ones_{name}")]
                                 for name, value in (("valid", both_valid), ("last", both_last)))
        # stage 3: the counts over the rows; the last row of i gives the Kᵀ·V row (0 outside the head) and
        # its range check, in FITS_PARTS registers per lane (their conjunction comes with the write)
        counts, total, row = (per_lane(name, signed(p.acc_bits)) for name in ("count", "total", "row"))
        lane_mask, row_fits = per_lane("ones_mask", 1), per_lane("row_fits", FITS_PARTS)
        row_valid, row_to = Signal(), Signal.like(row_addr)
        m.d.sync += row_valid.eq(ones_valid & ones_last)
        with m.If(ones_valid & ones_last):
            m.d.sync += row_to.eq(ones_addr)
        for lane in range(p.n_pe):
            part = lane_parts[lane // LANES_PER_COPY]
            part.d.sync += lane_mask[lane].eq(both_mask[lane])
            part.d.comb += total[lane].eq(counts[lane] + ones[lane])
            with part.If(lane_valid[lane]):
                part.d.sync += counts[lane].eq(total[lane])
                with part.If(lane_last[lane]):
                    # 0 outside the head fits: the check of the sum, not of the selected value
                    part.d.sync += [counts[lane].eq(0), row[lane].eq(Mux(lane_mask[lane], total[lane], 0)),
                                    row_fits[lane].eq(Cat(*(Mux(lane_mask[lane], bit, 1)
                                                            for bit in fits_parts(total[lane], count_high[lane],
                                                                                  FITS_PARTS))))]
        # stage 4: the row written, and checked
        m.d.comb += [self.weight_en.eq(row_valid), self.weight_addr.eq(row_to),
                     self.overflow.eq(row_valid & ~Cat(*row_fits).all())]
        for lane in range(p.n_pe):
            m.d.comb += self.weight_data[lane].eq(row[lane])
        top = Module()
        enabled_parts(top, self.run_next, {"control": m, **{f"lanes{i}": part for i, part in enumerate(lane_parts)}})
        return top
