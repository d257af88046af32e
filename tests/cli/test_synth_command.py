"""``spikeforge synth``: exit codes, one-line messages, the --json object and the reports it keeps.

The tools run on tiny designs standing in for the accelerator's Verilog (seconds instead of minutes);
the command, the flow and the tools are the real ones."""

import json
from dataclasses import asdict

import pytest

from spikeforge.cli.main import main
from spikeforge.hw import netlist
from spikeforge.interface.fpga import DEFAULT_PART, PART_CONFIGURATIONS, configuration
from spikeforge.tests.flow.tiny_designs import RAM_BLOCKS, CounterAndRam, Wide
from spikeforge.tests.helpers import run_cli


@pytest.fixture
def accelerator_is(monkeypatch):
    """Make the accelerator's Verilog that of a tiny design (named as the accelerator's top)."""
    def use(component):
        text = netlist.runtime_verilog(component, netlist.TOP_NAME)
        monkeypatch.setattr(netlist, "accelerator_verilog", lambda params: text)
    return use


def test_synth_json(tmp_path, capsys, accelerator_is):
    accelerator_is(CounterAndRam())
    report = tmp_path / "sim.json"
    report.write_text(json.dumps({"cycles": {"mean": 2000.0}}))
    code = main(["synth", "--set", "n_pe=2", "--out", str(tmp_path / "out"), "--sim-report", str(report), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    payload = json.loads(captured.out)            # exactly one JSON object on stdout
    assert payload["ok"] and payload["params"]["n_pe"] == 2 and payload["part"] == "LFE5U-85F"
    assert payload["resources"]["DP16KD"] == {**payload["resources"]["DP16KD"], "used": RAM_BLOCKS,
                                              "available": 208}
    assert payload["cycles"] == 2000.0 and payload["us_per_image"] == pytest.approx(2000 / payload["fmax_mhz"])
    out = tmp_path / "out"
    assert payload["verilog"] == str(out / "spikeforge_accelerator.v") and payload["reports"] == str(out / "synth")
    assert json.loads((out / "synth" / "summary.json").read_text()).items() <= payload.items()
    assert {"params.json", "spikeforge_regs.h", "synth"} <= {path.name for path in out.iterdir()}
    assert "DP16KD" in captured.err and "Fmax" in captured.err and "µs per image" in captured.err
    assert "yosys: " not in captured.err           # no progress lines under --json


def test_synth_that_does_not_place_exits_1_with_the_reason(tmp_path, capsys, accelerator_is):
    accelerator_is(Wide(200))
    code = main(["synth", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1
    reason = captured.err.strip().splitlines()[-1]
    assert reason.startswith("spikeforge synth: check failed: LFE5U-85F has 365 TRELLIS_IO, the design needs 402")
    assert f"reports in {tmp_path / 'out' / 'synth'}" in reason
    assert {"summary.json", "nextpnr.log", "yosys.log"} <= {p.name for p in (tmp_path / "out" / "synth").iterdir()}
    assert "TRELLIS_IO" in captured.out              # the table, from Yosys and nextpnr's packing


def test_synth_min_fmax_gate(tmp_path, capsys, accelerator_is):
    accelerator_is(CounterAndRam())
    code = main(["synth", "--out", str(tmp_path / "out"), "--min-fmax", "5000", "--json"])
    captured = capsys.readouterr()
    assert code == 1 and json.loads(captured.out)["ok"]
    assert "is below --min-fmax 5000" in captured.err.strip().splitlines()[-1]


@pytest.mark.parametrize("args, message", [
    (["--part", "XC7A35T"], "--part 'XC7A35T': expected one of LFE5U-25F, LFE5U-45F, LFE5U-85F"),
    (["--package", "TQFP144"], "--package 'TQFP144': LFE5U-85F comes in CABGA381, CABGA554, CABGA756, CSFBGA285"),
    (["--freq", "0"], "--freq must be a frequency in MHz above 0 (and below 2000), not 0.0"),
    (["--cycles", "-5"], "--cycles must be a positive number of cycles per image, not -5.0"),
    (["--cycles", "5", "--sim-report", "x.json"], "give --cycles or --sim-report, not both"),
    (["--sim-report", "absent.json"], "--sim-report absent.json: cannot read it (No such file or directory)"),
    (["--min-fmax", "-1"], "--min-fmax must be a frequency in MHz above 0, not -1.0"),
    (["--set", "n_pe=12"], "n_pe must be a power of two, not 12"),
    (["--set", "hardware=lfe5u-12f"], "--set hardware=lfe5u-12f: no such configuration; expected bundle or one of "
                                      "lfe5u-85f"),
    (["--set", "hardware=lfe5u-85f", "--set", "logit_bits=49"], "logit_bits must be in acc_bits..2·acc_bits (24..48), "
                                                                "not 49"),
    (["--lut-mapper", "vpr"], "--lut-mapper 'vpr': expected one of abc, abc9"),
])
def test_synth_bad_input_exits_2_naming_the_value(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code = main(["synth", *args, "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.strip().splitlines() == [f"spikeforge synth: error: {message}"], captured.err
    assert not (tmp_path / "out").exists()


def test_synth_bad_input_from_the_shell(tmp_path):
    result = run_cli("synth", "--set", "colour=red", "--out", tmp_path / "out")
    assert result.code == 2 and result.stdout == ""
    assert result.stderr.strip().startswith("spikeforge synth: error: unknown hardware parameter 'colour'")
    assert not (tmp_path / "out").exists()


def test_synth_builds_the_configuration_of_its_part(tmp_path, capsys, accelerator_is, digits_bundle):
    """LFE5U-85F: configuration lfe5u-85f, the bundle planned onto it; a part without a configuration: the
    build is sized to the bundle, and the command says so."""
    accelerator_is(CounterAndRam())
    configured = asdict(configuration(PART_CONFIGURATIONS[DEFAULT_PART]))
    code = main(["synth", str(digits_bundle), "--out", str(tmp_path / "out"), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    payload = json.loads(captured.out)
    assert payload["hardware"] == "lfe5u-85f" and payload["params"] == configured
    out = tmp_path / "out"
    assert json.loads((out / "params.json").read_text()) == json.loads((out / "image" / "image.json").read_text())[
        "params"] == configured
    assert "the build is configuration lfe5u-85f" in captured.err
    code = main(["synth", str(digits_bundle), "--part", "LFE5U-25F", "--out", str(tmp_path / "sized"), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    payload = json.loads(captured.out)
    assert payload["hardware"] == "bundle" and payload["params"]["program_depth"] < configured["program_depth"]
    assert "the build is sized to the bundle (LFE5U-25F has no configuration)" in captured.err
