"""Head: the classifier, per-channel sums of the stream and bit-serial logits."""

from amaranth import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.descriptor import DESCRIPTOR_LAYOUT
from spikeforge.interface.layout import cat_fields, stream_word_layout
from spikeforge.ops.head import HORNER_STAGES

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
    lower bit. HEAD_BIAS adds the bias row ``bias_base``; HEAD_CHECK raises ``overflow`` for a logit
    wider than ``check_bits``.

    Every block-RAM word and weight row goes into a register before logic, and the Horner step is
    pipelined (the word read, the lane's sum picked, its bit picks the term, the logits add it), so
    that the loop of the logits is one adder. The pass takes ``tiles·T·H·W + 2 + sum_bits·(cin + 1)
    + HORNER_STAGES + 2`` cycles from the one after ``start`` to ``done`` included
    (:func:`spikeforge.ops.head.cycles`).

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
        flush = Signal(range(HORNER_STAGES))
        # each stage's (valid, flags...) registers, set by the stage before
        sum_read, sum_add = Signal(), Signal()
        sum_read_last, sum_add_last = Signal(), Signal()
        sum_read_tile, sum_add_tile = Signal.like(tile), Signal.like(tile)
        term_read, term_pick = Signal(), Signal()          # HORNER: words being read, term being picked
        read_lane, pick_lane = Signal(max(1, lb)), Signal(max(1, lb))
        read_sign, pick_sign = Signal(), Signal()
        read_double, pick_double = Signal(), Signal()       # the last column of a bit: double after it
        read_bit, pick_bit = Signal.like(bit), Signal.like(bit)
        sum_overflow = Signal()
        sum_acc = Signal(self.acc_word)
        biased = Signal(data.ArrayLayout(signed(p.acc_bits + 1), p.n_pe))   # the logits, checked unwrapped

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [tile.eq(0), t.eq(0), y.eq(0), x.eq(0), ci.eq(0), bit.eq(d.sum_bits - 1)]
                    m.next = "SUM"
            with m.State("SUM"):
                m.d.comb += self.stream_addr.eq(cat_fields(stream_word_layout(p), tile=tile, t=t, y=y, x=x))
                last = (x == d.W - 1) & (y == d.H - 1) & (t == d.T - 1)
                m.d.sync += [sum_read.eq(1), sum_read_last.eq(last), sum_read_tile.eq(tile), flush.eq(0)]
                count_nested(m, [(x, d.W - 1), (y, d.H - 1), (t, d.T - 1), (tile, d.tiles - 1)], "SUM_FLUSH")
            with m.State("SUM_FLUSH"):
                # the last word is added in the second flush cycle
                m.d.sync += [sum_read.eq(0), ci.eq(0), logits.eq(0), flush.eq(1)]
                with m.If(flush == 1):
                    m.next = "HORNER"
            with m.State("HORNER"):
                m.d.comb += [sums_read.en.eq(1), sums_read.addr.eq(ci >> lb),
                             self.weight_en.eq(1), self.weight_addr.eq(d.weight_base + ci)]
                m.d.sync += [term_read.eq(1), read_lane.eq(ci[:lb] if lb else 0), read_bit.eq(bit),
                             read_sign.eq(bit == d.sum_bits - 1),
                             read_double.eq((ci == d.cin - 1) & (bit != 0))]
                with m.If(ci == d.cin - 1):
                    m.d.sync += ci.eq(0)
                    m.next = "HORNER_SHIFT"
                with m.Else():
                    m.d.sync += ci.eq(ci + 1)
            with m.State("HORNER_SHIFT"):
                m.d.comb += [self.bias_en.eq(1), self.bias_addr.eq(d.bias_base)]
                m.d.sync += term_read.eq(0)
                with m.If(bit == 0):
                    m.d.sync += flush.eq(0)
                    m.next = "HORNER_FLUSH"
                with m.Else():
                    m.d.sync += bit.eq(bit - 1)
                    m.next = "HORNER"
            with m.State("HORNER_FLUSH"):
                # the last term is read, picked, then added
                m.d.sync += flush.eq(flush + 1)
                with m.If(flush == HORNER_STAGES - 1):
                    m.next = "HEAD_BIAS"
            with m.State("HEAD_BIAS"):
                for lane in range(p.n_pe):
                    m.d.sync += [biased[lane].eq(logits[lane] + self.bias_data[lane]),
                                 logits[lane].eq(logits[lane] + self.bias_data[lane])]
                m.next = "HEAD_CHECK"
            with m.State("HEAD_CHECK"):
                with m.If(~Cat(*(fits(biased[lane], d.check_bits) for lane in range(p.n_pe))).all()):
                    m.d.comb += self.overflow.eq(1)
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"

        # SUM: the block RAM's word into a register, then added; the tile's last word writes its sums,
        # checked against sum_bits a cycle later
        stream_word = Signal(self.acc_word)
        m.d.sync += [stream_word.eq(self.stream_data), sum_add.eq(sum_read), sum_add_last.eq(sum_read_last),
                     sum_add_tile.eq(sum_read_tile)]
        sum_next, written = Signal(self.acc_word), Signal(self.acc_word)
        for lane in range(p.n_pe):
            m.d.comb += sum_next[lane].eq(sum_acc[lane] + stream_word[lane])
        check_written = Signal()
        m.d.sync += check_written.eq(sum_add & sum_add_last)
        with m.If(sum_add):
            m.d.sync += sum_acc.eq(sum_next)
            with m.If(sum_add_last):
                m.d.sync += [sum_acc.eq(0), written.eq(sum_next)]
                m.d.comb += [sums_write.en.eq(1), sums_write.addr.eq(sum_add_tile), sums_write.data.eq(sum_next)]
        m.d.comb += sum_overflow.eq(check_written & ~Cat(*(fits(written[lane], d.sum_bits)
                                                           for lane in range(p.n_pe))).all())
        with m.If(sum_overflow):
            m.d.comb += self.overflow.eq(1)

        # HORNER: the sums word and the weight row into registers; then the lane's sum (by mux: a
        # variable word_select would multiply the index); then its bit picks the term; then the
        # logits add it
        sums_word, weight_row = Signal(self.acc_word), Signal.like(self.weight_data)
        m.d.sync += [sums_word.eq(sums_read.data), weight_row.eq(self.weight_data), term_pick.eq(term_read),
                     pick_lane.eq(read_lane), pick_sign.eq(read_sign), pick_double.eq(read_double),
                     pick_bit.eq(read_bit)]
        lane_sum, lane_row = Signal(p.acc_bits), Signal.like(self.weight_data)
        term_valid, term_sign, term_double, term_bit = Signal(), Signal(), Signal(), Signal.like(bit)
        m.d.sync += [lane_sum.eq(Array(sums_word.as_value()[lane * p.acc_bits:(lane + 1) * p.acc_bits]
                                       for lane in range(p.n_pe))[pick_lane]),
                     lane_row.eq(weight_row), term_valid.eq(term_pick), term_sign.eq(pick_sign),
                     term_double.eq(pick_double), term_bit.eq(pick_bit)]
        term, add_term, add_double = Signal(self.acc_word), Signal(), Signal()
        selected = (lane_sum >> term_bit)[0]
        for lane in range(p.n_pe):
            m.d.sync += term[lane].eq(Mux(selected, Mux(term_sign, -lane_row[lane], lane_row[lane]), 0))
        m.d.sync += [add_term.eq(term_valid), add_double.eq(term_double)]
        with m.If(add_term):
            for lane in range(p.n_pe):
                added = logits[lane] + term[lane]
                m.d.sync += logits[lane].eq(Mux(add_double, added << 1, added))
        return m
