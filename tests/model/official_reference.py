"""An independent, functional re-computation of the official Spikingformer forward pass.

Written from the official code's forward methods (zhouchenlin2096/Spikingformer, eval mode) with
``torch.nn.functional`` only and a state dict in the official key layout; it shares no code with
``spikeforge.model``. :func:`official_layout` lists the official keys and shapes, so loading its
random state dicts strictly into our models checks the names too.
"""

import torch
import torch.nn.functional as F

__all__ = ["official_layout", "random_official_state_dict", "official_forward", "lif_reference"]


def _tokenizer_convs(config):
    d = config.dim
    widths = [config.in_channels, d // 8, d // 4, d // 2, d, d]
    names = (["block0", "block1", "block2", "block3", "block4"] if config.family == "cifar"
             else ["proj", "proj1", "proj2", "proj3", "proj4"])
    return [(names[i], widths[i], widths[i + 1]) for i in range(5)]


def official_layout(config):
    """``{key: shape}`` of an official Spikingformer state dict for ``config``."""
    layout = {}

    def bn(prefix, c):
        for name in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{prefix}.{name}"] = (c,)
        layout[f"{prefix}.num_batches_tracked"] = ()

    for name, c_in, c_out in _tokenizer_convs(config):
        layout[f"patch_embed.{name}_conv.weight"] = (c_out, c_in, 3, 3)
        bn(f"patch_embed.{name}_bn", c_out)
    d, hidden = config.dim, int(config.dim * config.mlp_ratio)
    for j in range(config.depth):
        p = f"block.{j}"
        for norm in ("norm1", "norm2"):
            layout[f"{p}.{norm}.weight"] = layout[f"{p}.{norm}.bias"] = (d,)
        for qkv in "qkv":
            layout[f"{p}.attn.{qkv}_conv.weight"] = (d, d, 1)
            bn(f"{p}.attn.{qkv}_bn", d)
        layout[f"{p}.attn.proj_conv.weight"] = (d, d, 1)
        layout[f"{p}.attn.proj_conv.bias"] = (d,)
        bn(f"{p}.attn.proj_bn", d)
        layout[f"{p}.mlp.mlp1_conv.weight"] = (hidden, d, 1, 1)
        layout[f"{p}.mlp.mlp1_conv.bias"] = (hidden,)
        bn(f"{p}.mlp.mlp1_bn", hidden)
        layout[f"{p}.mlp.mlp2_conv.weight"] = (d, hidden, 1, 1)
        layout[f"{p}.mlp.mlp2_conv.bias"] = (d,)
        bn(f"{p}.mlp.mlp2_bn", d)
    layout["head.weight"] = (config.num_classes, d)
    layout["head.bias"] = (config.num_classes,)
    return layout


def random_official_state_dict(config, seed):
    """Random weights (scaled by fan-in so layers keep firing) and random BN statistics."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_layout(config).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(int(torch.randint(0, 1000, (), generator=g)))
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) * 0.5 + 0.2
        elif key.endswith("running_mean"):
            state[key] = torch.randn(shape, generator=g) * 0.2
        elif ".norm" in key or key.endswith("bn.weight"):
            state[key] = torch.rand(shape, generator=g) * 0.5 + 0.75
        elif key.endswith("bn.bias"):  # positive shifts keep every LIF layer firing
            state[key] = torch.randn(shape, generator=g) * 0.3 + 0.8
        elif key.endswith("bias"):
            state[key] = torch.randn(shape, generator=g) * 0.3
        else:
            fan_in = int(torch.tensor(shape[1:]).prod())
            state[key] = torch.randn(shape, generator=g) * (3.0 / fan_in ** 0.5)
    return state


def lif_reference(x, tau, v_threshold):
    """SpikingJelly multi-step LIF, decay_input, hard reset to 0, over dim 0."""
    v = torch.zeros_like(x[0])
    out = torch.empty_like(x)
    for t in range(x.shape[0]):
        v = v + (x[t] - v) / tau
        out[t] = (v - v_threshold >= 0).float()
        v = v * (1 - out[t])
    return out


def _bn(sd, prefix, x):
    return F.batch_norm(x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"],
                        sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], training=False, eps=1e-5)


def official_forward(sd, config, images):
    """Logits of the official eval-mode forward for ``images`` (``[B, C, H, W]`` or DVS ``[B, T, C, H, W]``)."""
    tau, T = config.tau, config.T
    x = images.permute(1, 0, 2, 3, 4) if config.family == "dvs" else images.unsqueeze(0).repeat(T, 1, 1, 1, 1)
    T, B = x.shape[:2]
    for i, (name, _, _) in enumerate(_tokenizer_convs(config)):
        if i > 0:
            x = lif_reference(x, tau, 1.0)
        y = x.flatten(0, 1)
        if i >= (3 if config.family == "cifar" else 1):
            y = F.max_pool2d(y, kernel_size=3, stride=2, padding=1)
        y = _bn(sd, f"patch_embed.{name}_bn", F.conv2d(y, sd[f"patch_embed.{name}_conv.weight"], padding=1))
        x = y.reshape(T, B, *y.shape[1:])
    heads = config.heads
    for j in range(config.depth):
        p = f"block.{j}"
        _, _, C, H, W = x.shape
        s = lif_reference(x, tau, 1.0).flatten(3).flatten(0, 1)            # [TB, C, N]
        qkv = []
        for name in "qkv":
            y = _bn(sd, f"{p}.attn.{name}_bn", F.conv1d(s, sd[f"{p}.attn.{name}_conv.weight"]))
            y = lif_reference(y.reshape(T, B, C, -1), tau, 1.0)           # [T, B, C, N]
            qkv.append(y.reshape(T, B, heads, C // heads, -1).transpose(-1, -2))  # [T,B,h,N,d]
        q, k, v = qkv
        if config.family == "imagenet":
            a = torch.matmul(q, torch.matmul(k.transpose(-1, -2), v)) * 0.125
        else:
            a = torch.matmul(torch.matmul(q, k.transpose(-1, -2)), v) * 0.125
        a = a.transpose(-1, -2).reshape(T, B, C, -1)
        a = lif_reference(a, tau, 0.5).flatten(0, 1)
        a = F.conv1d(a, sd[f"{p}.attn.proj_conv.weight"], sd[f"{p}.attn.proj_conv.bias"])
        x = x + _bn(sd, f"{p}.attn.proj_bn", a).reshape(T, B, C, H, W)
        m = lif_reference(x, tau, 1.0).flatten(0, 1)
        m = _bn(sd, f"{p}.mlp.mlp1_bn", F.conv2d(m, sd[f"{p}.mlp.mlp1_conv.weight"], sd[f"{p}.mlp.mlp1_conv.bias"]))
        m = lif_reference(m.reshape(T, B, -1, H, W), tau, 1.0).flatten(0, 1)
        m = _bn(sd, f"{p}.mlp.mlp2_bn", F.conv2d(m, sd[f"{p}.mlp.mlp2_conv.weight"], sd[f"{p}.mlp.mlp2_conv.bias"]))
        x = x + m.reshape(T, B, C, H, W)
    features = x.flatten(3).mean(3).mean(0)
    return F.linear(features, sd["head.weight"], sd["head.bias"])
