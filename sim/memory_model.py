"""External memory model: a Wishbone B4 pipelined slave with the latency and bandwidth of a board's SDRAM."""

import re

from amaranth import Module, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In

from spikeforge.hw.bus import wishbone_signature
from spikeforge.interface.bits import index_bits
from spikeforge.interface.external import BEAT_BITS, WORD_OFFSET_BITS

__all__ = ["MemoryModel", "PRELOAD_ATTR", "PRELOAD_PLUSARG", "REQUEST_QUEUE", "with_preload"]

#: Attribute of the model's storage, which a Verilator build loads with ``$readmemh`` (:func:`with_preload`).
PRELOAD_ATTR = "spikeforge_preload"
#: Plusarg naming the ``$readmemh`` file: ``+spikeforge_memory=FILE``.
PRELOAD_PLUSARG = "spikeforge_memory"
#: Requests the model takes before it answers them (it stalls the master when they are all waiting): an
#: SDRAM controller's command queue, deep enough that requests sent ahead cover the latency.
REQUEST_QUEUE = 8
#: Bits of the model's cycle count (it wraps): a request waits far fewer cycles than half its range.
_TIME_BITS = 16

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
    """``depth`` 32-bit words behind a Wishbone B4 pipelined slave (word addresses of a byte address space
    of ``addr_bits`` bits, the build's ``memory_address_bits``; the words must fit in it), reads and writes.

    The slave takes up to :data:`REQUEST_QUEUE` requests ahead (``stall`` while they are all waiting) and
    answers them in order: each ``ack`` at least ``latency`` cycles after its request was taken, and at
    most one every ``4 // bytes_per_cycle`` cycles (``bytes_per_cycle`` 1, 2 or 4: a 16-bit SDR SDRAM at
    the core clock moves at most 2 bytes per cycle). A write stores its word when it is answered, a read
    answers the word as it is then. Addresses wrap at the memory's size. The contents are ``init`` (a list of
    words) in the Amaranth simulator; a Verilator build starts empty and loads a ``$readmemh`` file. The
    words are ``storage`` (an ``amaranth.lib.memory.MemoryData``), which a testbench may read.

    Ports
    -----
    bus : In(wishbone_signature(addr_bits - 2))
        The slave.
    """

    def __init__(self, depth, addr_bits, latency=8, bytes_per_cycle=2, init=()):
        if depth < 1 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of two, not {depth!r}")
        if 4 * depth > 1 << addr_bits:
            raise ValueError(f"depth of {depth} words ({4 * depth} bytes) exceeds the {1 << addr_bits}-byte address "
                             f"space of addr_bits = {addr_bits}")
        if not isinstance(latency, int) or not 1 <= latency < 1 << (_TIME_BITS - 2):
            raise ValueError(f"latency must be a positive number of cycles below {1 << (_TIME_BITS - 2)}, "
                             f"not {latency!r}")
        if bytes_per_cycle not in (1, 2, 4):
            raise ValueError(f"bytes_per_cycle must be 1, 2 or 4, not {bytes_per_cycle!r}")
        self.depth, self.latency, self.beat_cycles = depth, latency, 4 // bytes_per_cycle
        self.storage = memory.MemoryData(shape=BEAT_BITS, depth=depth, init=init)
        super().__init__({"bus": In(wishbone_signature(addr_bits - WORD_OFFSET_BITS, BEAT_BITS))})

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        m.submodules.storage = storage = memory.Memory(data=self.storage, attrs={PRELOAD_ATTR: 1})
        read, write = storage.read_port(domain="comb"), storage.write_port()
        word_bits = max(1, index_bits(self.depth))
        # the requests taken and not answered yet, each with the cycle from which it may be answered
        request = data.StructLayout({"we": 1, "word": word_bits, "data": BEAT_BITS, "due": _TIME_BITS})
        m.submodules.queue = queue = memory.Memory(shape=request, depth=REQUEST_QUEUE, init=[])
        enqueue, oldest = queue.write_port(), queue.read_port(domain="comb")
        slot_bits = index_bits(REQUEST_QUEUE)
        head, tail = Signal(slot_bits + 1), Signal(slot_bits + 1)   # positions with a lap bit
        now = Signal(_TIME_BITS)
        gap = Signal(range(self.beat_cycles))     # cycles until the next answer may come
        m.d.sync += now.eq(now + 1)
        with m.If(gap != 0):
            m.d.sync += gap.eq(gap - 1)

        full = (head[:slot_bits] == tail[:slot_bits]) & (head[slot_bits] != tail[slot_bits])
        m.d.comb += [bus.stall.eq(full), enqueue.addr.eq(tail[:slot_bits]),
                     enqueue.en.eq(bus.cyc & bus.stb & ~full),
                     enqueue.data.we.eq(bus.we), enqueue.data.word.eq(bus.adr[:word_bits]),
                     enqueue.data.data.eq(bus.datwr), enqueue.data.due.eq(now + self.latency)]
        with m.If(enqueue.en):
            m.d.sync += tail.eq(tail + 1)

        # the oldest request is answered once due (its due cycle not after now: the difference's sign)
        entry = oldest.data
        answer = (head != tail) & (gap == 0) & ~(now - entry.due)[_TIME_BITS - 1]
        m.d.comb += [oldest.addr.eq(head[:slot_bits]), read.addr.eq(entry.word), bus.ack.eq(answer),
                     bus.datrd.eq(read.data),
                     write.addr.eq(entry.word), write.data.eq(entry.data), write.en.eq(answer & entry.we)]
        with m.If(answer):
            m.d.sync += [head.eq(head + 1), gap.eq(self.beat_cycles - 1)]
        return m
