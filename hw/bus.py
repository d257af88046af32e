"""Signatures of the standard buses the accelerator speaks (Wishbone B4 pipelined; AMBA AXI4), seen
from the master.

A slave port is ``In(signature)``, a master port ``Out(signature)``. Members carry the names
third-party bus models (cocotbext-wishbone, cocotbext-axi) find with the prefix ``<port>_``, so a
flattened port reads ``<port>__cyc``, ``<port>__araddr``.

The accelerator's ports carry only the signals it uses, as AXI allows for optional signals (their
absence means AXI's default value); every pin counts on an FPGA package:

* the control slave (:func:`wishbone_signature`) has one address, strobe and acknowledge for reads
  and writes, and no ``sel`` (every request carries a whole 32-bit slot), ``rty``, ``cti``, ``bte``, tags
  or ``lock``;
* the AXI4 read master (:func:`axi4_read_signature`) has no ``ARID``/``RID`` (one ID, AXI's default 0:
  the data return in order), no ``ARSIZE`` (every beat is the full bus width, AXI's default) and no
  ``ARBURST`` (every burst is INCR, AXI's default), nor any of ``ARLOCK``, ``ARCACHE``, ``ARPROT``,
  ``ARQOS``, ``ARREGION``, ``ARUSER``.

A slave that wants the full set gets it from :class:`~spikeforge.hw.axi4_read_defaults.Axi4ReadDefaults`,
which drives the omitted signals with those defaults (:func:`axi4_full_read_signature`).
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["BURST_INCR", "axi4_read_signature", "axi4_full_read_signature", "wishbone_signature"]

#: AXI burst type of incrementing bursts (ARBURST).
BURST_INCR = 0b01


def _check_addr_bits(addr_bits):
    if not isinstance(addr_bits, int) or isinstance(addr_bits, bool) or not 1 <= addr_bits <= 64:
        raise ValueError(f"addr_bits must be an integer in 1..64, not {addr_bits!r}")


def _check_read_data_bits(data_bits):
    if data_bits not in (32, 64, 128):
        raise ValueError(f"AXI4 data_bits must be 32, 64 or 128, not {data_bits!r}")


def axi4_read_signature(addr_bits, data_bits=32):
    """AXI4 read address and read data channels of the accelerator's master: INCR bursts of up to 256
    full-width beats, one ID (no ``ARID``, ``RID``, ``ARSIZE``, ``ARBURST``: see the module's docstring)."""
    _check_addr_bits(addr_bits)
    _check_read_data_bits(data_bits)
    return wiring.Signature({
        "araddr": Out(addr_bits), "arlen": Out(8), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_bits), "rresp": In(2), "rlast": In(1), "rvalid": In(1), "rready": Out(1),
    })


def axi4_full_read_signature(addr_bits, data_bits=32, id_bits=1):
    """:func:`axi4_read_signature` with ``ARID``/``RID`` of ``id_bits``, ``ARSIZE`` and ``ARBURST``: the
    read channels as slaves that require them (cocotbext-axi's ``AxiRamRead``) expect them."""
    _check_addr_bits(addr_bits)
    _check_read_data_bits(data_bits)
    if not isinstance(id_bits, int) or not 1 <= id_bits <= 32:
        raise ValueError(f"id_bits must be an integer in 1..32, not {id_bits!r}")
    return wiring.Signature({
        "arid": Out(id_bits), "araddr": Out(addr_bits), "arlen": Out(8), "arsize": Out(3), "arburst": Out(2),
        "arvalid": Out(1), "arready": In(1),
        "rid": In(id_bits), "rdata": In(data_bits), "rresp": In(2), "rlast": In(1), "rvalid": In(1), "rready": Out(1),
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
