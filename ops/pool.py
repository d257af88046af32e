"""``pool``: max-pool 3×3, stride 2, padding 1 on spikes — an OR over each window."""

from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from spikeforge.interface.descriptor import OPCODES

from pydantic import Field

from .base import LayerFields, Name, Tensor
from .conv import SPIKE_READ_LATENCY

__all__ = ["KIND", "OPCODE", "Fields", "check", "golden", "emit", "cycles", "maxpool_spikes", "pooled_size"]

KIND = "pool"
OPCODE = "POOL"


class Fields(LayerFields):
    """Manifest fields of a ``pool`` layer."""

    kind: Literal["pool"]
    input: Name = Field(description='spike tensor read')
    output: Name = Field(description='spike tensor written, (H + 1) // 2 × (W + 1) // 2')


def pooled_size(n):
    return (n - 1) // 2 + 1


def check(layer, net):
    source = net.read(layer, "input", ("spikes",))
    T, C, H, W = source.shape
    net.write(layer, "output", Tensor("spikes", (T, C, pooled_size(H), pooled_size(W)), producer=layer))


def maxpool_spikes(x):
    """MaxPool(3, stride 2, padding 1) on spikes ``[..., H, W]`` = OR over each window."""
    padded = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)])   # 0 is neutral for OR
    windows = sliding_window_view(padded, (3, 3), axis=(-2, -1))[..., ::2, ::2, :, :]
    return windows.max((-1, -2))


def golden(layer, run):
    run.values[layer.output] = maxpool_spikes(run.values[layer.input])


def emit(layer, program):
    """One POOL descriptor over the input's channel groups; over a map in spatial tiles, one per output
    tile, reading the input tiles it covers (``tile_dy``/``tile_dx``: with the halo row and column of
    the tiles above and left; ``k_base``/``v_base``: the groups from one input tile row and column to the
    next)."""
    source = program.spike_tensor(layer, layer.input)
    H, W = source.H, source.W
    pooled = program.place(layer, layer.output, source.channels, source.T, pooled_size(H), pooled_size(W))
    fields = dict(op=OPCODES[OPCODE], tiles=source.tiling.channel_groups, T=source.T, H=H, W=W, in_base=source,
                  out_base=pooled, check_bits=1)
    if not source.tiled:
        program.emit(layer.name, fields)
        return
    tiling = source.tiling
    for oy, ox in pooled.tiling.tiles():
        iy, ix = 2 * oy, 2 * ox          # an output tile covers two input tiles each way
        y0, _, x0, _ = tiling.window(iy, ix)
        program.emit(layer.name, dict(
            fields, H=min(H - y0, 2 * tiling.tile_h), W=min(W - x0, 2 * tiling.tile_w), in_base=source.at(iy, ix),
            out_base=pooled.at(oy, ox), k_base=tiling.group(1, 0) if tiling.tiles_y > 1 else 0,
            v_base=tiling.group(0, 1) if tiling.tiles_x > 1 else 0, tile_dy=0b11 if oy else 0,
            tile_dx=0b11 if ox else 0))


def cycles(fields, spikes):
    """Engine cycles (from leaving IDLE to DONE) of a POOL descriptor (``H``, ``W`` of the input from
    the origin of input tile A, at ``in_base``): per channel group (``tiles``), timestep and pooled row
    (``⌈H/2⌉``), 3 window rows (input rows ``2y−1 .. 2y+1``), each read once per column part present —
    the left tile's last column (``tile_dx`` = 0b11), A's, the right tile's (``W`` beyond A's columns) —,
    then :data:`~spikeforge.ops.conv.SPIKE_READ_LATENCY` cycles until the last row's word is in and
    written; independent of the spikes. ``spikes``: the input at ``in_base`` as stored, ``[T, C, H_s,
    W_s]``: an image in one tile, or tile A of a tiled one (``W_s = max_w``)."""
    parts = 1 + (fields["tile_dx"] == 0b11) + (fields["W"] > np.shape(spikes)[-1])
    return fields["tiles"] * fields["T"] * ((fields["H"] + 1) // 2) * 3 * parts + SPIKE_READ_LATENCY
