"""The host interface's register map and memory windows: defined here once.

The hardware (``hw/accelerator.py``), the Python driver (``firmware/driver.py``), the C header
(:func:`spikeforge.firmware.cheader.c_header`) and the documentation table (``docs/firmware.md``)
are all derived from these tables.

The host bus is word-addressed: an address is ``{window, offset}`` with :data:`OFFSET_BITS` bits of
offset, so every window starts at ``window << OFFSET_BITS``. A window's word width depends on the
build parameters (a weight row is ``n_pe`` weights); the bus data width is the widest of them.
Writes take effect at the clock edge; read data appear one cycle after the address.
"""

from typing import NamedTuple

__all__ = ["OFFSET_BITS", "WINDOW_BITS", "VERSION", "Register", "Window", "REGISTERS", "WINDOWS",
           "STATUS_BITS", "CTRL_BITS", "IDENTITY", "register", "window", "address", "identity_values"]

#: Offset bits of one window (each window spans 2**OFFSET_BITS words).
OFFSET_BITS = 20
#: Bits selecting the window.
WINDOW_BITS = 4
#: Hardware interface version, readable in ``VERSION`` (major << 8 | minor).
VERSION = 0x0100


#: Identification registers: which build parameters each packs, ``(parameter, bit offset)``.
#: The driver compares them with a program image's parameters before loading it.
IDENTITY = {
    "N_PE": (("n_pe", 0),),
    "WIDTHS": (("weight_bits", 0), ("acc_bits", 8), ("membrane_bits", 16)),
    "SHAPE": (("max_T", 0), ("max_h", 8), ("max_w", 16)),
}


def _identity_doc(name):
    return " | ".join(f"{param} << {shift}" if shift else param for param, shift in IDENTITY[name])


class Register(NamedTuple):
    name: str
    offset: int
    access: str      # "r", "w" or "rw"
    doc: str


class Window(NamedTuple):
    name: str
    index: int
    access: str
    doc: str


REGISTERS = (
    Register("CTRL", 0, "w", "bit START: run the program from START_PC until STOP_PC or an END descriptor"),
    Register("STATUS", 1, "r", "bits BUSY, DONE (held until the next start), ERROR, OVERFLOW"),
    Register("START_PC", 2, "rw", "first descriptor to execute"),
    Register("STOP_PC", 3, "rw", "stop before this descriptor (breakpoint; 0 = run to END)"),
    Register("PC", 4, "r", "descriptor being executed, or where the last run stopped"),
    Register("CYCLES", 5, "r", "clock cycles of the last run"),
    Register("ERROR_PC", 6, "r", "descriptor that raised ERROR (unknown opcode)"),
    Register("OVERFLOW_PC", 7, "r", "first descriptor whose result exceeded its declared width"),
    Register("VERSION", 8, "r", "interface version, major << 8 | minor"),
    Register("N_PE", 9, "r", "lanes of the accumulator array"),
    Register("WIDTHS", 10, "r", _identity_doc("WIDTHS")),
    Register("SHAPE", 11, "r", _identity_doc("SHAPE")),
)

STATUS_BITS = {"BUSY": 0, "DONE": 1, "ERROR": 2, "OVERFLOW": 3}
CTRL_BITS = {"START": 0}

WINDOWS = (
    Window("CSR", 0, "rw", "the registers above, one per word"),
    Window("PROGRAM", 1, "rw", "layer descriptors (docs/firmware.md), one per word"),
    Window("WEIGHTS", 2, "rw", "weight rows: n_pe signed weights of weight_bits, lane 0 lowest"),
    Window("BIAS", 3, "rw", "bias rows: n_pe signed values of acc_bits"),
    Window("THRESHOLD", 4, "rw", "threshold rows: n_pe signed values of membrane_bits"),
    Window("SPIKES", 5, "rw", "spike bitmaps: word {group, t, y} holds n_pe rows of max_w bits "
                              "(channel group·n_pe + lane, bit x)"),
    Window("STREAM", 6, "r", "residual stream: word {tile, t, y, x} holds n_pe signed values of acc_bits"),
    Window("LOGITS", 7, "r", "one word: n_pe signed logits of acc_bits (class k in lane k)"),
    Window("OP_CYCLES", 8, "r", "cycles spent in each descriptor of the last run"),
)


def _named(table, name, kind):
    for entry in table:
        if entry.name == name:
            return entry
    raise KeyError(f"no {kind} {name!r}")


def register(name):
    """The :class:`Register` called ``name``."""
    return _named(REGISTERS, name, "register")


def window(name):
    """The :class:`Window` called ``name``."""
    return _named(WINDOWS, name, "window")


def address(window_name, offset=0):
    """Bus address of word ``offset`` in window ``window_name``."""
    if not 0 <= offset < 1 << OFFSET_BITS:
        raise ValueError(f"offset must lie in [0, 2**{OFFSET_BITS}), not {offset!r}")
    return window(window_name).index << OFFSET_BITS | offset


def identity_values(params):
    """Values of ``VERSION`` and the :data:`IDENTITY` registers for build parameters ``params``
    (an object with the parameters as attributes, or a dict)."""
    get = params.get if isinstance(params, dict) else lambda key: getattr(params, key)
    values = {"VERSION": VERSION}
    for name, fields in IDENTITY.items():
        values[name] = 0
        for param, shift in fields:
            values[name] |= get(param) << shift
    return values
