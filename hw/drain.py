"""Drain: the LIF pass over one tile's accumulators (bias, residual, stream write-back, spikes)."""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.descriptor import DESCRIPTOR_LAYOUT
from spikeforge.interface.layout import cat_fields, spike_row_layout, stream_word_layout

from .lif_unit import LIFUnit
from .logic import check_params, count_nested, fits, spike_group

__all__ = ["Drain"]


class Drain(wiring.Component):
    """Reads the tile's accumulators position by position, timestep innermost (``{t, y, x}``, one per
    cycle), and one cycle later adds the tile's bias and, for a ``residual`` CONV, the stream word
    read in step; checks the sum against ``check_bits``; writes it back to the stream memory
    (``stream_write``; each word is read, then written one cycle later) and runs the LIF (threshold
    of the tile, ``frac_bits``), whose spikes go to group ``out_base + tile`` (``lif``) and whose
    membrane H is checked against ``membrane_bits``. The membrane stays in a register across the
    timesteps of one position. A ``static`` input's accumulators hold
    ``t = 0`` only: they are read, and kept, at every timestep.

    Three pipeline stages follow the reads, so that no path runs from a memory through the additions
    and the LIF into the spike memory: the sum (and the stream write), the LIF, the spike-row write.
    The pass takes ``drain_cycles(T, H, W) = 1 + T·H·W + 3`` cycles (:func:`spikeforge.ops.conv.drain_cycles`)
    from the one after ``start`` to ``done`` included: a start cycle reading the bias and threshold
    rows, one per position, and a flush of the three stages.

    Ports
    -----
    desc : In(DESCRIPTOR_LAYOUT)
        The descriptor (``T``, ``H``, ``W``, ``static``, ``residual``, ``stream_write``, ``lif``,
        ``bias_base``, ``threshold_base``, ``out_base``, ``frac_bits``, ``check_bits``, ``membrane_bits``).
    tile : In(DESCRIPTOR_LAYOUT["tiles"].shape)
        The output tile (``n_pe`` channels), stable during the pass.
    start : In(1)
        Begin the pass (the bias and threshold reads are next cycle).
    done : Out(1)
        The last cycle of the pass.
    bias_en, bias_addr : Out
        Bias row read (``range(bias_rows)``).
    bias_data : In(ArrayLayout(signed(acc_bits), n_pe))
        Held while ``bias_en`` is low.
    threshold_en, threshold_addr : Out
        Threshold row read (``range(threshold_rows)``).
    threshold_data : In(ArrayLayout(signed(membrane_bits), n_pe))
    acc_valid, acc_addr, acc_keep : Out
        Accumulator drain request (:class:`AccumulatorArray` ``drain_*``).
    acc_data : In(ArrayLayout(signed(acc_bits), n_pe))
        The word requested one cycle earlier.
    stream_addr : Out
        Stream word ``{tile, t, y, x}`` read (data one cycle later).
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
            "out_spikes": Out(p.n_pe), "out_membrane": Out(membrane_word),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        d = self.desc
        m.submodules.lif = lif = LIFUnit(p)
        tile = self.tile
        t, y, x = Signal.like(d.T), Signal.like(d.H), Signal.like(d.W)

        def stream_address(t_, y_, x_):
            return cat_fields(stream_word_layout(p), tile=tile, t=t_, y=y_, x=x_)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.next = "DRAIN_START"
            with m.State("DRAIN_START"):
                m.d.comb += [self.bias_en.eq(1), self.bias_addr.eq(d.bias_base + tile),
                             self.threshold_en.eq(1), self.threshold_addr.eq(d.threshold_base + tile)]
                m.d.sync += [t.eq(0), y.eq(0), x.eq(0)]
                m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += [self.acc_valid.eq(1),
                             self.acc_addr.eq(Cat(x[:p.w_bits], y[:p.h_bits], Mux(d.static, 0, t)[:p.t_bits])),
                             self.acc_keep.eq(d.static & (t != d.T - 1)),
                             self.stream_addr.eq(stream_address(t, y, x))]
                count_nested(m, [(t, d.T - 1), (x, d.W - 1), (y, d.H - 1)], "FLUSH_SUM")
            with m.State("FLUSH_SUM"):
                m.d.sync += [t.eq(0), y.eq(0), x.eq(0)]
                m.next = "FLUSH_LIF"
            with m.State("FLUSH_LIF"):
                m.next = "FLUSH_ROW"
            with m.State("FLUSH_ROW"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"

        # stage 1, the sum: the words requested last cycle
        pending = Signal()
        drain_t, drain_y, drain_x = Signal.like(t), Signal.like(y), Signal.like(x)
        m.d.sync += [pending.eq(self.acc_valid), drain_t.eq(t), drain_y.eq(y), drain_x.eq(x)]
        total = Signal(self.acc_word)
        wide = Signal()      # a sum wider than check_bits, flagged with its position in stage 2
        for lane in range(p.n_pe):
            value = (self.acc_data[lane] + self.bias_data[lane]
                     + Mux(d.residual, self.stream_data[lane], 0))
            m.d.comb += total[lane].eq(value)
            with m.If(pending & ~fits(value, d.check_bits)):
                m.d.comb += wide.eq(1)
        m.d.sync += self.overflow.eq(wide)
        with m.If(pending):
            m.d.comb += [self.stream_we.eq(d.stream_write),
                         self.stream_waddr.eq(stream_address(drain_t, drain_y, drain_x)),
                         self.stream_wdata.eq(total)]

        # stage 2, the LIF: the membrane stays in a register across the timesteps of a position
        lif_valid, lif_total = Signal(), Signal(self.acc_word)
        lif_t, lif_y, lif_x = Signal.like(t), Signal.like(y), Signal.like(x)
        m.d.sync += [lif_valid.eq(pending), lif_total.eq(total), lif_t.eq(drain_t), lif_y.eq(drain_y),
                     lif_x.eq(drain_x)]
        membrane = Signal(self.membrane_word)
        m.d.comb += [lif.acc.eq(lif_total), lif.bias.eq(0), lif.threshold.eq(self.threshold_data),
                     lif.frac_bits.eq(d.frac_bits), lif.v.eq(Mux(lif_t == 0, 0, membrane))]
        for lane in range(p.n_pe):
            with m.If(lif_valid & d.lif & ~fits(lif.h[lane], d.membrane_bits)):
                m.d.comb += self.membrane_overflow.eq(1)
        m.d.comb += [self.out_valid.eq(lif_valid), self.out_t.eq(lif_t), self.out_y.eq(lif_y),
                     self.out_x.eq(lif_x), self.out_spikes.eq(lif.spike), self.out_membrane.eq(lif.h)]
        out_group = spike_group(p, d.out_base, tile)
        # one row register per timestep: positions go timestep innermost, so T rows fill at once
        rows = [Signal(data.ArrayLayout(p.max_w, p.n_pe), name=f"row{t_}") for t_ in range(p.max_T)]
        row = Signal(data.ArrayLayout(p.max_w, p.n_pe))
        x_bit = Signal(p.max_w)
        m.d.comb += x_bit.eq(Const(1, p.max_w) << lif_x)
        current = Array(rows)[lif_t[:p.t_bits] if p.t_bits else 0]
        for lane in range(p.n_pe):
            m.d.comb += row[lane].eq(current[lane] | Mux(lif.spike[lane], x_bit, 0))
        row_done = lif_x == d.W - 1
        # stage 3, the row write: a finished row goes out from registers
        m.d.sync += self.word_valid.eq(0)
        with m.If(lif_valid):
            m.d.sync += [membrane.eq(lif.v_next), self.word_valid.eq(d.lif & row_done),
                         self.word_addr.eq(cat_fields(spike_row_layout(p), group=out_group, t=lif_t, y=lif_y)),
                         self.word_data.eq(row)]
            for t_, register in enumerate(rows):
                with m.If(lif_t == t_):
                    m.d.sync += register.eq(Mux(row_done, 0, row))
        return m
