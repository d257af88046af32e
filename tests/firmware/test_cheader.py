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
from spikeforge.interface.params import AcceleratorParams
from spikeforge.firmware.docs import BEGIN_MARKER, END_MARKER, firmware_tables_markdown
from spikeforge.tests import helpers

DOC = Path(__file__).resolve().parents[2] / "docs" / "firmware.md"
DIGITS = AcceleratorParams(**helpers.DIGITS)


def expected_macros(params):
    """Every macro the header of ``params`` must define, with its value, computed by hand from the Python tables:
    the widest word is the logits' (n_pe · logit_bits, logit_bits >= acc_bits), the deepest window the spike or
    the stream memory."""
    p = params
    slot_bits = (-(-p.n_pe * p.logit_bits // 32) - 1).bit_length()
    deepest = max(p.spike_groups * p.max_T * p.max_h, p.stream_tiles * p.max_T * p.max_h * p.max_w)
    offset_bits = (deepest - 1).bit_length()
    macros = {"WINDOW_BITS": 3, "OFFSET_BITS": offset_bits, "SLOT_BITS": slot_bits, "VERSION": regmap.VERSION,
              "DESC_BITS": DESCRIPTOR_BITS, "BUS_DATA_BITS": 32, "ADDRESS_BITS": 3 + slot_bits + offset_bits + 2,
              "OFFSET_SHIFT": 2, "SLOT_SHIFT": 2 + offset_bits, "WINDOW_SHIFT": 2 + offset_bits + slot_bits,
              "MEMORY_ADDRESS_BITS": params.memory_address_bits}
    for w in regmap.WINDOWS:
        macros[f"WINDOW_{w.name}"] = w.index
        macros[f"{w.name}_BASE"] = w.index << (2 + offset_bits + slot_bits)
    for r in regmap.REGISTERS:
        macros[f"REG_{r.name}"] = r.offset * 4
    macros["ID_ADDRESS"] = offset_bits | slot_bits << 8 | 3 << 16 | params.memory_address_bits << 24
    macros["ID_N_PE"] = params.n_pe
    macros["ID_WIDTHS"] = p.weight_bits | p.acc_bits << 8 | p.membrane_bits << 16 | p.logit_bits << 24
    macros.update({f"STATUS_{name}_BIT": bit for name, bit in regmap.STATUS_BITS.items()})
    macros.update({f"CTRL_{name}_BIT": bit for name, bit in regmap.CTRL_BITS.items()})
    macros.update({f"OVERFLOW_LOG_{name}_BIT": bit for name, bit in regmap.OVERFLOW_LOG_BITS.items()})
    macros.update({f"OP_{name}": code for name, code in OPCODES.items()})
    for f in FIELDS:
        macros[f"DESC_{f.name.upper()}_LSB"] = DESCRIPTOR_LAYOUT[f.name].offset
        macros[f"DESC_{f.name.upper()}_BITS"] = f.bits
    return macros


@pytest.mark.parametrize("params", [DIGITS, AcceleratorParams(memory_address_bits=20)], ids=["digits", "default"])
def test_header_compiles_and_matches_the_tables(params, tmp_path):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not on PATH: cannot compile the generated C header")
    (tmp_path / HEADER_NAME).write_text(c_header(params))
    asserts = [f'_Static_assert(SPIKEFORGE_{name} == {value}ull, "SPIKEFORGE_{name}");'
               for name, value in expected_macros(params).items()]
    source = tmp_path / "check.c"
    # Included twice: the guard must make the second inclusion a no-op.
    source.write_text(f'#include "{HEADER_NAME}"\n#include "{HEADER_NAME}"\n' + "\n".join(asserts) + "\n")
    proc = subprocess.run([gcc, "-std=c11", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", str(source)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_header_is_deterministic_and_complete():
    text = c_header(DIGITS)
    for seed in ("1", "2"):   # another process, another hash seed: no ordering left to chance
        proc = subprocess.run([sys.executable, "-c", "from spikeforge.firmware.cheader import c_header; "
                               "from spikeforge.tests.firmware.test_cheader import DIGITS; "
                               "print(c_header(DIGITS), end='')"], capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed})
        assert proc.returncode == 0 and proc.stdout == text, proc.stderr
    defined = {line.split()[1] for line in text.splitlines() if line.startswith("#define SPIKEFORGE_")}
    assert {f"SPIKEFORGE_{name}" for name in expected_macros(DIGITS)} <= defined
    identity = {f"SPIKEFORGE_ID_{name}" for name in regmap.identity_values(DIGITS)}
    assert identity <= defined and "SPIKEFORGE_ID_ADDRESS" in identity


def test_docs_tables_are_current():
    text = DOC.read_text()
    begin, end = text.index(BEGIN_MARKER) + len(BEGIN_MARKER), text.index(END_MARKER)
    assert text[begin:end].strip() == firmware_tables_markdown().strip(), \
        "docs/firmware.md is stale: paste spikeforge.firmware.docs.firmware_tables_markdown() between its markers"
