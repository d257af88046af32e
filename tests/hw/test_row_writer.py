# amaranth: UnusedElaboratable=no
"""RowWriter in the Amaranth simulator against the memory model, wired as the accelerator wires the SPILL
table (its reader forgets its rows at each write and starts no burst while writes are pending, the core
stalls on either's ``waiting``): rows land at their addresses, a full ring stalls the core, a read
sees every write before it, and the writes have landed when ``empty`` rises."""

import random

import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from spikeforge.firmware.driver import Driver, PortsBus
from spikeforge.firmware.image import external_image, external_shapes
from spikeforge.hw.burst_arbiter import BurstArbiter
from spikeforge.hw.row_reader import RowReader
from spikeforge.hw.row_writer import RowWriter
from spikeforge.interface.descriptor import OPCODES, pack, unpack
from spikeforge.interface.external import ROW_READ_LATENCY, external_bytes, row_stride
from spikeforge.interface.regmap import CTRL_BITS
from spikeforge.sim.amaranth_runner import run_amaranth
from spikeforge.sim.memory_model import MemoryModel
from spikeforge.ops import spill
from spikeforge.sim.network_cycles import SEQUENCER_CYCLES, run_cycles
from spikeforge.sim.system import MODEL_STORAGE, ModelMemory, System
from spikeforge.tests.hw.bench import Harness, end_image, simulate, small_params, spike_addr

ROW_BITS, TAG_BITS, ADDR_BITS, BASE, DEPTH = 70, 4, 16, 0x1000, 3
WORDS = 1 << 12
STRIDE_WORDS = row_stride(ROW_BITS) // 4


def _initial(tag):
    return random.Random(1000 + tag).getrandbits(ROW_BITS)


def _model_words():
    words = [0] * WORDS
    for tag in range(1 << TAG_BITS):
        at = BASE // 4 + tag * STRIDE_WORDS
        for k in range(STRIDE_WORDS):
            words[at + k] = _initial(tag) >> (32 * k) & 0xffffffff
    return words


def _table(latency, bytes_per_cycle):
    """A reader and a writer of one table on an arbiter and the memory model, the core's enable ``run``
    registered from their ``waiting`` (as in the accelerator)."""
    def connect(m, h):
        m.d.sync += h.run.eq(~(h.reader.waiting | h.writer.waiting))
        m.d.comb += [h.reader.stall.eq(~h.run), h.writer.stall.eq(~h.run), h.reader.base.eq(BASE),
                     h.writer.base.eq(BASE), h.reader.invalidate.eq(h.writer.accepted),
                     h.reader.active.eq(h.writer.empty_next)]
        wiring.connect(m, h.writer.burst, h.arbiter.writers[0])
        wiring.connect(m, h.reader.burst, h.arbiter.readers[0])
        wiring.connect(m, h.arbiter.bus, h.model.bus)

    reader = RowReader(ROW_BITS, DEPTH + 1, TAG_BITS, ADDR_BITS)
    writer = RowWriter(ROW_BITS, DEPTH, TAG_BITS, ADDR_BITS)
    arbiter = BurstArbiter([reader.beats], [writer.beats], ADDR_BITS)
    model = MemoryModel(WORDS, ADDR_BITS, latency, bytes_per_cycle, init=_model_words())
    harness = Harness(connect, reader=reader, writer=writer, arbiter=arbiter, model=model)
    harness.run = Signal(init=1)
    return harness


def _stored(ctx, dut, tag):
    at = BASE // 4 + tag * STRIDE_WORDS
    return sum(ctx.get(dut.model.storage[at + k]) << (32 * k) for k in range(STRIDE_WORDS)) & ((1 << ROW_BITS) - 1)


