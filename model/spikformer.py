"""Spikformer (Zhou et al., ICLR 2023): the predecessor whose residual adds spikes.

Module names follow ZK-Zhou/spikformer: its cifar code uses ``nn.Linear`` in the blocks
(``q_linear``, ``fc1_linear``, …), its imagenet code 1×1 convolutions (``q_conv``: Conv1d,
``fc1_conv``: Conv2d) and its dvs code Conv1d throughout. Every branch ends in a LIF, so
``x + attn(x)`` adds spikes to spikes: the stream holds small integers, and the next Q/K/V and MLP
layers multiply those non-binary values with weights — the cost Spikingformer removes.
"""

from torch import nn

from .layers import (SpikingNetwork, attention_order, fold_time, heads_merge, heads_split,
                     init_official, spiking_attention, unfold_time)
from .neuron import MultiStepLIFNode

__all__ = ["SpikformerMLP", "SpikformerSelfAttention", "SpikformerBlock", "SPS", "Spikformer",
           "SPS_STAGES", "LAYER_KINDS"]

#: Token-wise layer kinds per family: (attention layers, MLP layers).
LAYER_KINDS = {"cifar": ("linear", "linear"), "imagenet": ("conv1d", "conv2d"), "dvs": ("conv1d", "conv1d")}


def _add_layer_bn_lif(owner, name, kind, c_in, c_out, bias, tau, v_threshold=1.0):
    """Register ``{name}_linear|conv``, ``{name}_bn`` and ``{name}_lif`` on ``owner``."""
    layer = {"linear": nn.Linear, "conv1d": nn.Conv1d, "conv2d": nn.Conv2d}[kind]
    suffix = "linear" if kind == "linear" else "conv"
    setattr(owner, f"{name}_{suffix}",
            layer(c_in, c_out, bias=bias) if kind == "linear" else layer(c_in, c_out, 1, bias=bias))
    setattr(owner, f"{name}_bn", (nn.BatchNorm2d if kind == "conv2d" else nn.BatchNorm1d)(c_out))
    setattr(owner, f"{name}_lif", MultiStepLIFNode(tau=tau, v_threshold=v_threshold))
    return f"{name}_{suffix}", f"{name}_bn", f"{name}_lif"


def _run_layer_bn_lif(owner, names, x, T):
    """``[T, B, C, N]`` → layer → BN → LIF → ``[T, B, C', N]`` spikes."""
    layer, bn, lif = (getattr(owner, name) for name in names)
    x = fold_time(x)
    if isinstance(layer, nn.Linear):
        x = bn(layer(x.transpose(1, 2)).transpose(1, 2))
    elif isinstance(layer, nn.Conv2d):
        x = bn(layer(x.unsqueeze(-1))).squeeze(-1)
    else:
        x = bn(layer(x))
    return lif(unfold_time(x, T))


class SpikformerMLP(nn.Module):
    """fc1 → BN → LIF → fc2 → BN → LIF on tokens ``[T, B, C, N]``."""

    def __init__(self, dim, hidden, tau, kind):
        super().__init__()
        self.fc1 = _add_layer_bn_lif(self, "fc1", kind, dim, hidden, True, tau)
        self.fc2 = _add_layer_bn_lif(self, "fc2", kind, hidden, dim, True, tau)

    def forward(self, x):
        T = x.shape[0]
        return _run_layer_bn_lif(self, self.fc2, _run_layer_bn_lif(self, self.fc1, x, T), T)


class SpikformerSelfAttention(nn.Module):
    """SSA: Q, K, V (layer → BN → LIF) straight from the stream, attention · 0.125, ``attn_lif``
    (threshold 0.5), proj layer → BN → ``proj_lif``."""

    def __init__(self, dim, heads, tau, order, kind):
        super().__init__()
        self.num_heads, self.order = heads, order
        bias = kind == "linear"  # the cifar code's nn.Linear keeps its default bias
        self.qkv = [_add_layer_bn_lif(self, name, kind, dim, dim, bias, tau) for name in "qkv"]
        self.attn_lif = MultiStepLIFNode(tau=tau, v_threshold=0.5)
        self.proj = _add_layer_bn_lif(self, "proj", kind, dim, dim, True, tau)

    def forward(self, x):
        T = x.shape[0]
        q, k, v = (heads_split(_run_layer_bn_lif(self, names, x, T), self.num_heads)
                   for names in self.qkv)
        x = self.attn_lif(heads_merge(spiking_attention(q, k, v, self.order)))
        return _run_layer_bn_lif(self, self.proj, x, T)


class SpikformerBlock(nn.Module):
    """``x = x + attn(x); x = x + mlp(x)`` where both branches end in spikes."""

    def __init__(self, dim, heads, mlp_ratio, tau, order, kinds):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SpikformerSelfAttention(dim, heads, tau, order, kinds[0])
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SpikformerMLP(dim, int(dim * mlp_ratio), tau, kinds[1])

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


#: SPS stages per family: (conv/bn/lif name suffix, max-pool after the LIF or None).
SPS_STAGES = {
    "cifar": (("", None), ("1", None), ("2", "maxpool2"), ("3", "maxpool3")),
    "imagenet": (("", "maxpool"), ("1", "maxpool1"), ("2", "maxpool2"), ("3", "maxpool3")),
}
SPS_STAGES["dvs"] = SPS_STAGES["imagenet"]


class SPS(nn.Module):
    """Spiking patch splitting: stages Conv3×3 → BN → LIF → [MaxPool], then the relative position
    embedding ``x + rpe_lif(rpe_bn(rpe_conv(x)))`` (spikes plus spikes); output ``[T, B, C, N]``."""

    def __init__(self, family, in_channels, dim, tau):
        super().__init__()
        self.stage_names = SPS_STAGES[family]
        widths = (in_channels, dim // 8, dim // 4, dim // 2, dim)
        for i, (suffix, pool) in enumerate(self.stage_names):
            setattr(self, f"proj_conv{suffix}",
                    nn.Conv2d(widths[i], widths[i + 1], kernel_size=3, stride=1, padding=1, bias=False))
            setattr(self, f"proj_bn{suffix}", nn.BatchNorm2d(widths[i + 1]))
            setattr(self, f"proj_lif{suffix}", MultiStepLIFNode(tau=tau))
            if pool is not None:
                setattr(self, pool, nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.rpe_conv = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(dim)
        self.rpe_lif = MultiStepLIFNode(tau=tau)

    def forward(self, x):
        T = x.shape[0]
        for suffix, pool in self.stage_names:
            conv, bn, lif = (getattr(self, f"proj_{part}{suffix}") for part in ("conv", "bn", "lif"))
            x = lif(unfold_time(bn(conv(fold_time(x))), T))
            if pool is not None:
                x = unfold_time(getattr(self, pool)(fold_time(x)), T)
        x = x + self.rpe_lif(unfold_time(self.rpe_bn(self.rpe_conv(fold_time(x))), T))
        return x.flatten(3)


class Spikformer(SpikingNetwork):
    """Spikformer with the same config, input and output conventions as ``Spikingformer``."""

    def __init__(self, config):
        super().__init__(config)
        self.patch_embed = SPS(config.family, config.in_channels, config.dim, config.tau)
        self.block = nn.ModuleList(
            SpikformerBlock(config.dim, config.heads, config.mlp_ratio, config.tau,
                            attention_order(config.family), LAYER_KINDS[config.family])
            for _ in range(config.depth))
        self.head = nn.Linear(config.dim, config.num_classes)
        self.apply(init_official)

    def tokens(self, x):
        return x
