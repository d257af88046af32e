"""Synthesis and place-and-route (spikeforge.flow.synth) on designs small enough to take seconds: the
reported figures are the tools' own, and a design that does not fit is a failure with its reports."""

import importlib
import json

import pytest

from spikeforge.flow.synth import RESOURCES, check_part, sim_report_cycles, synthesize
from spikeforge.interface.fpga import PARTS, clock_pin, package_pins
from spikeforge.tests.flow.tiny_designs import RAM_BLOCKS, CounterAndRam, Wide, io_bits, write_design

REPORTS = {"yosys.log", "yosys_stat.json", "clock.lpf", "nextpnr.log", "nextpnr_report.json", "summary.json"}


def test_a_counter_and_a_block_ram(tmp_path):
    design = CounterAndRam()
    source = write_design(design, tmp_path / "tiny.v", "tiny")
    calls = []
    summary = synthesize(source, "tiny", tmp_path / "out", cycles=1000,
                         progress=lambda tool, seconds, line: calls.append((tool, seconds)))
    assert summary["ok"] and summary["placed"] and summary["routed"] and summary["failure"] is None
    assert summary["lut_mapper"] == "abc" and summary["warnings"] == []
    assert {path.name for path in (tmp_path / "out").iterdir()} == REPORTS
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary
    # the clock on a pin of the global clock network, as placed
    assert summary["clock_pin"] == "B11" and 'SITE "B11"' in (tmp_path / "out" / "clock.lpf").read_text()
    log = (tmp_path / "out" / "nextpnr.log").read_text()
    assert "IO 'rst' is unconstrained in LPF" in log and "IO 'clk' is unconstrained" not in log
    assert {tool for tool, _ in calls} <= {"yosys", "nextpnr"} and set(summary["seconds"]) == {"yosys", "nextpnr"}

    resources = summary["resources"]
    assert set(resources) == set(RESOURCES)
    assert resources["DP16KD"]["used"] == RAM_BLOCKS == summary["yosys_cells"]["DP16KD"]
    assert resources["FF"]["used"] >= 8 and resources["LUT4"]["used"] > 0       # the counter
    assert resources["MULT18X18D"]["used"] == 0
    assert resources["IO"]["used"] == io_bits(design)
    assert resources["IO"]["available"] == package_pins("LFE5U-85F")["CABGA381"] == 205
    for name, figures in resources.items():
        assert figures["source"] == f"nextpnr {RESOURCES[name][0]}"
        if name != "IO":
            assert figures["available"] == PARTS["LFE5U-85F"][name]
        assert figures["percent"] == pytest.approx(100 * figures["used"] / figures["available"], abs=0.01)

    # Fmax and the critical path are nextpnr's: Fmax = 1 / (the clock's critical path delay)
    report = json.loads((tmp_path / "out" / "nextpnr_report.json").read_text())
    assert summary["fmax_mhz"] == pytest.approx(min(c["achieved"] for c in report["fmax"].values()), abs=0.01)
    path = summary["critical_path"]
    assert path["from"] == path["to"] and path["from"].startswith("posedge")
    assert 1000 / path["delay_ns"] == pytest.approx(summary["fmax_mhz"], rel=0.01)
    # every endpoint's routed arrival is kept: the bench's ranking of them finds nextpnr's critical path
    logic_depth = _bench_module("logic_depth")
    worst, _, _, _ = logic_depth.routed(report)[0]
    assert worst == pytest.approx(path["delay_ns"], abs=0.01)
    assert summary["timing_met"] == (summary["fmax_mhz"] >= 50)
    assert summary["us_per_image"] == pytest.approx(1000 / summary["fmax_mhz"])
    assert summary["images_per_s"] == pytest.approx(summary["fmax_mhz"] * 1e6 / 1000)


def test_the_timing_driven_abc9_lut_mapping(tmp_path):
    design = CounterAndRam()
    summary = synthesize(write_design(design, tmp_path / "tiny.v", "tiny"), "tiny", tmp_path / "out", lut_mapper="abc9")
    log = (tmp_path / "out" / "yosys.log").read_text()
    assert summary["ok"] and summary["lut_mapper"] == "abc9" and "abc9" in log and "abc -lut 4:7" not in log
    assert summary["resources"]["DP16KD"]["used"] == RAM_BLOCKS and summary["resources"]["FF"]["used"] >= 8
    assert summary["fmax_mhz"] > 0


def test_an_internal_error_of_abc9_falls_back_to_abc(tmp_path, monkeypatch):
    """As Yosys 0.70 on the digits accelerator: the abc9 run stops on an internal assertion."""
    synth_module = importlib.import_module("spikeforge.flow.synth")     # flow.synth is the function
    real_run = synth_module._run

    def run(tool, argv, cwd, log, progress):
        if tool == "yosys" and "abc -lut" not in argv[-1]:
            (cwd / log).write_text("ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in rtlil.cc\n")
            return 1, "", 0.5
        return real_run(tool, argv, cwd, log, progress)

    monkeypatch.setattr(synth_module, "_run", run)
    summary = synthesize(write_design(CounterAndRam(), tmp_path / "tiny.v", "tiny"), "tiny", tmp_path / "out",
                         lut_mapper="abc9")
    assert summary["ok"] and summary["lut_mapper"] == "abc" and len(summary["warnings"]) == 1
    assert "the abc9 LUT mapping failed (yosys: Assert `GetSize" in summary["warnings"][0]
    assert {path.name for path in (tmp_path / "out").iterdir()} == REPORTS | {"yosys-abc9.log"}


