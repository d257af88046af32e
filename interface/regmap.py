"""The host interface's register map and memory windows: defined here once.

The hardware (``hw/accelerator.py``), the Python driver (``firmware/driver.py``), the C header
(:func:`spikeforge.firmware.cheader.c_header`) and the documentation table (``docs/firmware.md``)
are all derived from these tables.

The host reaches the accelerator through a 32-bit Wishbone B4 pipelined slave (``hw/control_slave.py``).
Software addresses bytes: a byte address is ``{window, slot, offset, 00}``: the window, the 32-bit slot
of a word, the word's offset in the window and the byte; the bus carries the word address without the byte
field (Wishbone ``adr``, the byte address >> 2). The fields are as wide as the build parameters need
(:func:`address_layout`): the window field holds the window indices, the offset field the deepest window's
words (:func:`window_depth`), the slot field the slots of the widest word (:func:`host_word_bits`), so byte
addresses have :func:`control_address_bits` bits and the control port of the top two fewer. The registers
(window ``CSR``, index 0, one slot) therefore lie at ``offset << 2`` in every build: a host reads the
identity registers — ``ADDRESS`` among them, the field widths — before it trusts any other address.

A window's word width depends on the build parameters (:func:`word_bits`: a weight row is ``n_pe``
weights); a word wider than 32 bits spans :func:`slots` 32-bit slots, the lowest bits in slot 0.
Writing slot ``s`` stores the word last staged with its slot ``s`` replaced, so a host writes a wide
word's slots in increasing order and the word is complete after its last slot. Reading slot ``s``
returns those bits of the word.
"""

import operator
from typing import NamedTuple

from .bits import ceil_div, index_bits
from .descriptor import DESCRIPTOR_BITS

__all__ = ["BUS_DATA_BITS", "BYTE_BITS", "ADDRESS_FIELDS", "MAX_ADDRESS_BITS", "VERSION", "Register", "Window",
           "AddressLayout", "REGISTERS", "WINDOWS", "STATUS_BITS", "CTRL_BITS", "OVERFLOW_LOG_BITS", "IDENTITY",
           "register", "window", "window_depth", "host_word_bits", "address_layout", "control_address_bits",
           "address", "register_address", "identity_values", "word_bits", "slots", "TABLES", "TABLE_WIDTHS"]

#: Data bits of the control bus.
BUS_DATA_BITS = 32
#: Bits of the byte in a 32-bit slot: the lowest field of an address, always 0.
BYTE_BITS = 2
#: The fields of a control-bus byte address, lowest first (widths: :func:`address_layout`).
ADDRESS_FIELDS = ("byte", "offset", "slot", "window")
#: Most address bits of the control bus (build parameters that need more are refused).
MAX_ADDRESS_BITS = 32
#: Hardware interface version, readable in ``VERSION`` (major << 8 | minor). 5.0: address fields sized
#: by the build parameters, ``{window, slot, offset}``; register ``ADDRESS``. 5.1: register ``SPILL_BASE``,
#: ``STATUS.MEMORY_ERROR``. 5.2: ``CTRL.CLEAR_OVERFLOW`` clears ``OVERFLOW_LOG`` (block RAM) over
#: ``program_depth`` cycles, a ``START`` meanwhile waiting for it. 6.0: ``LOGITS`` lanes of ``logit_bits``
#: (``WIDTHS`` bits 24..31), a HEAD descriptor's bias in two ``BIAS`` rows (a 5.x program's head reads one).
VERSION = 0x0600


