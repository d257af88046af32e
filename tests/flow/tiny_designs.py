"""Designs small enough for Yosys and nextpnr to take seconds: a counter beside a block RAM of known
shape, and a register with more I/O than a package has pins."""

from amaranth import Module, Signal, Value
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.hw.netlist import runtime_verilog

__all__ = ["RAM_DEPTH", "RAM_WIDTH", "RAM_BLOCKS", "CounterAndRam", "Wide", "io_bits", "write_design"]

#: The block RAM's shape, and the DP16KD blocks it needs: a 512×36 block holds half of it.
RAM_DEPTH, RAM_WIDTH, RAM_BLOCKS = 1024, 36, 2


class CounterAndRam(wiring.Component):
    """An 8-bit counter and a ``RAM_DEPTH`` × ``RAM_WIDTH`` memory written and read from the ports."""

    addr: In(10)
    wdata: In(RAM_WIDTH)
    we: In(1)
    rdata: Out(RAM_WIDTH)
    count: Out(8)

    def elaborate(self, platform):
        m = Module()
        m.submodules.ram = ram = memory.Memory(shape=RAM_WIDTH, depth=RAM_DEPTH, init=[])
        write, read = ram.write_port(), ram.read_port()
        m.d.comb += [write.addr.eq(self.addr), write.data.eq(self.wdata), write.en.eq(self.we),
                     read.addr.eq(self.addr), self.rdata.eq(read.data)]
        m.d.sync += self.count.eq(self.count + 1)
        return m


class Wide(wiring.Component):
    """A ``width``-bit register from input to output: ``2 · width + 2`` I/O (with clock and reset)."""

    def __init__(self, width):
        super().__init__({"a": In(width), "q": Out(width)})

    def elaborate(self, platform):
        m = Module()
        state = Signal.like(self.a)
        m.d.sync += state.eq(self.a ^ state.rotate_left(1))
        m.d.comb += self.q.eq(state)
        return m


def io_bits(component):
    """The design's I/O: its ports' bits, the clock and the reset."""
    return sum(len(Value.cast(value)) for _, _, value in component.signature.flatten(component)) + 2


def write_design(component, path, name):
    """Write ``component`` as Verilog module ``name`` to ``path``; returns ``path``."""
    path.write_text(runtime_verilog(component, name))
    return path
