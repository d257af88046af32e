"""Fuzzing of ``--input`` specs: whatever ``.npy`` file or spec a user gives, ``parse_input`` returns a
batch on the encoding's grid or refuses with a one-line ``ValueError``/``FileNotFoundError`` — never
another exception."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from spikeforge.model import make_config
from spikeforge.model.data import parse_input
from spikeforge.model.encoding import input_encoding

DIGITS = make_config("digits-tiny")
CIFAR = make_config("cifar10-4-384", depth=1, dim=32, heads=4, img_size=8)
DVS = make_config("dvs128-2-256", depth=1, dim=32, heads=4, img_size=16, T=2)
CONFIGS = {"digits": DIGITS, "cifar": CIFAR, "dvs": DVS}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Element values that sit on, near and beyond the edges of every encoding.
_EDGES = [0.0, -0.0, 1.0, 0.5, 1 / 16, 1 + 1 / 32, 1 + 1 / 33, 16.0, 17.0, 255 / 256, 255.5 / 256, 255.0, 256.0,
          -1e-9, -1.0, 1e300, -1e300, 2.0 ** 70, float("nan"), float("inf"), float("-inf"), 5e-324, 0.49, 0.51]


def _shape(config):
    encoding = input_encoding(config)
    return tuple(encoding["shape"])


@st.composite
def arrays(draw, config):
    """Arrays of every kind a ``.npy`` may hold: most of the model's shape, some of others; dtypes
    floating, integer, unsigned, bool, complex, dates, strings; values at and beyond the edges."""
    shape = _shape(config)
    n = draw(st.sampled_from([0, 1, 2, 3]))
    shape = draw(st.one_of(
        st.just((n, *shape)), st.just((n, *shape)), st.just((n, *shape)),
        st.just(shape), st.just((n, *shape[1:])), st.just((n, *shape[:-1], shape[-1] + 1)), st.just((n, 1, *shape)),
        hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4)))
    dtype = draw(st.one_of(
        hnp.floating_dtypes(), hnp.floating_dtypes(), hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(),
        hnp.boolean_dtypes(), hnp.complex_number_dtypes(), hnp.datetime64_dtypes(),
        hnp.timedelta64_dtypes(), hnp.unicode_string_dtypes(max_len=3), hnp.byte_string_dtypes(max_len=3)))
    if dtype.kind == "f":
        top = input_encoding(config)["max"] * 2.0 ** input_encoding(config)["scale_exp"]
        grid = [k * 2.0 ** input_encoding(config)["scale_exp"] for k in range(0, input_encoding(config)["max"] + 1)]
        elements = st.one_of(st.sampled_from(grid), st.sampled_from(_EDGES), st.floats(-2 * top, 2 * top),
                             st.integers(0, 300).map(float))
        fill = st.sampled_from(grid + _EDGES)
        # values that the dtype cannot hold are cast by numpy (inf for too large): as a file would hold them
        values = draw(hnp.arrays(np.float64, shape, elements=elements, fill=fill))
        with np.errstate(over="ignore", invalid="ignore"):
            return values.astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        elements = st.one_of(st.integers(0, 2), st.integers(0, 300), st.integers(int(info.min), int(info.max)))
        return draw(hnp.arrays(dtype, shape, elements=elements.filter(lambda v: info.min <= v <= info.max)))
    return draw(hnp.arrays(dtype, shape))


def _check(spec, config, path):
    """``parse_input(spec)`` returns a batch on the grid or refuses in one line naming the input."""
    try:
        batch = parse_input(spec, config)
    except (ValueError, FileNotFoundError) as e:
        message = str(e)
        assert message and "\n" not in message and "\r" not in message, repr(message)
        assert str(path) in message or spec in message, message
        return None
    encoding = input_encoding(config)
    assert len(batch) >= 1
    assert batch.pixels.dtype == torch.int64 and batch.pixels.shape == batch.x.shape
    assert tuple(batch.x.shape[1:]) == _shape(config) and batch.x.dtype == torch.float32
    assert 0 <= int(batch.pixels.min()) and int(batch.pixels.max()) <= encoding["max"]
    assert torch.isfinite(batch.x).all()
    return batch


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("inputs")


@SETTINGS
@given(data=st.data(), family=st.sampled_from(sorted(CONFIGS)), pixels=st.booleans())
def test_any_npy_is_parsed_or_refused_in_one_line(folder, data, family, pixels):
    config = CONFIGS[family]
    array = data.draw(arrays(config))
    path = folder / "input.npy"
    np.save(path, array)       # object-free: every drawn dtype saves without pickle
    spec = f"pixels:{path}" if pixels else str(path)
    batch = _check(spec, config, path)
    if batch is None:
        return
    values = array.astype(np.float64) if array.dtype.kind in "fiub" else None
    assert values is not None, f"dtype {array.dtype} accepted"
    if pixels:   # pixels are taken as given: integers in 0..max
        assert np.array_equal(batch.pixels.numpy(), values.astype(np.int64))
    else:        # float model inputs: rounded to the grid, x kept as given
        assert array.dtype.kind == "f", f"integer dtype {array.dtype} accepted as float model input"
        scale = 2.0 ** input_encoding(config)["scale_exp"]
        assert np.array_equal(batch.pixels.numpy(), np.round(values / scale).astype(np.int64))


@pytest.mark.parametrize("value", [np.timedelta64("NaT"), np.timedelta64(3, "s")])
def test_timedelta_pixels_are_refused(folder, value):
    path = folder / "timedelta.npy"
    np.save(path, np.full((1, 1, 8, 8), value, dtype="m8[s]"))
    with pytest.raises(ValueError, match="timedelta.npy"):
        parse_input(f"pixels:{path}", DIGITS)


@settings(max_examples=60, deadline=None)
@given(content=st.one_of(st.binary(max_size=300), st.just(b"\x93NUMPY"), st.just(b"")),
       keep=st.integers(0, 200), pixels=st.booleans())
def test_broken_npy_files_are_refused_in_one_line(folder, content, keep, pixels):
    path = folder / "broken.npy"
    good = folder / "good.npy"
    np.save(good, np.zeros((2, 1, 8, 8)))
    path.write_bytes(good.read_bytes()[:keep] + content)
    spec = f"pixels:{path}" if pixels else str(path)
    _check(spec, DIGITS, path)


@settings(max_examples=100, deadline=None)
@given(spec=st.one_of(
    st.builds("{}:{}".format, st.sampled_from(["digits", "random", "pixels", "digit", "DIGITS", ""]),
              st.one_of(st.integers(-5, 400).map(str), st.text(max_size=8), st.just("1:x"), st.just("2:-1"),
                        st.just("1e3"), st.just("0x10"), st.just(" 3"), st.just("3 "))),
    st.text(max_size=12), st.sampled_from(["missing.npy", "pixels:missing.npy", "x.txt", "pixels:", ".npy", "/",
                                           "digits:361", "random:1:99999999999999999999999"])),
    family=st.sampled_from(sorted(CONFIGS)))
def test_any_spec_is_parsed_or_refused_in_one_line(spec, family):
    try:
        batch = parse_input(spec, CONFIGS[family])
    except (ValueError, FileNotFoundError) as e:
        assert str(e) and "\n" not in str(e), repr(str(e))
        return
    assert len(batch) >= 1 and batch.pixels.dtype == torch.int64
    assert 0 <= int(batch.pixels.min()) and int(batch.pixels.max()) <= input_encoding(CONFIGS[family])["max"]
