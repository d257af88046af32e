"""Head: the classifier, per-channel sums of the stream and bit-serial logits."""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.descriptor import DESCRIPTOR_LAYOUT
from spikeforge.interface.external import ROW_READ_LATENCY
from spikeforge.interface.layout import cat_fields, stream_word_layout
from spikeforge.ops.conv import STREAM_READ_LATENCY
from spikeforge.ops.head import HORNER_STAGES

from .logic import (FITS_PARTS, LANES_PER_COPY, check_params, count_nested, delayed, descriptor_copy, enabled_parts,
                    fits_parts, high_bits, lane_copies, replicated)

__all__ = ["Head"]


class Head(wiring.Component):
    """The logits ``bias + Σ_c s_c · w_c`` of the stream sums ``s_c = Σ_{t, y, x} stream[c, t, y, x]``,
    without a multiplier.

    SUM: the stream words of ``desc.tiles`` tiles (lanes of ``acc_bits``), one per cycle (``x`` innermost,
    then ``y``, ``t``, tile), summed per lane into a sums memory of ``max_tiles`` words of ``logit_bits``
    lanes (a sum wider than ``sum_bits`` raises ``overflow``). HORNER: over the sum bits from the most
    significant (``sum_bits − 1``, subtracted: two's complement) down, each channel ``c`` of ``desc.cin`` adds
    its weight row ``weight_base + c`` where bit ``b`` of ``s_c`` is set, and the logits double before the
    next lower bit. HEAD_BIAS adds the bias of ``logit_bits``, read as two rows of ``acc_bits`` lanes (the low
    bits of each value at ``bias_base``, the bits above at ``bias_base + 1``: the last HORNER_SHIFT reads
    the first, the first HORNER_FLUSH cycle the second, :func:`~spikeforge.interface.layout.high_lanes`);
    HEAD_CHECK raises ``overflow`` for a logit wider than ``check_bits``.

    Every block-RAM word and weight row goes into a register before logic, and the Horner step is
    pipelined (the weight row comes :data:`~spikeforge.interface.external.ROW_READ_LATENCY` cycles after
    its request, and the sums word, read ``ROW_READ_LATENCY − 1`` cycles after it, arrives with the row;
    every lane's bit of the step picked out of the word read, then the channel's bit, then the term; the
    logits add it), so that the loop of the logits is one adder. The head advances only in the cycles
    after ``run_next``: its control and each bank of its registers run under their own registered copy
    of it (:func:`~spikeforge.hw.logic.enabled_parts`), and the conditions that meet those enables are
    registers. The pass takes ``tiles·T·H·W + STREAM_READ_LATENCY + 1 + sum_bits·(cin + 1)
    + HORNER_STAGES + 2`` cycles from the one after ``start`` to ``done`` included
    (:func:`spikeforge.ops.head.cycles`).

    Ports
    -----
    desc : In(DESCRIPTOR_LAYOUT)
        The descriptor (``tiles``, ``T``, ``H``, ``W``, ``cin``, ``sum_bits``, ``weight_base``,
        ``bias_base``, ``check_bits``), from :data:`~spikeforge.interface.descriptor.DESCRIPTOR_SETTLE_CYCLES`
        cycles before ``start`` to ``done``: the head copies these fields into registers, and derives
        its loop bounds and range-check masks from the copies a cycle later.
    start : In(1)
        Begin the pass (the first stream read is next cycle).
    done : Out(1)
        The last cycle of the pass (``logits`` hold the result from the next cycle).
    stream_addr : Out
        Stream word ``{tile, t, y, x}`` read.
    stream_data : In(ArrayLayout(signed(acc_bits), n_pe))
        The word requested :data:`~spikeforge.ops.conv.STREAM_READ_LATENCY` cycles earlier.
    weight_en, weight_addr : Out
        Weight row read (``range(weight_rows)``), from registers.
    weight_data : In(ArrayLayout(signed(weight_bits), n_pe))
    bias_en, bias_addr : Out
        Bias row read (``range(bias_rows)``), from registers.
    bias_data : In(ArrayLayout(signed(acc_bits), n_pe))
    logits : Out(ArrayLayout(signed(logit_bits), n_pe))
        The logits (a register; kept until the next pass).
    overflow : Out(1)
        A sum or a logit does not fit its declared width.
    run_next : In(1, init=1)
        The head advances in the next cycle (low: it stands still then, registers and requests held).
    """

    def __init__(self, params):
        self.params = p = check_params(params)
        self.acc_word = data.ArrayLayout(signed(p.acc_bits), p.n_pe)
        self.logit_word = data.ArrayLayout(signed(p.logit_bits), p.n_pe)
        stream_depth = 1 << (p.stream_tile_bits + p.t_bits + p.h_bits + p.w_bits)
        super().__init__({
            "desc": In(DESCRIPTOR_LAYOUT), "start": In(1), "done": Out(1),
            "stream_addr": Out(range(stream_depth)), "stream_data": In(self.acc_word),
            "weight_en": Out(1), "weight_addr": Out(range(p.weight_rows)),
            "weight_data": In(data.ArrayLayout(signed(p.weight_bits), p.n_pe)),
            "bias_en": Out(1), "bias_addr": Out(range(p.bias_rows)), "bias_data": In(self.acc_word),
            "logits": Out(self.logit_word), "overflow": Out(1), "run_next": In(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()    # the control: its state, loop counters, table reads, each stage's flags
        p = self.params
        lb = p.lane_bits
        # the parts of the head, each under its own enable: the descriptor's fields and what derives from
        # them (loaded every cycle, apart from the control's conditions), then a part per bank of the
        # datapath's registers
        parts = {name: Module() for name in ("desc", "inputs", "sums", "pick", "term", "logits")}
        desc = parts["desc"]
        d = descriptor_copy(desc, self.desc, ("tiles", "T", "H", "W", "cin", "sum_bits", "weight_base", "bias_base"))
        # derived from the copies a cycle later: the last loop indices, as wide as the build's (the loops'
        # compares are then shallower than over the descriptor's fields); the masks of the range checks
        # (decoded from the descriptor, then the mask)
        last_tile, last_t = Signal(range(p.max_tiles), name="last_tile"), Signal(range(p.max_T), name="last_t")
        last_y, last_x = Signal(range(p.max_h), name="last_y"), Signal(range(p.max_w), name="last_x")
        last_ci, top_bit = Signal(range(p.max_cin), name="last_ci"), Signal(range(p.logit_bits), name="top_bit")
        desc.d.sync += [last_tile.eq(d.tiles - 1), last_t.eq(d.T - 1), last_y.eq(d.H - 1), last_x.eq(d.W - 1),
                        last_ci.eq(d.cin - 1), top_bit.eq(d.sum_bits - 1)]
        sum_high = high_bits(desc, p.logit_bits, self.desc.sum_bits, "sum_high", p.n_pe)
        logit_high = high_bits(desc, p.logit_bits + 1, self.desc.check_bits, "logit_high", p.n_pe)
        logits = self.logits
        parts["sums"].submodules.sums = sums = memory.Memory(shape=self.logit_word, depth=p.max_tiles, init=[])
        sums_write, sums_read = sums.write_port(), sums.read_port()

        tile, t = Signal.like(last_tile, name="tile"), Signal.like(last_t, name="t")
        y, x = Signal.like(last_y, name="y"), Signal.like(last_x, name="x")
        ci, bit = Signal.like(last_ci, name="ci"), Signal.like(top_bit, name="bit")
        flush = Signal(range(max(HORNER_STAGES, STREAM_READ_LATENCY + 1)))
        # each stage's (valid, flags...) registers, set by the stage before
        sum_read, sum_add = Signal(), Signal()
        sum_read_last, sum_write = Signal(), Signal()       # the tile's last word: its sums written
        sum_read_tile, sum_add_tile = Signal.like(tile), Signal.like(tile)
        term_read, term_pick = Signal(), Signal()          # HORNER: words being read, term being picked
        read_sign, pick_sign = Signal(), Signal()
        read_double, pick_double = Signal(), Signal()       # the last column of a bit: double after it
        read_lane, pick_lane = Signal(max(1, lb), name="read_lane"), Signal(max(1, lb), name="pick_lane")
        clear_logits, add_bias = Signal(), Signal()         # the logits' steps besides the terms
        sum_overflow = Signal()
        sum_acc = Signal(self.logit_word)
        # the range checks of the logits (unwrapped) and of the sums written, in FITS_PARTS registers per
        # lane, set with the values: their conjunction comes a cycle later
        logit_fits = Signal(p.n_pe * FITS_PARTS, name="logit_fits")
        # the bias rows into registers before their adder: the low row, requested in each HORNER_SHIFT, taken
        # when it comes (bias_low_ready, ROW_READ_LATENCY cycles later); the high row, requested once in the
        # first HORNER_FLUSH cycle and held, taken in every cycle (there from ROW_READ_LATENCY + 1 cycles
        # later, by HEAD_BIAS). HORNER_FLUSH ends with the last term's add, the cycle model's HORNER_STAGES
        assert HORNER_STAGES == ROW_READ_LATENCY + 2, \
            "HORNER_FLUSH: the rest of the last weight row's latency after HORNER_SHIFT, the pick, the term, its add"
        bias_low, bias_high = Signal(self.acc_word, name="bias_low"), Signal(self.acc_word, name="bias_high")
        bias_low_requested = Signal()
        bias_low_ready, = delayed(m, [bias_low_requested], "bias_low_ready", ROW_READ_LATENCY - 1)
        with parts["inputs"].If(bias_low_ready):
            parts["inputs"].d.sync += bias_low.eq(self.bias_data)
        parts["inputs"].d.sync += bias_high.eq(self.bias_data)
        sum_fits = Signal(p.n_pe * FITS_PARTS, name="sum_fits")

        # the table reads go out of registers, set by the state before: a weight row per HORNER cycle
        # (rows weight_base + ci, counted up), the low bias row in HORNER_SHIFT, the high one after the last
        bias_high_row = Signal.like(d.bias_base, name="bias_high_row")
        desc.d.sync += bias_high_row.eq(d.bias_base + 1)
        m.d.sync += [self.weight_en.eq(0), self.bias_en.eq(0), bias_low_requested.eq(0), clear_logits.eq(0),
                     add_bias.eq(0)]
        # the step of a HORNER cycle, carried along while its weight row comes (ROW_READ_LATENCY cycles): the
        # sums word is read, and the step's picks are registered, in the last of those cycles (loaded in
        # every cycle: no term is read in others): the bit as a one-hot mask (a copy per LANES_PER_COPY lanes
        # it picks from, below), the channel's lane, the bit's sign, the doubling after it
        horner = Signal()
        read_en, read_ci, read_bit = delayed(parts["pick"], [horner, ci, bit], "step", ROW_READ_LATENCY - 1)
        m.d.comb += [sums_read.en.eq(read_en), sums_read.addr.eq(read_ci >> lb)]
        read_mask = replicated(parts["pick"], (Const(1, p.logit_bits) << read_bit)[:p.logit_bits],
                               lane_copies(p.n_pe), "read_mask")
        parts["pick"].d.sync += [term_read.eq(read_en), read_lane.eq(read_ci[:lb] if lb else 0),
                                 read_sign.eq(read_bit == top_bit),
                                 read_double.eq((read_ci == last_ci) & (read_bit != 0))]
        with m.FSM():
            with m.State("IDLE"):
                # the counters start over while idle, rather than at start (a register enable fewer on
                # its path); SUM's are 0 (its loop ends wrapping them)
                m.d.sync += [ci.eq(0), bit.eq(top_bit)]
                with m.If(self.start):
                    m.next = "SUM"
            with m.State("SUM"):
                m.d.comb += self.stream_addr.eq(cat_fields(stream_word_layout(p), tile=tile, t=t, y=y, x=x))
                last = (x == last_x) & (y == last_y) & (t == last_t)
                m.d.sync += [sum_read.eq(1), sum_read_last.eq(last), sum_read_tile.eq(tile), flush.eq(0)]
                count_nested(m, [(x, last_x), (y, last_y), (t, last_t), (tile, last_tile)], "SUM_FLUSH")
            with m.State("SUM_FLUSH"):
                # the last word comes STREAM_READ_LATENCY cycles after its read, and is added in the last
                # flush cycle; the logits clear after these cycles, before the first term
                m.d.sync += [sum_read.eq(0), ci.eq(0), clear_logits.eq(1), flush.eq(flush + 1)]
                with m.If(flush == STREAM_READ_LATENCY):
                    m.d.sync += [self.weight_en.eq(1), self.weight_addr.eq(d.weight_base)]
                    m.next = "HORNER"
            with m.State("HORNER"):
                m.d.comb += horner.eq(1)
                m.d.sync += self.weight_addr.eq(self.weight_addr + 1)
                with m.If(ci == last_ci):
                    m.d.sync += [ci.eq(0), self.bias_en.eq(1), self.bias_addr.eq(d.bias_base)]
                    m.next = "HORNER_SHIFT"
                with m.Else():
                    m.d.sync += [ci.eq(ci + 1), self.weight_en.eq(1)]
            with m.State("HORNER_SHIFT"):
                m.d.sync += bias_low_requested.eq(1)
                with m.If(bit == 0):
                    m.d.sync += [flush.eq(0), self.bias_en.eq(1), self.bias_addr.eq(bias_high_row)]
                    m.next = "HORNER_FLUSH"
                with m.Else():
                    m.d.sync += [bit.eq(bit - 1), self.weight_en.eq(1), self.weight_addr.eq(d.weight_base)]
                    m.next = "HORNER"
            with m.State("HORNER_FLUSH"):
                # the last term is read, picked, then added; the bias next (its high row, requested in the
                # first of these cycles, is in bias_high from ROW_READ_LATENCY + 1 cycles later, by HEAD_BIAS)
                m.d.sync += flush.eq(flush + 1)
                with m.If(flush == HORNER_STAGES - 1):
                    m.d.sync += add_bias.eq(1)
                    m.next = "HEAD_BIAS"
            with m.State("HEAD_BIAS"):
                m.next = "HEAD_CHECK"
            with m.State("HEAD_CHECK"):
                with m.If(~logit_fits.all()):
                    m.d.comb += self.overflow.eq(1)
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"

        # SUM: the block RAM's word into a register when it comes, then added; the tile's last word writes
        # its sums, checked against sum_bits
        stream_word = Signal(self.acc_word)
        word_read, word_last, word_tile = delayed(parts["inputs"], [sum_read, sum_read_last, sum_read_tile], "sum_wait",
                                                  STREAM_READ_LATENCY - 1)
        parts["inputs"].d.sync += [stream_word.eq(self.stream_data), sum_add.eq(word_read),
                                   sum_write.eq(word_read & word_last), sum_add_tile.eq(word_tile)]
        sums_part = parts["sums"]
        sum_next = Signal(self.logit_word)     # a stream word (acc_bits) sign-extended into the sum
        for lane in range(p.n_pe):
            sums_part.d.comb += sum_next[lane].eq(sum_acc[lane] + stream_word[lane])
        check_written = Signal()
        sums_part.d.sync += check_written.eq(sum_write)
        with sums_part.If(sum_write):
            sums_part.d.sync += [sum_acc.eq(0),
                                 sum_fits.eq(Cat(*(fits_parts(sum_next[lane], sum_high[lane], FITS_PARTS)
                                                   for lane in range(p.n_pe))))]
            sums_part.d.comb += [sums_write.en.eq(1), sums_write.addr.eq(sum_add_tile), sums_write.data.eq(sum_next)]
        with sums_part.Elif(sum_add):
            sums_part.d.sync += sum_acc.eq(sum_next)
        m.d.comb += sum_overflow.eq(check_written & ~sum_fits.all())
        with m.If(sum_overflow):
            m.d.comb += self.overflow.eq(1)

        # HORNER: every lane's bit of this step out of the sums word read (its read register), as an OR
        # of parts of eight bits ANDed with the step's mask, and the weight row, into registers; then the
        # channel's bit (its lane's parts ORed) and the row with the step's sign (two's complement: the
        # top bit subtracts); then the bit picks the term; then the logits add it
        pick = parts["pick"]
        bit_parts = range(0, p.logit_bits, 8)
        lane_parts = Signal(data.ArrayLayout(len(bit_parts), p.n_pe), name="lane_parts")
        weight_row = Signal.like(self.weight_data)
        for lane in range(p.n_pe):
            word, mask = sums_read.data[lane].as_unsigned(), read_mask[lane // LANES_PER_COPY]
            pick.d.sync += lane_parts[lane].eq(Cat(*((word[i:i + 8] & mask[i:i + 8]).any() for i in bit_parts)))
        pick.d.sync += [weight_row.eq(self.weight_data), term_pick.eq(term_read), pick_lane.eq(read_lane),
                        pick_sign.eq(read_sign), pick_double.eq(read_double)]
        # the channel's bit drives a select per lane: a copy per LANES_PER_COPY lanes
        channel_bit = Array(lane_parts[lane].any() for lane in range(p.n_pe))[pick_lane]
        term_bit = replicated(pick, channel_bit, lane_copies(p.n_pe), "term_bit")
        # the row is 0 without a term: the logits add the term in every cycle
        signed_row = Signal(data.ArrayLayout(signed(p.weight_bits + 1), p.n_pe), name="signed_row")
        term_double = Signal(name="term_double")
        pick.d.sync += term_double.eq(term_pick & pick_double)
        for lane in range(p.n_pe):
            row = Mux(pick_sign, -weight_row[lane], weight_row[lane])
            pick.d.sync += signed_row[lane].eq(Mux(term_pick, row, 0))
        term, add_double = Signal(self.logit_word), Signal()
        for lane in range(p.n_pe):
            parts["term"].d.sync += term[lane].eq(Mux(term_bit[lane // LANES_PER_COPY], signed_row[lane], 0))
        parts["term"].d.sync += add_double.eq(term_double)

        # the logits, loaded in every cycle (their enable meets no condition): cleared before the first
        # term, then the term added (0 outside the Horner steps), doubled after a bit's last column; the
        # bias added at the end, with the check of the result
        logit_part = parts["logits"]
        with logit_part.If(clear_logits):
            logit_part.d.sync += logits.eq(0)
        with logit_part.Elif(add_bias):
            # each lane's bias: its low row's bits unsigned, its high row's above them, logit_bits in all
            bias = [Cat(bias_low[lane].as_unsigned(), bias_high[lane])[:p.logit_bits].as_signed()
                    for lane in range(p.n_pe)]
            biased = [logits[lane] + bias[lane] for lane in range(p.n_pe)]
            logit_part.d.sync += [logit_fits.eq(Cat(*(fits_parts(value, logit_high[lane], FITS_PARTS)
                                                      for lane, value in enumerate(biased))))]
            logit_part.d.sync += [logits[lane].eq(value) for lane, value in enumerate(biased)]
        with logit_part.Else():
            for lane in range(p.n_pe):
                added = logits[lane] + term[lane]
                logit_part.d.sync += logits[lane].eq(Mux(add_double, added << 1, added))

        top = Module()
        enabled_parts(top, self.run_next, {"control": m, **parts})
        return top
