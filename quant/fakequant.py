"""The fake-quantized Spikingformer (brevitas): float tensors that hold exactly the golden integers.

Built from a float model in eval mode: every BatchNorm is folded into the convolution before it
(``merge_bn``), every convolution becomes a brevitas ``QuantConv2d`` with power-of-two per-output-
channel weight scales (``Int8WeightPerChannelFixedPoint`` at ``bits`` bits), biases are rounded to
the weight scale, and the convolutions that add into the residual stream (the tokenizer's last conv,
every ``attn.proj_conv`` and ``mlp.mlp2_conv``) share one weight quantizer, so the stream has one
scale per channel. LIFs run the integer recurrence of ``docs/integer-semantics.md`` on the
integer-valued view of their input. With power-of-two scales every float here is an integer times a
power of two, so this model and the golden model agree exactly unless a value outgrows the float32
mantissa. Gradients pass straight through the roundings (quantization-aware training).
"""

import math
import warnings

import torch
from brevitas.nn import QuantConv2d
from brevitas.nn.utils import merge_bn
from brevitas.quant.fixed_point import Int8WeightPerChannelFixedPoint
from torch import nn

from spikeforge.model.layers import heads_merge, heads_split, spiking_attention, ATTENTION_SCALE
from spikeforge.model.neuron import SigmoidSpike
from spikeforge.ops.lif import decay_fixed_point

__all__ = ["QuantLIF", "QuantConv", "QuantHead", "QuantSpikingformer", "decay_fixed_point",
           "round_ste", "floor_ste"]


def round_ste(x):
    return x + (torch.round(x) - x).detach()


def floor_ste(x):
    return x + (torch.floor(x) - x).detach()


class QuantLIF(nn.Module):
    """Integer LIF evaluated in float: input ``x`` (real units) and its per-channel scale ``scale``.

    ``X = x / scale`` is an integer; the membrane ``H`` is an integer in units ``scale / 2**F``;
    ``H = V + floor(((X·2^F) − V)·m / 2^s)``, spike ``H ≥ θ`` with ``θ = ceil(v_th·2^F / scale)``,
    hard reset. The surrogate gradient acts on ``(H − θ)·scale / 2^F`` (real units), as in the
    float model.
    """

    def __init__(self, name, v_threshold, tau, frac_bits, alpha=4.0):
        super().__init__()
        self.name, self.v_threshold, self.frac_bits, self.alpha = name, v_threshold, frac_bits, alpha
        self.decay_mult, self.decay_shift = decay_fixed_point(tau)

    def threshold(self, scale):
        """Integer thresholds ``[C]`` for an input of per-channel ``scale``."""
        return torch.ceil(self.v_threshold * 2.0 ** self.frac_bits / scale.detach())

    def forward(self, x, scale, record=None):
        shape = (-1,) + (1,) * (x.dim() - 3)           # x: [T, B, C, ...]
        unit = scale.view(shape)
        theta = self.threshold(scale).view(shape)
        lsb = unit / 2.0 ** self.frac_bits
        x_int = x / unit
        v = torch.zeros_like(x[0])
        spikes, membranes = [], []
        for x_t in x_int:
            step = (x_t * 2.0 ** self.frac_bits - v) * (self.decay_mult / 2.0 ** self.decay_shift)
            h = v + floor_ste(step)
            if self.training:
                s = SigmoidSpike.apply((h - theta) * lsb, self.alpha)
            else:
                s = (h >= theta).to(h.dtype)
            v = h * (1.0 - s.detach())
            spikes.append(s)
            membranes.append(h)
        spikes = torch.stack(spikes)
        if record is not None:
            record[self.name] = spikes
            record[f"{self.name}:membrane"] = torch.stack(membranes)
        return spikes


