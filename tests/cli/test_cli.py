import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spikeforge.tests.helpers import run_cli


def test_eval_json(trained_digits):
    path, trained = trained_digits
    result = run_cli("eval", path, "--input", "digits:360", "--json")
    assert result.code == 0, result.stderr
    payload = result.json
    assert payload["n"] == 360 and payload["accuracy"] == trained["test_accuracy"]
    assert len(payload["predictions"]) == 360


def test_eval_accuracy_gate_exits_1(trained_digits):
    path, _ = trained_digits
    result = run_cli("eval", path, "--input", "digits:20", "--min-accuracy", "1.01")
    assert result.code == 1 and "check failed" in result.stderr


def test_energy_json_compares_both_architectures(tmp_path):
    result = run_cli("energy", "--model", "digits-tiny", "--input", "digits:64", "--json")
    assert result.code == 0, result.stderr
    payload = result.json
    sf, spk = payload["spikingformer"], payload["spikformer"]
    assert sf["non_spike_mults_in_blocks"] == 0
    assert spk["non_spike_mults_in_blocks"] > 0
    assert sf["energy_mj"] > 0 and spk["energy_mj"] > 0
    assert payload["energy_ratio"] == pytest.approx(sf["energy_mj"] / spk["energy_mj"])
    assert sf["source"].startswith("untrained") and "firing_rates" in sf
    assert "energy ratio" in result.stderr  # human text goes to stderr under --json


def test_energy_with_trained_checkpoint(trained_digits, tmp_path):
    path, _ = trained_digits
    plot = tmp_path / "energy.png"
    result = run_cli("energy", "--model", "digits-tiny", "--checkpoint", path, "--input", "digits:16",
                     "--plot", plot, "--json")
    assert result.code == 0, result.stderr
    assert plot.read_bytes().startswith(b"\x89PNG")
    payload = result.json
    assert payload["spikingformer"]["source"] == f"checkpoint {path}"
    assert payload["spikformer"]["source"].startswith("untrained")
    assert payload["spikingformer"]["non_spike_mults_in_blocks"] == 0


def test_energy_rejects_a_checkpoint_of_another_config(trained_digits):
    path, _ = trained_digits
    result = run_cli("energy", "--model", "digits-tiny", "--set", "dim=32", "--checkpoint", path,
                     "--input", "digits:4")
    assert result.code == 2 and "does not match" in result.stderr


@pytest.mark.parametrize("args,message", [
    (["eval", "missing.pt", "--input", "digits:3"], "missing.pt: checkpoint does not exist"),
    (["energy", "--model", "digits-tiny", "--set", "dim", "--input", "digits:3"], "--set 'dim': expected KEY=VALUE"),
    (["energy", "--model", "digits-tiny", "--set", "heads=3", "--input", "digits:3"], "dim (64) must be divisible by heads (3)"),
    (["energy", "--model", "nosuch", "--input", "digits:3"], "unknown model 'nosuch'"),
    (["energy", "--model", "digits-tiny", "--input", "digits:999"], "has 360 images"),
    (["train", "--model", "cifar10-4-384", "--out", "x.pt"], "--data-dir is required"),
])
def test_bad_input_gives_one_line_and_exit_2(args, message, tmp_path):
    result = run_cli(*args, cwd=tmp_path)
    assert result.code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_usage_errors_exit_2():
    assert run_cli("train").code == 2
    assert run_cli("frobnicate").code == 2


def test_demo_reuses_its_checkpoint(trained_digits, tmp_path):
    path, trained = trained_digits
    shutil.copy(path, tmp_path / "demo.pt")
    result = run_cli("demo", "--checkpoint", tmp_path / "demo.pt", "--json")
    assert result.code == 0, result.stderr
    assert "reusing trained checkpoint" in result.stderr
    assert result.json["float_accuracy"] == trained["test_accuracy"]


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "spikeforge"
    assert script.is_file()
    proc = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "energy" in proc.stdout
