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
