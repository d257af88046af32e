"""Overflow log: per descriptor, which of its values were wider than declared — one word each in block RAM."""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.regmap import OVERFLOW_LOG_BITS

from .initial_contents import zeroed_memory

__all__ = ["OverflowLog"]


class OverflowLog(wiring.Component):
    """The ``OVERFLOW_LOG`` window: ``depth`` words of :data:`~spikeforge.interface.regmap.OVERFLOW_LOG_BITS`,
    one per descriptor, in a memory (a register per descriptor would cost ``depth`` words of flip-flops and a
    ``depth``-way multiplexer to read them).

    Flags ``kinds`` (nonzero: a flag) of descriptor ``pc`` are ORed into its word: the word is read in the
    cycle they are presented and written back in the next; the read sees that write, so flags of one
    descriptor in consecutive cycles accumulate. ``clear`` writes zeros to every word, one per cycle
    (``depth`` cycles, ``clearing`` high meanwhile, from the cycle after ``clear``); flags presented while
    ``clear`` or ``clearing`` is high are dropped (clear between runs). The memory starts at zero.

    Ports
    -----
    kinds : In(len(OVERFLOW_LOG_BITS))
        The overflow kinds raised this cycle, from a register.
    pc : In(range(depth))
        Their descriptor, from a register.
    clear : In(1)
        Pulse: clear every word and ``any``.
    clearing : Out(1)
        The words are being cleared.
    any : Out(1)
        A flag was logged since the last ``clear`` (a register, set in the cycle the flag's word is written).
    host_addr : In(range(depth))
    host_data : Out(len(OVERFLOW_LOG_BITS))
        The word at ``host_addr`` of the cycle before.
    """

    def __init__(self, depth):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        self.depth = depth
        super().__init__({"kinds": In(len(OVERFLOW_LOG_BITS)), "pc": In(range(depth)), "clear": In(1),
                          "clearing": Out(1), "any": Out(1), "host_addr": In(range(depth)),
                          "host_data": Out(len(OVERFLOW_LOG_BITS))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.words = words = zeroed_memory(shape=len(OVERFLOW_LOG_BITS), depth=self.depth)
        write = words.write_port()
        update = words.read_port(transparent_for=(write,))
        host = words.read_port()
        m.d.comb += [update.addr.eq(self.pc), host.addr.eq(self.host_addr), self.host_data.eq(host.data)]

        # the flags of the word being read, written back with it in the next cycle
        kinds, pc = Signal.like(self.kinds), Signal.like(self.pc)
        m.d.sync += [kinds.eq(Mux(self.clear | self.clearing, 0, self.kinds)), pc.eq(self.pc)]
        cleared = Signal.like(self.pc)
        m.d.comb += [write.en.eq(self.clearing | kinds.any()),
                     write.addr.eq(Mux(self.clearing, cleared, pc)),
                     write.data.eq(Mux(self.clearing, 0, update.data | kinds))]
        with m.If(kinds.any()):
            m.d.sync += self.any.eq(1)
        with m.If(self.clearing):
            m.d.sync += cleared.eq(cleared + 1)
            with m.If(cleared == self.depth - 1):
                m.d.sync += self.clearing.eq(0)
        with m.If(self.clear):
            m.d.sync += [self.clearing.eq(1), cleared.eq(0), self.any.eq(0)]
        return m
