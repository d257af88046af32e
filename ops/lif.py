"""``lif``: the integer leaky integrate-and-fire neuron over T (``docs/integer-semantics.md`` §3).

``H = V + (((X << F) − V) · m >> s)``, spike ``S = H ≥ θ``, hard reset ``V = H · (1 − S)``. On the
accelerator a LIF has no descriptor of its own: it is fused into the drain of the conv or attention
that writes its input, which therefore must be the layer right before it."""

from typing import Literal

import numpy as np

from pydantic import Field

from .base import LayerFields, Name, RuleError, Tensor, Width, require_width

__all__ = ["KIND", "OPCODE", "Fields", "check", "golden", "emit", "fuse", "lif_integer", "decay_fixed_point",
           "MAX_DECAY_SHIFT", "MAX_FRAC_BITS"]

KIND = "lif"
#: No descriptor of its own (fused into its producer), hence no cycle model either.
OPCODE = None
#: Largest decay shift s (the decay m / 2**s has at most 16 fraction bits).
MAX_DECAY_SHIFT = 16
#: Largest number of fractional membrane bits F.
MAX_FRAC_BITS = 32


class Fields(LayerFields):
    """Manifest fields of a ``lif`` layer."""

    kind: Literal["lif"]
    input: Name = Field(description='tensor read (integer, input units)')
    output: Name = Field(description='spike tensor written')
    channels: int = Field(description='channels')
    threshold: Name = Field(description='table [channels]: θ in membrane units')
    frac_bits: int = Field(description='F: fractional bits of the membrane (= T)')
    decay_mult: int = Field(description='m of the decay m / 2**s')
    decay_shift: int = Field(description='s of the decay m / 2**s')
    membrane_bits: Width = Field(description='membrane width, holds the worst case')
    v_threshold: float = Field(description='the float threshold θ was derived from')


def decay_fixed_point(tau):
    """``(m, s)`` with ``1/tau ≈ m / 2**s``: exact ``(1, 1)`` for τ = 2, 8-bit ``(171, 8)`` for τ = 1.5;
    ``m`` may round to 0 for a very large τ, which the bundle checker refuses."""
    inverse = 1.0 / tau
    for shift in range(0, 9):
        mult = inverse * (1 << shift)
        if mult == int(mult):
            return int(mult), shift
    return int(round(inverse * 256)), 8


def check(layer, net):
    source = net.read(layer, "input", ("integer",))
    producer = source.producer
    if net.previous is not producer:
        raise RuleError("input", f"tensor {layer.input!r} must be written by the layer right before this LIF "
                                 f"(the hardware fuses a LIF into its producer)")
    if layer.channels != source.channels:
        raise RuleError("channels", f"{layer.channels}, but tensor {layer.input!r} has {source.channels}")
    F, T = layer.frac_bits, net.config["T"]
    if F != net.quant["frac_bits"] or F != T:
        raise RuleError("frac_bits", f"must equal quant.frac_bits and config.T ({T}), not {F}")
    if not 0 <= F <= MAX_FRAC_BITS:
        raise RuleError("frac_bits", f"must lie in 0..{MAX_FRAC_BITS}, not {F}")
    expected = decay_fixed_point(net.config["tau"])
    if (layer.decay_mult, layer.decay_shift) != expected:
        raise RuleError("decay_mult", f"(decay_mult, decay_shift) = ({layer.decay_mult}, {layer.decay_shift}), "
                                      f"but config.tau = {net.config['tau']} gives {expected}")
    if not 0 < layer.decay_mult <= 1 << layer.decay_shift or layer.decay_shift > MAX_DECAY_SHIFT:
        raise RuleError("decay_mult", f"the decay {layer.decay_mult}/2**{layer.decay_shift} must lie in (0, 1] "
                                      f"with a shift of at most {MAX_DECAY_SHIFT} (tau too large?)")
    theta = net.table(layer, "threshold", [source.channels], bits=layer.membrane_bits, positive=True)
    require_width("membrane_bits", layer.membrane_bits, np.maximum(source.bound.astype(object) * (1 << F), theta))
    net.write(layer, "output", Tensor("spikes", source.shape, producer=layer))


def lif_integer(x, threshold, frac_bits, decay_mult, decay_shift):
    """Integer LIF over axis 1 of ``x [B, T, C, ...]`` (input units); returns ``(spikes, membranes)``."""
    theta = threshold.reshape(1, -1, *([1] * (x.ndim - 3)))
    v = np.zeros_like(x[:, 0])
    spikes, membranes = [], []
    for t in range(x.shape[1]):
        h = v + ((((x[:, t] << frac_bits) - v) * decay_mult) >> decay_shift)
        s = (h >= theta).astype(np.int64)
        v = h * (1 - s)
        spikes.append(s)
        membranes.append(h)
    return np.stack(spikes, 1), np.stack(membranes, 1)


def golden(layer, run):
    spikes, membranes = lif_integer(run.values[layer.input], run.tables[layer.threshold], layer.frac_bits,
                                    layer.decay_mult, layer.decay_shift)
    run.check_width(layer.name, membranes, layer.membrane_bits)
    run.values[layer.output] = spikes
    run.spikes[layer.name] = spikes
    if run.record_membranes:
        run.membranes[layer.name] = membranes


def emit(layer, program):
    """Nothing of its own: :func:`fuse` attached it to its producer's descriptor."""


def fuse(layer, program, fields, channels, T, H, W):
    """Attach the LIF ``layer`` (or None) to its producer's descriptor ``fields``: thresholds, output
    spikes, the declared membrane width the drain checks H against, and the LIF constants the hardware
    is built with."""
    if layer is None:
        return
    program.need(layer, decay=(layer.decay_mult, layer.decay_shift), frac_bits=layer.frac_bits,
                 membrane_bits=layer.membrane_bits)
    out = program.place(layer, layer.output, channels, T, H, W, lif=True)
    fields.update(lif=1, out_base=out, threshold_base=len(program.thresholds), frac_bits=layer.frac_bits,
                  membrane_bits=layer.membrane_bits)
    program.thresholds += program.lanes(program.tables[layer.threshold].tolist(), pad=None)
