# amaranth: UnusedElaboratable=no
"""The control slave decodes addresses of any :class:`AddressLayout` (no slot field at all included), and
its AXI signatures bind to cocotbext-axi's models, whose lists of required and optional signals decide."""

import random

import pytest
from amaranth import Cat, Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.firmware.driver import DriverError, PortsBus
from spikeforge.hw.bus import axi4_lite_signature
from spikeforge.hw.control_slave import ControlSlave
from spikeforge.interface.regmap import AddressLayout
from spikeforge.sim.amaranth_runner import run_amaranth


class _Words(wiring.Component):
    """A :class:`ControlSlave` in front of one memory of ``word_bits`` words per window; writes to the last
    window are refused."""

    def __init__(self, word_bits, layout):
        self.word_bits, self.layout = word_bits, layout
        super().__init__({"ctrl": In(axi4_lite_signature(layout.address_bits)), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.slave = slave = ControlSlave(self.word_bits, self.layout)
        wiring.connect(m, wiring.flipped(self.ctrl), slave.bus)
        depth = 1 << (self.layout.window_bits + self.layout.offset_bits)
        m.submodules.words = words = memory.Memory(shape=self.word_bits, depth=depth, init=[])
        write, read = words.write_port(), words.read_port()
        where = Cat(slave.offset, slave.window)
        m.d.comb += [slave.reject.eq(slave.window == (1 << self.layout.window_bits) - 1),
                     write.en.eq(slave.we), write.addr.eq(where), write.data.eq(slave.wdata),
                     read.addr.eq(where), slave.rdata.eq(read.data)]
        return m


def _address(layout, window, offset, slot):
    return window << layout.shift("window") | slot << layout.shift("slot") | offset << layout.shift("offset")


@pytest.mark.parametrize("word_bits, layout", [(32, AddressLayout(window_bits=1, slot_bits=0, offset_bits=2)),
                                               (100, AddressLayout(window_bits=2, slot_bits=2, offset_bits=3))])
def test_words_written_slot_by_slot_read_back(word_bits, layout):
    rng = random.Random(word_bits)
    slots = -(-word_bits // 32)
    words = {(window, offset): rng.getrandbits(word_bits) for window in range((1 << layout.window_bits) - 1)
             for offset in range(1 << layout.offset_bits)}

    async def testbench(ports):
        bus = PortsBus(ports)
        await bus.write_all([(_address(layout, window, offset, slot), word >> 32 * slot & 0xFFFFFFFF)
                             for (window, offset), word in words.items() for slot in range(slots)])
        found = {}
        for window, offset in words:
            found[window, offset] = 0
            for slot in range(slots):
                found[window, offset] |= await bus.read(_address(layout, window, offset, slot)) << 32 * slot
        refused = _address(layout, (1 << layout.window_bits) - 1, 1, 0)
        with pytest.raises(DriverError, match=f"refused the access to {refused:#010x} \\(BRESP 2\\)"):
            await bus.write(refused, 1)
        return found

    assert run_amaranth(_Words(word_bits, layout), testbench) == words


def test_a_word_wider_than_its_slots_is_refused():
    with pytest.raises(ValueError, match=r"word_bits must be in 1..64 \(1 slot bits\), not 65"):
        ControlSlave(65, AddressLayout(window_bits=1, slot_bits=1, offset_bits=2))
    with pytest.raises(TypeError, match="layout must be an AddressLayout"):
        ControlSlave(32, (1, 0, 2))


def _names(signature):
    return set(signature.members)


def _channels(*buses):
    return [(set(bus._signals), set(bus._optional_signals)) for bus in buses]


def test_the_control_slave_binds_to_cocotbext_axi_lite():
    """cocotbext-axi's AxiLiteMaster finds every signal it requires; AWPROT, ARPROT and WSTRB, which the
    slave leaves out, are optional there."""
    from cocotbext.axi.axil_channels import AxiLiteARBus, AxiLiteAWBus, AxiLiteBBus, AxiLiteRBus, AxiLiteWBus

    names = _names(axi4_lite_signature(20))
    channels = _channels(AxiLiteAWBus, AxiLiteWBus, AxiLiteBBus, AxiLiteARBus, AxiLiteRBus)
    assert all(required <= names for required, _ in channels)
    assert names == set().union(*(required | (optional & names) for required, optional in channels))
    assert {"awprot", "arprot", "wstrb"} <= set().union(*(optional for _, optional in channels)) - names


@pytest.mark.parametrize("make, message", [
    (lambda: axi4_lite_signature(0), "addr_bits must be an integer in 1..64, not 0"),
])
def test_signature_arguments_are_checked(make, message):
    with pytest.raises(ValueError, match=message):
        make()
