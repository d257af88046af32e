import pytest
import torch

from spikeforge.model import build_model, make_config
from spikeforge.model.data import digits_split
from spikeforge.model.train import (TrainSettings, evaluate, load_checkpoint, save_checkpoint, train)


def test_default_training_reaches_95_percent_on_digits(trained_digits):
    path, result = trained_digits
    assert result["test_accuracy"] >= 0.95, result
    model, meta = load_checkpoint(path)
    assert meta["arch"] == "spikingformer" and model.config == make_config("digits-tiny")
    assert evaluate(model, digits_split("test"))["accuracy"] == result["test_accuracy"]
    losses = [r["loss"] for r in result["history"]]
    assert losses[-1] < losses[0] * 0.6


def test_short_training_is_deterministic_and_learns():
    config = make_config("digits-tiny", dim=32, heads=2)
    train_batch, test_batch = digits_split("train"), digits_split("test")
    settings = TrainSettings(epochs=2, seed=3)
    a, history = train(config, train_batch, test_batch, settings=settings, progress=False)
    b, _ = train(config, train_batch, test_batch, settings=settings, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert history[-1]["loss"] < history[0]["loss"]


def test_checkpoint_round_trip_and_errors(tmp_path):
    model = build_model("digits-tiny", "spikformer", depth=2)
    path = save_checkpoint(tmp_path / "m.pt", model, "spikformer", {"note": 1})
    loaded, meta = load_checkpoint(path)
    assert meta["arch"] == "spikformer" and meta["extra"] == {"note": 1}
    assert all(torch.equal(x, y) for x, y in zip(model.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="nope.pt: checkpoint does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    payload = torch.load(path, weights_only=True)
    payload["version"] = 99
    torch.save(payload, tmp_path / "v99.pt")
    with pytest.raises(ValueError, match="v99.pt: field 'version' is 99, expected 1"):
        load_checkpoint(tmp_path / "v99.pt")


def test_official_checkpoint_needs_a_config_and_loads_with_one(tmp_path):
    model = build_model("cifar10-4-384", depth=1, dim=32, heads=4, img_size=16)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3},
               tmp_path / "official.pth.tar")
    with pytest.raises(ValueError, match="not a spikeforge checkpoint; give --model"):
        load_checkpoint(tmp_path / "official.pth.tar")
    loaded, _ = load_checkpoint(tmp_path / "official.pth.tar", model.config)
    assert torch.equal(loaded.head.weight, model.head.weight)
    with pytest.raises(ValueError, match="state dict does not match"):
        load_checkpoint(tmp_path / "official.pth.tar", make_config("cifar10-4-384", depth=2, dim=32,
                                                                   heads=4, img_size=16))


def test_interrupted_save_leaves_nothing(tmp_path, monkeypatch):
    model = build_model("digits-tiny")

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "m.pt", model, "spikingformer")
    assert list(tmp_path.iterdir()) == []


def _spikeforge_checkpoint(tmp_path, name="m.pt", **changes):
    """A saved untrained digits-tiny checkpoint, its payload then edited by ``changes``."""
    path = save_checkpoint(tmp_path / name, build_model("digits-tiny"), "spikingformer")
    if changes:
        payload = torch.load(path, weights_only=True)
        payload.update(changes)
        torch.save(payload, path)
    return path


def test_checkpoint_of_another_config_than_requested_is_refused(tmp_path):
    path = _spikeforge_checkpoint(tmp_path)
    load_checkpoint(path, make_config("digits-tiny"), "spikingformer")  # the same: fine
    with pytest.raises(ValueError, match=r"^.*m.pt: the checkpoint's config does not match the requested model: "
                                         r"field 'dim' is 64 in the checkpoint, 32 requested \(--model/--set\)$"):
        load_checkpoint(path, make_config("digits-tiny", dim=32))
    with pytest.raises(ValueError, match=r"field 'family' is 'cifar' in the checkpoint, 'imagenet' requested"):
        load_checkpoint(path, make_config("imagenet-8-384"))
    with pytest.raises(ValueError, match=r"m.pt: field 'arch' is 'spikingformer' in the checkpoint, "
                                         r"'spikformer' requested \(--arch\)$"):
        load_checkpoint(path, make_config("digits-tiny"), "spikformer")
    # without a config the arch is not compared (the CLI's --arch has a default)
    assert load_checkpoint(path, None, "spikformer")[1]["arch"] == "spikingformer"


