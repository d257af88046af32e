"""The operations of the layer program, one module each, and the bundle format they make up.

Each module (``conv``, ``pool``, ``lif``, ``attention``, ``head``) holds its manifest fields and
their rules, its golden (integer) execution, its descriptor emission and its cycle model
(``ops/base.py`` lists the names); ``spill`` holds the STORE and LOAD descriptors that the compiler inserts
where the spike tensors do not fit the spike memory (not a layer: emission and cycle model only). The
bundle checker (``ops/bundle.py``), the golden model
(``quant/golden.py``) and the firmware compiler (``firmware/compiler.py``) dispatch over
:data:`OPERATIONS`. Torch-free: numpy and pydantic only.
"""

from spikeforge.interface.descriptor import OPCODES

from . import attention, conv, head, lif, pool, spill

__all__ = ["OPERATIONS", "BY_OPCODE", "operation"]

#: Operation modules by manifest ``kind``.
OPERATIONS = {module.KIND: module for module in (conv, pool, lif, attention, head)}
#: Operation modules by the opcode of the descriptor they emit (a LIF emits none), and ``spill`` by STORE's and
#: LOAD's.
BY_OPCODE = {OPCODES[module.OPCODE]: module for module in OPERATIONS.values() if module.OPCODE}
BY_OPCODE.update({code: spill for code in spill.OPCODES_MOVED.values()})


def operation(kind):
    """The operation module of a layer ``kind``."""
    return OPERATIONS[kind]
