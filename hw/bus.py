"""Signatures of the standard buses the accelerator speaks (Wishbone B4 pipelined; AMBA AXI4-Lite), seen
from the master.

A slave port is ``In(signature)``, a master port ``Out(signature)``. Members carry the names
third-party bus models find with a prefix: a flattened port reads ``<port>__awaddr`` (cocotbext-axi's
``<port>_`` prefix), ``<port>__cyc`` (cocotbext-wishbone's).

The accelerator's ports carry only the signals it uses; every pin counts on an FPGA package:

* the external memory master (:func:`wishbone_signature`) is Wishbone B4 pipelined, reads and writes on
  the same pins, with word addresses (every transfer is a whole 32-bit word, so there is no ``sel``)
  and without ``rty``, ``cti``, ``bte``, ``lock`` or tags: a slave answers every request with ``ack``
  or ``err``, in order;
* the AXI4-Lite slave (:func:`axi4_lite_signature`) has no ``AWPROT``/``ARPROT`` — it grants every
  access whatever its protection type, so an AXI4-Lite slave may leave them out (an interconnect leaves
  them unconnected) — and no ``WSTRB``: every write stores a whole 32-bit slot, AXI's default of all
  strobes set (a master's partial write would write the whole slot, as before when the slave ignored them).
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RESP_OKAY", "RESP_SLVERR", "axi4_lite_signature", "wishbone_signature"]

#: AXI response codes (BRESP, RRESP).
RESP_OKAY = 0b00
RESP_SLVERR = 0b10


def _check_addr_bits(addr_bits):
    if not isinstance(addr_bits, int) or isinstance(addr_bits, bool) or not 1 <= addr_bits <= 64:
        raise ValueError(f"addr_bits must be an integer in 1..64, not {addr_bits!r}")


def axi4_lite_signature(addr_bits, data_bits=32):
    """AXI4-Lite: write address, write data, write response, read address and read data channels,
    without ``AWPROT``, ``ARPROT`` and ``WSTRB`` (see the module's docstring)."""
    _check_addr_bits(addr_bits)
    if data_bits not in (32, 64):
        raise ValueError(f"AXI4-Lite data_bits must be 32 or 64, not {data_bits!r}")
    return wiring.Signature({
        "awaddr": Out(addr_bits), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_bits), "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_bits), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_bits), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


def wishbone_signature(addr_bits, data_bits=32):
    """Wishbone B4 pipelined, seen from the master: ``cyc`` frames a bus cycle, each request is ``stb``
    with ``adr`` (a word address: the port's granularity is its width, so there is no ``sel``), ``we`` and
    ``datwr``, taken in a cycle without ``stall``; the slave answers every request taken, in order, with
    ``ack`` (``datrd`` for a read) or ``err``. No ``rty``, ``cti``, ``bte``, tags or ``lock``.

    Members carry the names cocotbext-wishbone's models bind to (``datwr`` is the specification's
    master ``DAT_O``, ``datrd`` its ``DAT_I``), so a flattened port reads ``<port>__cyc``."""
    _check_addr_bits(addr_bits)
    if data_bits not in (8, 16, 32, 64):
        raise ValueError(f"Wishbone data_bits must be 8, 16, 32 or 64, not {data_bits!r}")
    return wiring.Signature({
        "cyc": Out(1), "stb": Out(1), "we": Out(1), "adr": Out(addr_bits), "datwr": Out(data_bits),
        "stall": In(1), "ack": In(1), "err": In(1), "datrd": In(data_bits),
    })
