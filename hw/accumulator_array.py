"""Spike accumulator array: ``n_pe`` lanes, each event adds one weight row to one accumulator word."""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.ops.conv import ACC_READ_LATENCY

from .initial_contents import zeroed_memory
from .logic import enabled_parts, lane_groups, replicated

__all__ = ["AccumulatorArray"]


class AccumulatorArray(wiring.Component):
    """Accumulator memory of ``2**(t_bits + h_bits + w_bits)`` words × ``n_pe`` lanes.

    An event at cycle c goes into registers (the block RAM's address from a flip-flop: the memory
    spans a dozen block RAMs, the scanner's and the drain's address logic lies elsewhere), reads the
    word at ``event_addr`` at c+1; the block RAM's word goes into a register at c+2 (no logic after the
    RAM's slow output), and at c+3 every lane adds its weight of ``event_row`` (shifted at c+2) and
    writes the sum back. The two events before it may have written the same word after it was read:
    their sums are forwarded (compared one cycle ahead), so events may hit any word in any cycle. A
    drain at cycle c returns the word at ``drain_addr`` on ``drain_data`` at c+3
    (:data:`~spikeforge.ops.conv.ACC_READ_LATENCY`) — forwarded too, so a drain may follow the last
    event at once — and
    clears it to 0, ready for the next tile. Events and drains never overlap (the engine runs them
    in separate phases). No multiplier: adds only. The first tile after configuration adds to the
    memory's initial contents: it starts at zero
    (:func:`~spikeforge.hw.initial_contents.zeroed_memory`).

    The lanes come in parts of :data:`~spikeforge.hw.logic.LANES_PER_COPY`, each with its own memory (the
    accumulators' bits of its lanes), its own copy of the requests and of the forwarding's compares, and
    its own registered copy of ``run_next`` (:func:`~spikeforge.hw.logic.enabled_parts`): one enable
    drove the clock enables of some 1 800 flip-flops and a dozen block RAMs across the chip (12.7 ns).

    Ports
    -----
    event_valid : In(1)
    event_addr : In(addr_bits)
        Accumulator word ``{t, y, x}``.
    event_row : In(ArrayLayout(signed(weight_bits), n_pe))
        The weights selected by the spike, one per lane (output channel).
    event_shift : In(3)
        Left shift of the row (bit plane of an integer input: shift-and-add, no multiplier).
    drain_valid : In(1)
    drain_addr : In(addr_bits)
    drain_keep : In(1)
        Leave the drained word in place (a static input's result read at every timestep).
    drain_data : Out(ArrayLayout(signed(acc_bits), n_pe))
        The drained word, ACC_READ_LATENCY cycles after the request.
    run_next : In(1, init=1)
        The array advances in the next cycle (low: it stands still then, its registers and memories
        held): each part runs under its own registered copy of it.
    """

    def __init__(self, params):
        self.params = params
        self.addr_bits = params.t_bits + params.h_bits + params.w_bits
        row = data.ArrayLayout(signed(params.weight_bits), params.n_pe)
        self.word = data.ArrayLayout(signed(params.acc_bits), params.n_pe)
        super().__init__({"event_valid": In(1), "event_addr": In(max(1, self.addr_bits)), "event_row": In(row),
                          "event_shift": In(3),
                          "drain_valid": In(1), "drain_addr": In(max(1, self.addr_bits)), "drain_keep": In(1),
                          "drain_data": Out(self.word), "run_next": In(1, init=1)})

    def elaborate(self, platform):
        # the stages below: the request registered, the block RAM's read, its word registered
        assert ACC_READ_LATENCY == 3, "a drained word comes three cycles after its request"
        m = Module()
        p = self.params
        parts, words = {}, []
        for part, lanes in enumerate(lane_groups(p.n_pe)):
            parts[f"lanes{part}"], word = self._lanes(lanes)
            words.append(word)
        m.d.comb += self.drain_data.eq(Cat(*words))
        enabled_parts(m, self.run_next, parts)
        return m

    def _lanes(self, lanes):
        """The part of the array that holds ``lanes``: a module and its drained word (those lanes')."""
        m = Module()
        p = self.params
        word_layout = data.ArrayLayout(signed(p.acc_bits), len(lanes))
        # (a word written in the cycle it is read is forwarded, below: Yosys need not emulate
        # read-during-write with address comparators before the word's register)
        m.submodules.acc = acc = zeroed_memory(shape=word_layout, depth=1 << self.addr_bits,
                                               attrs={"no_rw_check": 1})
        write, read = acc.write_port(), acc.read_port()

        # stage 0: the request in registers
        request_add, request_clear, request_addr = Signal(), Signal(), Signal.like(self.event_addr)
        request_row = Signal(data.ArrayLayout(signed(p.weight_bits), len(lanes)))
        request_shift = Signal.like(self.event_shift)
        m.d.sync += [request_add.eq(self.event_valid), request_clear.eq(self.drain_valid & ~self.drain_keep),
                     request_addr.eq(Mux(self.drain_valid, self.drain_addr, self.event_addr)),
                     request_row.eq(Cat(*(self.event_row[lane] for lane in lanes))),
                     request_shift.eq(self.event_shift)]

        # stage 1: the word is being read; the row is shifted by its plane
        read_add, read_clear, read_addr = Signal(), Signal(), Signal.like(self.event_addr)
        shifted = Signal(word_layout)
        m.d.comb += read.addr.eq(request_addr)
        m.d.sync += [read_add.eq(request_add), read_clear.eq(request_clear), read_addr.eq(request_addr)]
        for lane in range(len(lanes)):
            m.d.sync += shifted[lane].eq(request_row[lane] << request_shift)

        # stage 2: the word in a register, the sum (or the clear's 0) written back
        add, clear, addr = Signal(), Signal(), Signal.like(self.event_addr)
        word, addend = Signal(word_layout), Signal(word_layout)
        m.d.sync += [add.eq(read_add), clear.eq(read_clear), addr.eq(read_addr), word.eq(read.data),
                     addend.eq(shifted)]
        # the words written in the last two cycles did not reach the read: forward them, newest first
        # (whether they apply is decided in stage 1, a cycle ahead)
        last_sum, older_sum = Signal(word_layout), Signal(word_layout)
        last_valid, last_addr = Signal(), Signal.like(addr)
        # one copy of each select per lane: each drives acc_bits multiplexers
        from_last = replicated(m, (add | clear) & (addr == read_addr), len(lanes), "from_last")
        from_older = replicated(m, last_valid & (last_addr == read_addr), len(lanes), "from_older")
        drained, total = Signal(word_layout), Signal(word_layout)
        for lane in range(len(lanes)):
            m.d.comb += [
                drained[lane].eq(Mux(from_last[lane], last_sum[lane],
                                     Mux(from_older[lane], older_sum[lane], word[lane]))),
                total[lane].eq(Mux(clear, 0, drained[lane] + addend[lane])),
            ]
        m.d.comb += [write.en.eq(add | clear), write.addr.eq(addr), write.data.eq(total)]
        m.d.sync += [last_sum.eq(total), older_sum.eq(last_sum), last_valid.eq(add | clear), last_addr.eq(addr)]
        return m, drained
