"""The simulated board: the accelerator with an external-memory model on its master port."""

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikeforge.hw.accelerator import Accelerator
from spikeforge.hw.bus import wishbone_signature
from spikeforge.hw.netlist import runtime_verilog
from spikeforge.interface.bits import next_power_of_two
from spikeforge.interface.params import AcceleratorParams
from spikeforge.interface.regmap import address_layout

from .memory_model import MemoryModel, with_preload

__all__ = ["System", "system", "MIN_MEMORY_WORDS", "memory_words"]

#: Smallest memory model: every network of the test suite fits, so they share one Verilator build.
MIN_MEMORY_WORDS = 1 << 16


def memory_words(words, memory_address_bits):
    """Words of a memory model that holds ``words`` 32-bit words of image, within the address space of
    ``memory_address_bits`` (at least :data:`MIN_MEMORY_WORDS` where that space has room)."""
    return max(min(MIN_MEMORY_WORDS, 1 << (memory_address_bits - 2)), next_power_of_two(max(1, words)))


class System(wiring.Component):
    """:class:`~spikeforge.hw.accelerator.Accelerator` whose AXI4 master reads a
    :class:`~spikeforge.sim.memory_model.MemoryModel` of ``memory_words`` words (``latency`` cycles to a
    burst's first beat, ``bytes_per_cycle`` after it), holding ``init`` in the Amaranth simulator, or
    the ``$readmemh`` file of ``+spikeforge_memory=FILE`` in Verilator.

    Ports
    -----
    ctrl : In(wishbone_signature(address_layout(params).word_address_bits))
        The accelerator's control slave.
    done : Out(1)
        The accelerator's interrupt line.
    """

    def __init__(self, params, memory_words=MIN_MEMORY_WORDS, latency=8, bytes_per_cycle=2, init=()):
        self.params = params
        self.memory = dict(depth=memory_words, addr_bits=params.memory_address_bits, latency=latency,
                           bytes_per_cycle=bytes_per_cycle, init=init)
        MemoryModel(**self.memory)._MustUse__silence = True   # the model's arguments, checked now
        super().__init__({"ctrl": In(wishbone_signature(address_layout(params).word_address_bits)), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = accelerator = Accelerator(self.params)
        m.submodules.model = model = MemoryModel(**self.memory)
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