class QuantConv(nn.Module):
    """Folded conv(+BN) with fake-quantized weights and bias; returns ``(output, output scale)``.

    ``input_scale`` is the real value of one input unit (1 for spikes, the pixel step for the first
    conv); the output unit is ``weight scale × input_scale`` per channel.
    """

    def __init__(self, name, bn_name, weight, bias, bits, input_scale=1.0, weight_quant=None):
        super().__init__()
        self.name, self.bn_name, self.input_scale = name, bn_name, input_scale
        cout, cin, k = weight.shape[0], weight.shape[1], weight.shape[-1]
        with warnings.catch_warnings():  # brevitas notes that a shared quantizer ignores bit_width
            warnings.filterwarnings("ignore", message="Keyword arguments are being passed")
            self.conv = QuantConv2d(cin, cout, k, padding=k // 2, bias=False,
                                    weight_quant=weight_quant or Int8WeightPerChannelFixedPoint,
                                    weight_bit_width=bits)
        self.conv.weight.data.copy_(weight.reshape(cout, cin, k, k))
        self.bias = nn.Parameter(bias.clone())

    @property
    def weight_quant(self):
        return self.conv.weight_quant

    def scale(self):
        """Per-output-channel value of one output unit."""
        return self.conv.quant_weight().scale.reshape(-1) * self.input_scale

    def integer_weight(self):
        return self.conv.quant_weight().int().to(torch.int64)

    def integer_bias(self):
        return torch.round(self.bias.detach() / self.scale().detach()).to(torch.int64)

    def forward(self, x):
        scale = self.scale()
        bias = round_ste(self.bias / scale) * scale
        return self.conv(x) + bias.view(1, -1, 1, 1), scale


class QuantHead(nn.Module):
    """Linear head on the integer sum of the stream over T and tokens.

    ``logits = W·mean + b`` becomes ``logits_int = Wh·S + bh`` with ``S`` the integer stream sum and
    ``Wh = round(W·s_r / (T·N) / s_h)``, ``bh = round(b / s_h)`` for one power-of-two ``s_h``.
    """

    def __init__(self, weight, bias, bits, count):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight.clone()), nn.Parameter(bias.clone())
        self.bits, self.count = bits, count
        self.logit_scale = 1.0   # s_h of the last forward: real logits = integer logits × s_h

    def folded(self, stream_scale):
        """``(weight scaled to stream-sum units, power-of-two s_h)``."""
        w = self.weight * stream_scale.view(1, -1) / self.count
        top = w.detach().abs().max().clamp_min(1e-12) / (2 ** (self.bits - 1) - 1)
        return w, 2.0 ** math.ceil(math.log2(top.item()))

    def integer_tables(self, stream_scale):
        w, s_h = self.folded(stream_scale)
        return (torch.round(w.detach() / s_h).to(torch.int64),
                torch.round(self.bias.detach() / s_h).to(torch.int64), s_h)

    def forward(self, stream, stream_scale):
        w, s_h = self.folded(stream_scale)
        self.logit_scale = s_h
        limit = 2 ** (self.bits - 1)
        w_q = torch.clamp(round_ste(w / s_h), -limit, limit - 1)
        sums = stream.sum((0, 3, 4)) / stream_scale.view(1, -1)      # integer stream sums [B, C]
        return sums @ w_q.T + round_ste(self.bias / s_h)             # integer logits (s_h units)


def _fold(conv, bn):
    """Weight and bias of ``conv`` followed by eval-mode ``bn`` (brevitas ``merge_bn``)."""
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, bias=True) \
        if isinstance(conv, nn.Conv2d) else nn.Conv1d(conv.in_channels, conv.out_channels, 1, bias=True)
    folded.weight.data.copy_(conv.weight.data)
    folded.bias.data.copy_(conv.bias.data if conv.bias is not None else torch.zeros(conv.out_channels))
    merge_bn(folded, bn)
    return folded.weight.data, folded.bias.data


