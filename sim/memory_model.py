"""External memory model: an AXI4 read slave with the latency and bandwidth of a board's SDRAM."""

import re

from amaranth import Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In

from spikeforge.hw.bus import axi4_read_signature
from spikeforge.interface.bits import index_bits

__all__ = ["MemoryModel", "PRELOAD_ATTR", "PRELOAD_PLUSARG", "with_preload"]

#: Attribute of the model's storage, which a Verilator build loads with ``$readmemh`` (:func:`with_preload`).
PRELOAD_ATTR = "spikeforge_preload"
#: Plusarg naming the ``$readmemh`` file: ``+spikeforge_memory=FILE``.
PRELOAD_PLUSARG = "spikeforge_memory"

_PRELOADED = re.compile(rf"^(\s*)\(\* {PRELOAD_ATTR} = [^*]*\*\)\n\s*reg \[31:0\] (\S+) \[\d+:0\];\n", re.M)


def with_preload(verilog_text):
    """``verilog_text`` in which the model's storage loads, at time 0, the ``$readmemh`` file that the
    simulator's plusarg ``+spikeforge_memory=FILE`` names (the image's ``EXTERNAL.hex``): one build of
    the simulation serves any image."""
    def preload(match):
        indent, name = match.group(1), match.group(2)
        return (match.group(0) + f"{indent}initial begin : preload\n{indent}  reg [8*4096-1:0] path;\n"
                f'{indent}  if ($value$plusargs("{PRELOAD_PLUSARG}=%s", path)) $readmemh(path, {name});\n'
                f"{indent}end\n")
    text, count = _PRELOADED.subn(preload, verilog_text)
    if count != 1:
        raise ValueError(f"expected one memory marked {PRELOAD_ATTR} in the Verilog, found {count}")
    return text


class MemoryModel(wiring.Component):
    """``depth`` 32-bit words behind an AXI4 read slave (INCR bursts of 32-bit beats) with byte
    addresses of ``addr_bits`` bits (the build's ``memory_address_bits``; the words must fit in them).

    A burst's first beat comes ``latency`` cycles after its address is accepted, the next ones at
    ``bytes_per_cycle`` (1, 2 or 4): a 16-bit SDR SDRAM at the core clock moves at most 2 bytes per cycle. Addresses wrap at the memory's size. The contents are ``init`` (a list of
    words) in the Amaranth simulator; a Verilator build starts empty and loads a ``$readmemh`` file.

    Ports
    -----
    bus : In(axi4_read_signature(addr_bits))
        The slave.
    """

    def __init__(self, depth, addr_bits, latency=8, bytes_per_cycle=2, init=()):
        if depth < 1 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of two, not {depth!r}")
        if 4 * depth > 1 << addr_bits:
            raise ValueError(f"depth of {depth} words ({4 * depth} bytes) exceeds the {1 << addr_bits}-byte address "
                             f"space of addr_bits = {addr_bits}")
        if not isinstance(latency, int) or latency < 1:
            raise ValueError(f"latency must be a positive number of cycles, not {latency!r}")
        if bytes_per_cycle not in (1, 2, 4):
            raise ValueError(f"bytes_per_cycle must be 1, 2 or 4, not {bytes_per_cycle!r}")
        self.depth, self.latency, self.beat_cycles = depth, latency, 4 // bytes_per_cycle
        self.init = list(init)
        super().__init__({"bus": In(axi4_read_signature(addr_bits))})

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        m.submodules.storage = storage = memory.Memory(shape=32, depth=self.depth, init=self.init,
                                                       attrs={PRELOAD_ATTR: 1})
        read = storage.read_port(domain="comb")
        word = Signal(max(1, index_bits(self.depth)))
        remaining = Signal(8)
        wait = Signal(range(max(self.latency, self.beat_cycles) + 1))
        m.d.comb += [read.addr.eq(word), bus.rdata.eq(read.data), bus.rlast.eq(remaining == 0)]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += bus.arready.eq(1)
                with m.If(bus.arvalid):
                    m.d.sync += [word.eq(bus.araddr >> 2), remaining.eq(bus.arlen), wait.eq(self.latency - 1)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(wait == 0):
                    m.next = "BEAT"
                with m.Else():
                    m.d.sync += wait.eq(wait - 1)
            with m.State("BEAT"):
                m.d.comb += bus.rvalid.eq(1)
                with m.If(bus.rready):
                    m.d.sync += [word.eq(word + 1), remaining.eq(remaining - 1), wait.eq(max(self.beat_cycles - 2, 0))]
                    with m.If(remaining == 0):
                        m.next = "IDLE"
                    with m.Elif(self.beat_cycles > 1):
                        m.next = "WAIT"
        return m
