"""Quantize a float Spikingformer and export the bundle: layer program, integer tables, widths.

The layer program lists, in execution order, ``conv`` / ``pool`` / ``lif`` / ``attention`` / ``head`` layers
(fields declared by the operation modules, :mod:`spikeforge.ops`); tensors are named after the layer that
writes them; LIF layers carry the float model's LIF names, so traces line up with the model.
Widths come from worst-case bounds, so no value can overflow (``docs/integer-semantics.md`` §7).
"""

import math

import torch

from spikeforge.interface.bits import signed_bits
from spikeforge.model.encoding import input_encoding
from spikeforge.ops.bundle import write_bundle

from .fakequant import QuantSpikingformer

__all__ = ["QUANT_DEFAULT_BITS", "quantize", "program", "export_bundle"]

QUANT_DEFAULT_BITS = 8


def quantize(float_model, bits=QUANT_DEFAULT_BITS):
    """The fake-quantized model of ``float_model`` (eval mode) with power-of-two scales."""
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be between 2 and 8, not {bits!r}")
    encoding = input_encoding(float_model.config.as_dict())
    return QuantSpikingformer(float_model, bits, input_scale=2.0 ** encoding["scale_exp"]).eval()


class _Program:
    """Collects layers, tables and per-tensor magnitude bounds while walking the quantized model."""

    def __init__(self, qmodel):
        self.q = qmodel
        self.layers, self.tables, self.bounds = [], {}, {}
        self.F = qmodel.frac_bits

    def pool(self, name, source):
        self.layers.append({"kind": "pool", "name": name, "input": source, "output": name})
        self.bounds[name] = self.bounds.get(source)
        return name

    def conv(self, conv, source, residual=None, pixels_max=None):
        weight, bias = conv.integer_weight(), conv.integer_bias()
        name = conv.name
        self.tables[f"{name}.weight"], self.tables[f"{name}.bias"] = weight, bias
        reach = weight.abs().sum((1, 2, 3)) * (pixels_max or 1) + bias.abs()
        if residual is not None:
            reach = reach + self.bounds[residual]
        self.bounds[name] = reach
        self.layers.append({
            "kind": "conv", "name": name, "input": source, "output": name, "kernel": weight.shape[-1],
            "input_kind": "pixels" if pixels_max else "spikes",
            "in_channels": weight.shape[1], "out_channels": weight.shape[0],
            "weight": f"{name}.weight", "bias": f"{name}.bias", "residual": residual,
            "acc_bits": signed_bits(reach.max()),
            "scale_exp": [int(round(math.log2(s))) for s in conv.scale().tolist()]})
        return name

    def lif(self, lif, source, scale):
        theta = lif.threshold(scale).to(torch.int64)
        self.tables[f"{lif.name}.threshold"] = theta
        reach = torch.maximum(self.bounds[source] << self.F, theta)
        self.layers.append({
            "kind": "lif", "name": lif.name, "input": source, "output": lif.name,
            "channels": theta.numel(), "threshold": f"{lif.name}.threshold", "frac_bits": self.F,
            "decay_mult": lif.decay_mult, "decay_shift": lif.decay_shift,
            "membrane_bits": signed_bits(reach.max()), "v_threshold": lif.v_threshold})
        self.bounds[lif.name] = torch.ones_like(theta)
        return lif.name

    def attention(self, name, q, k, v, heads, order):
        c = self.q.config
        count = c.tokens * (c.dim // heads)
        self.layers.append({"kind": "attention", "name": name, "q": q, "k": k, "v": v, "output": name,
                            "heads": heads, "order": order, "count_bits": signed_bits(count)})
        self.bounds[name] = torch.full((c.dim,), count)
        return name


def program(qmodel):
    """``(layers, tables, outputs)`` of a quantized model."""
    p = _Program(qmodel)
    encoding = input_encoding(qmodel.config.as_dict())
    tensor, scale = "input", None
    for i, stage in enumerate(qmodel.tokenizer):
        if stage.lif is not None:
            tensor = p.lif(stage.lif, tensor, scale)
        if stage.pool:
            tensor = p.pool(stage.pool_name, tensor)
        tensor = p.conv(stage.conv, tensor, pixels_max=encoding["max"] if i == 0 else None)
        scale = stage.conv.scale()
    stream, stream_scale = tensor, scale
    outputs = {"stream": {}, "lif": [], "logits": "logits"}
    for j, b in enumerate(qmodel.blocks):
        s = p.lif(b.proj_lif, stream, stream_scale)
        qkv = []
        for conv, lif in zip(b.qkv, b.qkv_lif):
            qkv.append(p.lif(lif, p.conv(conv, s), conv.scale()))
        a = p.attention(f"block.{j}.attn.attention", *qkv, b.heads, b.order)
        a = p.lif(b.attn_lif, a, torch.full((qmodel.config.dim,), 0.125))
        stream = p.conv(b.proj, a, residual=stream)
        h = p.conv(b.mlp1, p.lif(b.mlp1_lif, stream, stream_scale))
        stream = p.conv(b.mlp2, p.lif(b.mlp2_lif, h, b.mlp1.scale()), residual=stream)
        outputs["stream"][f"block.{j}"] = stream
    weight, bias, s_h = qmodel.head.integer_tables(stream_scale)
    p.tables["head.weight"], p.tables["head.bias"] = weight, bias
    sum_reach = p.bounds[stream] * qmodel.config.T * qmodel.config.tokens
    logit_reach = (weight.abs() * sum_reach.view(1, -1)).sum(1) + bias.abs()
    p.layers.append({"kind": "head", "name": "head", "input": stream, "output": "logits",
                     "weight": "head.weight", "bias": "head.bias", "sum_bits": signed_bits(sum_reach.max()),
                     "logit_bits": signed_bits(logit_reach.max()), "scale_exp": int(round(math.log2(s_h)))})
    outputs["lif"] = [l["name"] for l in p.layers if l["kind"] == "lif"]
    return p.layers, p.tables, outputs


def export_bundle(out_dir, qmodel, model_info, quant_info, extra_files=None):
    """Write the bundle of ``qmodel``; ``model_info``/``quant_info`` go into the manifest."""
    layers, tables, outputs = program(qmodel)
    config = qmodel.config.as_dict()
    manifest = {
        "model": {**model_info, "config": config},
        "quant": {"weight_bits": qmodel.bits, "frac_bits": qmodel.frac_bits, **quant_info},
        "input": input_encoding(config),
        "layers": layers,
        "outputs": outputs,
    }
    return write_bundle(out_dir, manifest, tables, extra_files)
