import pickle

import numpy as np
import pytest
import torch

from spikeforge.model import make_config
from spikeforge.model.data import DIGITS_TEST_SIZE, digits_split, load_cifar, parse_input

DIGITS = make_config("digits-tiny")
CIFAR = make_config("cifar10-4-384", depth=1, dim=32, heads=4, img_size=8)
DVS = make_config("dvs128-2-256", depth=1, dim=32, heads=4, img_size=16, T=2)


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
    np.save(path, np.zeros((4, 1, 8, 8), dtype=np.float32))
    assert parse_input(str(path), DIGITS).x.shape == (4, 1, 8, 8)
    np.save(path, np.zeros((4, 8, 8)))
    with pytest.raises(ValueError, match=r"x.npy: array shape must be \[N, 1, 8, 8\], not \[4, 8, 8\]"):
        parse_input(str(path), DIGITS)


def test_every_spec_carries_its_pixels(tmp_path):
    digits = parse_input("digits:5", DIGITS)
    assert digits.pixels.dtype == torch.int64 and torch.equal(digits.x, digits.pixels / 16)
    assert torch.equal(digits.pixels, digits_split("test").pixels[:5])
    assert 0 <= digits.pixels.min() and digits.pixels.max() <= 16 and digits.pixels.max() > 1
    for config, step, top in ((DIGITS, 2.0 ** -4, 16), (CIFAR, 2.0 ** -8, 255)):
        batch = parse_input("random:6:1", config)
        assert batch.pixels.dtype == torch.int64 and batch.pixels.shape == batch.x.shape
        # exactly on the encoding grid: the golden model and the float model see the same input
        assert torch.equal(batch.x, batch.pixels.float() * step)
        assert batch.pixels.min() == 0 and batch.pixels.max() == top
    events = parse_input("random:3:1", DVS)
    assert events.x.shape == (3, 2, 2, 16, 16) and set(events.pixels.unique().tolist()) == {0, 1}
    assert torch.equal(events.x, events.pixels.float())
    path = tmp_path / "x.npy"
    np.save(path, np.full((2, 1, 8, 8), 0.26, np.float32))  # 4.16 pixels: rounded, x kept as given
    batch = parse_input(str(path), DIGITS)
    assert torch.all(batch.x == np.float32(0.26)) and torch.all(batch.pixels == 4)


def test_digits_split_pixels():
    test = digits_split("test")
    assert test.pixels.dtype == torch.int64 and torch.equal(test.x * 16, test.pixels.float())


def test_pixels_spec(tmp_path):
    path = tmp_path / "p.npy"
    pixels = digits_split("test").pixels[:4].numpy().astype(np.uint8)
    np.save(path, pixels)
    batch = parse_input(f"pixels:{path}", DIGITS)
    assert torch.equal(batch.pixels, torch.from_numpy(pixels).long()) and batch.source == f"pixels:{path}"
    assert torch.equal(batch.x, parse_input("digits:4", DIGITS).x)
    np.save(path, pixels.astype(np.float64))  # floats that hold integers are pixels too
    assert torch.equal(parse_input(f"pixels:{path}", DIGITS).pixels, batch.pixels)
    np.save(path, np.ones((2, 2, 2, 16, 16), dtype=bool))
    assert torch.equal(parse_input(f"pixels:{path}", DVS).x, torch.ones(2, 2, 2, 16, 16))


def _save(path, values, dtype, shape=(2, 1, 8, 8), at=(1, 0, 3, 5)):
    array = np.zeros(shape, dtype)
    array[at] = values
    np.save(path, array)
    return str(path)


@pytest.mark.parametrize("value,dtype,problem", [
    (-0.25, np.float32, "is negative"),
    (np.inf, np.float32, "is not finite"),
    (-np.inf, np.float64, "is not finite"),
    (np.nan, np.float32, "is not finite"),
    (1.5, np.float32, "is too large"),
    (1e300, np.float64, "is too large"),
])
def test_npy_values_out_of_range_are_refused(tmp_path, value, dtype, problem):
    path = _save(tmp_path / "bad.npy", value, dtype)
    with pytest.raises(ValueError) as info:
        parse_input(path, DIGITS)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: value ")
    # the flat index of [1, 0, 3, 5] in [2, 1, 8, 8] is 64 + 3*8 + 5 = 93
    shown = {-0.25: "-0.25", 1.5: "1.5", 1e300: "1e+300"}.get(value, str(value))  # nan, inf, -inf
    assert f"value {shown} at index [1, 0, 3, 5] (flat 93) {problem}" in message
    assert "[0, 1]" in message


