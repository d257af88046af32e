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
    (["verilog", "--set", "hardware=ulx3s", "--out", "rtl"], "--set hardware=ulx3s: no such configuration; expected "
                                                            "bundle or one of lfe5u-85f"),
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
    result = run_cli("demo", "--checkpoint", tmp_path / "demo.pt", "--backend", "amaranth", "--images", "1",
                     "--json")
    assert result.code == 0, result.stderr
    assert "reusing trained checkpoint" in result.stderr
    payload = result.json
    assert payload["float_accuracy"] == trained["test_accuracy"]
    assert payload["golden_accuracy"] >= payload["float_accuracy"] - 0.01
    assert payload["fake_quant_identical"] is True
    hardware = payload["hardware"]
    assert hardware["bit_exact"] is True and hardware["n"] == 1 and hardware["cycles"]["mean"] > 0
    assert hardware["accuracy"] == hardware["golden_accuracy"]
    assert (tmp_path / "digits-tiny-8bit" / "manifest.json").is_file()
    assert (tmp_path / "rtl" / "spikeforge_accelerator.v").is_file()
    assert (tmp_path / "rtl" / "image" / "image.json").is_file()


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "spikeforge"
    assert script.is_file()
    proc = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "energy" in proc.stdout


def test_golden_json_and_trace_file(digits_bundle, trained_digits, tmp_path):
    import numpy as np

    trace_path = tmp_path / "trace.npz"
    result = run_cli("golden", digits_bundle, "--input", "digits:40", "--out", trace_path, "--json")
    assert result.code == 0, result.stderr
    payload = result.json
    assert payload["n"] == 40 and len(payload["predictions"]) == 40 and payload["overflow"] == []
    assert 0.9 <= payload["accuracy"] <= 1.0
    with np.load(trace_path) as trace:
        assert trace["logits"].shape == (40, 10)
        assert np.array_equal(trace["logits"].argmax(1), payload["predictions"])
        spikes = [k for k in trace.files if k.startswith("spikes/")]
        assert "spikes/block.0.attn.attn_lif" in spikes and trace["spikes/block.0.attn.q_lif"].shape[:2] == (40, 4)
        assert "stream/block.0" in trace.files
    unlabeled = run_cli("golden", digits_bundle, "--input", "random:3:1", "--json")
    assert unlabeled.code == 0 and unlabeled.json["accuracy"] is None


def test_export_seed_json_reports_activity(tmp_path):
    result = run_cli("export", "--model", "cifar10-4-384", "--set", "depth=1", "--set", "dim=32",
                     "--set", "heads=2", "--set", "img_size=8", "--set", "T=2", "--seed", "4",
                     "--no-qonnx", "--out", tmp_path / "b", "--json")
    assert result.code == 0, result.stderr
    rates = result.json["firing_rates"]
    assert len(rates) == 4 + 7 and all(0.02 <= r <= 0.5 for r in rates.values()), rates
    assert (tmp_path / "b" / "manifest.json").is_file() and not (tmp_path / "b" / "model.qonnx.onnx").exists()


def test_export_of_a_spikformer_checkpoint_is_refused(tmp_path):
    from spikeforge.model import build_model
    from spikeforge.model.train import save_checkpoint

    save_checkpoint(tmp_path / "s.pt", build_model("digits-tiny", "spikformer"), "spikformer")
    result = run_cli("export", "--model", "digits-tiny", "--arch", "spikformer", "--checkpoint", tmp_path / "s.pt",
                     "--out", tmp_path / "b")
    assert result.code == 2 and "only Spikingformer models can be quantized" in result.stderr
