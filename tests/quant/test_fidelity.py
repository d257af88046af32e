"""The fidelity chain on real data: float → fake-quant (brevitas) → integer golden model."""

import pytest
import torch

from spikeforge.model.data import digits_split
from spikeforge.model.train import evaluate, load_checkpoint
from spikeforge.model.encoding import encode_input
from spikeforge.quant import GoldenModel, load_bundle
from spikeforge.quant.export import quantize


def _fake_quant_record(qmodel, pixels):
    record = {}
    with torch.no_grad():
        qmodel(pixels.float(), record)
    return record


@pytest.fixture(scope="module")
def chain(trained_digits, digits_bundle):
    model, _ = load_checkpoint(trained_digits[0])
    test = digits_split("test")
    bundle = load_bundle(digits_bundle)
    pixels = encode_input(test.x, bundle.manifest["input"])
    trace = GoldenModel(bundle).run(pixels, record_membranes=True)
    # the exported bundle is plain PTQ, so quantizing the checkpoint again gives its fake-quant twin
    record = _fake_quant_record(quantize(model, 8), pixels)
    return model, test, bundle, trace, record


def test_golden_accuracy_within_one_point_of_float(chain):
    model, test, _, trace, _ = chain
    float_accuracy = evaluate(model, test)["accuracy"]
    golden_accuracy = (trace.predictions == test.y).double().mean().item()
    assert golden_accuracy >= float_accuracy - 0.01, (golden_accuracy, float_accuracy)


def test_golden_agrees_with_fake_quant(chain):
    _, _, _, trace, record = chain
    predictions = record["logits"].argmax(1)
    assert (predictions == trace.predictions).double().mean() >= 0.99
    for name, spikes in trace.spikes.items():
        agreement = (record[name].transpose(0, 1).long() == spikes).double().mean().item()
        assert agreement >= 0.999, (name, agreement)


def test_every_disagreement_is_a_float_rounding_tie(chain):
    """List spike disagreements; each must sit at the threshold within float32 rounding."""
    _, _, bundle, trace, record = chain
    thresholds = {l["name"]: bundle.tables[l["threshold"]] for l in bundle.layers if l["kind"] == "lif"}
    disagreements = []
    for name, spikes in trace.spikes.items():
        fake = record[name].transpose(0, 1).long()
        membrane = record[f"{name}:membrane"].transpose(0, 1)
        for index in (fake != spikes).nonzero().tolist():
            theta = thresholds[name][index[2]].item()
            golden_h = trace.membranes[name][tuple(index)].item()
            float_h = membrane[tuple(index)].item()
            disagreements.append((name, index, golden_h, float_h, theta))
    for name, index, golden_h, float_h, theta in disagreements:
        tolerance = abs(theta) * 2.0 ** -22   # float32 rounding at the threshold's magnitude
        assert abs(float_h - theta) <= tolerance or abs(golden_h - theta) <= tolerance, \
            f"{name} {index}: golden H={golden_h}, fake-quant H={float_h}, θ={theta} is not a tie"
    print(f"{len(disagreements)} spike disagreements, all float-rounding ties: {disagreements[:10]}")


def test_residual_stream_and_logits_are_identical(chain):
    _, _, _, trace, record = chain
    for name, stream in trace.stream.items():
        assert torch.equal(record[name].transpose(0, 1).round().long(), stream)
    assert torch.equal(record["logits"].round().long(), trace.logits)


def test_four_bit_bundle_runs_and_matches_its_fake_quant(trained_digits, tmp_path):
    from spikeforge.quant.export import export_bundle

    model, _ = load_checkpoint(trained_digits[0])
    qmodel = quantize(model, 4)
    export_bundle(tmp_path / "b4", qmodel, {"arch": "spikingformer"}, {"method": "ptq"})
    bundle = load_bundle(tmp_path / "b4")
    assert bundle.manifest["quant"]["weight_bits"] == 4
    conv_weights = [bundle.tables[l["weight"]] for l in bundle.layers if l["kind"] == "conv"]
    assert all(abs(w).max() <= 7 for w in conv_weights)
    test = digits_split("test")
    pixels = encode_input(test.x[:100], bundle.manifest["input"])
    trace = GoldenModel(bundle).run(pixels)
    record = _fake_quant_record(qmodel, pixels)
    assert torch.equal(record["logits"].round().long(), trace.logits)
    accuracy = (trace.predictions == test.y[:100]).double().mean().item()
    print(f"4-bit golden accuracy on 100 digits: {accuracy:.2%}")
    assert accuracy > 0.5   # a working network, not chance
