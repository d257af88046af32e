"""The integer golden model: ``docs/integer-semantics.md`` executed with int64 tensors.

It reads a bundle (weights, thresholds, layer program) and nothing else — no float model, no
floating-point tensor. Its trace holds every LIF's spikes at every timestep, the residual stream
after every block and the logits; the hardware is checked against it.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .bundle import Bundle, load_bundle

__all__ = ["Trace", "GoldenModel", "lif_integer", "conv_integer", "maxpool_spikes", "attention_counts"]


@dataclass
class Trace:
    """Integer results of one run (all int64, batch first, then time: ``[B, T, C, H, W]``)."""

    spikes: dict                       # LIF name -> spikes {0, 1}
    stream: dict                       # "block.j" -> residual stream after block j
    logits: torch.Tensor               # [B, num_classes]
    membranes: dict = field(default_factory=dict)   # LIF name -> membrane H (when recorded)
    overflow: list = field(default_factory=list)    # names of layers that exceeded their width

    @property
    def predictions(self):
        return self.logits.argmax(1)   # first maximum wins, as torch.argmax on the float logits


def maxpool_spikes(x):
    """MaxPool(3, stride 2, padding 1) on spikes ``[..., H, W]`` = OR over each window."""
    padded = F.pad(x, (1, 1, 1, 1))    # 0 padding is neutral for OR (spikes are >= 0)
    return padded.unfold(-2, 3, 2).unfold(-2, 3, 2).amax((-1, -2))


def conv_integer(x, weight, bias):
    """Integer conv, stride 1, 'same' padding, on ``x [B, T, Cin, H, W]``; ``weight [Cout, Cin, k, k]``.

    For spike inputs every product is a weight selected by a spike: a sum of selected weights.
    """
    k = weight.shape[-1]
    pad = k // 2
    padded = F.pad(x, (pad, pad, pad, pad))
    H, W = x.shape[-2:]
    out = bias.view(1, 1, -1, 1, 1).expand(*x.shape[:2], -1, H, W).clone()
    for dy in range(k):
        for dx in range(k):
            patch = padded[..., dy:dy + H, dx:dx + W]
            out += torch.einsum("oi,btihw->btohw", weight[:, :, dy, dx], patch)
    return out


def lif_integer(x, threshold, frac_bits, decay_mult, decay_shift):
    """Integer LIF over dim 1 of ``x [B, T, C, ...]`` (input units); returns ``(spikes, membranes)``.

    ``H = V + (((X << F) - V) * m >> s)`` (arithmetic shift: floor), ``S = H >= θ``, ``V = H * (1 - S)``.
    """
    theta = threshold.view(1, -1, *([1] * (x.dim() - 3)))
    v = torch.zeros_like(x[:, 0])
    spikes, membranes = [], []
    for t in range(x.shape[1]):
        h = v + ((((x[:, t] << frac_bits) - v) * decay_mult) >> decay_shift)
        s = (h >= theta).to(torch.int64)
        v = h * (1 - s)
        spikes.append(s)
        membranes.append(h)
    return torch.stack(spikes, 1), torch.stack(membranes, 1)


def attention_counts(q, k, v, heads):
    """``(Q·Kᵀ)·V`` per head on binary ``[B, T, C, H, W]`` tensors; integer counts ``[B, T, C, H, W]``."""
    B, T, C, H, W = q.shape
    d = C // heads

    def split(x):  # [B, T, heads, N, d]
        return x.reshape(B, T, heads, d, H * W).transpose(-1, -2)

    qs, ks, vs = split(q), split(k), split(v)
    counts = (qs @ ks.transpose(-1, -2)) @ vs     # AND-and-count, then spike-gated accumulation
    return counts.transpose(-1, -2).reshape(B, T, C, H, W)


def _fits(values, bits):
    limit = 1 << (bits - 1)
    return bool(((values >= -limit) & (values < limit)).all())


class GoldenModel:
    """Run a bundle's layer program on integer input.

    Parameters
    ----------
    bundle : Bundle or path
        A bundle from :func:`spikeforge.quant.bundle.load_bundle` (a path is loaded and validated).
    """

    def __init__(self, bundle):
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        manifest = self.bundle.manifest
        self.T = manifest["model"]["config"]["T"]
        self.input = manifest["input"]

    def check_input(self, x):
        """Integer input ``[B, C, H, W]`` (static, repeated over T) or ``[B, T, C, H, W]`` (events)."""
        if x.dtype != torch.int64:
            raise ValueError(f"golden input must be int64 pixels, not {x.dtype}")
        shape = list(self.input["shape"])
        if list(x.shape[1:]) != shape:
            raise ValueError(f"golden input must have shape [B, {', '.join(map(str, shape))}], "
                             f"not {list(x.shape)}")
        if x.numel() and (x.min() < 0 or x.max() > self.input["max"]):
            raise ValueError(f"golden input values must lie in [0, {self.input['max']}]")
        return x.unsqueeze(1) if not self.input["events"] else x   # static: one frame, broadcast

    def run(self, x, record_membranes=False):
        values = {"input": self.check_input(x)}
        trace = Trace(spikes={}, stream={}, logits=None)
        tables = self.bundle.tables
        for layer in self.bundle.layers:
            kind, name = layer["kind"], layer["name"]
            if kind == "conv":
                inp = values[layer["input"]]
                if layer["pool"]:
                    inp = maxpool_spikes(inp)
                out = conv_integer(inp, tables[layer["weight"]], tables[layer["bias"]])
                if out.shape[1] != self.T:                     # static first conv: same every step
                    out = out.expand(-1, self.T, -1, -1, -1)
                if layer["residual"]:
                    out = out + values[layer["residual"]]
                if not _fits(out, layer["acc_bits"]):
                    trace.overflow.append(name)
                values[layer["output"]] = out
            elif kind == "lif":
                spikes, membranes = lif_integer(values[layer["input"]], tables[layer["threshold"]],
                                                layer["frac_bits"], layer["decay_mult"], layer["decay_shift"])
                if not _fits(membranes, layer["membrane_bits"]):
                    trace.overflow.append(name)
                values[layer["output"]] = spikes
                trace.spikes[name] = spikes
                if record_membranes:
                    trace.membranes[name] = membranes
            elif kind == "attention":
                out = attention_counts(values[layer["q"]], values[layer["k"]], values[layer["v"]],
                                       layer["heads"])
                if not _fits(out, layer["count_bits"]):
                    trace.overflow.append(name)
                values[layer["output"]] = out
            elif kind == "head":
                sums = values[layer["input"]].sum((1, 3, 4))
                logits = sums @ tables[layer["weight"]].T + tables[layer["bias"]]
                if not (_fits(sums, layer["sum_bits"]) and _fits(logits, layer["logit_bits"])):
                    trace.overflow.append(name)
                values[layer["output"]] = logits
                trace.logits = logits
        for name, tensor_name in self.bundle.manifest["outputs"]["stream"].items():
            trace.stream[name] = values[tensor_name]
        return trace
