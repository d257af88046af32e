"""Firing rates, synaptic operations and energy with the method of the Spikformer/Spikingformer papers.

``E = E_MAC × FLOPs(first conv) + E_AC × (Σ SOPs of spike-input layers + Σ SOPs of attention)``,
``E_AC = 0.9 pJ``, ``E_MAC = 4.6 pJ`` (45 nm), ``SOP = firing rate × T × FLOPs`` where FLOPs are the
dense multiply-accumulates of one timestep and the firing rate is the mean of the layer's input (for
a Spikformer stream that adds spikes, the mean spike count). The first conv sees the same image at
every timestep, so its FLOPs count once per image (T times for event input). Attention products
count like layers: ``Q·Kᵀ`` and ``Kᵀ·V`` at the rate of Q resp. K, the product with V (resp. Q) at
the rate of that binary operand. The real-valued head is outside the formula, as in the papers.

Separately, **non-spike multiplications inside the blocks** counts every product of a weight with an
input that is neither 0 nor 1 (input elements outside {0, 1} × their fan-out): 0 for Spikingformer by
construction, > 0 for Spikformer whenever its stream holds a 2.
"""

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .neuron import MultiStepLIFNode

__all__ = ["E_AC_PJ", "E_MAC_PJ", "LayerOps", "EnergyReport", "calibrate_batchnorm", "measure_energy"]

E_AC_PJ = 0.9
E_MAC_PJ = 4.6
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)


@dataclass
class LayerOps:
    """One weighted layer or attention product, per image."""

    name: str
    kind: str            # "mac" (first conv), "sop" (spike-input layer) or "attention"
    input_rate: float    # mean input value (firing rate for binary input)
    flops: float         # dense MACs of one timestep
    ops: float           # MACs (kind "mac") or SOPs
    energy_pj: float
    non_spike_mults: float = 0.0


@dataclass
class EnergyReport:
    layers: list
    firing_rates: dict
    n_images: int
    T: int
    first_conv_flops: float = 0.0
    sops: float = 0.0
    energy_mj: float = 0.0
    non_spike_mults_in_blocks: float = 0.0
    extra: dict = field(default_factory=dict)

    def as_dict(self):
        return asdict(self)


class _Stats:
    """Running sums gathered by forward hooks over all batches."""

    def __init__(self):
        self.input_sum = 0.0
        self.input_elems = 0
        self.non_binary = 0
        self.frames = 0
        self.macs_per_frame = 0
        self.out_shape = None


def _macs_per_frame(module, out):
    per_output = module.in_features if isinstance(module, nn.Linear) else \
        module.in_channels // module.groups * int(torch.tensor(module.kernel_size).prod())
    return out[0].numel() * per_output


@torch.no_grad()
def calibrate_batchnorm(model, x, batch_size=64):
    """Set every BN's running statistics to the exact mean/variance over ``x`` (weights untouched).

    Gives an untrained network normalised pre-activations, hence non-trivial firing, so that its
    energy is meaningful; a trained checkpoint never needs it.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    model.train()
    for i in range(0, len(x), batch_size):
        model(x[i:i + batch_size])
    model.eval()
    return model


@torch.no_grad()
def measure_energy(model, x, batch_size=64):
    """Run ``model`` on ``x`` and count rates, SOPs, energy and non-spike multiplications per image."""
    model.eval()
    config = model.config
    stats, lif_sums, lif_shapes, handles = {}, {}, {}, []
    block_prefix = "block."
    first_conv = next(name for name, m in model.named_modules() if isinstance(m, nn.Conv2d))

    def weighted_hook(name):
        def hook(module, inputs, out):
            s = stats.setdefault(name, _Stats())
            inp = inputs[0]
            s.input_sum += inp.sum().item()
            s.input_elems += inp.numel()
            s.non_binary += ((inp != 0) & (inp != 1)).sum().item()
            s.frames += inp.shape[0]
            s.macs_per_frame = _macs_per_frame(module, out)
        return hook

    def lif_hook(name):
        def hook(module, inputs, out):
            total, count = lif_sums.get(name, (0.0, 0))
            lif_sums[name] = (total + out.sum().item(), count + out.numel())
            lif_shapes[name] = tuple(out.shape)
        return hook

    for name, module in model.named_modules():
        if isinstance(module, _WEIGHTED) and name != "head":
            handles.append(module.register_forward_hook(weighted_hook(name)))
        elif isinstance(module, MultiStepLIFNode):
            handles.append(module.register_forward_hook(lif_hook(name)))
    try:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
    finally:
        for handle in handles:
            handle.remove()

    n = len(x)
    rates = {name: total / count for name, (total, count) in lif_sums.items()}
    report = EnergyReport(layers=[], firing_rates=rates, n_images=n, T=config.T)
    for name, s in stats.items():
        rate = s.input_sum / s.input_elems
        frames_per_image = s.frames / n
        if name == first_conv:
            frames = config.T if config.family == "dvs" else 1
            ops = s.macs_per_frame * frames
            layer = LayerOps(name, "mac", rate, s.macs_per_frame, ops, ops * E_MAC_PJ)
            report.first_conv_flops = ops
        else:
            ops = rate * frames_per_image * s.macs_per_frame
            fan_out = s.macs_per_frame * s.frames / s.input_elems
            non_spike = s.non_binary * fan_out / n if name.startswith(block_prefix) else 0.0
            layer = LayerOps(name, "sop", rate, s.macs_per_frame, ops, ops * E_AC_PJ, non_spike)
            report.sops += ops
            report.non_spike_mults_in_blocks += non_spike
        report.layers.append(layer)
    for name, module in model.named_modules():
        if hasattr(module, "order") and f"{name}.q_lif" in rates:
            report.layers.extend(_attention_ops(name, module, rates, lif_shapes))
    report.sops += sum(l.ops for l in report.layers if l.kind == "attention")
    report.energy_mj = (report.first_conv_flops * E_MAC_PJ + report.sops * E_AC_PJ) * 1e-9
    return report


def _attention_ops(name, module, rates, shapes):
    """SOPs of the two attention products of one self-attention module."""
    T, _, C, N = shapes[f"{name}.q_lif"]
    h, d = module.num_heads, C // module.num_heads
    rq, rk, rv = (rates[f"{name}.{p}_lif"] for p in "qkv")
    if module.order == "kv_first":
        products = (("k^T.v", rk, h * d * d * N), ("q.(k^T.v)", rq, h * N * d * d))
    else:
        products = (("q.k^T", rq, h * N * N * d), ("(q.k^T).v", rv, h * N * N * d))
    return [LayerOps(f"{name}.{label}", "attention", rate, flops, rate * T * flops, rate * T * flops * E_AC_PJ)
            for label, rate, flops in products]
