"""AXI4 read defaults: the accelerator's narrow read master as the full AXI4 read channels."""

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .bus import BURST_INCR, axi4_full_read_signature, axi4_read_signature

__all__ = ["Axi4ReadDefaults"]


class Axi4ReadDefaults(wiring.Component):
    """Drives the signals the accelerator's AXI4 read master leaves out (``hw/bus.py``) with AXI's
    defaults — ``ARID`` 0, ``ARSIZE`` the bus width, ``ARBURST`` INCR — and passes everything else
    through (``RID`` is dropped: the data return in order). Pure wiring, no logic: what an interconnect
    does for a master without those signals, for slaves that require them.

    Ports
    -----
    master : In(axi4_read_signature(addr_bits, data_bits))
        Connects to the accelerator's ``mem`` port.
    bus : Out(axi4_full_read_signature(addr_bits, data_bits, id_bits))
        The full read channels, to the slave.
    """

    def __init__(self, addr_bits, data_bits=32, id_bits=1):
        self.data_bits = data_bits
        super().__init__({"master": In(axi4_read_signature(addr_bits, data_bits)),
                          "bus": Out(axi4_full_read_signature(addr_bits, data_bits, id_bits))})

    def elaborate(self, platform):
        m = Module()
        master, bus = self.master, self.bus
        m.d.comb += [bus.arid.eq(0), bus.arsize.eq((self.data_bits // 8).bit_length() - 1), bus.arburst.eq(BURST_INCR),
                     bus.araddr.eq(master.araddr), bus.arlen.eq(master.arlen), bus.arvalid.eq(master.arvalid),
                     master.arready.eq(bus.arready),
                     master.rdata.eq(bus.rdata), master.rresp.eq(bus.rresp), master.rlast.eq(bus.rlast),
                     master.rvalid.eq(bus.rvalid), bus.rready.eq(master.rready)]
        return m
