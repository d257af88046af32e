"""Signatures of the standard bus the accelerator speaks (Wishbone B4 pipelined), seen from the master.

A slave port is ``In(signature)``, a master port ``Out(signature)``. Members carry the names
third-party bus models (cocotbext-wishbone) find with the prefix ``<port>_``, so a flattened port
reads ``<port>__cyc``.

The accelerator's ports carry only the signals it uses; every pin counts on an FPGA package:

* the control slave has one address, strobe and acknowledge for reads and writes, and no ``sel`` (every
  request carries a whole 32-bit slot), ``rty``, ``cti``, ``bte``, tags or ``lock``;
* the external memory master is Wishbone B4 pipelined, reads and writes on the same pins, with word
  addresses (every transfer is a whole 32-bit word, so there is no ``sel``) and without ``rty``, ``cti``,
  ``bte``, ``lock`` or tags: a slave answers every request with ``ack`` or ``err``, in order.
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["wishbone_signature"]


def _check_addr_bits(addr_bits):
    if not isinstance(addr_bits, int) or isinstance(addr_bits, bool) or not 1 <= addr_bits <= 64:
        raise ValueError(f"addr_bits must be an integer in 1..64, not {addr_bits!r}")


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
