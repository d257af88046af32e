"""The C header and the docs tables agree with the register map and descriptor definitions."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spikeforge.interface import regmap
from spikeforge.firmware.cheader import HEADER_NAME, c_header
from spikeforge.interface.descriptor import DESCRIPTOR_BITS, DESCRIPTOR_LAYOUT, FIELDS, OPCODES
from spikeforge.firmware.docs import BEGIN_MARKER, END_MARKER, firmware_tables_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "firmware.md"


def expected_macros():
    """Every macro the header must define, with its value, computed from the Python tables."""
    macros = {"OFFSET_BITS": regmap.OFFSET_BITS, "SLOT_BITS": regmap.SLOT_BITS, "VERSION": regmap.VERSION,
              "DESC_BITS": DESCRIPTOR_BITS, "BUS_DATA_BITS": 32, "ADDRESS_BITS": 32,
              "OFFSET_SHIFT": regmap.SLOT_BITS + 2, "SLOT_SHIFT": 2}
    for w in regmap.WINDOWS:
        macros[f"WINDOW_{w.name}"] = w.index
        macros[f"{w.name}_BASE"] = w.index << (regmap.OFFSET_BITS + regmap.SLOT_BITS + 2)
    for r in regmap.REGISTERS:
        macros[f"REG_{r.name}"] = (regmap.window("CSR").index << regmap.OFFSET_BITS | r.offset) << (regmap.SLOT_BITS + 2)
    macros.update({f"STATUS_{name}_BIT": bit for name, bit in regmap.STATUS_BITS.items()})
    macros.update({f"CTRL_{name}_BIT": bit for name, bit in regmap.CTRL_BITS.items()})
    macros.update({f"OVERFLOW_LOG_{name}_BIT": bit for name, bit in regmap.OVERFLOW_LOG_BITS.items()})
    macros.update({f"OP_{name}": code for name, code in OPCODES.items()})
    for f in FIELDS:
        macros[f"DESC_{f.name.upper()}_LSB"] = DESCRIPTOR_LAYOUT[f.name].offset
        macros[f"DESC_{f.name.upper()}_BITS"] = f.bits
    return macros


def test_header_compiles_and_matches_the_tables(tmp_path):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not on PATH: cannot compile the generated C header")
    (tmp_path / HEADER_NAME).write_text(c_header())
    asserts = [f'_Static_assert(SPIKEFORGE_{name} == {value}ull, "SPIKEFORGE_{name}");'
               for name, value in expected_macros().items()]
    source = tmp_path / "check.c"
    # Included twice: the guard must make the second inclusion a no-op.
    source.write_text(f'#include "{HEADER_NAME}"\n#include "{HEADER_NAME}"\n' + "\n".join(asserts) + "\n")
    proc = subprocess.run([gcc, "-std=c11", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", str(source)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_header_is_deterministic_and_complete():
    text = c_header()
    for seed in ("1", "2"):   # another process, another hash seed: no ordering left to chance
        proc = subprocess.run([sys.executable, "-c", "from spikeforge.firmware.cheader import c_header; "
                               "print(c_header(), end='')"], capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed})
        assert proc.returncode == 0 and proc.stdout == text, proc.stderr
    defined = {line.split()[1] for line in text.splitlines() if line.startswith("#define SPIKEFORGE_")}
    assert {f"SPIKEFORGE_{name}" for name in expected_macros()} <= defined


def test_docs_tables_are_current():
    text = DOC.read_text()
    begin, end = text.index(BEGIN_MARKER) + len(BEGIN_MARKER), text.index(END_MARKER)
    assert text[begin:end].strip() == firmware_tables_markdown().strip(), \
        "docs/firmware.md is stale: paste spikeforge.firmware.docs.firmware_tables_markdown() between its markers"