class QuantSpikingformer(nn.Module):
    """Fake-quantized Spikingformer (all families) built from a float model.

    ``forward(pixels, record=None)`` takes integer-valued pixel tensors (float dtype) and returns
    integer-valued logits; with a ``record`` dict it fills LIF spikes (by LIF name), the stream after
    each block (``"block.j"``) and ``"logits"``.
    """

    def __init__(self, float_model, bits=8, input_scale=1 / 16, frac_bits=None):
        super().__init__()
        if type(float_model).__name__ != "Spikingformer":
            raise ValueError(f"only Spikingformer models can be quantized, not {type(float_model).__name__}")
        config = float_model.config
        float_model = float_model.eval()
        self.config, self.bits, self.input_scale = config, bits, input_scale
        self.frac_bits = config.T if frac_bits is None else frac_bits
        tau, F = config.tau, self.frac_bits

        def lif(name, v_th=1.0):
            return QuantLIF(name, v_th, tau, F)

        stages = float_model.patch_embed.stages()
        names = float_model.patch_embed.stage_names
        stream_quant = None
        self.tokenizer = nn.ModuleList()
        for i, ((lif_f, pool, conv, bn), (prefix, lif_name, pool_name)) in enumerate(zip(stages, names)):
            last = i == len(stages) - 1
            q = QuantConv(f"patch_embed.{prefix}_conv", f"patch_embed.{prefix}_bn", *_fold(conv, bn), bits,
                          input_scale=input_scale if i == 0 else 1.0)
            if last:
                stream_quant = q.weight_quant
            stage = nn.Module()
            stage.lif = lif(f"patch_embed.{lif_name}") if lif_name else None
            stage.pool = pool is not None
            stage.pool_name = f"patch_embed.{pool_name}" if pool_name else None
            stage.conv = q
            self.tokenizer.append(stage)
        self.blocks = nn.ModuleList()
        for j, blk in enumerate(float_model.block):
            p = f"block.{j}"
            attn, mlp = blk.attn, blk.mlp
            b = nn.Module()
            b.proj_lif = lif(f"{p}.attn.proj_lif")
            b.qkv = nn.ModuleList(QuantConv(f"{p}.attn.{n}_conv", f"{p}.attn.{n}_bn",
                                            *_fold(getattr(attn, f"{n}_conv"), getattr(attn, f"{n}_bn")), bits)
                                  for n in "qkv")
            b.qkv_lif = nn.ModuleList(lif(f"{p}.attn.{n}_lif") for n in "qkv")
            b.attn_lif = QuantLIF(f"{p}.attn.attn_lif", 0.5, tau, F)
            b.proj = QuantConv(f"{p}.attn.proj_conv", f"{p}.attn.proj_bn", *_fold(attn.proj_conv, attn.proj_bn), bits,
                               weight_quant=stream_quant)
            b.mlp1_lif = lif(f"{p}.mlp.mlp1_lif")
            b.mlp1 = QuantConv(f"{p}.mlp.mlp1_conv", f"{p}.mlp.mlp1_bn", *_fold(mlp.mlp1_conv, mlp.mlp1_bn), bits)
            b.mlp2_lif = lif(f"{p}.mlp.mlp2_lif")
            b.mlp2 = QuantConv(f"{p}.mlp.mlp2_conv", f"{p}.mlp.mlp2_bn", *_fold(mlp.mlp2_conv, mlp.mlp2_bn), bits,
                               weight_quant=stream_quant)
            b.heads, b.order = attn.num_heads, attn.order
            self.blocks.append(b)
        self.head = QuantHead(float_model.head.weight.data, float_model.head.bias.data, bits,
                              count=config.T * config.tokens)

    def stream_scale(self):
        return self.tokenizer[-1].conv.scale()

    def _conv(self, conv, x, pool=False):
        T = x.shape[0]
        y = x.flatten(0, 1)
        if pool:
            y = torch.nn.functional.max_pool2d(y, 3, 2, 1)
        y, scale = conv(y)
        return y.reshape(T, -1, *y.shape[1:]), scale

    def time_major(self, pixels):
        if self.config.family == "dvs":
            return pixels.transpose(0, 1) * self.input_scale
        return (pixels * self.input_scale).unsqueeze(0).repeat(self.config.T, 1, 1, 1, 1)

    def forward(self, pixels, record=None):
        x = self.time_major(pixels)
        scale = None
        for stage in self.tokenizer:
            if stage.lif is not None:
                x = stage.lif(x, scale, record)
            x, scale = self._conv(stage.conv, x, stage.pool)
        T, B, C, H, W = x.shape
        for j, b in enumerate(self.blocks):
            s = b.proj_lif(x, scale, record)
            q, k, v = (lif(self._conv(conv, s)[0], conv.scale(), record)
                       for conv, lif in zip(b.qkv, b.qkv_lif))
            split = [heads_split(t.flatten(3), b.heads) for t in (q, k, v)]
            a = heads_merge(spiking_attention(*split, b.order)).reshape(T, B, C, H, W)
            a = b.attn_lif(a, torch.full((C,), ATTENTION_SCALE), record)
            y, _ = self._conv(b.proj, a)
            x = x + y
            h, h_scale = self._conv(b.mlp1, b.mlp1_lif(x, scale, record))
            y, _ = self._conv(b.mlp2, b.mlp2_lif(h, h_scale, record))
            x = x + y
            if record is not None:
                record[f"block.{j}"] = x / scale.view(-1, 1, 1)
        logits = self.head(x, scale)
        if record is not None:
            record["logits"] = logits
        return logits
