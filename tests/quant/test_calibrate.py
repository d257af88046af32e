import torch

from spikeforge.model import make_config
from spikeforge.model.data import digits_split
from spikeforge.quant import GoldenModel, load_bundle
from spikeforge.quant.calibrate import bias_correction, finetune, random_network
from spikeforge.quant.export import export_bundle, quantize
from spikeforge.tests.helpers import run_cli

def _network():
    config = make_config("digits-tiny", dim=32, heads=2)
    train = digits_split("train")
    pixels = train.pixels[:96]
    return random_network(config, 0, pixels.float() / 16), pixels, train.y[:96]


def _first_conv_error(qmodel, model, pixels):
    outputs = {}
    hooks = [model.patch_embed.block0_bn.register_forward_hook(lambda m, i, o: outputs.__setitem__("f", o)),
             qmodel.tokenizer[0].conv.register_forward_hook(lambda m, i, o: outputs.__setitem__("q", o[0]))]
    with torch.no_grad():
        model(pixels.float() / 16)
        qmodel(pixels.float())
    for h in hooks:
        h.remove()
    return (outputs["q"] - outputs["f"]).mean((0, 2, 3)).abs().max().item()


def test_bias_correction_removes_the_mean_error_of_the_first_conv():
    model, pixels, _ = _network()
    qmodel = quantize(model, 3)
    before = _first_conv_error(qmodel, model, pixels)
    bias_correction(qmodel, model, pixels.float())
    after = _first_conv_error(qmodel, model, pixels)
    assert before > 1e-3 and after < before / 4, (before, after)


def test_quantization_aware_finetuning_learns_and_stays_bit_exact(tmp_path):
    model, pixels, labels = _network()
    qmodel = quantize(model, 4)
    weight_before = qmodel.blocks[0].mlp1.conv.weight.detach().clone()
    with torch.no_grad():
        loss_before = torch.nn.functional.cross_entropy(qmodel(pixels.float()) * qmodel.head.logit_scale, labels)
    finetune(qmodel, pixels.float(), labels, epochs=3, lr=1e-3, progress=False)
    with torch.no_grad():
        logits = qmodel(pixels.float())
        loss_after = torch.nn.functional.cross_entropy(logits * qmodel.head.logit_scale, labels)
    assert not torch.equal(weight_before, qmodel.blocks[0].mlp1.conv.weight)
    assert loss_after < loss_before
    export_bundle(tmp_path / "qat", qmodel, {"arch": "spikingformer"}, {"method": "qat"})
    trace = GoldenModel(load_bundle(tmp_path / "qat")).run(pixels)
    assert torch.equal(logits.round().long(), trace.logits)


def test_bias_correction_needs_calibration_input(trained_digits, tmp_path):
    result = run_cli("export", "--model", "digits-tiny", "--checkpoint", trained_digits[0], "--bias-correction",
                     "--out", tmp_path / "b")
    assert result.code == 2 and "bias correction needs calibration input: give --calib SPEC" in result.stderr
    assert not (tmp_path / "b").exists()
