"""``STORE`` and ``LOAD``: spike groups copied to the SPILL table in external memory and back.

Not layers of a bundle: the compiler (``firmware/compiler.py``) inserts them where the spike tensors live
at the same time need more groups than the build's ``spike_groups``. A STORE copies rows ``{in_base + g,
t, y}`` (``g < tiles``, ``t < T``, ``y < H``; ``y`` innermost, then ``t``, then ``g``) to SPILL rows
``weight_base``, ``weight_base + 1``, …; a LOAD copies the same SPILL rows, in the same order, to rows
``{out_base + g, t, y}``, whose occupancy bits follow from the rows written as at every spike-memory
write (``hw/spill_mover.py``).
"""

from spikeforge.interface.descriptor import DESCRIPTOR_LAYOUT, OPCODES
from spikeforge.interface.external import ROW_READ_LATENCY

from .conv import SPIKE_READ_LATENCY

__all__ = ["OPCODES_MOVED", "LOAD_LATENCY", "MAX_GROUPS", "rows", "emit", "cycles"]

#: The opcodes of this module, by the direction they copy.
OPCODES_MOVED = {"STORE": OPCODES["STORE"], "LOAD": OPCODES["LOAD"]}
#: Cycles from a LOAD's last SPILL request to its row in hand: the request leaves a register, and the
#: SPILL reader answers like the other tables' (:data:`~spikeforge.interface.external.ROW_READ_LATENCY`).
LOAD_LATENCY = ROW_READ_LATENCY
#: Groups one descriptor copies at most (its ``tiles`` field); a larger tensor takes several.
MAX_GROUPS = (1 << DESCRIPTOR_LAYOUT["tiles"].width) - 1


def rows(tensor):
    """SPILL rows a copy of spike tensor ``tensor`` (a :class:`~spikeforge.firmware.compiler.SpikeTensor`)
    takes: every row of its groups, ``T × h`` each (``h`` the rows of a spatial tile)."""
    return tensor.groups * tensor.T * min(tensor.H, tensor.tiling.tile_h)


def emit(opcode, tensor, first_row, group):
    """The descriptors (field dicts) of a STORE or LOAD (``opcode``) of every group of ``tensor`` from or to
    SPILL row ``first_row`` on, :data:`MAX_GROUPS` groups each; ``group(offset)`` is the value of the group
    field naming ``offset`` groups after the tensor's first (allocated once the program is emitted)."""
    base = "in_base" if opcode == "STORE" else "out_base"
    h = min(tensor.H, tensor.tiling.tile_h)
    return [{"op": OPCODES_MOVED[opcode], "tiles": min(MAX_GROUPS, tensor.groups - first), "T": tensor.T, "H": h,
             "weight_base": first_row + first * tensor.T * h, base: group(first)}
            for first in range(0, tensor.groups, MAX_GROUPS)]


def cycles(fields, spikes=None):
    """Engine cycles (from leaving IDLE to DONE) of a STORE or LOAD: one row requested per cycle, ``tiles
    × T × H`` of them, the first in the start cycle, then the last one's latency — the spike memory's
    read (:data:`~spikeforge.ops.conv.SPIKE_READ_LATENCY`) for a STORE, the SPILL table's
    (:data:`LOAD_LATENCY`) for a LOAD, after which its row is written; independent of the spikes
    (waits for external memory are stall cycles, not counted here)."""
    latency = SPIKE_READ_LATENCY if fields["op"] == OPCODES["STORE"] else LOAD_LATENCY
    return fields["tiles"] * fields["T"] * fields["H"] + latency
