import pickle

import numpy as np
import pytest
import torch

from spikeforge.model import make_config
from spikeforge.model.data import DIGITS_TEST_SIZE, digits_split, load_cifar, parse_input

DIGITS = make_config("digits-tiny")


def test_digits_split_is_fixed_and_disjoint():
    train, test = digits_split("train"), digits_split("test")
    assert (len(train), len(test)) == (1437, DIGITS_TEST_SIZE)
    assert train.x.shape[1:] == (1, 8, 8) and 0 <= train.x.min() and train.x.max() <= 1
    assert torch.equal(digits_split("test").x, test.x)
    # pixels are multiples of 1/16: the integer pixels are recoverable exactly
    assert torch.equal(test.x * 16, (test.x * 16).round())
    train_rows = {tuple(r) for r in train.x.flatten(1).tolist()}
    overlap = sum(tuple(r) in train_rows for r in test.x.flatten(1).tolist())
    assert overlap < 5  # the digits set holds a few duplicate images, nothing more
    assert set(test.y.tolist()) == set(range(10))


def test_input_specs():
    batch = parse_input("digits:7", DIGITS)
    assert len(batch) == 7 and torch.equal(batch.y, digits_split("test").y[:7])
    a, b = parse_input("random:5:3", DIGITS), parse_input("random:5:3", DIGITS)
    assert torch.equal(a.x, b.x) and a.y is None and a.x.shape == (5, 1, 8, 8)
    assert not torch.equal(a.x, parse_input("random:5:4", DIGITS).x)


def test_npy_input(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((4, 1, 8, 8), dtype=np.uint8))
    assert parse_input(str(path), DIGITS).x.shape == (4, 1, 8, 8)
    np.save(path, np.zeros((4, 8, 8)))
    with pytest.raises(ValueError, match=r"x.npy: array shape must be \[N, 1, 8, 8\], not \[4, 8, 8\]"):
        parse_input(str(path), DIGITS)


@pytest.mark.parametrize("spec,message", [
    ("digits:0", "N must be a positive integer"),
    ("digits:361", "has 360 images"),
    ("random:x", "N must be a positive integer"),
    ("random:2:s", "SEED must be an integer"),
    ("cifar:3", "expected digits:N, random:N"),
    ("missing.npy", "missing.npy: input file does not exist"),
])
def test_bad_input_specs(spec, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        parse_input(spec, DIGITS)


def test_digits_need_the_digits_shape():
    with pytest.raises(ValueError, match="digits are 1x8x8 images"):
        parse_input("digits:3", make_config("cifar10-4-384"))


def _write_cifar10(folder, n=4):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}
        (folder / name).write_bytes(pickle.dumps(batch))


def test_cifar_reader(tmp_path):
    _write_cifar10(tmp_path)
    train, test = load_cifar(tmp_path, "cifar10", "train"), load_cifar(tmp_path, "cifar10", "test")
    assert train.x.shape == (20, 3, 32, 32) and test.y.tolist() == [0, 1, 2, 3]
    raw = pickle.loads((tmp_path / "test_batch").read_bytes())[b"data"].reshape(-1, 3, 32, 32)
    expected = (raw[0, 1, 0, 0] / 255.0 - 0.4822) / 0.2435  # channel 1 normalisation
    assert test.x[0, 1, 0, 0].item() == pytest.approx(expected, abs=1e-6)


def test_cifar_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="--data-dir does not exist"):
        load_cifar(tmp_path / "nowhere", "cifar10", "train")
    with pytest.raises(FileNotFoundError, match="test_batch: missing cifar10 batch file"):
        load_cifar(tmp_path, "cifar10", "test")
    (tmp_path / "test").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"fine_labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"field 'data' must have shape \[N, 3072\]"):
        load_cifar(tmp_path, "cifar100", "test")
