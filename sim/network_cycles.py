"""Exact cycles of every descriptor as the whole accelerator runs it, from the descriptor's fields and
the spikes of its input: the model of the OP_CYCLES log (hw/sequencer.py, hw/engine.py).

Each ``*_cycles`` function returns the value the sequencer logs for one descriptor: the
:data:`SEQUENCER_CYCLES` before the engine starts plus every cycle the engine spends between its
IDLE and DONE states (DONE itself is the cycle in which the log is written and is not counted; it is
part of the run's total, see :func:`run_cycles`). The functions need numpy only; the spike arrays are
numpy integer arrays ``[T, C, H, W]`` of one image (e.g. a golden trace's, see :func:`trace_tensors`).
"""

import numpy as np

from spikeforge.interface.descriptor import OPCODES, unpack

__all__ = ["SEQUENCER_CYCLES", "DONE_CYCLES", "END_CYCLES", "BREAKPOINT_CYCLES", "bit_planes", "conv_cycles",
           "pool_cycles", "attention_cycles", "head_cycles", "descriptor_cycles", "network_cycles",
           "run_cycles", "spikes_at", "trace_tensors"]

#: Cycles of a descriptor in OP_CYCLES before the engine's first state: the sequencer's FETCH (the
#: counter restarts at 1 there), DECODE and RUN (engine_start; the engine leaves IDLE).
SEQUENCER_CYCLES = 3
#: The engine's DONE cycle: the sequencer logs OP_CYCLES in it, so it is not in the log, but CYCLES counts it.
DONE_CYCLES = 1
#: The END descriptor (never logged): FETCH, DECODE and FINISH.
END_CYCLES = 3
#: A run stopped at a breakpoint (``stop_pc``): FETCH of that descriptor and FINISH.
BREAKPOINT_CYCLES = 2


def bit_planes(pixels, planes):
    """Spike channels ``[T, C·P, H, W]`` of integer pixels ``[C, H, W]`` (one static frame) or
    ``[T, C, H, W]`` (events): channel ``c·P + b`` holds bit ``b`` of channel ``c`` (the driver's layout)."""
    x = np.asarray(pixels, dtype=np.int64)
    x = x[None] if x.ndim == 3 else x
    T, C, H, W = x.shape
    bits = (x[:, :, None] >> np.arange(planes)[None, None, :, None, None]) & 1
    return bits.reshape(T, C * planes, H, W)


def conv_cycles(fields, spikes, params=None):
    """OP_CYCLES of a CONV descriptor.

    ``spikes``: the spike channels at ``in_base`` as stored, ``[T_s, C_s, H_s, W_s]`` with ``C_s ≥
    cin·planes`` (extra timesteps, channels, rows and columns are allowed: the hardware does not scan
    them), or, for the first conv, its static integer pixels ``[cin, H, W]`` (split by :func:`bit_planes`).
    ``params`` is not needed (the count depends on the fields and the spikes only).

    Per output tile (``tiles``):

    * 1 FETCH cycle (the first weight row and occupancy word);
    * per slot (input channel, tap ``(dy, dx)`` — 9 for ``kernel3``, else the centre —, bit plane):
      1 ROWS cycle, which picks the occupied rows ``{t, y}`` the tap reaches (``t < scan_T``, 1 for
      ``static`` else ``T``; ``y`` in ``[1 if dy = 2 else 0, H−2 if dy = 0 else H−1]``), then per
      such row ``max(1, k)`` SCAN cycles, ``k`` its spikes in the tap's columns ``[1 if dx = 2 else
      0, W−2 if dx = 0 else W−1]``: a row is occupied when its stored word holds any spike, so a row
      whose spikes all lie outside the tap's columns still costs its one empty scan;
    * DRAIN_START (bias, threshold read) 1, DRAIN ``T·H·W`` (every position, also for ``static``),
      DRAIN_FLUSH 1.
    """
    cin, planes, T, H, W = fields["cin"], fields["planes"], fields["T"], fields["H"], fields["W"]
    x = np.asarray(spikes, dtype=np.int64)
    if x.ndim == 3:
        x = bit_planes(x, planes)
    scan_T = 1 if fields["static"] else T
    x = x[:scan_T, :cin * planes] != 0
    taps = [(dy, dx) for dy in range(3) for dx in range(3)] if fields["kernel3"] else [(1, 1)]
    scan = 0
    for dy, dx in taps:
        y0, y1 = (1 if dy == 2 else 0), (H - 2 if dy == 0 else H - 1)
        x0, x1 = (1 if dx == 2 else 0), (W - 2 if dx == 0 else W - 1)
        rows = x[:, :, y0:y1 + 1]                           # [t, channel, reached rows, stored columns]
        occupied = rows.any(-1)
        reached = rows[..., x0:x1 + 1].sum(-1)
        scan += int((np.maximum(reached, 1) * occupied).sum())
    per_tile = 1 + cin * planes * len(taps) + scan + 1 + T * H * W + 1
    return SEQUENCER_CYCLES + fields["tiles"] * per_tile


