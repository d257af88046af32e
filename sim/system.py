"""The simulated board: the accelerator with an external-memory model on its master port."""

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikeforge.firmware.image import external_shapes
from spikeforge.hw.accelerator import Accelerator
from spikeforge.hw.bus import wishbone_signature
from spikeforge.hw.netlist import runtime_verilog
from spikeforge.interface.bits import next_power_of_two
from spikeforge.interface.external import WORD_OFFSET_BITS, external_bytes
from spikeforge.interface.params import AcceleratorParams
from spikeforge.interface.regmap import address_layout

from .memory_model import MemoryModel, with_preload

__all__ = ["System", "system", "MIN_MEMORY_WORDS", "MODEL_STORAGE", "memory_words", "ModelMemory"]

#: Smallest memory model: every network of the test suite fits, so they share one Verilator build.
MIN_MEMORY_WORDS = 1 << 16
#: Where the memory model's words lie in the system: the submodule's name, then its memory's.
MODEL_STORAGE = ("model", "storage")


def memory_words(image):
    """Words of a memory model that holds program image ``image`` from byte 0 and its spill region after
    it, within the address space of its ``memory_address_bits`` (at least :data:`MIN_MEMORY_WORDS` where
    that space has room)."""
    words = external_bytes(external_shapes(image)) >> WORD_OFFSET_BITS
    bits = AcceleratorParams(**image.params).memory_address_bits
    return max(min(MIN_MEMORY_WORDS, 1 << (bits - WORD_OFFSET_BITS)), next_power_of_two(max(1, words)))


class System(wiring.Component):
    """:class:`~spikeforge.hw.accelerator.Accelerator` whose Wishbone master reads and writes a
    :class:`~spikeforge.sim.memory_model.MemoryModel` (``model``) of ``memory_words`` words (``latency``
    cycles from a request to its answer, ``bytes_per_cycle`` at most), holding ``init`` in the Amaranth
    simulator, or the ``$readmemh`` file of ``+spikeforge_memory=FILE`` in Verilator.

    Ports
    -----
    ctrl : In(wishbone_signature(address_layout(params).word_address_bits))
        The accelerator's control slave.
    done : Out(1)
        The accelerator's interrupt line.
    """

    def __init__(self, params, memory_words=MIN_MEMORY_WORDS, latency=8, bytes_per_cycle=2, init=()):
        self.params = params
        self.accelerator = Accelerator(params)
        self.model = MemoryModel(memory_words, params.memory_address_bits, latency, bytes_per_cycle, init)
        super().__init__({"ctrl": In(wishbone_signature(address_layout(params).word_address_bits)), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = accelerator = self.accelerator
        m.submodules.model = model = self.model
        wiring.connect(m, wiring.flipped(self.ctrl), accelerator.ctrl)
        wiring.connect(m, accelerator.mem, model.bus)
        m.d.comb += self.done.eq(accelerator.done)
        return m

    def simulation_verilog(self, name):
        """Verilog for Verilator: no initial contents but the model's preload."""
        return with_preload(runtime_verilog(self, name))


def system(memory_words=MIN_MEMORY_WORDS, latency=8, bytes_per_cycle=2, init=(), **params):
    """The system for keyword build parameters (a named factory for the runners)."""
    return System(AcceleratorParams(**params), memory_words, latency, bytes_per_cycle, init)


class ModelMemory:
    """The host's own access to the external memory of a simulated :class:`System`: the memory model's
    words, read through the simulation's :class:`~spikeforge.sim.transport.Ports` (what
    :class:`~spikeforge.firmware.driver.Driver` takes as its ``memory``); ``path`` leads from the
    simulation's top to the model's storage (:data:`MODEL_STORAGE` where the top is the system)."""

    def __init__(self, ports, path=MODEL_STORAGE):
        self.ports, self.path = ports, path

    async def read_words(self, address, count):
        """``count`` 32-bit words from byte ``address`` on."""
        await self.ports.settle()
        return [self.ports.peek(self.path, (address >> WORD_OFFSET_BITS) + i) for i in range(count)]
