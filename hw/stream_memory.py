"""Stream memory: the residual stream's words, one accumulator word per lane, in block RAMs of a few lanes."""

from amaranth import Cat, Module, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.ops.conv import STREAM_READ_LATENCY

from .logic import delayed, replicated

__all__ = ["StreamMemory", "LANES_PER_MEMORY", "READ_LATENCY"]

#: Cycles from ``read_addr`` to ``read_data``: the address registers, the block RAM (the reader registers
#: the word, :data:`~spikeforge.ops.conv.STREAM_READ_LATENCY` cycles in all).
READ_LATENCY = STREAM_READ_LATENCY - 1

#: Lanes of one memory of the stream, each memory with its own copy of the address registers: four
#: 24-bit lanes take 11 block RAMs of 2048 × 9, where one address net reached all 43 of the stream
#: across the chip.
LANES_PER_MEMORY = 4


class StreamMemory(wiring.Component):
    """Word ``{tile, t, y, x}`` holds the stream's ``n_pe`` channels of a tile at a position (``acc_bits``
    each). Every input goes into registers first, the address and write enable in a copy per memory of
    :data:`LANES_PER_MEMORY` lanes, so that the logic that computes and multiplexes an address never
    reaches a block RAM in the same cycle: ``read_data`` comes :data:`READ_LATENCY` cycles after
    ``read_addr`` (the reader registers it), and a write
    lands a cycle after it is presented (reads and writes keep their order). No word is read in the
    cycle it is written (the drain reads a position's word before it writes it back, three stages
    later): Yosys need not emulate read-during-write.

    Ports
    -----
    read_addr : In(range(depth))
    read_data : Out(ArrayLayout(signed(acc_bits), n_pe))
        The word at ``read_addr`` of :data:`READ_LATENCY` cycles earlier.
    write_en, write_addr : In
    write_data : In(ArrayLayout(signed(acc_bits), n_pe))
    """

    def __init__(self, params):
        self.params = p = params
        self.depth = 1 << (p.stream_tile_bits + p.t_bits + p.h_bits + p.w_bits)
        word = data.ArrayLayout(signed(p.acc_bits), p.n_pe)
        super().__init__({"read_addr": In(range(self.depth)), "read_data": Out(word),
                          "write_en": In(1), "write_addr": In(range(self.depth)), "write_data": In(word)})

    def elaborate(self, platform):
        m = Module()
        p = self.params
        groups = range(0, p.n_pe, LANES_PER_MEMORY)
        read_addr, write_en, write_addr = (replicated(m, value, len(groups), name) for value, name in (
            (self.read_addr, "read_addr"), (self.write_en, "write_en"), (self.write_addr, "write_addr")))
        write_data, = delayed(m, [self.write_data], "write_data")
        words = []
        for index, first in enumerate(groups):
            lanes = range(first, min(first + LANES_PER_MEMORY, p.n_pe))
            part = memory.Memory(shape=len(lanes) * p.acc_bits, depth=self.depth, init=[],
                                 attrs={"no_rw_check": 1})
            m.submodules[f"lanes{first}"] = part
            write, read = part.write_port(), part.read_port()
            m.d.comb += [write.en.eq(write_en[index]), write.addr.eq(write_addr[index]),
                         write.data.eq(Cat(*(write_data[lane] for lane in lanes))),
                         read.addr.eq(read_addr[index])]
            words.append(read.data)
        m.d.comb += self.read_data.eq(Cat(*words))
        return m
