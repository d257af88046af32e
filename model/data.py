"""Data sets and input specifications.

* **digits** (the embedded default): scikit-learn's 8×8 handwritten digits, shipped inside the
  package, no download. Fixed split: ``train_test_split(test_size=0.2, random_state=0,
  stratify=labels)`` → 1437 training and 360 test images. Pixels are integers 0..16; the float
  models see ``pixels / 16``.
* **cifar10 / cifar100**: the standard python-pickle batches (``data_batch_1..5``/``test_batch`` or
  ``train``/``test``) in a folder given by the user; never downloaded. Normalised with the official
  mean/std so official checkpoints evaluate as published.
* Input specs for the command line (:func:`parse_input`), each checked against the model's input
  shape and the input encoding of :mod:`spikeforge.model.encoding` (``x = pixel · 2**scale_exp``):

  - ``digits:N``: the first N digits test images (labelled; for models of the digits encoding);
  - ``random:N[:SEED]``: uniform images on the encoding grid (pixels ``round(u / 2**scale_exp)``
    clamped to ``max``, u uniform in [0, 1)), or sparse binary event frames for the dvs family;
  - ``FILE.npy``: a floating-point array ``[N, *shape]`` of float model inputs in the encoding's
    range (digits [0, 1], other images [0, 255/256], events exactly 0 or 1). Integer or bool
    arrays are refused (they look like pixels: use ``pixels:FILE.npy``), as are NaN/±inf,
    negative and too large values — the message names the file, index and value;
  - ``pixels:FILE.npy``: an array of integer pixels ``0..max`` (events 0 or 1), of an integer or
    bool dtype, or floats holding integers; the float model sees ``pixel · 2**scale_exp``.

  N must be at least 1 (``digits:0``, ``random:0`` and empty arrays are refused). Every ``Batch``
  of a spec carries both ``x`` (float model input) and ``pixels`` (the int64 encoded input that the
  golden model and the hardware take), with ``x == pixels · 2**scale_exp`` except for a plain
  ``FILE.npy``, whose ``x`` is kept as given and whose ``pixels`` are its rounding.
  The digits splits carry ``pixels`` too; the cifar batches of :func:`load_cifar` do not: their
  ``x`` is mean/std normalised, not ``pixel · 2**scale_exp``. Input specs give un-normalised images,
  so a float model trained on normalised CIFAR data sees them as the quantized pipeline does
  (pixel/256), not as in training.
"""

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .encoding import check_pixels, decode_pixels, encode_input, input_encoding

__all__ = ["DIGITS_PIXEL_MAX", "DIGITS_TEST_SIZE", "Batch", "digits_split", "load_cifar",
           "parse_input", "training_data"]

DIGITS_PIXEL_MAX = 16
DIGITS_TEST_SIZE = 360
_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass
class Batch:
    """Model inputs ``x`` (float), labels ``y`` (int64, or None when unknown), where they came from
    and ``pixels``: the integer input (int64, same shape as ``x``) of the input encoding
    (:mod:`spikeforge.model.encoding`), or None where a batch was built without one."""

    x: torch.Tensor
    y: torch.Tensor | None
    source: str
    pixels: torch.Tensor | None = None

    def __len__(self):
        return len(self.x)


