"""Strict model-side inputs on the command line: exit 2 and one line naming the file, field and value."""

import numpy as np
import pytest

from spikeforge.model import build_model
from spikeforge.model.data import digits_split
from spikeforge.model.train import save_checkpoint
from spikeforge.tests.helpers import run_cli


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Untrained digits-tiny and small dvs checkpoints (made in-process: fast)."""
    folder = tmp_path_factory.mktemp("strict")
    digits = save_checkpoint(folder / "digits.pt", build_model("digits-tiny"), "spikingformer")
    dvs = save_checkpoint(folder / "dvs.pt", build_model("dvs128-2-256", depth=1, dim=32, heads=4, img_size=16, T=2),
                          "spikingformer")
    return {"digits": digits, "dvs": dvs}


def _refused(result, *parts):
    """Exit 2 with exactly one line on stderr that contains every one of ``parts``."""
    assert result.code == 2, (result.code, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def test_eval_refuses_a_model_that_contradicts_the_checkpoint(checkpoints):
    result = run_cli("eval", checkpoints["digits"], "--model", "cifar10-4-384", "--input", "digits:3")
    _refused(result, "spikeforge eval: error:", "digits.pt", "does not match the requested model",
             "field 'depth' is 1 in the checkpoint, 4 requested")


def test_eval_refuses_an_override_that_contradicts_the_checkpoint(checkpoints):
    result = run_cli("eval", checkpoints["digits"], "--model", "digits-tiny", "--set", "dim=32",
                     "--input", "digits:3")
    _refused(result, "digits.pt", "field 'dim' is 64 in the checkpoint, 32 requested")


def test_non_finite_override_is_one_line(checkpoints):
    result = run_cli("eval", checkpoints["digits"], "--model", "digits-tiny", "--set", "mlp_ratio=inf",
                     "--input", "digits:3")
    _refused(result, "override mlp_ratio must be a finite number, not 'inf'")


def _npy(folder, name, value, dtype=np.float32, shape=(2, 1, 8, 8), at=(1, 0, 2, 3)):
    array = np.zeros(shape, dtype)
    array[at] = value
    np.save(folder / name, array)
    return folder / name


@pytest.mark.parametrize("value,dtype,shown,problem", [
    (-0.5, np.float32, "-0.5", "is negative; float inputs must lie in [0, 1]"),
    (np.inf, np.float32, "inf", "is not finite"),
    (3.0, np.float64, "3.0", "is too large; float inputs must lie in [0, 1]"),
])
def test_eval_refuses_npy_values_out_of_range(checkpoints, tmp_path, value, dtype, shown, problem):
    path = _npy(tmp_path, "bad.npy", value, dtype)
    result = run_cli("eval", checkpoints["digits"], "--input", path)
    # [1, 0, 2, 3] in [2, 1, 8, 8]: flat index 64 + 16 + 3 = 83
    _refused(result, f"{path}: value {shown} at index [1, 0, 2, 3] (flat 83) {problem}")


def test_eval_refuses_non_binary_events(checkpoints, tmp_path):
    path = _npy(tmp_path, "events.npy", 0.5, shape=(1, 2, 2, 16, 16), at=(0, 1, 1, 4, 5))
    result = run_cli("eval", checkpoints["dvs"], "--input", path)
    _refused(result, f"{path}: value 0.5 at index [0, 1, 1, 4, 5]", "not an event (0 or 1)",
             "event inputs must be exactly 0 or 1")


def test_eval_refuses_integer_pixels_without_the_pixels_spec(checkpoints, tmp_path):
    path = tmp_path / "pixels.npy"
    np.save(path, digits_split("test").pixels[:4].numpy().astype(np.uint8))
    result = run_cli("eval", checkpoints["digits"], "--input", path)
    _refused(result, f"{path}: array of dtype uint8 looks like integer pixels; pass pixels:{path}")


def test_eval_accepts_pixels_spec_for_digits(checkpoints, tmp_path):
    path = tmp_path / "pixels.npy"
    np.save(path, digits_split("test").pixels[:6].numpy().astype(np.uint8))
    with_pixels = run_cli("eval", checkpoints["digits"], "--input", f"pixels:{path}", "--json")
    assert with_pixels.code == 0, with_pixels.stderr
    digits = run_cli("eval", checkpoints["digits"], "--input", "digits:6", "--json")
    assert digits.code == 0, digits.stderr
    assert with_pixels.json["n"] == 6 and with_pixels.json["predictions"] == digits.json["predictions"]


def test_eval_refuses_out_of_range_pixels(checkpoints, tmp_path):
    path = _npy(tmp_path, "px.npy", 17, np.uint8)
    result = run_cli("eval", checkpoints["digits"], "--input", f"pixels:{path}")
    _refused(result, f"{path}: value 17 at index [1, 0, 2, 3] (flat 83) is out of range; pixels must be "
                     f"integers in 0..16")


def test_eval_refuses_an_empty_npy(checkpoints, tmp_path):
    path = tmp_path / "empty.npy"
    np.save(path, np.zeros((0, 1, 8, 8), np.float32))
    result = run_cli("eval", checkpoints["digits"], "--input", path)
    _refused(result, f"{path}: the array holds no inputs (shape [0, 1, 8, 8]); N must be at least 1")
