"""Official-checkpoint compatibility: strict loading of the official key layout and equal logits."""

import pytest
import torch

from spikeforge.model import build_model
from spikeforge.tests.model.official_reference import (official_forward, official_layout,
                                                        random_official_state_dict)

CASES = [
    ("cifar10-4-384", dict(depth=2, dim=32, heads=4, img_size=16)),
    ("cifar100-4-384", dict(depth=1, dim=48, heads=3, img_size=8, mlp_ratio=2)),
    ("imagenet-8-512", dict(depth=2, dim=32, heads=2, img_size=32, num_classes=7)),
    ("dvs128-2-256", dict(depth=1, dim=32, heads=4, img_size=32, T=3)),
]


def _inputs(config, seed):
    g = torch.Generator().manual_seed(seed)
    if config.family == "dvs":
        return (torch.rand(3, config.T, config.in_channels, config.img_size, config.img_size,
                           generator=g) < 0.3).float()
    return torch.randn(3, config.in_channels, config.img_size, config.img_size, generator=g)


@pytest.mark.parametrize("name,overrides", CASES)
def test_official_state_dict_loads_strictly_and_logits_match(name, overrides):
    model = build_model(name, **overrides).eval()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == official_layout(model.config)
    for seed in (0, 1):
        state = random_official_state_dict(model.config, seed)
        model.load_state_dict(state, strict=True)
        x = _inputs(model.config, seed)
        with torch.no_grad():
            ours, reference = model(x), official_forward(state, model.config, x)
        assert torch.allclose(ours, reference, atol=1e-5, rtol=0), (ours - reference).abs().max()
        # a network that never fires would agree trivially: demand activity deep inside
        rates = _attention_rates(model, x)
        assert all(0.0 < r < 1.0 for r in rates), rates
        assert ours.std(0).max() > 1e-3  # logits depend on the input


def _attention_rates(model, x):
    rates = []
    hooks = [blk.attn.attn_lif.register_forward_hook(lambda m, i, o: rates.append(o.mean().item()))
             for blk in model.block]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return rates


def test_loading_a_mismatched_state_dict_fails():
    model = build_model("cifar10-4-384", depth=1, dim=32, heads=4, img_size=16)
    state = random_official_state_dict(model.config, 0)
    state.pop("block.0.norm1.weight")
    with pytest.raises(RuntimeError, match="norm1.weight"):
        model.load_state_dict(state, strict=True)
