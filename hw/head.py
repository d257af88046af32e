"""Head: the classifier, per-channel sums of the stream and bit-serial logits."""

from amaranth import Array, Module, Mux, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.descriptor import DESCRIPTOR_LAYOUT
from spikeforge.interface.layout import cat_fields, stream_word_layout

from .logic import check_params, count_nested, fits

__all__ = ["Head"]


class Head(wiring.Component):
    """The logits ``bias + Σ_c s_c · w_c`` of the stream sums ``s_c = Σ_{t, y, x} stream[c, t, y, x]``,
    without a multiplier.

    SUM: the stream words of ``desc.tiles`` tiles, one per cycle (``x`` innermost, then ``y``, ``t``,
    tile), summed per lane into a sums memory of ``max_tiles`` words (a sum wider than ``sum_bits``
    raises ``overflow``). HORNER: over the sum bits from the most significant (``sum_bits − 1``,
    subtracted: two's complement) down, each channel ``c`` of ``desc.cin`` adds its weight row
    ``weight_base + c`` where bit ``b`` of ``s_c`` is set, and the logits double before the next
    lower bit. HEAD_BIAS adds the bias row ``bias_base`` (a logit wider than ``check_bits`` raises
    ``overflow``).

    The pass takes ``tiles·T·H·W + 1 + sum_bits·(cin + 1) + 1`` cycles from the one after ``start``
    to ``done`` included.

    Ports
    -----
    desc : In(DESCRIPTOR_LAYOUT)
        The descriptor (``tiles``, ``T``, ``H``, ``W``, ``cin``, ``sum_bits``, ``weight_base``,
        ``bias_base``, ``check_bits``).
    start : In(1)
        Begin the pass (the first stream read is next cycle).
    done : Out(1)
        The last cycle of the pass (``logits`` hold the result from the next cycle).
    stream_addr : Out
        Stream word ``{tile, t, y, x}`` read.
    stream_data : In(ArrayLayout(signed(acc_bits), n_pe))
        The word requested one cycle earlier.
    weight_en, weight_addr : Out
        Weight row read (``range(weight_rows)``).
    weight_data : In(ArrayLayout(signed(weight_bits), n_pe))
    bias_en, bias_addr : Out
        Bias row read (``range(bias_rows)``).
    bias_data : In(ArrayLayout(signed(acc_bits), n_pe))
    logits : Out(ArrayLayout(signed(acc_bits), n_pe))
        The logits (a register; kept until the next pass).
    overflow : Out(1)
        A sum or a logit does not fit its declared width.
    """

    def __init__(self, params):
        self.params = p = check_params(params)
        self.acc_word = data.ArrayLayout(signed(p.acc_bits), p.n_pe)
        stream_depth = 1 << (p.stream_tile_bits + p.t_bits + p.h_bits + p.w_bits)
        super().__init__({
            "desc": In(DESCRIPTOR_LAYOUT), "start": In(1), "done": Out(1),
            "stream_addr": Out(range(stream_depth)), "stream_data": In(self.acc_word),
            "weight_en": Out(1), "weight_addr": Out(range(p.weight_rows)),
            "weight_data": In(data.ArrayLayout(signed(p.weight_bits), p.n_pe)),
            "bias_en": Out(1), "bias_addr": Out(range(p.bias_rows)), "bias_data": In(self.acc_word),
            "logits": Out(self.acc_word), "overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        d = self.desc
        lb = p.lane_bits
        logits = self.logits
        m.submodules.sums = sums = memory.Memory(shape=self.acc_word, depth=p.max_tiles, init=[])
        sums_write, sums_read = sums.write_port(), sums.read_port()
        m.d.comb += sums_read.en.eq(0)

        tile, t, y, x = Signal.like(d.tiles), Signal.like(d.T), Signal.like(d.H), Signal.like(d.W)
        ci = Signal.like(d.cin)
        bit = Signal.like(d.sum_bits)
        sum_pending, sum_last, sum_tile = Signal(), Signal(), Signal.like(tile)
        sum_acc = Signal(self.acc_word)
        horner_pending = Signal()
        horner_lane = Signal(max(1, lb))
        horner_sign = Signal()
        horner_double = Signal()   # the last column of a bit: double for the next lower bit

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [tile.eq(0), t.eq(0), y.eq(0), x.eq(0), ci.eq(0), bit.eq(d.sum_bits - 1)]
                    m.next = "SUM"
            with m.State("SUM"):
                m.d.comb += self.stream_addr.eq(cat_fields(stream_word_layout(p), tile=tile, t=t, y=y, x=x))
                last = (x == d.W - 1) & (y == d.H - 1) & (t == d.T - 1)
                m.d.sync += [sum_pending.eq(1), sum_last.eq(last), sum_tile.eq(tile)]
                count_nested(m, [(x, d.W - 1), (y, d.H - 1), (t, d.T - 1), (tile, d.tiles - 1)], "SUM_FLUSH")
            with m.State("SUM_FLUSH"):
                m.d.sync += [sum_pending.eq(0), ci.eq(0), logits.eq(0)]
                m.next = "HORNER"
            with m.State("HORNER"):
                m.d.comb += [sums_read.en.eq(1), sums_read.addr.eq(ci >> lb),
                             self.weight_en.eq(1), self.weight_addr.eq(d.weight_base + ci)]
                m.d.sync += [horner_pending.eq(1), horner_lane.eq(ci[:lb] if lb else 0),
                             horner_sign.eq(bit == d.sum_bits - 1)]
                with m.If(ci == d.cin - 1):
                    m.d.sync += ci.eq(0)
                    m.next = "HORNER_SHIFT"
                with m.Else():
                    m.d.sync += ci.eq(ci + 1)
            with m.State("HORNER_SHIFT"):
                m.d.comb += [self.bias_en.eq(1), self.bias_addr.eq(d.bias_base), horner_double.eq(bit != 0)]
                m.d.sync += horner_pending.eq(0)
                with m.If(bit == 0):
                    m.next = "HEAD_BIAS"
                with m.Else():
                    m.d.sync += bit.eq(bit - 1)
                    m.next = "HORNER"
            with m.State("HEAD_BIAS"):
                for lane in range(p.n_pe):
                    value = logits[lane] + self.bias_data[lane]
                    m.d.sync += logits[lane].eq(value)
                    with m.If(~fits(value, d.check_bits)):
                        m.d.comb += self.overflow.eq(1)
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"

        # SUM data stage: add the word read last cycle; the tile's last word writes its sums
        sum_next = Signal(self.acc_word)
        for lane in range(p.n_pe):
            m.d.comb += sum_next[lane].eq(sum_acc[lane] + self.stream_data[lane])
        with m.If(sum_pending):
            m.d.sync += sum_acc.eq(sum_next)
            with m.If(sum_last):
                m.d.sync += sum_acc.eq(0)
                m.d.comb += [sums_write.en.eq(1), sums_write.addr.eq(sum_tile), sums_write.data.eq(sum_next)]
                for lane in range(p.n_pe):
                    with m.If(~fits(sum_next[lane], d.sum_bits)):
                        m.d.comb += self.overflow.eq(1)

        # HORNER data stage; lane and bit selection by mux and shift (a variable word_select would
        # multiply the index)
        lane_sum = Array(sums_read.data.as_value()[lane * p.acc_bits:(lane + 1) * p.acc_bits]
                         for lane in range(p.n_pe))[horner_lane]
        selected = (lane_sum >> bit)[0]
        with m.If(horner_pending):
            for lane in range(p.n_pe):
                term = Mux(selected, Mux(horner_sign, -self.weight_data[lane], self.weight_data[lane]), 0)
                added = logits[lane] + term
                m.d.sync += logits[lane].eq(Mux(horner_double, added << 1, added))
        return m
