# amaranth: UnusedElaboratable=no
"""The control slave decodes addresses of any :class:`AddressLayout` (no slot field at all included), keeps
the Wishbone B4 pipelined protocol cycle by cycle, and the bus signatures bind to the third-party models
(cocotbext-wishbone), whose lists of required and optional signals decide."""

import random

import pytest
from amaranth import Cat, Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.firmware.driver import DriverError, PortsBus
from spikeforge.hw.bus import wishbone_signature
from spikeforge.hw.control_slave import READ_ANSWER_CYCLES, ControlSlave
from spikeforge.interface.regmap import AddressLayout
from spikeforge.sim.amaranth_runner import run_amaranth
from spikeforge.tests.hw.bench import SMALL


class _Words(wiring.Component):
    """A :class:`ControlSlave` in front of one memory of ``word_bits`` words per window; writes to the last
    window are refused."""

    def __init__(self, word_bits, layout):
        self.word_bits, self.layout = word_bits, layout
        super().__init__({"ctrl": In(wishbone_signature(layout.word_address_bits))})

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
    """Through the driver's bus, which sends the byte addresses of the register map as word addresses."""
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
        with pytest.raises(DriverError, match=f"refused the access to {refused:#010x} \\(ERR\\)"):
            await bus.write(refused, 1)
        return found

    assert run_amaranth(_Words(word_bits, layout), testbench) == words


def test_a_word_wider_than_its_slots_is_refused():
    with pytest.raises(ValueError, match=r"word_bits must be in 1..64 \(1 slot bits\), not 65"):
        ControlSlave(65, AddressLayout(window_bits=1, slot_bits=1, offset_bits=2))
    with pytest.raises(TypeError, match="layout must be an AddressLayout"):
        ControlSlave(32, (1, 0, 2))


#: Build of the protocol tests: 70-bit words (3 slots); writes to window 3 are refused.
PROTOCOL_LAYOUT, PROTOCOL_WORD_BITS, REFUSED_WINDOW = AddressLayout(window_bits=2, slot_bits=2, offset_bits=2), 70, 3


def _read(window, offset, slot):
    return ("read", window, offset, slot, 0)


def _write(window, offset, slot, value):
    return ("write", window, offset, slot, value)


def _cycles(requests, read_latency, idle=(), cycles=60):
    """Run a :class:`ControlSlave` under a pipelined master that presents ``requests`` one after another (the next
    in the cycle after one is taken), with ``cyc`` low in the cycles ``idle``, and a core whose words of
    ``(window, offset)`` read ``read_latency`` cycles after their address and which refuses writes to
    :data:`REFUSED_WINDOW`. Returns per cycle the request taken (or None), the slave's ``stall``, ``ack``,
    ``err`` and ``datrd`` and the core's write ``(window, offset, wdata)`` (or None)."""
    layout = PROTOCOL_LAYOUT

    async def testbench(ports):
        core, addresses, pending, trace = {}, [], list(requests), []
        for cycle in range(cycles):
            outputs = {name: ports.read(f"bus__{name}") for name in ("stall", "ack", "err", "datrd")}
            addresses.append((ports.read("window"), ports.read("offset")))
            await ports.write("reject", int(addresses[-1][0] == REFUSED_WINDOW))
            earlier = addresses[-1 - read_latency] if len(addresses) > read_latency else None
            await ports.write("rdata", core.get(earlier, 0))
            active = cycle not in idle
            request = pending[0] if pending and active else None
            await ports.write("bus__cyc", int(active))
            await ports.write("bus__stb", int(request is not None))
            if request is not None:
                kind, window, offset, slot, value = request
                await ports.write("bus__we", int(kind == "write"))
                await ports.write("bus__adr", _address(layout, window, offset, slot) >> 2)
                await ports.write("bus__datwr", value)
            await ports.settle()
            written = None
            if ports.read("we"):
                written = (addresses[-1][0], addresses[-1][1], ports.read("wdata"))
                core[written[:2]] = written[2]
            taken = request if request is not None and not outputs["stall"] else None
            if taken is not None:
                pending.pop(0)
            trace.append(dict(outputs, taken=taken, written=written))
            await ports.tick()
        return trace

    return run_amaranth(ControlSlave(PROTOCOL_WORD_BITS, layout, read_latency), testbench)


def _answers(trace):
    """``(cycle, "ack" or "err", datrd)`` of every answer."""
    return [(cycle, "err" if step["err"] else "ack", step["datrd"]) for cycle, step in enumerate(trace)
            if step["ack"] or step["err"]]


