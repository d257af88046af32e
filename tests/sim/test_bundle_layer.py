"""Layers of a real exported network run on the layer engine, equal to the golden trace."""

import pytest
import torch

from spikeforge.model.data import digits_split
from spikeforge.model.encoding import encode_input
from spikeforge.quant import GoldenModel, load_bundle
from spikeforge.sim.layer import bundle_layer_case, params_for, run_layer


@pytest.fixture(scope="module")
def bundle_and_trace(digits_bundle):
    bundle = load_bundle(digits_bundle)
    pixels = encode_input(digits_split("test").x[:3], bundle.manifest["input"])
    return bundle, GoldenModel(bundle).run(pixels)


@pytest.mark.parametrize("conv_name", ["patch_embed.block1_conv", "block.0.attn.k_conv"])
def test_bundle_layer_on_the_engine_equals_the_golden_trace(bundle_and_trace, conv_name):
    bundle, trace = bundle_and_trace
    case, golden_spikes, (conv, lif) = bundle_layer_case(bundle, trace, conv_name, image=2)
    params = params_for(case, 8, conv["acc_bits"], lif["membrane_bits"], 8)
    result, difference = run_layer(case, params, "amaranth")
    assert difference is None, difference
    assert torch.equal(torch.tensor(result["spikes"]), golden_spikes)
    assert 0 < golden_spikes.double().mean() < 1


def test_layers_with_residual_or_pooling_are_refused(bundle_and_trace):
    bundle, trace = bundle_and_trace
    with pytest.raises(ValueError, match="adds a residual or reads pooled spikes"):
        bundle_layer_case(bundle, trace, "block.0.attn.proj_conv")
    with pytest.raises(ValueError, match="is not a spike-input conv"):
        bundle_layer_case(bundle, trace, "patch_embed.block0_conv")
