"""The generated tables of ``docs/firmware.md``, from the register map and descriptor definitions.

The document embeds :func:`firmware_tables_markdown` between :data:`BEGIN_MARKER` and
:data:`END_MARKER`; a test checks that it is current.
"""

from spikeforge.interface import regmap
from spikeforge.interface.descriptor import DESCRIPTOR_BITS, DESCRIPTOR_LAYOUT, FIELDS, OPCODES
from spikeforge.interface.params import AcceleratorParams

__all__ = ["BEGIN_MARKER", "END_MARKER", "firmware_tables_markdown"]

BEGIN_MARKER = "<!-- firmware-tables:begin -->"
END_MARKER = "<!-- firmware-tables:end -->"


def _cell(text):
    # A bare "|" (as in "major << 8 | minor") would end the table cell.
    return text.replace("|", "\\|")


def _product(value):
    return str(value) if isinstance(value, int) else " × ".join(f"`{name}`" for name in value)


def firmware_tables_markdown():
    """Markdown tables of the registers, STATUS/CTRL/OVERFLOW_LOG bits, windows, opcodes and descriptor fields.

    Returns
    -------
    str
    """
    lines = ["### Registers (window `CSR`)", "",
             "| register | address | access | meaning |", "|---|---|---|---|"]
    lines += [f"| `{r.name}` | `0x{regmap.register_address(r.name):08x}` | {r.access} | {_cell(r.doc)} |"
              for r in regmap.REGISTERS]
    lines += ["", "| register | bit | name |", "|---|---|---|"]
    lines += [f"| `STATUS` | {bit} | `{name}` |" for name, bit in regmap.STATUS_BITS.items()]
    lines += [f"| `CTRL` | {bit} | `{name}` |" for name, bit in regmap.CTRL_BITS.items()]
    lines += [f"| `OVERFLOW_LOG` word | {bit} | `{name}` |" for name, bit in regmap.OVERFLOW_LOG_BITS.items()]
    example = AcceleratorParams()
    layout = regmap.address_layout(example)
    lines += ["", "### Windows", "",
              "Byte address `{window, slot, offset, 00}`, each field as wide as the build parameters need: "
              f"`window_bits` = {layout.window_bits} (the window indices), `slot_bits` for the slots of the widest "
              "word, `offset_bits` for the deepest window (its words below); window `w` starts at "
              "`w << (2 + offset_bits + slot_bits)`, slot `s` of word `o` lies at `s << (2 + offset_bits) | o << 2` "
              "in it; a word wider than 32 bits spans ⌈bits / 32⌉ slots, lowest bits in slot 0. The default "
              f"parameters (`AcceleratorParams()`) give {layout.window_bits}, {layout.slot_bits} and "
              f"{layout.offset_bits} bits: {layout.address_bits} address bits. The register `ADDRESS` "
              "reads the widths of the build.", "",
              "| window | index | access | word bits | words | holds |", "|---|---|---|---|---|---|"]
    lines += [f"| `{w.name}` | {w.index} | {w.access} | {_product(w.width)} | {_product(w.depth)} | "
              f"{_cell(w.doc)} |" for w in regmap.WINDOWS]
    lines += ["", "### Opcodes", "", "| opcode | value |", "|---|---|"]
    lines += [f"| `{name}` | {code} |" for name, code in OPCODES.items()]
    lines += ["", f"### Descriptor fields ({DESCRIPTOR_BITS} bits, first field lowest)", "",
              "| field | lsb | bits | meaning |", "|---|---|---|---|"]
    lines += [f"| `{f.name}` | {DESCRIPTOR_LAYOUT[f.name].offset} | {f.bits} | {_cell(f.doc)} |" for f in FIELDS]
    return "\n".join(lines) + "\n"