def test_more_io_than_the_package_has_pins_is_a_failure(tmp_path):
    """nextpnr places unconstrained I/O on unbonded I/O cells too: the package's pins bound it."""
    design = Wide(120)
    summary = synthesize(write_design(design, tmp_path / "wide.v", "wide"), "wide", tmp_path / "out")
    assert summary["placed"] and summary["routed"] and not summary["ok"]
    assert summary["failing_resource"] == {"name": "IO", "used": io_bits(design), "available": 205}
    assert "205 I/O pins, the design needs 242" in summary["failure"]
    assert {path.name for path in (tmp_path / "out").iterdir()} == REPORTS


def test_a_design_nextpnr_cannot_place_keeps_its_reports(tmp_path):
    design = Wide(200)       # 402 I/O: more than the 365 I/O cells of the part
    summary = synthesize(write_design(design, tmp_path / "wide.v", "wide"), "wide", tmp_path / "out")
    assert not (summary["ok"] or summary["placed"] or summary["routed"])
    assert summary["failing_resource"] == {"name": "TRELLIS_IO", "used": 402, "available": 365}
    assert summary["failure"].startswith("LFE5U-85F has 365 TRELLIS_IO, the design needs 402")
    # (nextpnr's own words follow in parentheses: its error line, or its exit code where the placer has none)
    assert summary["failure"].endswith(")")
    assert summary["fmax_mhz"] is None and summary["us_per_image"] is None
    assert summary["resources"]["IO"]["used"] == 402 and summary["resources"]["FF"]["used"] == 200
    assert {path.name for path in (tmp_path / "out").iterdir()} == REPORTS - {"nextpnr_report.json"}


def test_yosys_errors_are_reported(tmp_path):
    source = tmp_path / "broken.v"
    source.write_text("module broken(input a, output b); assign b = ; endmodule\n")
    summary = synthesize(source, "broken", tmp_path / "out")
    assert not summary["ok"] and summary["failure"].startswith("yosys: ") and "syntax error" in summary["failure"]
    assert "nextpnr" not in summary["seconds"] and (tmp_path / "out" / "yosys.log").is_file()


@pytest.mark.parametrize("kwargs, message", [
    ({"part": "XC7A35T"}, "--part 'XC7A35T': expected one of LFE5U-25F, LFE5U-45F, LFE5U-85F"),
    ({"package": "CABGA756", "part": "LFE5U-25F"}, "--package 'CABGA756': LFE5U-25F comes in CABGA256, CABGA381"),
    ({"freq_mhz": 0}, "--freq must be a frequency in MHz above 0"),
    ({"cycles": -3}, "--cycles must be a positive number of cycles per image, not -3"),
    ({"top": "a b"}, "top 'a b': expected a Verilog identifier"),
    ({"verilog_path": "missing.v"}, "missing.v: no such Verilog file"),
    ({"lut_mapper": "vpr"}, "--lut-mapper 'vpr': expected one of abc, abc9"),
])
def test_bad_arguments_are_refused_before_any_output(tmp_path, kwargs, message):
    source = tmp_path / "top.v"
    source.write_text("module top; endmodule\n")
    arguments = {"verilog_path": source, "top": "top", "out_dir": tmp_path / "out", **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("+", r"\+")):
        synthesize(**arguments)
    assert not (tmp_path / "out").exists()


def test_every_part_has_its_nextpnr_device_and_package_pins():
    for part, capacities in PARTS.items():
        assert capacities["nextpnr"] == f"--{part[6:8]}k"
        assert package_pins(part)["CABGA381"] in (197, 203, 205)
        check_part(part, "CABGA381", 50)


def test_the_clock_goes_on_a_primary_clock_pin():
    # Lattice's CABGA381 pinout: ball B11 is PCLKT0_0, a direct input of the global clock network
    assert clock_pin("LFE5U-85F", "CABGA381") == "B11"
    assert clock_pin("LFE5U-85F", "no such package") is None


def test_cycles_from_a_sim_report(tmp_path):
    report = tmp_path / "sim.json"
    report.write_text(json.dumps({"cycles": {"mean": 33624.0, "per_image": [33624]}}))
    assert sim_report_cycles(report) == 33624.0
    for payload, message in [({"cycles": {}}, "field 'cycles.mean' must be a positive number, not None"),
                             ({"cycles": {"mean": 0}}, "not 0"), ([1, 2], "not None")]:
        report.write_text(json.dumps(payload))
        with pytest.raises(ValueError, match=message):
            sim_report_cycles(report)
    report.write_text("{")
    with pytest.raises(ValueError, match="not a JSON file"):
        sim_report_cycles(report)
    with pytest.raises(ValueError, match="cannot read it"):
        sim_report_cycles(tmp_path / "absent.json")


def _bench_module(name):
    """A script of ``bench/`` (not a package) as a module."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
