"""Spike-to-event unit: turns a spike-bitmap word into one event per set bit, lowest first."""

from functools import reduce

from amaranth import Cat, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SpikeToEvent", "search", "searched_layout"]


def searched_layout(word_bits):
    """A word with its search done: its ``bits``, the ``lowest`` set one alone, whether ``any`` is set,
    whether at most one is (``single``)."""
    return data.StructLayout({"bits": word_bits, "lowest": word_bits, "any": 1, "single": 1})


def search(bits):
    """The word ``bits`` searched (a value of :func:`searched_layout`): the lowest set bit isolated
    by a carry chain (``bits & -bits``); whether any and whether at most one bit is set by a tree of
    log depth over the bits (not after the chain)."""
    bits = Value.cast(bits)
    width = len(bits)

    def combine(a, b):    # (any, more than one) of two groups of bits
        return a[0] | b[0], a[1] | b[1] | (a[0] & b[0])

    groups = [(bit, Value.cast(0)) for bit in bits]
    while len(groups) > 1:
        groups = [combine(*groups[i:i + 2]) if i + 1 < len(groups) else groups[i] for i in range(0, len(groups), 2)]
    any_set, several = groups[0]
    return Cat(bits, (bits & -bits)[:width], any_set, ~several)


class SpikeToEvent(wiring.Component):
    """Event scanner over one word at a time; an all-zero word costs one cycle, a word with k set
    bits k cycles (one event each), so scanning follows the number of spikes.

    ``presearched``: ``word`` comes searched (:func:`search`, from a register of the user's), and the
    unit searches what remains of a word a cycle ahead, into a register: its outputs are a
    multiplexer and an encoder of flip-flops, where otherwise (a plain ``word``) they follow a carry
    chain over the word in the cycle.

    Ports
    -----
    word : In(word_bits), or In(searched_layout(word_bits)) if presearched
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

    def __init__(self, word_bits, presearched=False):
        if word_bits < 1:
            raise ValueError(f"word_bits must be positive, not {word_bits!r}")
        self.word_bits, self.presearched = word_bits, presearched
        self.layout = searched_layout(word_bits)
        super().__init__({"word": In(self.layout if presearched else word_bits), "load": In(1), "advance": In(1),
                          "valid": Out(1), "index": Out(range(max(2, word_bits))), "last": Out(1)})

    def elaborate(self, platform):
        m = Module()
        n, layout = self.word_bits, self.layout

        def view(value):
            return data.View(layout, value)

        def index_of(lowest):
            # bit k of the index: an OR over the positions with bit k set (a tree of log depth)
            return Cat(*(reduce(lambda a, b: a | b, (lowest[b] for b in range(n) if b >> k & 1))
                         if n > 1 << k else 0 for k in range(len(self.index))))

        def rest(word):
            return word.bits & ~word.lowest

        # the loaded word and the remaining bits are both searched, and load only picks one at the end:
        # a late load (the consumer's decision) costs a multiplexer, not the search
        pending = Signal(layout if self.presearched else n)
        loaded = view(Value.cast(self.word) if self.presearched else search(self.word))
        current = pending if self.presearched else view(search(pending))
        picked = view(Mux(self.load, Value.cast(loaded), Value.cast(current)))
        m.d.comb += [self.valid.eq(picked.any), self.index.eq(index_of(picked.lowest)), self.last.eq(picked.single)]
        if self.presearched:
            after = Mux(self.load, search(rest(loaded)), search(rest(current)))
            start = self.word
        else:
            after, start = rest(picked), self.word
        with m.If(self.advance):
            m.d.sync += pending.eq(after)
        with m.Elif(self.load):
            m.d.sync += pending.eq(start)
        return m
