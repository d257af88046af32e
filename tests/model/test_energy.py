import pytest
import torch

from spikeforge.model import build_model
from spikeforge.model.data import parse_input
from spikeforge.model.energy import E_AC_PJ, E_MAC_PJ, calibrate_batchnorm, measure_energy


@pytest.fixture(scope="module")
def digits():
    return parse_input("digits:32", build_model("digits-tiny").config).x


def _report(arch, x, **overrides):
    torch.manual_seed(0)
    model = calibrate_batchnorm(build_model("digits-tiny", arch, **overrides), x)
    return model, measure_energy(model, x)


def test_spikingformer_blocks_have_no_non_spike_multiplications(digits):
    _, report = _report("spikingformer", digits, depth=2)
    assert report.non_spike_mults_in_blocks == 0
    # BN calibration gives every layer activity; only the attention LIF (threshold 0.5 on few
    # tokens) may stay silent in an untrained network
    rates = {k: v for k, v in report.firing_rates.items() if not k.endswith("attn_lif")}
    assert all(0.0 < r < 1.0 for r in rates.values()), rates


def test_spikformer_blocks_multiply_non_binary_stream_values(digits):
    _, report = _report("spikformer", digits, depth=2)
    assert report.non_spike_mults_in_blocks > 0
    q_layer = next(l for l in report.layers if l.name == "block.0.attn.q_linear")
    assert q_layer.non_spike_mults > 0


def test_sops_follow_rate_times_T_times_flops(digits):
    model, report = _report("spikingformer", digits)
    c = model.config
    layer = next(l for l in report.layers if l.name == "block.0.mlp.mlp1_conv")
    tokens = c.tokens
    assert layer.flops == tokens * c.dim * c.hidden_dim
    assert layer.input_rate == pytest.approx(report.firing_rates["block.0.mlp.mlp1_lif"])
    assert layer.ops == pytest.approx(layer.input_rate * c.T * layer.flops)
    first = next(l for l in report.layers if l.kind == "mac")
    assert first.name == "patch_embed.block0_conv"
    assert first.flops == 8 * 8 * (c.dim // 8) * 9 and first.ops == first.flops
    attention = [l for l in report.layers if l.kind == "attention"]
    assert len(attention) == 2
    d = c.dim // c.heads
    assert attention[0].flops == c.heads * tokens * tokens * d
    assert attention[0].input_rate == pytest.approx(report.firing_rates["block.0.attn.q_lif"])
    assert report.sops == pytest.approx(sum(l.ops for l in report.layers if l.kind != "mac"))
    assert report.energy_mj == pytest.approx((first.ops * E_MAC_PJ + report.sops * E_AC_PJ) * 1e-9)


def test_silent_input_costs_only_the_first_conv(digits):
    model = build_model("digits-tiny").eval()
    for m in model.modules():  # push every BN far below threshold
        if isinstance(m, torch.nn.BatchNorm2d) or isinstance(m, torch.nn.BatchNorm1d):
            m.bias.data.fill_(-100.0)
    report = measure_energy(model, digits)
    assert report.sops == 0 and report.first_conv_flops > 0
