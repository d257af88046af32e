"""Data sets and input specifications.

* **digits** (the embedded default): scikit-learn's 8×8 handwritten digits, shipped inside the
  package, no download. Fixed split: ``train_test_split(test_size=0.2, random_state=0,
  stratify=labels)`` → 1437 training and 360 test images. Pixels are integers 0..16; the float
  models see ``pixels / 16``.
* **cifar10 / cifar100**: the standard python-pickle batches (``data_batch_1..5``/``test_batch`` or
  ``train``/``test``) in a folder given by the user; never downloaded. Normalised with the official
  mean/std so official checkpoints evaluate as published.
* Input specs for the command line: ``digits:N`` (first N test images), ``random:N[:SEED]``
  (uniform images, or binary event frames for the dvs family) or a path to a ``.npy`` array.
"""

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["DIGITS_PIXEL_MAX", "DIGITS_TEST_SIZE", "Batch", "digits_split", "load_cifar",
           "parse_input", "training_data"]

DIGITS_PIXEL_MAX = 16
DIGITS_TEST_SIZE = 360
_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass
class Batch:
    """Model inputs ``x`` (float), labels ``y`` (int64, or None when unknown) and where they came from."""

    x: torch.Tensor
    y: torch.Tensor | None
    source: str

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
    return Batch(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y).long(), f"digits:{split}")


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


def parse_input(spec, config):
    """The ``Batch`` an input spec denotes, checked against the model's input shape."""
    shape = _input_shape(config)
    kind, _, rest = spec.partition(":")
    if kind == "digits" and rest:
        if shape != (1, 8, 8):
            raise ValueError(f"--input {spec!r}: digits are 1x8x8 images, the model expects "
                             f"{'x'.join(map(str, shape))} (use --model digits-tiny)")
        n = _count(rest, spec)
        if n > DIGITS_TEST_SIZE:
            raise ValueError(f"--input {spec!r}: the digits test split has {DIGITS_TEST_SIZE} images")
        test = digits_split("test")
        return Batch(test.x[:n], test.y[:n], f"digits:{n}")
    if kind == "random" and rest:
        count, _, seed = rest.partition(":")
        n = _count(count, spec)
        try:
            generator = torch.Generator().manual_seed(int(seed or 0))
        except ValueError:
            raise ValueError(f"--input {spec!r}: SEED must be an integer, not {seed!r}") from None
        x = torch.rand((n, *shape), generator=generator)
        if config.family == "dvs":
            x = (x < 0.1).float()  # sparse binary event frames
        return Batch(x, None, spec)
    path = Path(spec)
    if path.suffix != ".npy":
        raise ValueError(f"--input {spec!r}: expected digits:N, random:N[:SEED] or a .npy file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: input file does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"{path}: not a readable .npy array ({e})") from None
    if array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != shape:
        raise ValueError(f"{path}: array shape must be [N, {', '.join(map(str, shape))}], "
                         f"not {list(array.shape)}")
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{path}: array dtype must be numeric, not {array.dtype}")
    return Batch(torch.from_numpy(array.astype(np.float32)), None, str(path))
