"""The generated tables of ``docs/firmware.md``, from the register map and descriptor definitions.

The document embeds :func:`firmware_tables_markdown` between :data:`BEGIN_MARKER` and
:data:`END_MARKER`; a test checks that it is current.
"""

from spikeforge.interface import regmap
from spikeforge.interface.descriptor import DESCRIPTOR_BITS, DESCRIPTOR_LAYOUT, FIELDS, OPCODES

__all__ = ["BEGIN_MARKER", "END_MARKER", "firmware_tables_markdown"]

BEGIN_MARKER = "<!-- firmware-tables:begin -->"
END_MARKER = "<!-- firmware-tables:end -->"


def _cell(text):
    # A bare "|" (as in "major << 8 | minor") would end the table cell.
    return text.replace("|", "\\|")


def _word_bits(win):
    return str(win.width) if isinstance(win.width, int) else " × ".join(f"`{name}`" for name in win.width)


def firmware_tables_markdown():
    """Markdown tables of the registers, STATUS/CTRL/OVERFLOW_LOG bits, windows, opcodes and descriptor fields.

    Returns
    -------
    str
    """
    lines = ["### Registers (window `CSR`)", "",
             "| register | address | access | meaning |", "|---|---|---|---|"]
    lines += [f"| `{r.name}` | `0x{regmap.address('CSR', r.offset):08x}` | {r.access} | {_cell(r.doc)} |"
              for r in regmap.REGISTERS]
    lines += ["", "| register | bit | name |", "|---|---|---|"]
    lines += [f"| `STATUS` | {bit} | `{name}` |" for name, bit in regmap.STATUS_BITS.items()]
    lines += [f"| `CTRL` | {bit} | `{name}` |" for name, bit in regmap.CTRL_BITS.items()]
    lines += [f"| `OVERFLOW_LOG` word | {bit} | `{name}` |" for name, bit in regmap.OVERFLOW_LOG_BITS.items()]
    lines += ["", "### Windows", "",
              f"Byte address `{{window, offset, slot, 00}}` ({regmap.WINDOW_BITS}, {regmap.OFFSET_BITS}, "
              f"{regmap.SLOT_BITS} and 2 bits): window `w` starts at "
              f"`w << {regmap.OFFSET_BITS + regmap.SLOT_BITS + 2}`; a word wider than 32 bits spans "
              "⌈bits / 32⌉ slots, lowest bits in slot 0.", "",
              "| window | index | base | access | word bits | holds |", "|---|---|---|---|---|---|"]
    lines += [f"| `{w.name}` | {w.index} | `0x{regmap.address(w.name):08x}` | {w.access} | {_word_bits(w)} | "
              f"{_cell(w.doc)} |" for w in regmap.WINDOWS]
    lines += ["", "### Opcodes", "", "| opcode | value |", "|---|---|"]
    lines += [f"| `{name}` | {code} |" for name, code in OPCODES.items()]
    lines += ["", f"### Descriptor fields ({DESCRIPTOR_BITS} bits, first field lowest)", "",
              "| field | lsb | bits | meaning |", "|---|---|---|---|"]
    lines += [f"| `{f.name}` | {DESCRIPTOR_LAYOUT[f.name].offset} | {f.bits} | {_cell(f.doc)} |" for f in FIELDS]
    return "\n".join(lines) + "\n"
