"""Spikingformer (Zhou et al.): spike-driven residual transformer, module names as the official code.

The residual stream is real-valued; every convolution inside a block receives binary spikes from
the LIF in front of it, so every matrix operation there is an accumulation of selected weights.
State-dict keys match zhouchenlin2096/Spikingformer (``cifar10/``, ``imagenet/``, ``dvs128-gesture/``),
so official checkpoints load with ``strict=True``.
"""

from torch import nn

from .layers import (SpikingNetwork, attention_order, fold_time, heads_merge, heads_split,
                     init_official, spiking_attention, unfold_time)
from .neuron import MultiStepLIFNode

__all__ = ["MLP", "SpikingSelfAttention", "SpikingTransformer", "SpikingTokenizer", "Spikingformer",
           "TOKENIZER_STAGES"]

#: Tokenizer stages per family: (name prefix of conv/bn, LIF name or None, max-pool name or None).
#: Stage i has conv ``{prefix}_conv`` (3x3, no bias) and BN ``{prefix}_bn``; its output channels are
#: dim/8, dim/4, dim/2, dim, dim.
TOKENIZER_STAGES = {
    "cifar": (("block0", None, None), ("block1", "block1_lif", None), ("block2", "block2_lif", None),
              ("block3", "block3_lif", "block3_mp"), ("block4", "block4_lif", "block4_mp")),
    "imagenet": (("proj", None, None), ("proj1", "proj1_lif", "maxpool1"),
                 ("proj2", "proj2_lif", "maxpool2"), ("proj3", "proj3_lif", "maxpool3"),
                 ("proj4", "proj4_lif", "maxpool4")),
}
TOKENIZER_STAGES["dvs"] = TOKENIZER_STAGES["imagenet"]


class MLP(nn.Module):
    """LIF → Conv1×1 (bias) → BN → LIF → Conv1×1 (bias) → BN on ``[T, B, C, H, W]``."""

    def __init__(self, in_features, hidden_features, tau):
        super().__init__()
        self.mlp1_lif = MultiStepLIFNode(tau=tau)
        self.mlp1_conv = nn.Conv2d(in_features, hidden_features, kernel_size=1, stride=1)
        self.mlp1_bn = nn.BatchNorm2d(hidden_features)
        self.mlp2_lif = MultiStepLIFNode(tau=tau)
        self.mlp2_conv = nn.Conv2d(hidden_features, in_features, kernel_size=1, stride=1)
        self.mlp2_bn = nn.BatchNorm2d(in_features)

    def forward(self, x):
        T = x.shape[0]
        x = unfold_time(self.mlp1_bn(self.mlp1_conv(fold_time(self.mlp1_lif(x)))), T)
        return unfold_time(self.mlp2_bn(self.mlp2_conv(fold_time(self.mlp2_lif(x)))), T)


class SpikingSelfAttention(nn.Module):
    """Spiking self-attention: proj_lif → Q, K, V (Conv1d k=1 → BN → LIF) → attention · 0.125 →
    attn_lif (threshold 0.5) → proj_conv (bias) → proj_bn."""

    def __init__(self, dim, heads, tau, order):
        super().__init__()
        self.dim, self.num_heads, self.order = dim, heads, order
        self.proj_lif = MultiStepLIFNode(tau=tau)
        for name in "qkv":
            setattr(self, f"{name}_conv", nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False))
            setattr(self, f"{name}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{name}_lif", MultiStepLIFNode(tau=tau))
        self.attn_lif = MultiStepLIFNode(tau=tau, v_threshold=0.5)
        self.proj_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm1d(dim)

    def _spikes(self, name, x_tokens, T):
        conv, bn, lif = (getattr(self, f"{name}_{part}") for part in ("conv", "bn", "lif"))
        return heads_split(lif(unfold_time(bn(conv(x_tokens)), T)), self.num_heads)

    def forward(self, x):
        T, B, C, H, W = x.shape
        x_tokens = fold_time(self.proj_lif(x).flatten(3))          # [T*B, C, N]
        q, k, v = (self._spikes(name, x_tokens, T) for name in "qkv")
        x = self.attn_lif(heads_merge(spiking_attention(q, k, v, self.order)))
        return self.proj_bn(self.proj_conv(fold_time(x))).reshape(T, B, C, H, W)


class SpikingTransformer(nn.Module):
    """Block with the spike-driven residual: ``x = x + attn(x); x = x + mlp(x)``.

    ``norm1``/``norm2`` are unused, as in the official code; they are kept so its checkpoints load.
    """

    def __init__(self, dim, heads, mlp_ratio, tau, order):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SpikingSelfAttention(dim, heads, tau, order)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, int(dim * mlp_ratio), tau)

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class SpikingTokenizer(nn.Module):
    """Conv3×3+BN on the real input, then stages LIF → [MaxPool(3,2,1)] → Conv3×3 → BN."""

    def __init__(self, family, in_channels, dim, tau):
        super().__init__()
        self.stage_names = TOKENIZER_STAGES[family]
        widths = (in_channels, dim // 8, dim // 4, dim // 2, dim, dim)
        for i, (prefix, lif, pool) in enumerate(self.stage_names):
            if lif is not None:
                setattr(self, lif, MultiStepLIFNode(tau=tau))
            if pool is not None:
                setattr(self, pool, nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
            setattr(self, f"{prefix}_conv",
                    nn.Conv2d(widths[i], widths[i + 1], kernel_size=3, stride=1, padding=1, bias=False))
            setattr(self, f"{prefix}_bn", nn.BatchNorm2d(widths[i + 1]))

    def stages(self):
        """``(lif or None, pool or None, conv, bn)`` module tuples in execution order."""
        return [(getattr(self, lif) if lif else None, getattr(self, pool) if pool else None,
                 getattr(self, f"{prefix}_conv"), getattr(self, f"{prefix}_bn"))
                for prefix, lif, pool in self.stage_names]

    def forward(self, x):
        T = x.shape[0]
        for lif, pool, conv, bn in self.stages():
            if lif is not None:
                x = lif(x)
            x = fold_time(x)
            if pool is not None:
                x = pool(x)
            x = unfold_time(bn(conv(x)), T)
        return x


class Spikingformer(SpikingNetwork):
    """The whole network: tokenizer, ``depth`` blocks, mean over tokens and T, linear head.

    Input: images ``[B, C, H, W]`` (repeated over T), or event frames ``[B, T, C, H, W]`` for the
    dvs family. Output: logits ``[B, num_classes]``.
    """

    def __init__(self, config):
        super().__init__(config)
        self.patch_embed = SpikingTokenizer(config.family, config.in_channels, config.dim, config.tau)
        self.block = nn.ModuleList(
            SpikingTransformer(config.dim, config.heads, config.mlp_ratio, config.tau,
                               attention_order(config.family))
            for _ in range(config.depth))
        self.head = nn.Linear(config.dim, config.num_classes)
        self.apply(init_official)

    def tokens(self, x):
        return x.flatten(3)
