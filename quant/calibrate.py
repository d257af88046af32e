"""Data-driven steps around quantization: seeded random networks with activity, post-training
bias correction and quantization-aware fine-tuning."""

import torch
from torch import nn
from tqdm import tqdm

from spikeforge.model import model_from_config
from spikeforge.model.energy import calibrate_batchnorm
from spikeforge.model.neuron import MultiStepLIFNode

__all__ = ["ACTIVITY_RANGE", "random_network", "lif_rates", "bias_correction", "finetune"]

#: Firing-rate window every LIF of a seeded random network is tuned into (on its calibration input).
ACTIVITY_RANGE = (0.02, 0.5)
_TARGET_RATE = 0.15


@torch.no_grad()
def lif_rates(model, x):
    """Firing rate of every LIF of a float model on ``x``."""
    sums, hooks = {}, []
    for name, module in model.named_modules():
        if isinstance(module, MultiStepLIFNode):
            hooks.append(module.register_forward_hook(
                lambda m, i, o, name=name: sums.__setitem__(name, o.mean().item())))
    try:
        model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return sums


def _knobs(model):
    """``{LIF name: [BatchNorms whose bias drives it]}`` in execution order."""
    tok = model.patch_embed
    knobs, previous = {}, None
    for prefix, lif, _ in tok.stage_names:
        if lif is not None:
            knobs[f"patch_embed.{lif}"] = [previous]
        previous = getattr(tok, f"{prefix}_bn")
    for j, blk in enumerate(model.block):
        a, m, p = blk.attn, blk.mlp, f"block.{j}"
        knobs[f"{p}.attn.proj_lif"] = [previous]
        for n in "qkv":
            knobs[f"{p}.attn.{n}_lif"] = [getattr(a, f"{n}_bn")]
        knobs[f"{p}.attn.attn_lif"] = [a.q_bn, a.k_bn, a.v_bn]
        knobs[f"{p}.mlp.mlp1_lif"] = [a.proj_bn]
        knobs[f"{p}.mlp.mlp2_lif"] = [m.mlp1_bn]
        previous = m.mlp2_bn
    return knobs


@torch.no_grad()
def random_network(config, seed, x, steps=14):
    """A Spikingformer with random weights and BN statistics whose every LIF fires at a
    non-trivial rate on ``x``: BN statistics are measured on ``x``, then each LIF's driving BN
    biases are shifted (bisection, in execution order) towards a 15 % firing rate. Each BN's
    statistics are measured again just before its LIF is tuned, when everything upstream is final."""
    torch.manual_seed(seed)
    model = model_from_config(config)
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.copy_(torch.rand(m.weight.shape, generator=generator) * 0.5 + 0.75)
            m.bias.zero_()
    calibrate_batchnorm(model, x)
    for name, bns in _knobs(model).items():
        _measure_statistics(model, bns, x)
        base = [bn.bias.clone() for bn in bns]
        lo, hi = -4.0, 4.0
        for _ in range(steps):
            mid = (lo + hi) / 2
            for bn, b in zip(bns, base):
                bn.bias.copy_(b + mid * bn.weight)
            if lif_rates(model, x)[name] < _TARGET_RATE:
                lo = mid
            else:
                hi = mid
    return model.eval()


@torch.no_grad()
def _measure_statistics(model, bns, x):
    """Set the running statistics of ``bns`` (only) to their exact mean/variance on ``x``."""
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    model(x)
    model.eval()


def _quant_convs(qmodel):
    for stage in qmodel.tokenizer:
        yield stage.conv
    for b in qmodel.blocks:
        yield from (*b.qkv, b.proj, b.mlp1, b.mlp2)


@torch.no_grad()
def bias_correction(qmodel, float_model, pixels):
    """Post-training calibration: shift each quantized conv's bias by the mean error of its output
    (fake-quant − float, per channel, over ``pixels``), in execution order so later layers see the
    corrected earlier ones."""
    float_model.eval()
    qmodel.eval()
    x_float = pixels * qmodel.input_scale
    modules = dict(float_model.named_modules())
    for conv in _quant_convs(qmodel):
        outputs = {}
        hooks = [modules[conv.bn_name].register_forward_hook(lambda m, i, o: outputs.__setitem__("float", o)),
                 conv.register_forward_hook(lambda m, i, o: outputs.__setitem__("quant", o[0]))]
        try:
            float_model(x_float)
            qmodel(pixels)
        finally:
            for h in hooks:
                h.remove()
        reference, quant = outputs["float"], outputs["quant"]
        dims = [d for d in range(reference.dim()) if d != 1]
        conv.bias.add_((reference - quant.reshape(reference.shape)).mean(dims))
    return qmodel


def finetune(qmodel, pixels, labels, epochs, lr=1e-4, batch_size=32, seed=0, progress=True):
    """Quantization-aware fine-tuning (straight-through roundings, surrogate spikes) of ``qmodel``."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(qmodel.parameters(), lr=lr, weight_decay=0.0)
    loss_fn = nn.CrossEntropyLoss()
    for _ in tqdm(range(epochs), desc="QAT", disable=not progress, unit="epoch"):
        qmodel.train()
        order = torch.randperm(len(pixels), generator=generator)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            logits = qmodel(pixels[idx]) * qmodel.head.logit_scale
            loss = loss_fn(logits, labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return qmodel.eval()
