"""Exact cycles of every descriptor as the whole accelerator runs it, from the descriptor's fields and
the spikes of its input: the model of the OP_CYCLES log (hw/sequencer.py, hw/engine.py).

Each operation module's ``cycles`` (:mod:`spikeforge.ops`) counts the cycles its descriptor spends in
the engine, between its IDLE and DONE states; :func:`descriptor_cycles` adds the
:data:`SEQUENCER_CYCLES` before the engine starts: the value the sequencer logs (DONE itself is the cycle in which the log is written and is not counted; it is
part of the run's total, see :func:`run_cycles`). The functions need numpy only; the spike arrays are
numpy integer arrays ``[T, C, H, W]`` of one image (e.g. a golden trace's, see :func:`trace_tensors`).
"""

import numpy as np

from spikeforge.interface.descriptor import DESCRIPTOR_SETTLE_CYCLES, OPCODES, unpack
from spikeforge.interface.encoding import bit_planes
from spikeforge.interface.external import ROW_READ_LATENCY
from spikeforge.interface.layout import SpatialTiles
from spikeforge.ops import BY_OPCODE
from spikeforge.ops.pool import maxpool_spikes

__all__ = ["SEQUENCER_CYCLES", "DONE_CYCLES", "END_CYCLES", "BREAKPOINT_CYCLES", "bit_planes",
           "descriptor_cycles", "network_cycles", "run_cycles", "spikes_at", "trace_tensors"]

#: Cycles of a descriptor in OP_CYCLES before the engine's first state: the sequencer's FETCH (the
#: counter restarts at 1 there) and READ (the program row's latency, ROW_READ_LATENCY in all), DECODE,
#: the descriptor's settle cycles and RUN (engine_start; the engine leaves IDLE).
SEQUENCER_CYCLES = ROW_READ_LATENCY + 2 + DESCRIPTOR_SETTLE_CYCLES
#: The engine's DONE cycle: the sequencer logs OP_CYCLES in it, so it is not in the log, but CYCLES counts it.
DONE_CYCLES = 1
#: The END descriptor (never logged): FETCH, READ, DECODE and FINISH.
END_CYCLES = ROW_READ_LATENCY + 2
#: The opcodes whose cycles depend on the spikes they read at ``in_base``.
_READ_SPIKES = {OPCODES[name] for name in ("CONV", "POOL", "ATTENTION")}
#: A run stopped at a breakpoint (``stop_pc``): FETCH of that descriptor and FINISH.
BREAKPOINT_CYCLES = 2


def _tensors_in_memory(image):
    """Every spike tensor a descriptor can read: ``{name: (first group, groups, producer, source)}``,
    ``source`` how its spikes follow from a trace: ``("input", None)``, ``("lif", LIF name)`` or
    ``("pool", pooled tensor's name)``; a tensor a LOAD puts back (``layout["loads"]``) is there again from
    that LOAD on, named ``"<tensor> loaded by <LOAD's descriptor>"``: its rows, and so its occupancy bits,
    are the tensor's (``ops/spill.py``)."""
    layout = image.layout
    spec = layout["input"]
    tiling = SpatialTiles.of(spec["channels"] * spec["planes"], spec["H"], spec["W"], image.params)
    found = {"input": (spec["group"], tiling.groups, -1, ("input", None))}
    found.update({name: (place["group"], place["groups"], place["producer"], ("lif", place["lif"]))
                  for name, place in layout["spikes"].items()})
    found.update({name: (place["group"], place["groups"], place["producer"], ("pool", place["source"]))
                  for name, place in layout["pooled"].items()})
    found.update({f"{place['tensor']} loaded by {place['producer']}": (place["group"], place["groups"],
                                                                      place["producer"], found[place["tensor"]][3])
                  for place in layout["loads"]})
    return found


def _full_spikes(image, source, tensors, placed):
    """The spike channels ``[T, C, H, W]`` of a tensor from its ``source`` (the input as bit planes)."""
    kind, what = source
    if kind == "input":
        return bit_planes(tensors["input"], image.layout["input"]["planes"])
    if kind == "lif":
        return np.asarray(tensors[what], dtype=np.int64)
    return maxpool_spikes(_full_spikes(image, placed[what][3], tensors, placed))


def spikes_at(image, pc, tensors):
    """Spike channels ``[T, C, h, w]`` that descriptor ``pc`` reads at its ``in_base``: of the tensor whose
    groups hold it and that was written there last before ``pc`` (groups are reused once a tensor is no
    longer read; the input is there from the start), the spatial tile and channels from that group on,
    as stored (``max_h × max_w``, zero beyond the map)."""
    base = unpack(image.memories["PROGRAM"][pc])["in_base"]
    placed = _tensors_in_memory(image)
    holding = [(producer, name) for name, (group, groups, producer, _) in placed.items()
               if group <= base < group + groups and producer < pc]
    if not holding:
        raise ValueError(f"descriptor {pc} reads spike group {base}, where no tensor lies before it")
    name = max(holding)[1]
    group, _, _, source = placed[name]
    x = _full_spikes(image, source, tensors, placed)
    p = image.params
    tiling = SpatialTiles.of(x.shape[1], x.shape[2], x.shape[3], p)
    tile, channel_group = divmod(base - group, tiling.channel_groups)
    y0, y1, x0, x1 = tiling.window(*divmod(tile, tiling.tiles_x))
    stored = np.zeros((x.shape[0], x.shape[1], p["max_h"], p["max_w"]), dtype=np.int64)
    stored[:, :, :y1 - y0, :x1 - x0] = x[:, :, y0:y1, x0:x1]
    return stored[:, channel_group * p["n_pe"]:]


def descriptor_cycles(image, pc, tensors):
    """OP_CYCLES of descriptor ``pc`` of program image ``image`` for one input.

    ``tensors``: ``{LIF name: spikes [T, C, H, W], "input": pixels [C, H, W] or events [T, C, H, W]}``
    of that input (:func:`trace_tensors`); pooled tensors are recomputed from their source.
    """
    fields = unpack(image.memories["PROGRAM"][pc])
    operation = BY_OPCODE.get(fields["op"])
    if operation is None:
        raise ValueError(f"descriptor {pc} has opcode {fields['op']}, which is not logged in OP_CYCLES")
    spikes = spikes_at(image, pc, tensors) if fields["op"] in _READ_SPIKES else None
    return SEQUENCER_CYCLES + operation.cycles(fields, spikes)


def network_cycles(image, tensors):
    """OP_CYCLES of every descriptor before END (the driver's ``read_op_cycles`` order)."""
    return [descriptor_cycles(image, pc, tensors) for pc in range(len(image.memories["PROGRAM"]) - 1)]


def run_cycles(op_cycles, breakpoints=0):
    """The CYCLES a run reports from its descriptors' OP_CYCLES: each descriptor also spends its
    DONE cycle, the END descriptor :data:`END_CYCLES`, and each stop at a breakpoint (a run split
    into ``breakpoints + 1`` parts, as with ``run_network(check=True)``) :data:`BREAKPOINT_CYCLES`."""
    return sum(op_cycles) + DONE_CYCLES * len(op_cycles) + END_CYCLES + BREAKPOINT_CYCLES * breakpoints


def trace_tensors(trace, pixels, index=0):
    """``tensors`` for :func:`descriptor_cycles` of input ``index`` of a golden ``trace`` run on ``pixels``."""
    tensors = {name: np.asarray(spikes[index]) for name, spikes in trace.spikes.items()}
    tensors["input"] = np.asarray(pixels[index])
    return tensors
