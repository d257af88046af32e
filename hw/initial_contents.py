"""Initial contents of the accelerator's memories, declared once.

Every memory of the accelerator is loaded at run time — through the host bus (program, weights,
biases, thresholds, the input) or by the datapath before it reads the words back (spike bitmaps,
the stream, the head's sums, the cycle log) — so the generated Verilog gives it no initial contents
(:func:`spikeforge.hw.netlist.runtime_verilog`): an ``initial`` assignment per word bloats the
Verilog and slows Yosys and Verilator.

A component whose correct operation relies on a memory starting at zero builds it with
:func:`zeroed_memory`; the memory carries the :data:`ZEROED` attribute and keeps its zero
``initial`` contents in the Verilog. (On an ECP5 the bitstream configures block RAM to zeros either
way; the declaration keeps simulators that start undefined memories at X or at random values
honest.)
"""

from amaranth.lib import memory

__all__ = ["ZEROED", "zeroed_memory"]

#: Attribute of a memory whose zero initial contents the hardware relies on.
ZEROED = "spikeforge_zeroed"


def zeroed_memory(*, shape, depth, attrs=None):
    """An ``amaranth.lib.memory.Memory`` of ``depth`` words of ``shape`` that starts at zero, in
    simulation and in the generated Verilog alike (with ``attrs``, further attributes)."""
    return memory.Memory(shape=shape, depth=depth, init=[], attrs={**(attrs or {}), ZEROED: 1})