@pytest.mark.parametrize("changes,message", [
    (dict(state_dict=None), r"field 'state_dict' must be a mapping of parameter names to tensors, not NoneType$"),
    (dict(state_dict=[1, 2]), r"field 'state_dict' must be a mapping of parameter names to tensors, not list$"),
    (dict(state_dict={}), r"field 'state_dict' holds no tensors$"),
    (dict(state_dict={"head.weight": None}), r"field 'state_dict' entry 'head.weight' must be a tensor, not NoneType$"),
    (dict(state_dict={3: torch.zeros(1)}), r"field 'state_dict' has a key 3 of type int; parameter names must be"),
    (dict(config=None), r"field 'config' must be a dict, not NoneType$"),
    (dict(config={"depth": 1}), r"field 'config' is invalid \("),
    (dict(arch="resnet"), r"field 'arch' is 'resnet', expected one of spikingformer, spikformer$"),
])
def test_malformed_checkpoint_fields_are_named(tmp_path, changes, message):
    path = _spikeforge_checkpoint(tmp_path, "bad.pt", **changes)
    with pytest.raises(ValueError, match=r"^.*bad.pt: " + message) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_non_finite_weights_are_refused(tmp_path):
    model = build_model("digits-tiny")
    state = model.state_dict()
    keys = [k for k, v in state.items() if v.is_floating_point()]
    state[keys[2]][0] = float("nan")
    state[keys[5]].view(-1)[-1] = float("-inf")
    path = _spikeforge_checkpoint(tmp_path, "nan.pt", state_dict=state)
    with pytest.raises(ValueError, match=rf"^.*nan.pt: tensor '{keys[2]}' holds NaN or infinite values "
                                         rf"\(2 of {len(state)} tensors do\)$"):
        load_checkpoint(path)


def test_payloads_that_are_no_dict_are_refused(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"list.pt: the checkpoint must hold a dict, not list$"):
        load_checkpoint(tmp_path / "list.pt", make_config("digits-tiny"))
    torch.save({"state_dict": None, "epoch": 1}, tmp_path / "official.pt")
    with pytest.raises(ValueError, match=r"official.pt: field 'state_dict' must be a mapping .*, not NoneType$"):
        load_checkpoint(tmp_path / "official.pt", make_config("digits-tiny"))
    torch.save({"epoch": 1}, tmp_path / "flat.pt")
    with pytest.raises(ValueError, match=r"flat.pt: field 'checkpoint' entry 'epoch' must be a tensor, not int$"):
        load_checkpoint(tmp_path / "flat.pt", make_config("digits-tiny"))


def test_state_dict_mismatch_is_one_short_line(tmp_path):
    small = build_model("cifar10-4-384", depth=1, dim=32, heads=4, img_size=16)
    state = {f"module.{k}": v for k, v in small.state_dict().items()}
    state["module.extra.weight"] = torch.zeros(3)
    torch.save({"model": state}, tmp_path / "official.pth")
    with pytest.raises(ValueError) as info:
        load_checkpoint(tmp_path / "official.pth", make_config("cifar10-4-384"))
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    assert message.startswith(f"{tmp_path / 'official.pth'}: state dict does not match spikingformer cifar10-4-384: ")
    expected = build_model("cifar10-4-384").state_dict()
    missing = len([k for k in expected if k.removeprefix("module.") not in small.state_dict()])
    assert f"{missing} missing (block.1." in message and "1 unexpected (extra.weight)" in message
    assert "shape mismatches (patch_embed.block0_conv.weight: checkpoint [4, 3, 3, 3], model [48, 3, 3, 3], ...)" \
        in message
    other = make_config("cifar100-4-384", depth=1, dim=32, heads=4, img_size=16)
    with pytest.raises(ValueError, match=r"does not match spikingformer cifar100-1-32 variant \(heads=4, T=4, "
                                         r"img_size=16, num_classes=100\): 1 unexpected \(extra.weight\), "
                                         r"2 shape mismatches \(head.weight: checkpoint \[10, 32\], model \[100, 32\], ...\)$"):
        load_checkpoint(tmp_path / "official.pth", other)