def test_npy_value_out_of_the_cifar_range_names_the_limit(tmp_path):
    path = _save(tmp_path / "c.npy", 1.0, np.float32, shape=(1, 3, 8, 8), at=(0, 2, 0, 0))
    with pytest.raises(ValueError, match=r"c.npy: value 1.0 at index \[0, 2, 0, 0\] \(flat 128\) is too "
                                         r"large; float inputs must lie in \[0, 0.99609375\]"):
        parse_input(path, CIFAR)


def test_npy_events_must_be_binary(tmp_path):
    path = _save(tmp_path / "ev.npy", 0.5, np.float32, shape=(1, 2, 2, 16, 16), at=(0, 1, 0, 0, 2))
    with pytest.raises(ValueError, match=r"ev.npy: value 0.5 at index \[0, 1, 0, 0, 2\] .* not an event "
                                         r"\(0 or 1\); event inputs must be exactly 0 or 1"):
        parse_input(path, DVS)


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, bool])
def test_integer_npy_needs_the_pixels_spec(tmp_path, dtype):
    path = _save(tmp_path / "ints.npy", 1, dtype)
    with pytest.raises(ValueError, match=rf"ints.npy: array of dtype {np.dtype(dtype)} looks like integer "
                                         rf"pixels; pass pixels:.*ints.npy"):
        parse_input(path, DIGITS)


@pytest.mark.parametrize("value,dtype,config,problem", [
    (17, np.uint8, DIGITS, r"value 17 .* is out of range; pixels must be integers in 0\.\.16"),
    (-1, np.int16, DIGITS, r"value -1 .* is out of range"),
    (2.5, np.float32, DIGITS, r"value 2.5 .* is not an integer"),
    (np.nan, np.float32, DIGITS, r"value nan .* is not an integer"),
    (256, np.int32, CIFAR, r"value 256 .* is out of range; pixels must be integers in 0\.\.255"),
    (2, np.uint8, DVS, r"value 2 .* is out of range; events must be 0 or 1"),
])
def test_bad_pixels_are_refused(tmp_path, value, dtype, config, problem):
    shape = (1, *((config.T,) if config.family == "dvs" else ()), config.in_channels, config.img_size,
             config.img_size)
    path = _save(tmp_path / "px.npy", value, dtype, shape=shape, at=(0,) * len(shape))
    with pytest.raises(ValueError, match=rf"^{path}: {problem}") as info:
        parse_input(f"pixels:{path}", config)
    assert "at index [" + ", ".join(["0"] * len(shape)) + "] (flat 0)" in str(info.value)


@pytest.mark.parametrize("spec", ["digits:0", "random:0", "random:0:3"])
def test_zero_inputs_are_refused(spec):
    with pytest.raises(ValueError, match=rf"--input '{spec}': N must be a positive integer, not '0'"):
        parse_input(spec, DIGITS)


@pytest.mark.parametrize("prefix", ["", "pixels:"])
def test_empty_npy_is_refused(tmp_path, prefix):
    path = tmp_path / "empty.npy"
    np.save(path, np.zeros((0, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"empty.npy: the array holds no inputs \(shape \[0, 1, 8, 8\]\); "
                                         r"N must be at least 1"):
        parse_input(f"{prefix}{path}", DIGITS)


def test_unreadable_npy_is_one_line(tmp_path):
    path = tmp_path / "junk.npy"
    path.write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match=r"^.*junk.npy: not a readable .npy array \(\w+\)$"):
        parse_input(str(path), DIGITS)
    with pytest.raises(FileNotFoundError, match="gone.npy: input file does not exist"):
        parse_input(f"pixels:{tmp_path / 'gone.npy'}", DIGITS)


@pytest.mark.parametrize("spec,message", [
    ("digits:0", "N must be a positive integer"),
    ("digits:361", "has 360 images"),
    ("random:x", "N must be a positive integer"),
    ("random:2:s", "SEED must be an integer"),
    ("cifar:3", "expected digits:N, random:N"),
    ("pixels:x.txt", "expected digits:N, random:N.*pixels:FILE.npy"),
    ("missing.npy", "missing.npy: input file does not exist"),
])
def test_bad_input_specs(spec, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        parse_input(spec, DIGITS)


def test_digits_need_the_digits_shape():
    with pytest.raises(ValueError, match="digits are 1x8x8 images"):
        parse_input("digits:3", make_config("cifar10-4-384"))
    # the right shape, but pixels 0..16 (x up to 1.0) do not fit the 0..255 (x up to 255/256) encoding
    grey = make_config("cifar10-4-384", depth=1, dim=32, heads=4, img_size=8, in_channels=1)
    with pytest.raises(ValueError, match=r"^--input 'digits:3': digits pixels 0..16 do not fit the model's input "
                                         r"encoding \(pixels 0..255 times 2\*\*-8, a cifar10 model; use --model "
                                         r"digits-tiny\)$"):
        parse_input("digits:3", grey)


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
