"""The host interface's register map and memory windows: defined here once.

The hardware (``hw/accelerator.py``), the Python driver (``firmware/driver.py``), the C header
(:func:`spikeforge.firmware.cheader.c_header`) and the documentation table (``docs/firmware.md``)
are all derived from these tables.

The host reaches the accelerator through a 32-bit AXI4-Lite slave (``hw/control_slave.py``). A byte
address is ``{window, offset, slot, 00}``: :data:`WINDOW_BITS` bits of window, :data:`OFFSET_BITS` bits
of word offset in it, :data:`SLOT_BITS` bits of slot. A window's word width depends on the build
parameters (:func:`word_bits`: a weight row is ``n_pe`` weights); a word wider than 32 bits spans
:func:`slots` consecutive 32-bit slots, the lowest bits in slot 0. Writing slot ``s`` stores the
word last staged with its slot ``s`` replaced, so a host writes a wide word's slots in increasing
order and the word is complete after its last slot. Reading slot ``s`` returns those bits of the word.
"""

from typing import NamedTuple

from .bits import ceil_div
from .descriptor import DESCRIPTOR_BITS

__all__ = ["OFFSET_BITS", "WINDOW_BITS", "SLOT_BITS", "BUS_DATA_BITS", "ADDRESS_BITS", "VERSION", "Register", "Window", "REGISTERS", "WINDOWS",
           "STATUS_BITS", "CTRL_BITS", "OVERFLOW_LOG_BITS", "IDENTITY", "register", "window", "address", "identity_values",
           "word_bits", "slots", "TABLES", "TABLE_WIDTHS"]

#: Offset bits of one window (each window spans 2**OFFSET_BITS words).
OFFSET_BITS = 20
#: Bits selecting the window.
WINDOW_BITS = 4
#: Data bits of the control bus.
BUS_DATA_BITS = 32
#: Bits selecting a 32-bit slot of a wide word (words up to ``32 << SLOT_BITS`` bits).
SLOT_BITS = 6
#: Byte address bits of the control bus: ``{window, offset, slot, byte}``.
ADDRESS_BITS = WINDOW_BITS + OFFSET_BITS + SLOT_BITS + 2
#: Hardware interface version, readable in ``VERSION`` (major << 8 | minor).
VERSION = 0x0400


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
    #: Word width: bits, or the build parameters whose product it is.
    width: int | tuple


REGISTERS = (
    Register("CTRL", 0, "w", "bit START: run the program from START_PC until STOP_PC or an END descriptor; "
                             "bit CLEAR_OVERFLOW: clear OVERFLOW_LOG (and STATUS.OVERFLOW)"),
    Register("STATUS", 1, "r", "bits BUSY, DONE (held until the next start), ERROR, OVERFLOW (a bit of "
                               "OVERFLOW_LOG is set: sticky across runs until CTRL.CLEAR_OVERFLOW)"),
    Register("START_PC", 2, "rw", "first descriptor to execute"),
    Register("STOP_PC", 3, "rw", "stop before this descriptor (breakpoint; 0 = run to END)"),
    Register("PC", 4, "r", "descriptor being executed, or where the last run stopped"),
    Register("CYCLES", 5, "r", "clock cycles of the last run"),
    Register("ERROR_PC", 6, "r", "descriptor that raised ERROR (unknown opcode)"),
    Register("VERSION", 8, "r", "interface version, major << 8 | minor"),
    Register("N_PE", 9, "r", "lanes of the accumulator array"),
    Register("WIDTHS", 10, "r", _identity_doc("WIDTHS")),
    Register("SHAPE", 11, "r", _identity_doc("SHAPE")),
    Register("PROGRAM_BASE", 12, "rw", "byte address of descriptor 0 in external memory"),
    Register("WEIGHTS_BASE", 13, "rw", "byte address of weight row 0 in external memory"),
    Register("BIAS_BASE", 14, "rw", "byte address of bias row 0 in external memory"),
    Register("THRESHOLD_BASE", 15, "rw", "byte address of threshold row 0 in external memory"),
    Register("STALL_CYCLES", 16, "r", "cycles of the last run the core waited for external memory"),
)