@pytest.mark.parametrize("read_latency", [1, 3])
def test_every_request_gets_one_answer_in_order_at_its_cycle(read_latency):
    """Back-to-back requests: each is taken in the cycle of the previous answer, ``stall`` holds the next off
    until then; a write reaches the core two cycles after it is taken, slot merged into the staged word, and
    is answered the cycle after (``err`` where the core refused it, which then saw no write); a read is
    answered ``read_latency + READ_ANSWER_CYCLES`` cycles after it is taken (its slot picked in two stages,
    then registered again), with its slot of the word."""
    requests = [_write(1, 2, 0, 0x89ABCDEF), _write(1, 2, 1, 0x01234567), _write(1, 2, 2, 0x3F), _read(1, 2, 1),
                _write(REFUSED_WINDOW, 0, 0, 5), _read(1, 2, 2), _read(1, 2, 0), _read(1, 2, 3),
                _write(2, 3, 1, 7), _read(2, 3, 0)]
    trace = _cycles(requests, read_latency)
    takes = [cycle for cycle, step in enumerate(trace) if step["taken"] is not None]
    assert [trace[cycle]["taken"] for cycle in takes] == requests
    answers = _answers(trace)
    assert len(answers) == len(requests)
    slot_mask, staged, core, writes, expected = (1 << 32) - 1, 0, {}, [], []
    for take, (kind, window, offset, slot, value) in zip(takes, requests):
        if kind == "write":
            staged = staged & ~(slot_mask << 32 * slot) | value << 32 * slot
            if window == REFUSED_WINDOW:
                expected.append((take + 3, "err"))
            else:
                core[window, offset] = staged
                writes.append((take + 2, (window, offset, staged)))
                expected.append((take + 3, "ack"))
        else:
            expected.append((take + read_latency + READ_ANSWER_CYCLES, "ack",
                             core.get((window, offset), 0) >> 32 * slot & slot_mask))
    assert [answer[:len(want)] for answer, want in zip(answers, expected)] == expected
    assert [(cycle, step["written"]) for cycle, step in enumerate(trace) if step["written"] is not None] == writes
    # the next request is taken in the cycle of the answer; stall is high exactly in between
    assert takes[1:] == [cycle for cycle, *_ in answers[:-1]]
    busy = {cycle for take, (answer, *_) in zip(takes, answers) for cycle in range(take + 1, answer)}
    assert {cycle for cycle, step in enumerate(trace) if step["stall"]} == busy


@pytest.mark.parametrize("read_latency", [1, 3])
def test_a_request_abandoned_with_cyc_is_not_answered(read_latency):
    """The master drops ``cyc`` after its first request is taken and raises it again with a second, which
    ``stall`` holds off until the first is done: only the second is answered, with its own word."""
    requests = [_write(0, 1, 0, 0x1234), _read(0, 1, 0)]
    trace = _cycles(requests, read_latency, idle={1})
    takes = [cycle for cycle, step in enumerate(trace) if step["taken"] is not None]
    assert takes == [0, 3]      # presented from cycle 2 on, stalled in cycle 2
    assert trace[2]["stall"] and trace[1]["written"] is None and trace[2]["written"] == (0, 1, 0x1234)
    assert _answers(trace) == [(3 + read_latency + READ_ANSWER_CYCLES, "ack", 0x1234)]


def test_a_start_write_is_acknowledged_with_done_low():
    """The accelerator clears DONE (the ``done`` line, STATUS.DONE) with the START write itself, before its ack:
    a host that looks at either once the write is acknowledged never sees the last run's DONE (the run of
    an END program is still on its way to external memory)."""
    from spikeforge.interface.regmap import CTRL_BITS, STATUS_BITS, register_address
    from spikeforge.sim.system import system

    async def testbench(ports):
        bus, seen = PortsBus(ports), []
        for _ in range(2):
            await bus.write(register_address("CTRL"), 1 << CTRL_BITS["START"])
            await ports.settle()
            seen += [ports.read("done"), await bus.read(register_address("STATUS"))]
            await bus.wait_done()
            seen.append(await bus.read(register_address("STATUS")))
        return seen

    busy, done = 1 << STATUS_BITS["BUSY"], 1 << STATUS_BITS["DONE"]
    assert run_amaranth(system(**SMALL), testbench) == [0, busy, done] * 2


def _names(signature):
    return set(signature.members)


def _channels(*buses):
    return [(set(bus._signals), set(bus._optional_signals)) for bus in buses]


def test_the_control_slave_binds_to_cocotbext_wishbone():
    """cocotbext-wishbone's WishboneMaster finds every signal it requires; of its optional ones the slave has
    ``err`` and ``stall`` (pipelined), not ``sel`` (the port's granularity is its width), ``rty``, ``cti``, ``bte``."""
    from cocotbext.wishbone.driver import WishboneMaster

    names = _names(wishbone_signature(17))
    required, optional = set(WishboneMaster._signals), set(WishboneMaster._optional_signals)
    assert required <= names and names - required == {"err", "stall"} <= optional
    assert optional - names == {"sel", "rty", "cti", "bte"}


@pytest.mark.parametrize("make, message", [
    (lambda: wishbone_signature(0), "addr_bits must be an integer in 1..64, not 0"),
    (lambda: wishbone_signature(17, 24), "Wishbone data_bits must be 8, 16, 32 or 64, not 24"),
])
def test_signature_arguments_are_checked(make, message):
    with pytest.raises(ValueError, match=message):
        make()
