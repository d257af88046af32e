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
        current = Signal(self.word_bits)
        lowest = Signal(self.word_bits)
        m.d.comb += [
            current.eq(Mux(self.load, self.word, remaining)),
            lowest.eq(current & -current),             # isolate the lowest set bit
            self.valid.eq(current != 0),
            self.last.eq((current & ~lowest) == 0),
        ]
        # the index of the one-hot lowest bit: bit k of the index is an OR over the positions with bit k
        # set, a tree of log depth (a priority chain over the word would be as deep as the word is wide)
        for k in range(len(self.index)):
            m.d.comb += self.index[k].eq(Cat(*(lowest[b] for b in range(self.word_bits) if b >> k & 1)).any()
                                         if self.word_bits > 1 << k else 0)
        with m.If(self.advance):
            m.d.sync += remaining.eq(current & ~lowest)
        with m.Elif(self.load):
            m.d.sync += remaining.eq(current)
        return m
