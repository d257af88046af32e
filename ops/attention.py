"""``attention``: spiking self-attention without softmax, per head ``(Q·Kᵀ)·V`` (= ``Q·(Kᵀ·V)`` in exact
integer arithmetic) on binary Q, K, V; the 0.125 scale lives in ``attn_lif``'s threshold."""

from typing import Literal

import numpy as np

from spikeforge.interface.bits import ceil_div
from spikeforge.interface.descriptor import OPCODES

from . import lif
from .conv import SPIKE_READ_LATENCY, drain_cycles, scan_pass_cycles
from pydantic import Field

from .base import LayerFields, Name, RuleError, Tensor, Width, require_buildable, require_width

__all__ = ["KIND", "OPCODE", "Fields", "check", "golden", "emit", "cycles", "attention_counts",
           "key_value_counts"]

KIND = "attention"
OPCODE = "ATTENTION"


class Fields(LayerFields):
    """Manifest fields of an ``attention`` layer."""

    kind: Literal["attention"]
    q: Name = Field(description='query spike tensor')
    k: Name = Field(description='key spike tensor')
    v: Name = Field(description='value spike tensor')
    output: Name = Field(description='count tensor written (units 1/8)')
    heads: int = Field(description='heads; channel c belongs to head c // (C / heads)')
    order: Literal["qk_first", "kv_first"] = Field(description='official product order (both exact)')
    count_bits: Width = Field(description='count width (Kᵀ·V and the result), holds N · d')


def check(layer, net):
    q = net.read(layer, "q", ("spikes",))
    for name in ("k", "v"):
        other = net.read(layer, name, ("spikes",))
        if other.shape != q.shape:
            raise RuleError(name, f"tensor {getattr(layer, name)!r} has shape {list(other.shape)}, "
                                  f"expected that of q {list(q.shape)}")
    T, C, H, W = q.shape
    if not 1 <= layer.heads <= C or C % layer.heads:
        raise RuleError("heads", f"{layer.heads} heads do not divide the {C} channels")
    count = H * W * (C // layer.heads)
    require_width("count_bits", layer.count_bits, count)
    net.write(layer, "output", Tensor("integer", q.shape, np.full(C, count, dtype=np.int64), producer=layer))


def attention_counts(q, k, v, heads):
    """``(Q·Kᵀ)·V`` per head on binary ``[B, T, C, H, W]`` arrays; integer counts ``[B, T, C, H, W]``."""
    B, T, C, H, W = q.shape
    d = C // heads

    def split(x):  # [B, T, heads, N, d]
        return x.reshape(B, T, heads, d, H * W).swapaxes(-1, -2)

    qs, ks, vs = split(q), split(k), split(v)
    counts = (qs @ ks.swapaxes(-1, -2)) @ vs     # AND-and-count, then spike-gated accumulation
    return counts.swapaxes(-1, -2).reshape(B, T, C, H, W)


def key_value_counts(k, v, heads):
    """Kᵀ·V per head on binary ``[B, T, C, H, W]`` arrays: ``[B, T, heads, d, d]``, entry ``[i, j]`` the
    positions where key channel ``i`` and value channel ``j`` of the head both spike (the accelerator's
    AND-and-count, ``≤ N``)."""
    B, T, C, H, W = k.shape
    d = C // heads
    ks, vs = (x.reshape(B, T, heads, d, H * W) for x in (k, v))
    return ks @ vs.swapaxes(-1, -2)


def golden(layer, run):
    q, k, v = (run.values[name] for name in (layer.q, layer.k, layer.v))
    # count_bits holds every count of the attention: the Kᵀ·V counts the accelerator forms, and A
    run.check_width(layer.name, key_value_counts(k, v, layer.heads), layer.count_bits)
    out = attention_counts(q, k, v, layer.heads)
    run.check_width(layer.name, out, layer.count_bits)
    run.values[layer.output] = out


def emit(layer, program):
    """One ATTENTION descriptor: Kᵀ·V into scratch weight rows (shared by every attention), then the
    Q spikes accumulate them like a 1×1 conv; the drain runs the fused ``attn_lif``."""
    q, k, v = (program.untiled(layer, program.spike_tensor(layer, getattr(layer, key))) for key in ("q", "k", "v"))
    C, H, W = q.channels, q.H, q.W
    n_pe, T = program.n_pe, program.T
    zero_bias = len(program.biases)     # the attention adds no bias: one zero row per tile
    program.biases += [[0] * n_pe] * ceil_div(C, n_pe)
    fields = dict(op=OPCODES[OPCODE], cin=C, planes=1, tiles=ceil_div(C, n_pe), T=T, H=H, W=W,
                  in_base=q, k_base=k, v_base=v, head_dim=C // layer.heads,
                  bias_base=zero_bias, check_bits=layer.count_bits)
    # Kᵀ·V counts (≤ N) live in weight rows
    program.need(layer, max_cin=C, acc_bits=layer.count_bits, weight_bits=(H * W).bit_length() + 1, scratch_rows=C)
    lif.fuse(program.lif_after(layer), program, fields, C, T, H, W)
    require_buildable(program, layer, fields, acc_bits=layer.count_bits)
    program.emit(layer.name, fields, scratch=True)


#: Pipeline stages of the key-value product after its reads (``hw/key_value_product.py``): the
#: spike-memory read's further cycles, the ANDed rows registered, their popcounts, the counts, the row
#: write.
KEY_VALUE_STAGES = SPIKE_READ_LATENCY + 3


def cycles(fields, spikes):
    """Engine cycles (from leaving IDLE to DONE) of an ATTENTION descriptor; ``spikes``: the Q spikes at ``in_base`` as stored,
    ``[T_s, C_s, H_s, W_s]`` (at least ``T``, ``C`` = ``cin``, ``H``, ``W``).

    Per output tile and timestep ``t``:

    * KV: ``C·H`` cycles (one per ``(ci, y)``: the K row of channel ``ci`` AND the V rows of the
      tile's lanes, counted), KV_FLUSH :data:`KEY_VALUE_STAGES`;
    * the Q-gated accumulation, :func:`spikeforge.ops.conv.scan_pass_cycles` with one slot per Q
      channel over its occupied rows ``y < H`` of timestep ``t``, ``k`` a row's spikes in columns
      ``< W`` (the centre tap reaches every row and column);

    then per tile the drain pass, :func:`spikeforge.ops.conv.drain_cycles`.
    """
    C, T, H, W = fields["cin"], fields["T"], fields["H"], fields["W"]
    rows = np.asarray(spikes)[:T, :C, :H] != 0                      # [t, channel, row, stored columns]
    occupied, k = rows.any(-1), np.maximum(rows[..., :W].sum(-1), 1)
    scan = sum(scan_pass_cycles([k[t, c][occupied[t, c]] for c in range(C)]) for t in range(T))
    per_tile = T * (C * H + KEY_VALUE_STAGES) + scan + drain_cycles(T, H, W)
    return fields["tiles"] * per_tile
