"""Drain: the LIF pass over one tile's accumulators (bias, residual, stream write-back, spikes)."""

import operator
from functools import reduce

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.descriptor import DESCRIPTOR_LAYOUT
from spikeforge.interface.external import ROW_READ_LATENCY
from spikeforge.interface.layout import cat_fields, spike_row_layout, stream_word_layout
from spikeforge.ops.conv import ACC_READ_LATENCY, DRAIN_STAGES, STREAM_READ_LATENCY

from .lif_unit import LIFUnit
from .logic import (FITS_PARTS, LANES_PER_COPY, carry_save_sum, check_params, count_nested, delayed, descriptor_copy,
                    enabled_parts, fits_parts, high_bits, lane_copies, lane_groups, replicated, spike_group)

__all__ = ["Drain"]

class Drain(wiring.Component):
    """Reads the tile's accumulators position by position, timestep innermost (``{t, y, x}``, one per
    cycle), adds the tile's bias and, for a ``residual`` CONV, the stream word read in step; checks
    the sum against ``check_bits``; writes it back to the stream memory (``stream_write``; each word
    is read, then written ``ACC_READ_LATENCY + 1`` cycles later) and runs the LIF (threshold of the tile,
    ``frac_bits``), whose spikes go to group ``out_base + tile`` (``lif``) and whose membrane H is
    checked against ``membrane_bits``. The membrane stays in a register across the timesteps of one
    position. A ``static`` input's accumulators hold ``t = 0`` only: they are read, and kept, at
    every timestep.

    Seven pipeline stages follow the reads (:data:`~spikeforge.ops.conv.DRAIN_STAGES`), so that every
    path is short: the accumulator read's further cycles (:data:`~spikeforge.ops.conv.ACC_READ_LATENCY`
    − 1, 2: its word arrives in the sum's cycle; the stream's word,
    :data:`~spikeforge.ops.conv.STREAM_READ_LATENCY` cycles after its read, goes into a register
    meanwhile), the sum, the check with the stream write and the scaling, the LIF (the membrane's loop),
    the outputs with the membrane check and the row gathering, the spike-row write. The pass takes
    ``drain_cycles(T, H, W) = 1 + T·H·W + DRAIN_STAGES`` cycles (:func:`spikeforge.ops.conv.drain_cycles`)
    from the one after ``start`` to ``done`` included: a start cycle (the bias and threshold rows on
    their way), one per position, and the flush of the seven stages. The drain advances only in the
    cycles after ``run_next``: its control and each bank of its pipeline's registers (the spike rows' in
    parts of :data:`~spikeforge.hw.logic.LANES_PER_COPY` lanes) run under their own registered copy of it
    (:func:`~spikeforge.hw.logic.enabled_parts`), and the conditions that meet those enables are registers
    (the spike rows' copied per part).

    Ports
    -----
    desc : In(DESCRIPTOR_LAYOUT)
        The descriptor (``T``, ``H``, ``W``, ``static``, ``residual``, ``stream_write``, ``lif``,
        ``bias_base``, ``threshold_base``, ``out_base``, ``frac_bits``, ``check_bits``, ``membrane_bits``),
        from :data:`~spikeforge.interface.descriptor.DESCRIPTOR_SETTLE_CYCLES` cycles before ``start``
        to ``done``: the drain copies these fields into registers, and derives its loop bounds and
        range-check masks from the copies a cycle later.
    tile : In(DESCRIPTOR_LAYOUT["tiles"].shape)
        The output tile (``n_pe`` channels), from the cycle before ``start`` to ``done``: the bias and
        threshold rows requested with ``start`` are addressed from registers of it.
    start : In(1)
        Begin the pass (while idle; the bias and threshold rows are requested in this cycle).
    done : Out(1)
        The last cycle of the pass.
    bias_en, bias_addr : Out
        Bias row request (``range(bias_rows)``): ``start``, and the tile's row from a register.
    bias_data : In(ArrayLayout(signed(acc_bits), n_pe))
        The row requested, :data:`~spikeforge.interface.external.ROW_READ_LATENCY` cycles after ``start``
        (from the cycle after the start cycle), held while ``bias_en`` is low.
    threshold_en, threshold_addr : Out
        Threshold row request (``range(threshold_rows)``), as the bias row's.
    threshold_data : In(ArrayLayout(signed(membrane_bits), n_pe))
        As ``bias_data``.
    acc_valid, acc_addr, acc_keep : Out
        Accumulator drain request (:class:`AccumulatorArray` ``drain_*``).
    acc_data : In(ArrayLayout(signed(acc_bits), n_pe))
        The word requested ACC_READ_LATENCY cycles earlier (from registers: :class:`AccumulatorArray`).
    stream_addr : Out
        Stream word ``{tile, t, y, x}`` read (data STREAM_READ_LATENCY cycles later).
    stream_data : In(ArrayLayout(signed(acc_bits), n_pe))
    stream_we, stream_waddr, stream_wdata : Out
        Stream write of the result.
    word_valid, word_addr, word_data : Out
        A finished row of the LIF's spikes in every lane (:class:`SpikeMemory` ``word_*``): the spikes
        of a row ``{t, y}`` gather in a register and go out whole with its last position.
    overflow : Out(1)
        The result at the position of ``out_*`` (this cycle) does not fit ``check_bits``.
    membrane_overflow : Out(1)
        A ``lif`` descriptor: the membrane H before reset at this cycle's position does not fit the
        descriptor's ``membrane_bits`` (the fused LIF's declared width; H itself is exact in the build's
        wider ``membrane_bits``).
    out_valid, out_t, out_y, out_x : Out
        The position processed this cycle.
    out_spikes : Out(n_pe)
    out_membrane : Out(ArrayLayout(signed(membrane_bits), n_pe))
        The LIF's spikes and membrane H before reset there.
    run_next : In(1, init=1)
        The drain advances in the next cycle (low: it stands still then, registers and requests held).
    """

    def __init__(self, params):
        self.params = p = check_params(params)
        self.acc_word = acc_word = data.ArrayLayout(signed(p.acc_bits), p.n_pe)
        self.membrane_word = membrane_word = data.ArrayLayout(signed(p.membrane_bits), p.n_pe)
        stream_depth = 1 << (p.stream_tile_bits + p.t_bits + p.h_bits + p.w_bits)
        super().__init__({
            "desc": In(DESCRIPTOR_LAYOUT), "tile": In(DESCRIPTOR_LAYOUT["tiles"].shape),
            "start": In(1), "done": Out(1),
            "bias_en": Out(1), "bias_addr": Out(range(p.bias_rows)), "bias_data": In(acc_word),
            "threshold_en": Out(1), "threshold_addr": Out(range(p.threshold_rows)),
            "threshold_data": In(membrane_word),
            "acc_valid": Out(1), "acc_addr": Out(max(1, p.t_bits + p.h_bits + p.w_bits)), "acc_keep": Out(1),
            "acc_data": In(acc_word),
            "stream_addr": Out(range(stream_depth)), "stream_data": In(acc_word),
            "stream_we": Out(1), "stream_waddr": Out(range(stream_depth)), "stream_wdata": Out(acc_word),
            "word_valid": Out(1), "word_addr": Out(max(1, p.group_bits + p.t_bits + p.h_bits)),
            "word_data": Out(data.ArrayLayout(p.max_w, p.n_pe)),
            "overflow": Out(1), "membrane_overflow": Out(1),
            "out_valid": Out(1), "out_t": Out(DESCRIPTOR_LAYOUT["T"].shape),
            "out_y": Out(DESCRIPTOR_LAYOUT["H"].shape), "out_x": Out(DESCRIPTOR_LAYOUT["W"].shape),
            "out_spikes": Out(p.n_pe), "out_membrane": Out(membrane_word), "run_next": In(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()    # the control: its state, loop counters, table reads
        p = self.params
        m.submodules.lif = lif = LIFUnit(p)
        tile = self.tile
        # the parts of the drain, each under its own enable: the descriptor's fields and what derives
        # from them (loaded every cycle, apart from the control's conditions), then a part per bank of
        # the pipeline's registers (a stage, or half of one; the spike rows' a part per LANES_PER_COPY lanes)
        parts = {name: Module() for name in ("desc", "read", "sum", "scale", "membrane", "lif", "out", "report",
                                             "word")}
        desc = parts["desc"]
        d = descriptor_copy(desc, self.desc, ("T", "H", "W", "static", "residual", "stream_write", "lif", "bias_base",
                                           "threshold_base", "out_base", "frac_bits"))
        # derived from the copies a cycle later: the last loop indices, as wide as the build's (the loops'
        # compares are then shallower than over the descriptor's fields); the masks of the range checks
        # (decoded from the descriptor, then the mask); F as one bit per value (up to the build's)
        sum_width = p.acc_bits + 2      # a sum exact in two more bits than a stream word
        last_t, last_y, last_x = (Signal(range(p.max_T), name="last_t"), Signal(range(p.max_h), name="last_y"),
                                  Signal(range(p.max_w), name="last_x"))
        desc.d.sync += [last_t.eq(d.T - 1), last_y.eq(d.H - 1), last_x.eq(d.W - 1)]
        # (a copy per lane: the lanes' shifts spread over the chip with their memories, and one register
        # driving them all took 15 ns of routing)
        frac_at = replicated(desc, Cat(*(d.frac_bits == f for f in range(p.frac_bits + 1))), p.n_pe, "frac_at")
        sum_high = high_bits(desc, sum_width, self.desc.check_bits, "sum_high", p.n_pe)
        membrane_high = high_bits(desc, p.membrane_bits, self.desc.membrane_bits, "membrane_high", p.n_pe)
        t, y, x = Signal.like(last_t, name="t"), Signal.like(last_y, name="y"), Signal.like(last_x, name="x")

        def stream_address(t_, y_, x_):
            return cat_fields(stream_word_layout(p), tile=tile, t=t_, y=y_, x=x_)

        flush = Signal(range(DRAIN_STAGES))
        out_group = Signal(max(1, p.group_bits))
        # start (which comes while idle, out of the engine's logic) requests the tile's bias and threshold
        # rows (the readers register the requests: the rows come ROW_READ_LATENCY cycles later and are
        # held) and loads starting, which the state then follows (the start cycle, DRAIN_START of the cycle
        # model, is IDLE's with starting); the tile's rows and spike group follow the tile (stable from the
        # cycle before start to the end of the pass), not start.
        # The first position is read two cycles after start (the start cycle, then DRAIN) and summed
        # ACC_READ_LATENCY cycles after its read, with the bias from its register, loaded as the row comes
        assert ROW_READ_LATENCY + 1 <= 2 + ACC_READ_LATENCY, "the bias row must be in its register by the first sum"
        starting = Signal()
        desc.d.sync += [self.bias_addr.eq(d.bias_base + tile), self.threshold_addr.eq(d.threshold_base + tile),
                        out_group.eq(spike_group(p, d.out_base, tile))]
        m.d.sync += starting.eq(self.start)
        m.d.comb += [self.bias_en.eq(self.start), self.threshold_en.eq(self.start)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(starting):
                    m.d.sync += [t.eq(0), y.eq(0), x.eq(0), flush.eq(DRAIN_STAGES - 1)]
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += [self.acc_valid.eq(1),
                             self.acc_addr.eq(Cat(x[:p.w_bits], y[:p.h_bits], Mux(d.static, 0, t)[:p.t_bits])),
                             self.acc_keep.eq(d.static & (t != last_t)),
                             self.stream_addr.eq(stream_address(t, y, x))]
                count_nested(m, [(t, last_t), (x, last_x), (y, last_y)], "FLUSH")
            with m.State("FLUSH"):
                m.d.sync += flush.eq(flush - 1)
                with m.If(flush == 0):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"

        # the pipeline: the position (valid, t, y, x) travels with its data through the stages
        # stages 1 and 2, the reads: the stream's word goes straight into a register, in step with the
        # accumulator's word (the array registers its own)
        assert STREAM_READ_LATENCY + 1 == ACC_READ_LATENCY
        read = delayed(parts["read"], (self.acc_valid, t, y, x), "read", ACC_READ_LATENCY - 1)
        stream_word = Signal(self.acc_word)
        parts["read"].d.sync += stream_word.eq(self.stream_data)
        # the bias and threshold rows into registers of their own, loaded every cycle (they come
        # ROW_READ_LATENCY cycles after start and are held; the first sum needs the bias, the LIF the
        # threshold two cycles later): the readers' rows, loaded under their hit logic, then stay beside
        # it, and these registers, without an enable from it, beside the lanes
        bias, threshold = Signal(self.acc_word, name="bias"), Signal(self.membrane_word, name="threshold")
        parts["read"].d.sync += [bias.eq(self.bias_data), threshold.eq(self.threshold_data)]

        # stage 3, the sum: accumulator, bias and residual (whose flag, derived from the descriptor's, has
        # a copy per LANES_PER_COPY lanes)
        summed = delayed(parts["sum"], read, "sum")
        residual = replicated(desc, d.residual, lane_copies(p.n_pe), "residual")
        total = Signal(data.ArrayLayout(signed(sum_width), p.n_pe))
        for lane in range(p.n_pe):
            terms = [self.acc_data[lane], bias[lane],
                     Mux(residual[lane // LANES_PER_COPY], stream_word[lane], 0)]
            parts["sum"].d.sync += total[lane].eq(carry_save_sum(parts["sum"], terms, sum_width,
                                                                 name=f"sum{lane}"))

        # stage 4, the check, the stream write and the scaling X·2^F of the LIF's input
        scale = parts["scale"]
        scaled_at = delayed(scale, summed, "scale")
        result = [total[lane][:p.acc_bits].as_signed() for lane in range(p.n_pe)]
        # the range checks, in FITS_PARTS registers per lane: their conjunction comes a stage later
        sum_fits = Signal(p.n_pe * FITS_PARTS)
        scale.d.sync += sum_fits.eq(Cat(*(fits_parts(total[lane], sum_high[lane], FITS_PARTS)
                                          for lane in range(p.n_pe))))
        scale.d.comb += [self.stream_we.eq(scaled_at[0] & d.stream_write),
                         self.stream_waddr.eq(stream_address(*scaled_at[1:])),
                         self.stream_wdata.eq(Cat(*result))]
        scaled = Signal(self.membrane_word)
        for lane in range(p.n_pe):
            # X·2^F fits the membrane (membrane_bits >= acc_bits + frac_bits + 1): F picks one of the
            # build's shifts, an AND-OR of registers where a shifter by the field's bits is deeper
            shifts = [Mux(frac_at[lane][f], result[lane] << f, 0) for f in range(p.frac_bits + 1)]
            scale.d.sync += scaled[lane].eq(reduce(operator.or_, shifts))

        # stage 5, the LIF: the membrane stays in a register across the timesteps of a position
        lif_at = delayed(parts["lif"], scaled_at, "lif")
        # the membrane is 0 before a position's first timestep: cleared after its last one (a
        # synchronous reset of the register, rather than a select on the loop's path)
        membrane, last_timestep = Signal(self.membrane_word), Signal()
        m.d.comb += [lif.scaled.eq(scaled), lif.threshold.eq(threshold), lif.v.eq(membrane)]
        parts["membrane"].d.sync += last_timestep.eq(scaled_at[1] == last_t)
        with parts["membrane"].If(lif_at[0]):
            parts["membrane"].d.sync += membrane.eq(Mux(last_timestep, 0, lif.v_next))
        h, spikes = Signal(self.membrane_word), Signal(p.n_pe)
        parts["lif"].d.sync += [h.eq(lif.h), spikes.eq(lif.spike)]

        # stage 6, the outputs: spikes and membranes, their checks; the spike rows' writes decided
        out_part = parts["out"]
        out = delayed(out_part, lif_at, "out")
        out_valid, out_t, out_y, out_x = out
        wide, membrane_fits = Signal(), Signal(p.n_pe * FITS_PARTS)
        out_part.d.sync += [wide.eq(lif_at[0] & ~sum_fits.all()), self.overflow.eq(wide),
                            membrane_fits.eq(Cat(*(fits_parts(h[lane], membrane_high[lane], FITS_PARTS)
                                                   for lane in range(p.n_pe))))]
        # the row of each timestep this position writes, whether it starts or finishes it; the row's
        # timestep (which selects the row register) and the position's column as a one-hot word: but for
        # the row's end, a copy of each per LANES_PER_COPY lanes
        row_done = Signal()
        out_part.d.sync += row_done.eq(lif_at[3] == last_x)
        row_write = replicated(out_part, Cat(*(lif_at[0] & (lif_at[1] == t_) for t_ in range(p.max_T))),
                               lane_copies(p.n_pe), "row_write")
        row_start = replicated(out_part, lif_at[3] == 0, lane_copies(p.n_pe), "row_start")
        row_t = replicated(out_part, lif_at[1], lane_copies(p.n_pe), "row_t")
        x_bit = replicated(out_part, Const(1, p.max_w) << lif_at[3], lane_copies(p.n_pe), "x_bit")

        # stage 7: the position reported, a stage after its outputs' registers (with its checks)
        report = delayed(parts["report"], out, "report")
        reported_spikes, reported_h = Signal.like(spikes), Signal.like(h)
        parts["report"].d.sync += [reported_spikes.eq(spikes), reported_h.eq(h)]
        m.d.comb += [self.out_valid.eq(report[0]), self.out_t.eq(report[1]), self.out_y.eq(report[2]),
                     self.out_x.eq(report[3]), self.out_spikes.eq(reported_spikes), self.out_membrane.eq(reported_h),
                     self.membrane_overflow.eq(report[0] & d.lif & ~membrane_fits.all())]
        # stage 7, the row write: one row register per timestep (positions go timestep innermost, so T
        # rows fill at once), whose bits count from the row's first position on; a finished row goes out
        # from registers (the word follows every position, the spike memory takes it with word_valid).
        # The rows in parts of LANES_PER_COPY lanes, each under its own enable with its own copies of the
        # flags above (one load condition of a row into every lane took 15 ns of routing): a signal per part
        parts["word"].d.sync += [self.word_valid.eq(out_valid & d.lif & row_done),
                                 self.word_addr.eq(cat_fields(spike_row_layout(p), group=out_group, t=out_t,
                                                              y=out_y))]
        words = []
        for group, lanes in enumerate(lane_groups(p.n_pe)):
            part = parts[f"row{group}"] = Module()
            row_layout = data.ArrayLayout(p.max_w, len(lanes))
            rows = [Signal(row_layout, name=f"row{t_}") for t_ in range(p.max_T)]
            row, word = Signal(row_layout, name="row"), Signal(row_layout, name="word")
            for i, lane in enumerate(lanes):
                part.d.comb += row[i].eq(Mux(row_start[group], 0, Array(rows)[row_t[group]][i])
                                         | Mux(spikes[lane], x_bit[group], 0))
            part.d.sync += word.eq(row)
            for t_, register in enumerate(rows):
                with part.If(row_write[group][t_]):
                    part.d.sync += register.eq(row)
            words.append(word)
        m.d.comb += self.word_data.eq(Cat(*words))

        top = Module()
        enabled_parts(top, self.run_next, {"control": m, **parts})
        return top