def digits_split(split):
    """``Batch`` of the fixed digits ``"train"`` or ``"test"`` split, images ``[N, 1, 8, 8]`` in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32) / DIGITS_PIXEL_MAX
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, random_state=0, stratify=digits.target)
    x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
    x = torch.from_numpy(x).unsqueeze(1)
    pixels = (x * DIGITS_PIXEL_MAX).round().to(torch.int64)  # exact: the pixels are 0..16
    return Batch(x, torch.from_numpy(y).long(), f"digits:{split}", pixels)


def _unpickle(path):
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ValueError(f"{path}: not a CIFAR python-pickle batch ({e})") from None


def load_cifar(data_dir, dataset, split):
    """CIFAR-10/100 ``split`` ("train"/"test") from the python-pickle batches in ``data_dir``."""
    data_dir = Path(data_dir)
    if dataset == "cifar10":
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key = b"labels"
    elif dataset == "cifar100":
        names, label_key = [split], b"fine_labels"
    else:
        raise ValueError(f"dataset must be cifar10 or cifar100, not {dataset!r}")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: --data-dir does not exist (expected the {dataset} "
                                f"python-pickle batches: {', '.join(names)})")
    xs, ys = [], []
    for name in names:
        path = data_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing {dataset} batch file")
        batch = _unpickle(path)
        if b"data" not in batch or label_key not in batch:
            raise ValueError(f"{path}: field {label_key.decode()!r} or 'data' missing")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{path}: field 'data' must have shape [N, 3072], not {list(data.shape)}")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch[label_key], dtype=np.int64))
    x = torch.from_numpy(np.concatenate(xs)).float() / 255.0
    mean, std = torch.tensor(_CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(_CIFAR_STD).view(1, 3, 1, 1)
    return Batch((x - mean) / std, torch.from_numpy(np.concatenate(ys)), f"{dataset}:{split}")


def training_data(config, data_dir=None):
    """(train, test) batches for the data set a config is made for."""
    if config.dataset == "digits":
        return digits_split("train"), digits_split("test")
    if config.dataset in ("cifar10", "cifar100"):
        if data_dir is None:
            raise ValueError(f"--data-dir is required to train on {config.dataset} (the folder of its "
                             f"python-pickle batches; nothing is downloaded)")
        return load_cifar(data_dir, config.dataset, "train"), load_cifar(data_dir, config.dataset, "test")
    raise ValueError(f"no reader for the {config.dataset!r} data set; train on digits or cifar")


def _input_shape(config):
    frame = (config.in_channels, config.img_size, config.img_size)
    return (config.T, *frame) if config.family == "dvs" else frame


def _count(text, spec):
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"--input {spec!r}: N must be a positive integer, not {text!r}")
    return n


def _load_npy(path, spec, shape):
    """The array of an input ``.npy`` file, checked for existence, readability, shape and N ≥ 1."""
    if path.suffix != ".npy":
        raise ValueError(f"--input {spec!r}: expected digits:N, random:N[:SEED], FILE.npy or "
                         f"pixels:FILE.npy")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: input file does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises ValueError, OSError, EOFError, UnpicklingError, ...
        raise ValueError(f"{path}: not a readable .npy array ({type(e).__name__})") from None
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path}: not a .npy array")
    if array.ndim == len(shape) + 1 and array.shape[0] == 0:
        raise ValueError(f"{path}: the array holds no inputs (shape {list(array.shape)}); N must be at "
                         f"least 1")
    if array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != shape:
        raise ValueError(f"{path}: array shape must be [N, {', '.join(map(str, shape))}], "
                         f"not {list(array.shape)}")
    return array


def parse_input(spec, config):
    """The ``Batch`` (with ``x`` and ``pixels``) an input spec denotes, checked against the model's
    input shape and input encoding; every refusal is a one-line ``ValueError`` (or
    ``FileNotFoundError``) naming the spec or file (and index and value). See the module docstring."""
    shape = _input_shape(config)
    encoding = input_encoding(config.as_dict())
    kind, _, rest = spec.partition(":")
    if kind == "digits" and rest:
        n = _count(rest, spec)
        if shape != (1, 8, 8):
            raise ValueError(f"--input {spec!r}: digits are 1x8x8 images, the model expects "
                             f"{'x'.join(map(str, shape))} (use --model digits-tiny)")
        if (encoding["scale_exp"], encoding["max"]) != (-4, DIGITS_PIXEL_MAX):
            raise ValueError(f"--input {spec!r}: digits pixels 0..{DIGITS_PIXEL_MAX} do not fit the model's "
                             f"input encoding (pixels 0..{encoding['max']} times 2**{encoding['scale_exp']}, "
                             f"a {config.dataset} model; use --model digits-tiny)")
        if n > DIGITS_TEST_SIZE:
            raise ValueError(f"--input {spec!r}: the digits test split has {DIGITS_TEST_SIZE} images")
        test = digits_split("test")
        return Batch(test.x[:n], test.y[:n], f"digits:{n}", test.pixels[:n])
    if kind == "random" and rest:
        count, _, seed = rest.partition(":")
        n = _count(count, spec)
        try:
            generator = torch.Generator().manual_seed(int(seed or 0))
        except ValueError:
            raise ValueError(f"--input {spec!r}: SEED must be an integer, not {seed!r}") from None
        u = torch.rand((n, *shape), generator=generator)
        if encoding["events"]:
            pixels = (u < 0.1).to(torch.int64)  # sparse binary event frames
        else:  # on the encoding grid: the pixels that rounding u gives
            pixels = torch.round(u * 2.0 ** -encoding["scale_exp"]).clamp(0, encoding["max"]).to(torch.int64)
        return Batch(decode_pixels(pixels, encoding), None, spec, pixels)
    if kind == "pixels" and rest:
        path = Path(rest)
        array = _load_npy(path, spec, shape)
        pixels = check_pixels(array, encoding, str(path))
        return Batch(decode_pixels(pixels, encoding), None, spec, pixels)
    path = Path(spec)
    array = _load_npy(path, spec, shape)
    if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{path}: array of dtype {array.dtype} looks like integer pixels; pass "
                         f"pixels:{path} (a plain FILE.npy holds float model inputs, pixel·2**"
                         f"{encoding['scale_exp']})")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{path}: array dtype must be floating point (float model inputs), not {array.dtype}")
    pixels = encode_input(array, encoding, str(path))
    return Batch(torch.from_numpy(array.astype(np.float32)), None, str(path), pixels)
