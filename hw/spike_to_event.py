"""Spike-to-event unit: turns a spike-bitmap word into one event per set bit, lowest first."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SpikeToEvent"]


class SpikeToEvent(wiring.Component):
    """Event scanner over one word at a time; an all-zero word costs one cycle, a word with k set
    bits k cycles (one event each), so scanning follows the number of spikes.

    Ports
    -----
    word : In(word_bits)
        A freshly read bitmap word, taken when ``load`` is high.
    load : In(1)
        Start on ``word`` this cycle (otherwise continue with the remaining bits).
    advance : In(1)
        Consume the current event (clear its bit) at the end of this cycle.
    valid : Out(1)
        An event is present this cycle.
    index : Out(range(word_bits))
        Bit position of the event (the lowest set bit).
    last : Out(1)
        No set bit remains after this cycle's event (or the word is empty): read the next word now.
    """

    def __init__(self, word_bits):
        if word_bits < 1:
            raise ValueError(f"word_bits must be positive, not {word_bits!r}")
        self.word_bits = word_bits
        super().__init__({"word": In(word_bits), "load": In(1), "advance": In(1), "valid": Out(1),
                          "index": Out(range(max(2, word_bits))), "last": Out(1)})

    def elaborate(self, platform):
        m = Module()
        remaining = Signal(self.word_bits)

        def search(bits):
            # whether any bit is set, the lowest one's index, whether it is the last, the bits after it.
            # The index's bit k is an OR over the positions with bit k set of the lowest bit alone (a
            # carry chain isolates it), a tree of log depth: a priority chain would be as deep as the word.
            lowest = Signal(self.word_bits)
            m.d.comb += lowest.eq(bits & -bits)
            index = Cat(*(Cat(*(lowest[b] for b in range(self.word_bits) if b >> k & 1)).any()
                          if self.word_bits > 1 << k else 0 for k in range(len(self.index))))
            rest = bits & ~lowest
            return bits != 0, index, rest == 0, rest

        # both words are searched, and load only picks one at the end: a late load (the consumer's
        # decision) costs a multiplexer, not the search
        loaded, remains = search(self.word), search(remaining)
        valid, index, last, rest = (Mux(self.load, a, b) for a, b in zip(loaded, remains))
        m.d.comb += [self.valid.eq(valid), self.index.eq(index), self.last.eq(last)]
        with m.If(self.advance):
            m.d.sync += remaining.eq(rest)
        with m.Elif(self.load):
            m.d.sync += remaining.eq(self.word)
        return m
