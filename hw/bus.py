"""Signatures of the standard buses the accelerator speaks (AMBA AXI4-Lite), seen from the master.

A slave port is ``In(signature)``, a master port ``Out(signature)``. Members carry the AXI names,
so a flattened port reads ``<port>__awaddr`` — the names third-party bus models (cocotbext-axi)
find with the prefix ``<port>_``.
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RESP_OKAY", "RESP_SLVERR", "BURST_INCR", "axi4_lite_signature", "axi4_read_signature"]

#: AXI response codes (BRESP, RRESP).
RESP_OKAY = 0b00
RESP_SLVERR = 0b10
#: AXI burst type of incrementing bursts (ARBURST).
BURST_INCR = 0b01


def axi4_lite_signature(addr_bits, data_bits=32):
    """AXI4-Lite: write address, write data, write response, read address and read data channels."""
    if data_bits not in (32, 64):
        raise ValueError(f"AXI4-Lite data_bits must be 32 or 64, not {data_bits!r}")
    return wiring.Signature({
        "awaddr": Out(addr_bits), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_bits), "wstrb": Out(data_bits // 8), "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_bits), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_bits), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


def axi4_read_signature(addr_bits=32, data_bits=32):
    """AXI4 read address and read data channels (bursts of up to 256 beats). One ID: ``arid`` is
    always 0 and ``rid`` is ignored (the data return in order)."""
    if data_bits not in (32, 64, 128):
        raise ValueError(f"AXI4 data_bits must be 32, 64 or 128, not {data_bits!r}")
    return wiring.Signature({
        "arid": Out(1), "araddr": Out(addr_bits), "arlen": Out(8), "arsize": Out(3), "arburst": Out(2),
        "arvalid": Out(1), "arready": In(1),
        "rid": In(1), "rdata": In(data_bits), "rresp": In(2), "rlast": In(1), "rvalid": In(1), "rready": Out(1),
    })