def pool_cycles(fields, spikes=None, params=None):
    """OP_CYCLES of a POOL descriptor (``H``, ``W`` of the input): per channel group (``tiles``),
    timestep and pooled row (``⌈H/2⌉``), 3 POOL_READ cycles (input rows ``2y−1 .. 2y+1``) and one
    POOL_WRITE; independent of the spikes."""
    return SEQUENCER_CYCLES + fields["tiles"] * fields["T"] * ((fields["H"] + 1) // 2) * 4


def attention_cycles(fields, q, params=None):
    """OP_CYCLES of an ATTENTION descriptor; ``q``: the Q spikes at ``in_base`` as stored,
    ``[T_s, C_s, H_s, W_s]`` (at least ``T``, ``C`` = ``cin``, ``H``, ``W``).

    Per output tile and timestep ``t``:

    * KV: ``C·H`` cycles (one per ``(ci, y)``: the K row of channel ``ci`` AND the V rows of the
      tile's lanes, counted), KV_FLUSH 1, FETCH 1;
    * the Q-gated accumulation: per Q channel 1 ROWS cycle, then per occupied row ``y < H`` of
      timestep ``t`` ``max(1, k)`` SCAN cycles, ``k`` its spikes in columns ``< W`` (the centre tap
      reaches every row and column: with ``W_s = W`` these sum to the Q spikes at ``t``);

    then per tile DRAIN_START 1, DRAIN ``T·H·W``, DRAIN_FLUSH 1.
    """
    C, T, H, W = fields["cin"], fields["T"], fields["H"], fields["W"]
    rows = np.asarray(q)[:T, :C, :H] != 0                      # [t, channel, row, stored columns]
    scan = int((np.maximum(rows[..., :W].sum(-1), 1) * rows.any(-1)).sum())
    per_tile = T * (C * H + 1 + 1 + C) + scan + 1 + T * H * W + 1
    return SEQUENCER_CYCLES + fields["tiles"] * per_tile


def head_cycles(fields, spikes=None, params=None):
    """OP_CYCLES of a HEAD descriptor: SUM ``tiles·T·H·W`` (one stream word per cycle), SUM_FLUSH 1,
    then per bit of the sums (``sum_bits``, Horner from the sign bit down) ``cin`` HORNER cycles (one
    weight row each) and one HORNER_SHIFT, and HEAD_BIAS 1; independent of the spikes."""
    return (SEQUENCER_CYCLES + fields["tiles"] * fields["T"] * fields["H"] * fields["W"] + 1
            + fields["sum_bits"] * (fields["cin"] + 1) + 1)


def _placement(image, base):
    """What lives at spike group ``base``: ``("input", None)``, ``("lif", LIF name)`` or ``("pool", pc)``."""
    layout = image.layout
    if base == layout["input"]["group"]:
        return "input", None
    for place in layout["spikes"].values():
        if place["group"] == base:
            return "lif", place["lif"]
    for pc, word in enumerate(image.memories["PROGRAM"]):
        fields = unpack(word)
        if fields["op"] == OPCODES["POOL"] and fields["out_base"] == base:
            return "pool", pc
    raise ValueError(f"no spike tensor starts at group {base}")


def _pooled(spikes):
    """MaxPool(3, stride 2, padding 1) of spikes ``[T, C, H, W]`` (the OR the POOL descriptor writes)."""
    T, C, H, W = spikes.shape
    padded = np.zeros((T, C, H + 2, W + 2), dtype=np.int64)
    padded[:, :, 1:H + 1, 1:W + 1] = spikes != 0
    Ho, Wo = (H + 1) // 2, (W + 1) // 2
    out = np.zeros((T, C, Ho, Wo), dtype=np.int64)
    for dy in range(3):
        for dx in range(3):
            out |= padded[:, :, dy:dy + 2 * Ho:2, dx:dx + 2 * Wo:2]
    return out


def spikes_at(image, base, tensors):
    """Spike channels ``[T, C, H, W]`` of the tensor at group ``base`` (the input as bit planes)."""
    kind, what = _placement(image, base)
    if kind == "input":
        return bit_planes(tensors["input"], image.layout["input"]["planes"])
    if kind == "lif":
        return np.asarray(tensors[what], dtype=np.int64)
    return _pooled(spikes_at(image, unpack(image.memories["PROGRAM"][what])["in_base"], tensors))


def descriptor_cycles(image, pc, tensors):
    """OP_CYCLES of descriptor ``pc`` of program image ``image`` for one input.

    ``tensors``: ``{LIF name: spikes [T, C, H, W], "input": pixels [C, H, W] or events [T, C, H, W]}``
    of that input (:func:`trace_tensors`); pooled tensors are recomputed from their source.
    """
    fields = unpack(image.memories["PROGRAM"][pc])
    op = fields["op"]
    if op == OPCODES["CONV"]:
        return conv_cycles(fields, spikes_at(image, fields["in_base"], tensors), image.params)
    if op == OPCODES["POOL"]:
        return pool_cycles(fields, None, image.params)
    if op == OPCODES["ATTENTION"]:
        return attention_cycles(fields, spikes_at(image, fields["in_base"], tensors), image.params)
    if op == OPCODES["HEAD"]:
        return head_cycles(fields, None, image.params)
    raise ValueError(f"descriptor {pc} has opcode {op}, which is not logged in OP_CYCLES")


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