#: Identification registers: which build parameters each packs, ``(parameter, bit offset)``.
#: The driver compares them with a program image's parameters before loading it.
IDENTITY = {
    "N_PE": (("n_pe", 0),),
    "WIDTHS": (("weight_bits", 0), ("acc_bits", 8), ("membrane_bits", 16), ("logit_bits", 24)),
    "SHAPE": (("max_T", 0), ("max_h", 8), ("max_w", 16)),
    # the address fields (AddressLayout) and the external memory's byte address bits
    "ADDRESS": (("offset_bits", 0), ("slot_bits", 8), ("window_bits", 16), ("memory_address_bits", 24)),
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
    #: Words the hardware decodes: a number, or the build parameters whose product it is.
    depth: int | tuple


REGISTERS = (
    Register("CTRL", 0, "w", "bit START: run the program from START_PC until STOP_PC or an END descriptor; "
                             "bit CLEAR_OVERFLOW: clear STATUS.OVERFLOW and OVERFLOW_LOG, one word per cycle "
                             "(program_depth cycles; a START written meanwhile, or with it, begins when it is done)"),
    Register("STATUS", 1, "r", "bits BUSY, DONE (held until the next start; raised once every write to external "
                               "memory has landed), ERROR, OVERFLOW (a bit of OVERFLOW_LOG is set: sticky across "
                               "runs until CTRL.CLEAR_OVERFLOW), MEMORY_ERROR (external memory answered a request "
                               "of the run with an error: the results are not valid; held until the next start)"),
    Register("START_PC", 2, "rw", "first descriptor to execute"),
    Register("STOP_PC", 3, "rw", "stop before this descriptor (breakpoint; 0 = run to END)"),
    Register("PC", 4, "r", "descriptor being executed, or where the last run stopped"),
    Register("CYCLES", 5, "r", "clock cycles of the last run"),
    Register("ERROR_PC", 6, "r", "descriptor that raised ERROR (unknown opcode)"),
    Register("ADDRESS", 7, "r", _identity_doc("ADDRESS") + ": the address widths of this build"),
    Register("VERSION", 8, "r", "interface version, major << 8 | minor"),
    Register("N_PE", 9, "r", "lanes of the accumulator array"),
    Register("WIDTHS", 10, "r", _identity_doc("WIDTHS")),
    Register("SHAPE", 11, "r", _identity_doc("SHAPE")),
    Register("PROGRAM_BASE", 12, "rw", "byte address of descriptor 0 in external memory"),
    Register("WEIGHTS_BASE", 13, "rw", "byte address of weight row 0 in external memory"),
    Register("BIAS_BASE", 14, "rw", "byte address of bias row 0 in external memory"),
    Register("THRESHOLD_BASE", 15, "rw", "byte address of threshold row 0 in external memory"),
    Register("STALL_CYCLES", 16, "r", "cycles of the last run the core waited for external memory"),
    Register("SPILL_BASE", 17, "rw", "byte address of spill row 0 in external memory (the accelerator writes "
                                     "spilled tensors there and reads them back)"),
)

#: The tables the accelerator reads (and, SPILL, writes) in external memory, with their base registers.
TABLES = {"PROGRAM": "PROGRAM_BASE", "WEIGHTS": "WEIGHTS_BASE", "BIAS": "BIAS_BASE", "THRESHOLD": "THRESHOLD_BASE",
          "SPILL": "SPILL_BASE"}

STATUS_BITS = {"BUSY": 0, "DONE": 1, "ERROR": 2, "OVERFLOW": 3, "MEMORY_ERROR": 4}
CTRL_BITS = {"START": 0, "CLEAR_OVERFLOW": 1}
#: Bits of an OVERFLOW_LOG word (one word per descriptor): which of its layers saw a value wider than declared.
OVERFLOW_LOG_BITS = {"RESULT": 0, "MEMBRANE": 1}

WINDOWS = (
    Window("CSR", 0, "rw", "the registers above, one per word", 32, max(r.offset for r in REGISTERS) + 1),
    Window("SPIKES", 1, "rw", "spike bitmaps: word {group, t, y} holds n_pe rows of max_w bits "
                              "(channel group·n_pe + lane, bit x)", ("n_pe", "max_w"),
           ("spike_groups", "max_T", "max_h")),
    Window("STREAM", 2, "r", "residual stream: word {tile, t, y, x} holds n_pe signed values of acc_bits",
           ("n_pe", "acc_bits"), ("stream_tiles", "max_T", "max_h", "max_w")),
    Window("LOGITS", 3, "r", "one word: n_pe signed logits of logit_bits (class k in lane k)", ("n_pe", "logit_bits"),
           1),
    Window("OP_CYCLES", 4, "r", "cycles spent in each descriptor of the last run (waits for memory excluded)", 32,
           ("program_depth",)),
    Window("OVERFLOW_LOG", 5, "r", "per descriptor, sticky until CTRL.CLEAR_OVERFLOW: bit RESULT, a value of the "
                                   "descriptor's layer (check_bits, sum_bits) wider than declared; bit MEMBRANE, "
                                   "a membrane of its fused LIF wider than membrane_bits", 32, ("program_depth",)),
)

#: Row widths of the tables in external memory (as :attr:`Window.width`).
TABLE_WIDTHS = {"PROGRAM": DESCRIPTOR_BITS, "WEIGHTS": ("n_pe", "weight_bits"), "BIAS": ("n_pe", "acc_bits"),
                "THRESHOLD": ("n_pe", "membrane_bits"), "SPILL": ("n_pe", "max_w")}


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


def _get(params):
    if isinstance(params, dict):
        def get(key):
            if key not in params:
                raise KeyError(f"build parameter {key!r} missing from {sorted(params)}")
            return params[key]
        return get
    return lambda key: getattr(params, key)


def _product(value, params):
    """``value`` if an int, else the product of the build parameters it names."""
    if isinstance(value, int):
        return value
    get, product = _get(params), 1
    for name in value:
        product *= get(name)
    return product


def word_bits(window_name, params):
    """Width of one word of window (or external table, :data:`TABLE_WIDTHS`) ``window_name`` for build
    parameters ``params`` (an object with the parameters as attributes, or a dict)."""
    return _product(TABLE_WIDTHS[window_name] if window_name in TABLE_WIDTHS else window(window_name).width, params)


def window_depth(window_name, params):
    """Words of window ``window_name`` the hardware decodes for build parameters ``params``."""
    return _product(window(window_name).depth, params)


def slots(window_name, params):
    """32-bit slots one word of window ``window_name`` spans."""
    return ceil_div(word_bits(window_name, params), BUS_DATA_BITS)


def host_word_bits(params):
    """Width of the widest word behind the control bus."""
    return max(word_bits(w.name, params) for w in WINDOWS)


class AddressLayout(NamedTuple):
    """Widths of the fields of a control-bus byte address ``{window, slot, offset, byte}``."""

    window_bits: int
    slot_bits: int
    offset_bits: int

    @property
    def address_bits(self):
        """Byte address bits: every field, the byte included."""
        return self.word_address_bits + BYTE_BITS

    @property
    def word_address_bits(self):
        """Word address bits (the control bus's Wishbone ``adr``, the byte address without its byte field)."""
        return self.window_bits + self.slot_bits + self.offset_bits

    def field_bits(self):
        """``{field: bits}`` in :data:`ADDRESS_FIELDS` order (lowest first)."""
        return {"byte": BYTE_BITS, "offset": self.offset_bits, "slot": self.slot_bits, "window": self.window_bits}

    def shift(self, field):
        """Bits below ``field`` (one of :data:`ADDRESS_FIELDS`) in a byte address."""
        bits = self.field_bits()
        return sum(bits[name] for name in ADDRESS_FIELDS[:ADDRESS_FIELDS.index(field)])


def address_layout(params):
    """The :class:`AddressLayout` of build parameters ``params``: the window field holds every window
    index, the slot field the slots of the widest word (:func:`host_word_bits`), the offset field the
    deepest window (:func:`window_depth`)."""
    return AddressLayout(window_bits=index_bits(max(w.index for w in WINDOWS) + 1),
                         slot_bits=index_bits(ceil_div(host_word_bits(params), BUS_DATA_BITS)),
                         offset_bits=index_bits(max(window_depth(w.name, params) for w in WINDOWS)))


def control_address_bits(params):
    """Byte address bits of the control bus for build parameters ``params``."""
    return address_layout(params).address_bits


def address(params, window_name, offset=0, slot=0):
    """Byte address of slot ``slot`` of word ``offset`` in window ``window_name`` for build parameters
    ``params``; ``offset`` must lie in the window (:func:`window_depth`), ``slot`` in the word (:func:`slots`)."""
    depth, n_slots = window_depth(window_name, params), slots(window_name, params)
    offset, slot = operator.index(offset), operator.index(slot)
    if not 0 <= offset < depth:
        raise ValueError(f"offset in window {window_name} must lie in [0, {depth}), not {offset!r}")
    if not 0 <= slot < n_slots:
        raise ValueError(f"slot of a {window_name} word must lie in [0, {n_slots}), not {slot!r}")
    layout = address_layout(params)
    return (window(window_name).index << layout.shift("window") | slot << layout.shift("slot")
            | offset << layout.shift("offset"))


def register_address(name):
    """Byte address of register ``name``: the same in every build (window ``CSR`` has index 0 and words of
    one slot, so only the offset field is set), so a host reads the identity registers before it knows
    the build's :class:`AddressLayout`."""
    return register(name).offset << BYTE_BITS


if window("CSR").index != 0 or window("CSR").width != BUS_DATA_BITS:
    raise AssertionError("register_address needs the CSR window at index 0 with one slot per word")


def identity_values(params):
    """Values of ``VERSION`` and the :data:`IDENTITY` registers for build parameters ``params``
    (an object with the parameters as attributes, or a dict)."""
    get, layout = _get(params), address_layout(params)._asdict()
    values = {"VERSION": VERSION}
    for name, fields in IDENTITY.items():
        values[name] = 0
        for field, shift in fields:
            values[name] |= (layout[field] if field in layout else get(field)) << shift
    return values
