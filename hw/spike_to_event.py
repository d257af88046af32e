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

        def lowest_index(bits):
            # a tree of two-way choices by whether the lower half holds a set bit: log depth (a priority
            # chain would be as deep as the word)
            if len(bits) == 1:
                return Cat()
            half = 1 << (len(bits) - 1).bit_length() - 1
            low, high = bits[:half], bits[half:]
            low_index, high_index = lowest_index(low), lowest_index(high)
            return Cat(Mux(low.any(), low_index, high_index)[:len(low_index)], ~low.any())

        def search(bits):
            # whether any bit is set, the lowest one's index, whether it is the last, the bits after it
            # (bits & (bits − 1) clears the lowest)
            rest = bits & (bits - 1)
            return bits != 0, lowest_index(bits), rest == 0, rest

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