#: The tables the accelerator reads from external memory, with their base registers.
TABLES = {"PROGRAM": "PROGRAM_BASE", "WEIGHTS": "WEIGHTS_BASE", "BIAS": "BIAS_BASE", "THRESHOLD": "THRESHOLD_BASE"}

STATUS_BITS = {"BUSY": 0, "DONE": 1, "ERROR": 2, "OVERFLOW": 3}
CTRL_BITS = {"START": 0, "CLEAR_OVERFLOW": 1}
#: Bits of an OVERFLOW_LOG word (one word per descriptor): which of its layers saw a value wider than declared.
OVERFLOW_LOG_BITS = {"RESULT": 0, "MEMBRANE": 1}

WINDOWS = (
    Window("CSR", 0, "rw", "the registers above, one per word", 32),
    Window("SPIKES", 1, "rw", "spike bitmaps: word {group, t, y} holds n_pe rows of max_w bits "
                              "(channel group·n_pe + lane, bit x)", ("n_pe", "max_w")),
    Window("STREAM", 2, "r", "residual stream: word {tile, t, y, x} holds n_pe signed values of acc_bits",
           ("n_pe", "acc_bits")),
    Window("LOGITS", 3, "r", "one word: n_pe signed logits of acc_bits (class k in lane k)", ("n_pe", "acc_bits")),
    Window("OP_CYCLES", 4, "r", "cycles spent in each descriptor of the last run (waits for memory excluded)", 32),
    Window("OVERFLOW_LOG", 5, "r", "per descriptor, sticky until CTRL.CLEAR_OVERFLOW: bit RESULT, a value of the "
                                   "descriptor's layer (check_bits, sum_bits) wider than declared; bit MEMBRANE, "
                                   "a membrane of its fused LIF wider than membrane_bits", 32),
)

#: Row widths of the tables in external memory (as :attr:`Window.width`).
TABLE_WIDTHS = {"PROGRAM": DESCRIPTOR_BITS, "WEIGHTS": ("n_pe", "weight_bits"), "BIAS": ("n_pe", "acc_bits"),
                "THRESHOLD": ("n_pe", "membrane_bits")}


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


def address(window_name, offset=0, slot=0):
    """Byte address of slot ``slot`` of word ``offset`` in window ``window_name``."""
    if not 0 <= offset < 1 << OFFSET_BITS:
        raise ValueError(f"offset must lie in [0, 2**{OFFSET_BITS}), not {offset!r}")
    if not 0 <= slot < 1 << SLOT_BITS:
        raise ValueError(f"slot must lie in [0, 2**{SLOT_BITS}), not {slot!r}")
    return ((window(window_name).index << OFFSET_BITS | offset) << SLOT_BITS | slot) << 2


def _get(params):
    return params.get if isinstance(params, dict) else lambda key: getattr(params, key)


def word_bits(window_name, params):
    """Width of one word of window (or external table, :data:`TABLE_WIDTHS`) ``window_name`` for build
    parameters ``params`` (an object with the parameters as attributes, or a dict)."""
    width = TABLE_WIDTHS[window_name] if window_name in TABLE_WIDTHS else window(window_name).width
    if isinstance(width, int):
        return width
    get, bits = _get(params), 1
    for name in width:
        bits *= get(name)
    return bits


def slots(window_name, params):
    """32-bit slots one word of window ``window_name`` spans."""
    return ceil_div(word_bits(window_name, params), BUS_DATA_BITS)


def identity_values(params):
    """Values of ``VERSION`` and the :data:`IDENTITY` registers for build parameters ``params``
    (an object with the parameters as attributes, or a dict)."""
    get = _get(params)
    values = {"VERSION": VERSION}
    for name, fields in IDENTITY.items():
        values[name] = 0
        for param, shift in fields:
            values[name] |= get(param) << shift
    return values