async def _core(ctx, dut, program, limit=20_000):
    """Run ``program`` as the core would: per cycle in which the core runs, ``(row to read or None, (row,
    data) to write or None)``; a stalled cycle presents nothing. Checks each read's data
    (:data:`ROW_READ_LATENCY` cycles of the core later) against every write before it or in its cycle; that ``empty`` is low from the
    cycle after a write until its row is in memory; that the reader starts no burst while a write is
    pending. Returns the cycles stalled, the cycles the ring was full next, and each row's grants to the
    reader."""
    memory = {tag: _initial(tag) for tag in range(1 << TAG_BITS)}
    pending = []                   # rows written that must be in memory once ``empty``
    awaited, wrote, stalled, full, fetched = [], False, 0, 0, []     # awaited: [core cycles to go, row, data]
    reads = [False, False]         # whether the core read in each of its last two cycles
    steps = list(program)
    for cycle in range(limit):
        if not steps and not awaited and not pending and ctx.get(dut.writer.empty):
            return stalled, full, fetched
        empty = ctx.get(dut.writer.empty)
        assert not (wrote and empty), f"empty in the cycle after a write, cycle {cycle}"
        if empty:
            assert all(_stored(ctx, dut, tag) == memory[tag] for tag in pending), f"empty before landing, {cycle}"
            pending = []
        if ctx.get(dut.arbiter.readers[0].ready):
            assert empty, f"a read burst while a write is pending, cycle {cycle}"
            fetched.append((ctx.get(dut.reader.burst.addr) - BASE) // row_stride(ROW_BITS))
        stall = not ctx.get(dut.run)
        stalled += stall
        full += ctx.get(dut.writer.waiting)
        ctx.set(dut.reader.en, 0)
        ctx.set(dut.writer.en, 0)
        wrote = False
        if not stall:
            for entry in awaited:
                entry[0] -= 1
            if awaited and awaited[0][0] == 0:
                _, row, value = awaited.pop(0)
                assert ctx.get(dut.reader.data) == value, f"row {row} at cycle {cycle}"
            if steps:
                read, write = steps.pop(0)
                assert write is None or not any(reads), "a write in the two cycles after a read: RowReader excludes it"
                reads = [reads[1], read is not None]
                if write is not None:
                    ctx.set(dut.writer.en, 1)
                    ctx.set(dut.writer.addr, write[0])
                    ctx.set(dut.writer.data, write[1])
                    memory[write[0]] = write[1]
                    pending.append(write[0])
                    wrote = True
                if read is not None:
                    ctx.set(dut.reader.en, 1)
                    ctx.set(dut.reader.addr, read)
                    awaited.append([ROW_READ_LATENCY, read, memory[read]])
        await ctx.tick()
    raise AssertionError("the table stopped serving")


@pytest.mark.parametrize("latency,bytes_per_cycle", [(1, 4), (8, 2), (20, 1)])
def test_rows_land_at_their_addresses_and_a_full_ring_stalls_the_core(latency, bytes_per_cycle):
    rng = random.Random(latency)
    writes = [(rng.randrange(1 << TAG_BITS), rng.getrandbits(ROW_BITS)) for _ in range(12)]
    dut = _table(latency, bytes_per_cycle)

    async def bench(ctx):
        stalled, full, _ = await _core(ctx, dut, [(None, write) for write in writes])
        return stalled, full, [ctx.get(dut.model.storage[i]) for i in range(WORDS)]

    stalled, full, storage = simulate(dut, bench)
    # each row's beats at base + row · stride, the last write of a row last; every other word as it was
    expected = _model_words()
    for tag, data in writes:
        for k in range(STRIDE_WORDS):
            expected[BASE // 4 + tag * STRIDE_WORDS + k] = data >> (32 * k) & 0xffffffff if k < 3 else 0
    assert storage == expected
    # 12 rows written back to back fill a ring of 3: the core stood still while it was full
    assert full > 0 and stalled > 0


def _mixed_program(rng, n):
    """Reads mostly in sequence (the prefetch runs ahead), writes near them (rows the ring may hold, the
    row served last, the row read in the same cycle), idle cycles."""
    program, tag = [], 0
    for _ in range(n):
        roll = rng.random()
        tag = (tag + 1) % (1 << TAG_BITS) if rng.random() < 0.7 else rng.randrange(1 << TAG_BITS)
        read = tag if roll < 0.75 else None
        write = None
        if rng.random() < 0.3:
            write = ((tag + rng.choice((-1, 0, 1, 2, 3))) % (1 << TAG_BITS), rng.getrandbits(ROW_BITS))
        if write is not None:
            # no write in the two cycles after a read (RowReader)
            while any(read is not None for read, _ in program[-2:]):
                program.append((None, None))
        program.append((read, write))
        program += [(None, None)] * rng.choice((0, 0, 1, 6))
    return program


@pytest.mark.parametrize("seed,latency,bytes_per_cycle", [(1, 1, 4), (2, 8, 2), (3, 4, 1)])
def test_every_read_sees_the_writes_before_it_or_in_its_cycle(seed, latency, bytes_per_cycle):
    rng = random.Random(seed)
    program = _mixed_program(rng, 150)
    dut = _table(latency, bytes_per_cycle)

    async def bench(ctx):
        return await _core(ctx, dut, program, limit=40_000)

    stalled, full, _ = simulate(dut, bench)
    assert stalled > 0


def test_a_prefetched_row_is_read_again_after_a_write_to_it():
    """Rows 1..3 are prefetched after row 0 is read; a write to row 2 makes the reader forget them, so
    rows 1 and 2 are fetched again (after the write has landed) and row 2 is the one written. So are the
    row served last and a row written in the cycle it is read."""
    new2, new3, new5 = (random.Random(tag).getrandbits(ROW_BITS) for tag in (2, 3, 5))
    program = ([(0, None)] + [(None, None)] * 60 + [(None, (2, new2)), (1, None), (2, None)]
               + [(3, None), (None, None), (None, None), (None, (3, new3)), (3, None)]
               + [(None, None), (None, None), (5, (5, new5))])
    dut = _table(8, 2)

    async def bench(ctx):
        return await _core(ctx, dut, program)

    _, _, fetched = simulate(dut, bench)
    assert fetched[:4] == [0, 1, 2, 3]                 # the prefetch ran ahead before the write
    assert fetched.count(2) == 2 and fetched.count(1) == 2 and fetched.count(3) >= 2


class _SpillingSystem(wiring.Component):
    """The simulated system, and ``spill_taken``: the engine's SPILL write port has a write taken in this
    cycle (presented while the core runs)."""

    def __init__(self, params, **memory):
        self.system = System(params, **memory)
        super().__init__({"ctrl": self.system.signature.members["ctrl"], "done": Out(1), "spill_taken": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.system = system = self.system
        engine = system.accelerator.engine
        wiring.connect(m, wiring.flipped(self.ctrl), system.ctrl)
        core_runs = Signal()
        m.d.sync += core_runs.eq(engine.run_next)
        m.d.comb += [self.done.eq(system.done), self.spill_taken.eq(engine.spill_write_en & core_runs)]
        return m


def test_done_rises_once_the_runs_writes_have_landed():
    """A run of a STORE descriptor, which writes SPILL rows in its last cycles, then END: DONE (and the
    run's end) waits until they are in external memory, the wait counts as stall cycles, and the driver
    reads the rows back from the spill region after the image."""
    params = small_params(n_pe=8, spill_rows=16, program_depth=2)
    rows = [random.Random(row).getrandbits(8 * 8) for row in range(3)]
    store = dict(op=OPCODES["STORE"], tiles=1, T=1, H=len(rows), in_base=0, weight_base=0)
    image = end_image(params, [store])
    latency = 30
    dut = _SpillingSystem(params, memory_words=1 << 14, latency=latency, bytes_per_cycle=1, init=external_image(image))

    async def testbench(ports):
        driver = Driver(PortsBus(ports), memory=ModelMemory(ports, ("system", *MODEL_STORAGE)))
        await driver.load(image)
        for y, row in enumerate(rows):
            await driver.write_words("SPIKES", spike_addr(params, 0, 0, y), [row])
        spill_base = await driver.csr("SPILL_BASE")
        await driver.set_csr("START_PC", 0)
        await driver.set_csr("STOP_PC", 0)
        await driver.set_csr("CTRL", 1 << CTRL_BITS["START"])
        written, cycle, last_write, landed = 0, 0, None, None
        await ports.settle()
        while not ports.read("done"):
            cycle += 1
            assert cycle < 1000, "no DONE"
            if ports.read("spill_taken"):
                written, last_write = written + 1, cycle
            if landed is None and written == len(rows) and (await driver.read_spill(0, len(rows))) == rows:
                landed = cycle
            await ports.tick()
        cycles, stalls = await driver.csr("CYCLES"), await driver.csr("STALL_CYCLES")
        return spill_base, written, last_write, landed, cycle, cycles, stalls, await driver.read_spill(0, len(rows))

    spill_base, written, last_write, landed, done, cycles, stalls, read_back = run_amaranth(dut, testbench)
    # the spill region follows the image's tables, on a region boundary
    assert spill_base == external_bytes(external_shapes(image)) - 16 * row_stride(8 * 8) == 4 * 4096
    # the last row was written in the run's last cycles; DONE waited for it to land, and no longer
    assert written == len(rows)
    assert landed - last_write > latency and landed < done <= landed + 3
    assert read_back == rows
    assert cycles - stalls == run_cycles([SEQUENCER_CYCLES + spill.cycles(unpack(pack(**store)))])


@pytest.mark.parametrize("make,least", [(lambda: RowWriter(ROW_BITS, 2, TAG_BITS, ADDR_BITS), 3),
                                        (lambda: RowReader(ROW_BITS, 1, TAG_BITS, ADDR_BITS), 2)])
def test_a_ring_too_small_is_refused(make, least):
    """A reader needs a row on its way while another is used; a writer room for the rows the core writes
    until its stall comes."""
    with pytest.raises(ValueError, match=f"^depth must be at least {least}, not {least - 1}$"):
        make()
