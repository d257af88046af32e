"""Pieces shared by Spikingformer and Spikformer: time-folding helpers and spiking attention."""

from torch import nn

__all__ = ["ATTENTION_SCALE", "attention_order", "spiking_attention", "fold_time", "unfold_time",
           "heads_split", "heads_merge", "init_official", "SpikingNetwork"]

#: The fixed attention scale of both official codes (no softmax).
ATTENTION_SCALE = 0.125


def attention_order(family):
    """``"qk_first"``: ``(Q·Kᵀ)·V`` (cifar and dvs code); ``"kv_first"``: ``Q·(Kᵀ·V)`` (imagenet code)."""
    return "kv_first" if family == "imagenet" else "qk_first"


def spiking_attention(q, k, v, order):
    """Attention on binary ``q, k, v`` of shape ``[T, B, heads, N, d]``, scaled by 0.125.

    Both orders are exact in integer arithmetic; the order only follows the official code so
    float results agree bit for bit with it.
    """
    if order == "kv_first":
        return (q @ (k.transpose(-2, -1) @ v)) * ATTENTION_SCALE
    return ((q @ k.transpose(-2, -1)) @ v) * ATTENTION_SCALE


def fold_time(x):
    """``[T, B, ...] -> [T*B, ...]`` for stateless layers."""
    return x.flatten(0, 1)


def unfold_time(x, T):
    """``[T*B, ...] -> [T, B, ...]``."""
    return x.reshape(T, x.shape[0] // T, *x.shape[1:])


def init_official(module):
    """The official ``_init_weights``: truncated-normal Linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def heads_split(x, heads):
    """``[T, B, C, N] -> [T, B, heads, N, C/heads]`` (channel c belongs to head c // (C/heads))."""
    T, B, C, N = x.shape
    return x.transpose(-1, -2).reshape(T, B, N, heads, C // heads).permute(0, 1, 3, 2, 4)


def heads_merge(x):
    """Inverse of :func:`heads_split`: ``[T, B, heads, N, d] -> [T, B, heads*d, N]``."""
    T, B, H, N, d = x.shape
    return x.transpose(3, 4).reshape(T, B, H * d, N)



class SpikingNetwork(nn.Module):
    """Common shell of both architectures: input convention, time/token averaging and the head.

    Subclasses build ``patch_embed``, ``block`` and ``head`` and define :meth:`tokens`, which maps
    the last block's output to ``[T, B, C, N]``.
    """

    def __init__(self, config):
        super().__init__()
        self.config = config.validate()
        self.T = config.T

    def time_major_input(self, x):
        """``[T, B, C, H, W]`` model input from images ``[B, C, H, W]`` (repeated T times) or, for
        the dvs family, event frames ``[B, T, C, H, W]``; a wrong shape raises ``ValueError``."""
        c = self.config
        frame = (c.in_channels, c.img_size, c.img_size)
        if c.family == "dvs":
            if x.dim() != 5 or tuple(x.shape[2:]) != frame:
                raise ValueError(f"expected event frames [B, T, {', '.join(map(str, frame))}], "
                                 f"got {list(x.shape)}")
            return x.transpose(0, 1)
        if x.dim() != 4 or tuple(x.shape[1:]) != frame:
            raise ValueError(f"expected images [B, {', '.join(map(str, frame))}], got {list(x.shape)}")
        return x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)

    def tokens(self, x):
        raise NotImplementedError

    def forward_features(self, x):
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        return self.tokens(x).mean(3)

    def forward(self, x):
        return self.head(self.forward_features(self.time_major_input(x)).mean(0))
