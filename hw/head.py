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
                    fits_parts, high_bits, lane_copies, lane_groups, replicated)

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
    after ``run_next``: its control and each bank of its registers (the lanes' bias rows, sums, the sums
    memory too, and logits in parts of :data:`~spikeforge.hw.logic.LANES_PER_COPY` lanes) run under their
    own registered copy of it (:func:`~spikeforge.hw.logic.enabled_parts`), and the conditions that meet
    those enables are registers (a copy per part of lanes). The pass takes ``tiles·T·H·W
    + STREAM_READ_LATENCY + 1 + sum_bits·(cin + 1) + HORNER_STAGES + 2`` cycles from the one after ``start``
    to ``done`` included (:func:`spikeforge.ops.head.cycles`).

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
        The logits (registers; kept until the next pass).
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
        # datapath's registers; the lanes' bias rows, sums and logits in parts of LANES_PER_COPY lanes, each
        # with its own copies of the conditions that load them (one condition into every lane, across the
        # chip, took 13 ns of routing): a signal per lane
        parts = {name: Module() for name in ("desc", "inputs", "pick", "term", "weight")}
        group_lanes = lane_groups(p.n_pe)
        bias_parts, sum_parts, logit_parts = ([Module() for _ in group_lanes] for _ in range(3))

        def per_lane(name, shape):
            return [Signal(shape, name=f"{name}{lane}") for lane in range(p.n_pe)]

        desc = parts["desc"]
        d = descriptor_copy(desc, self.desc, ("tiles", "T", "H", "W", "cin", "sum_bits", "weight_base", "bias_base"))
        # derived from the copies a cycle later: the last loop indices, as wide as the build's (the loops'
        # compares are then shallower than over the descriptor's fields); the masks of the range checks
        # (decoded from the descriptor, then the mask, a copy in each part of lanes that checks against it)
        last_tile, last_t = Signal(range(p.max_tiles), name="last_tile"), Signal(range(p.max_T), name="last_t")
        last_y, last_x = Signal(range(p.max_h), name="last_y"), Signal(range(p.max_w), name="last_x")
        last_ci, top_bit = Signal(range(p.max_cin), name="last_ci"), Signal(range(p.logit_bits), name="top_bit")
        desc.d.sync += [last_tile.eq(d.tiles - 1), last_t.eq(d.T - 1), last_y.eq(d.H - 1), last_x.eq(d.W - 1),
                        last_ci.eq(d.cin - 1), top_bit.eq(d.sum_bits - 1)]
        sum_high = high_bits(desc, p.logit_bits, self.desc.sum_bits, "sum_high", p.n_pe, sum_parts)
        logit_high = high_bits(desc, p.logit_bits + 1, self.desc.check_bits, "logit_high", p.n_pe, logit_parts)

        tile, t = Signal.like(last_tile, name="tile"), Signal.like(last_t, name="t")
        y, x = Signal.like(last_y, name="y"), Signal.like(last_x, name="x")
        ci, bit = Signal.like(last_ci, name="ci"), Signal.like(top_bit, name="bit")
        flush = Signal(range(max(HORNER_STAGES, STREAM_READ_LATENCY + 1)))
        # each stage's (valid, flags...) registers, set by the stage before
        sum_read, sum_read_last, sum_write = Signal(), Signal(), Signal()   # the tile's last word: its sums written
        sum_read_tile = Signal.like(tile)
        term_read, term_pick = Signal(), Signal()          # HORNER: words being read, term being picked
        read_sign, pick_sign = Signal(), Signal()
        read_double, pick_double = Signal(), Signal()       # the last column of a bit: double after it
        read_lane, pick_lane = Signal(max(1, lb), name="read_lane"), Signal(max(1, lb), name="pick_lane")
        # the logits' steps besides the terms, in the cycle before they take them (each part of lanes registers
        # its own copy)
        clear_logits_next, add_bias_next = Signal(name="clear_logits_next"), Signal(name="add_bias_next")
        sum_overflow = Signal()
        # the range checks of the logits (unwrapped) and of the sums written, in FITS_PARTS registers per
        # lane, set with the values: their conjunction comes a cycle later
        logit_fits, sum_fits = per_lane("logit_fits", FITS_PARTS), per_lane("sum_fits", FITS_PARTS)
        # the bias rows into registers before their adder: the low row, requested in each HORNER_SHIFT, taken
        # when it comes (bias_low_ready, ROW_READ_LATENCY cycles later, the last of whose registers is a copy
        # per part); the high row, requested once in the first HORNER_FLUSH cycle and held, taken in every
        # cycle (there from ROW_READ_LATENCY + 1 cycles later, by HEAD_BIAS). HORNER_FLUSH ends with the last
        # term's add, the cycle model's HORNER_STAGES
        assert HORNER_STAGES == ROW_READ_LATENCY + 2, \
            "HORNER_FLUSH: the rest of the last weight row's latency after HORNER_SHIFT, the pick, the term, its add"
        bias_low, bias_high = per_lane("bias_low", signed(p.acc_bits)), per_lane("bias_high", signed(p.acc_bits))
        bias_low_requested = Signal()
        bias_low_wait, = delayed(m, [bias_low_requested], "bias_low_wait", ROW_READ_LATENCY - 2)
        for part, lanes in zip(bias_parts, group_lanes):
            bias_low_ready, = replicated(part, bias_low_wait, 1, "bias_low_ready")
            with part.If(bias_low_ready):
                part.d.sync += [bias_low[lane].eq(self.bias_data[lane]) for lane in lanes]
            part.d.sync += [bias_high[lane].eq(self.bias_data[lane]) for lane in lanes]

        # the table reads go out of registers, set by the state before: a weight row per HORNER cycle
        # (rows weight_base + ci, counted up), the low bias row in HORNER_SHIFT, the high one after the last
        bias_high_row = Signal.like(d.bias_base, name="bias_high_row")
        desc.d.sync += bias_high_row.eq(d.bias_base + 1)
        # (the weight row's address in a part of its own, whose clock enable meets registers only, where it took
        # the state's logic and 13 ns: weight_en, high in every HORNER cycle, counts it up; weight_first, set a
        # cycle ahead, loads weight_base in the cycle before each bit's HORNER cycles)
        assert STREAM_READ_LATENCY >= 1, "weight_first is set in the SUM_FLUSH cycle before the last"
        weight_first = Signal()
        m.d.sync += [self.weight_en.eq(0), self.bias_en.eq(0), bias_low_requested.eq(0), weight_first.eq(0)]
        with parts["weight"].If(weight_first):
            parts["weight"].d.sync += self.weight_addr.eq(d.weight_base)
        with parts["weight"].Elif(self.weight_en):
            parts["weight"].d.sync += self.weight_addr.eq(self.weight_addr + 1)
        # the step of a HORNER cycle, carried along while its weight row comes (ROW_READ_LATENCY cycles): the
        # sums word is read (each part of lanes with its own copies of the read's enable and row, below), and
        # the step's picks are registered, in the last of those cycles (loaded in every cycle: no term is read
        # in others): the bit as a one-hot mask (a copy per LANES_PER_COPY lanes it picks from, below), the
        # channel's lane, the bit's sign, the doubling after it
        horner = Signal()
        step = delayed(parts["pick"], [horner, ci, bit], "step", ROW_READ_LATENCY - 2)
        read_en, read_ci, read_bit = delayed(parts["pick"], step, "read")
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
                m.d.sync += [sum_read.eq(0), ci.eq(0), flush.eq(flush + 1)]
                m.d.comb += clear_logits_next.eq(1)
                with m.If(flush == STREAM_READ_LATENCY - 1):
                    m.d.sync += weight_first.eq(1)
                with m.If(flush == STREAM_READ_LATENCY):
                    m.d.sync += self.weight_en.eq(1)
                    m.next = "HORNER"
            with m.State("HORNER"):
                m.d.comb += horner.eq(1)
                with m.If(ci == last_ci):
                    m.d.sync += [ci.eq(0), self.bias_en.eq(1), self.bias_addr.eq(d.bias_base),
                                 weight_first.eq(bit != 0)]
                    m.next = "HORNER_SHIFT"
                with m.Else():
                    m.d.sync += [ci.eq(ci + 1), self.weight_en.eq(1)]
            with m.State("HORNER_SHIFT"):
                m.d.sync += bias_low_requested.eq(1)
                with m.If(bit == 0):
                    m.d.sync += [flush.eq(0), self.bias_en.eq(1), self.bias_addr.eq(bias_high_row)]
                    m.next = "HORNER_FLUSH"
                with m.Else():
                    m.d.sync += [bit.eq(bit - 1), self.weight_en.eq(1)]
                    m.next = "HORNER"
            with m.State("HORNER_FLUSH"):
                # the last term is read, picked, then added; the bias next (its high row, requested in the
                # first of these cycles, is in bias_high from ROW_READ_LATENCY + 1 cycles later, by HEAD_BIAS)
                m.d.sync += flush.eq(flush + 1)
                with m.If(flush == HORNER_STAGES - 1):
                    m.d.comb += add_bias_next.eq(1)
                    m.next = "HEAD_BIAS"
            with m.State("HEAD_BIAS"):
                m.next = "HEAD_CHECK"
            with m.State("HEAD_CHECK"):
                with m.If(~Cat(*logit_fits).all()):
                    m.d.comb += self.overflow.eq(1)
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"

        # SUM: the block RAM's word into a register when it comes, then added; the tile's last word writes
        # its sums, checked against sum_bits. The sums in a memory per part of lanes, each part with its own
        # copies of the flags, and of the rows and enables of its memory's ports
        word_read, word_last, word_tile = delayed(parts["inputs"], [sum_read, sum_read_last, sum_read_tile], "sum_wait",
                                                  STREAM_READ_LATENCY - 1)
        check_written = Signal()
        parts["inputs"].d.sync += [sum_write.eq(word_read & word_last), check_written.eq(sum_write)]
        stream_word = per_lane("stream_word", signed(p.acc_bits))
        sum_acc, sum_next = per_lane("sum_acc", signed(p.logit_bits)), per_lane("sum_next", signed(p.logit_bits))
        sums_data = []      # the word read, per lane
        for part, lanes in zip(sum_parts, group_lanes):
            part.submodules.sums = sums = memory.Memory(shape=data.ArrayLayout(signed(p.logit_bits), len(lanes)),
                                                        depth=p.max_tiles, init=[])
            sums_write, sums_read = sums.write_port(), sums.read_port()
            add, write, write_tile, read, read_row = (
                replicated(part, value, 1, name)[0]
                for name, value in (("sum_add", word_read), ("sum_write", word_read & word_last),
                                    ("sum_tile", word_tile), ("read_en", step[0]), ("read_row", step[1] >> lb)))
            for lane in lanes:
                part.d.sync += stream_word[lane].eq(self.stream_data[lane])
                # a stream word (acc_bits) sign-extended into the sum
                part.d.comb += sum_next[lane].eq(sum_acc[lane] + stream_word[lane])
            with part.If(write):
                part.d.sync += [sum_acc[lane].eq(0) for lane in lanes]
                part.d.sync += [sum_fits[lane].eq(Cat(*fits_parts(sum_next[lane], sum_high[lane], FITS_PARTS)))
                                for lane in lanes]
                part.d.comb += [sums_write.en.eq(1), sums_write.addr.eq(write_tile),
                                sums_write.data.eq(Cat(*(sum_next[lane] for lane in lanes)))]
            with part.Elif(add):
                part.d.sync += [sum_acc[lane].eq(sum_next[lane]) for lane in lanes]
            part.d.comb += [sums_read.en.eq(read), sums_read.addr.eq(read_row)]
            sums_data += [sums_read.data[i] for i in range(len(lanes))]
        m.d.comb += sum_overflow.eq(check_written & ~Cat(*sum_fits).all())
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
            word, mask = sums_data[lane].as_unsigned(), read_mask[lane // LANES_PER_COPY]
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
        term = Signal(self.logit_word)
        for lane in range(p.n_pe):
            parts["term"].d.sync += term[lane].eq(Mux(term_bit[lane // LANES_PER_COPY], signed_row[lane], 0))

        # the logits, loaded in every cycle (their enable meets no condition): cleared before the first
        # term, then the term added (0 outside the Horner steps), doubled after a bit's last column; the
        # bias added at the end, with the check of the result
        logits = per_lane("logits", signed(p.logit_bits))
        for part, lanes in zip(logit_parts, group_lanes):
            clear, biasing, double = (replicated(part, value, 1, name)[0] for name, value in
                                      (("clear_logits", clear_logits_next), ("add_bias", add_bias_next),
                                       ("add_double", term_double)))
            with part.If(clear):
                part.d.sync += [logits[lane].eq(0) for lane in lanes]
            with part.Elif(biasing):
                for lane in lanes:
                    # the lane's bias: its low row's bits unsigned, its high row's above them, logit_bits in all
                    bias = Cat(bias_low[lane].as_unsigned(), bias_high[lane])[:p.logit_bits].as_signed()
                    biased = logits[lane] + bias
                    part.d.sync += [logit_fits[lane].eq(Cat(*fits_parts(biased, logit_high[lane], FITS_PARTS))),
                                    logits[lane].eq(biased)]
            with part.Else():
                for lane in lanes:
                    added = logits[lane] + term[lane]
                    part.d.sync += logits[lane].eq(Mux(double, added << 1, added))
        m.d.comb += self.logits.eq(Cat(*logits))

        top = Module()
        lane_parts = {f"{kind}{i}": part for kind, kind_parts in (("bias", bias_parts), ("sums", sum_parts),
                                                                  ("logits", logit_parts))
                       for i, part in enumerate(kind_parts)}
        enabled_parts(top, self.run_next, {"control": m, **parts, **lane_parts})
        return top
