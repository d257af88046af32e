# amaranth: UnusedElaboratable=no
"""BurstArbiter in the Amaranth simulator: requesters' bursts as Wishbone B4 pipelined requests against the
memory model (words in order to their requesters, writes landed, requests ahead of the answers, the bus
protocol kept), and answers with ``err`` (the arbiter's, and the accelerator's STATUS.MEMORY_ERROR)."""

import random

import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from spikeforge.firmware.driver import Driver, DriverError, PortsBus
from spikeforge.firmware.image import external_image
from spikeforge.hw.accelerator import Accelerator
from spikeforge.hw.burst_arbiter import BurstArbiter
from spikeforge.hw.bus import wishbone_signature
from spikeforge.interface.regmap import STATUS_BITS
from spikeforge.sim.amaranth_runner import run_amaranth
from spikeforge.sim.memory_model import MemoryModel
from spikeforge.tests.hw.bench import Harness, end_image, simulate, small_params

ADDR_BITS, WORDS = 16, 1 << 10


def _word(index):
    return random.Random(index).getrandbits(32)


def _system(read_beats, write_beats, latency=None, bytes_per_cycle=None, model=True):
    """The arbiter, its bus on the memory model (``latency``, ``bytes_per_cycle``) unless not ``model``."""
    def connect(m, h):
        if model:
            m.d.comb += [h.model.bus.cyc.eq(h.arbiter.bus.cyc), h.model.bus.stb.eq(h.arbiter.bus.stb),
                         h.model.bus.we.eq(h.arbiter.bus.we), h.model.bus.adr.eq(h.arbiter.bus.adr),
                         h.model.bus.datwr.eq(h.arbiter.bus.datwr), h.arbiter.bus.stall.eq(h.model.bus.stall),
                         h.arbiter.bus.ack.eq(h.model.bus.ack), h.arbiter.bus.datrd.eq(h.model.bus.datrd)]
    parts = {"arbiter": BurstArbiter(read_beats, write_beats, ADDR_BITS)}
    if model:
        parts["model"] = MemoryModel(WORDS, ADDR_BITS, latency, bytes_per_cycle, init=[_word(i) for i in range(WORDS)])
    return Harness(connect, **parts)


class _Requester:
    """One requester driven by the testbench: its bursts ``[(first word, data words or None for a read)]``
    one after another; records what it is answered, and each grant in ``grants`` (shared)."""

    def __init__(self, port, beats, bursts, grants):
        self.port, self.beats, self.bursts, self.grants = port, beats, list(bursts), grants
        self.answers, self.words_out = [], []       # read words received; write words taken
        self.granted = 0
        self.to_hand = [word for _, data in self.bursts for word in data or ()]   # a writer's, in order

    def present(self, ctx):
        """Before the edge: ``valid`` and ``addr`` of the next burst, a writer's next word."""
        pending = self.bursts[self.granted:]
        ctx.set(self.port.valid, bool(pending))
        if pending:
            ctx.set(self.port.addr, pending[0][0] * 4)
        if hasattr(self.port, "write_data"):
            unsent = self.to_hand[len(self.words_out):]
            ctx.set(self.port.write_data, unsent[0] if unsent else 0)

    def sample(self, ctx):
        """Before the edge, after ``present``: what the arbiter takes in this cycle."""
        if ctx.get(self.port.ready):
            first, _ = self.bursts[self.granted]
            self.grants.append((first, self.beats))
            self.granted += 1
        if hasattr(self.port, "write_taken") and ctx.get(self.port.write_taken):
            self.words_out.append(self.to_hand[len(self.words_out)])
        if hasattr(self.port, "beat_valid") and ctx.get(self.port.beat_valid):
            self.answers.append(ctx.get(self.port.beat_data))


async def _run(ctx, dut, requesters, grants, limit=3000):
    """Step the requesters until every burst is answered and ``cyc`` is low; checks the bus protocol on
    the way. Returns the word addresses requested (in order) and the bursts whose first request was taken
    while the previous burst still awaited answers."""
    bus = dut.arbiter.bus
    requested, answered, overlaps, held = [], 0, 0, None
    total = sum(len(r.bursts) * r.beats for r in requesters)
    for _ in range(limit):
        for requester in requesters:
            requester.present(ctx)
        for requester in requesters:
            requester.sample(ctx)
        # done once every word is answered and the last answer is with its requester (a cycle after the bus)
        if answered == total and not ctx.get(bus.cyc):
            return requested, overlaps
        if ctx.get(bus.stb):
            assert ctx.get(bus.cyc), "stb without cyc"
            if held is not None:
                assert (ctx.get(bus.adr), ctx.get(bus.we), ctx.get(bus.datwr)) == held, "a stalled request changed"
            held = (ctx.get(bus.adr), ctx.get(bus.we), ctx.get(bus.datwr)) if ctx.get(bus.stall) else None
            if not ctx.get(bus.stall):
                # the first word of a burst (grants in order): is the previous burst still being answered?
                starts = [sum(beats for _, beats in grants[:i]) for i in range(len(grants))]
                if len(requested) in starts[1:] and answered < len(requested):
                    overlaps += 1
                requested.append(ctx.get(bus.adr))
        answered += ctx.get(bus.ack) | ctx.get(bus.err)
        await ctx.tick()
    raise AssertionError(f"the bursts did not end: {answered} of {total} words answered")


@pytest.mark.parametrize("latency,bytes_per_cycle,seed", [(1, 4, 1), (8, 2, 2), (5, 1, 3)])
def test_bursts_reach_their_requesters_in_order_and_writes_land(latency, bytes_per_cycle, seed):
    rng = random.Random(seed)
    read_beats, write_beats = (3, 1, 5), (2, 4)
    reads = [[(rng.randrange(WORDS - 128), None) for _ in range(6)] for _ in read_beats]
    # the writers write words no reader reads (their order against the reads is the requesters' business)
    writes = [[(WORDS - 64 + 16 * w + beats * i, [rng.getrandbits(32) for _ in range(beats)]) for i in range(3)]
              for w, beats in enumerate(write_beats)]
    dut = _system(read_beats, write_beats, latency, bytes_per_cycle)

    async def bench(ctx):
        grants = []
        requesters = ([_Requester(dut.arbiter.writers[i], b, writes[i], grants) for i, b in enumerate(write_beats)]
                      + [_Requester(dut.arbiter.readers[i], b, reads[i], grants) for i, b in enumerate(read_beats)])
        requested, overlaps = await _run(ctx, dut, requesters, grants)
        return requesters, grants, requested, overlaps, [ctx.get(dut.model.storage[i]) for i in range(WORDS)]

    requesters, grants, requested, overlaps, storage = simulate(dut, bench)
    # each burst's words asked for in sequence, a burst at a time; every requester asks from the start, so
    # the grants follow the priority: the writers, then the readers, lowest index first
    assert requested == [first + k for first, beats in grants for k in range(beats)]
    assert grants == [(first, requester.beats) for requester in requesters for first, _ in requester.bursts]
    readers = requesters[len(write_beats):]
    for requester in readers:
        assert requester.answers == [_word(first + k) for first, _ in requester.bursts for k in range(requester.beats)]
    for requester in requesters[:len(write_beats)]:
        assert requester.words_out == [word for _, data in requester.bursts for word in data]
        for first, data in requester.bursts:
            assert storage[first:first + len(data)] == data
    # requests run ahead of the answers: a burst goes out while the previous one is still answered (with a
    # latency of one cycle the answers are always back before the next burst's grant)
    assert (overlaps > 0) == (latency > 1)


def test_an_err_answer_counts_as_the_word_and_raises_error():
    """A slave that answers some words with ``err``: every burst still ends (each word answered once, the
    reads' words delivered), ``error`` follows each ``err`` a cycle later, and the next bursts go on."""
    read_beats = (4,)
    bursts = [(16 * i, None) for i in range(4)]
    erring = {3, 17, 18, 51}               # word addresses answered with err
    dut = _system(read_beats, (), model=False)

    async def bench(ctx):
        grants = []
        reader = _Requester(dut.arbiter.readers[0], 4, bursts, grants)
        bus = dut.arbiter.bus
        queue, errors, errs_sent = [], 0, 0
        for _ in range(200):
            # the slave: takes every request (no stall), answers it two cycles later
            ctx.set(bus.ack, 0)
            ctx.set(bus.err, 0)
            if queue and queue[0][0] <= 0:
                _, adr = queue.pop(0)
                ctx.set(bus.err if adr in erring else bus.ack, 1)
                ctx.set(bus.datrd, 0xdead if adr in erring else _word(adr))
                errs_sent += adr in erring
            queue = [(wait - 1, adr) for wait, adr in queue]
            reader.present(ctx)
            reader.sample(ctx)
            errors += ctx.get(dut.arbiter.error)
            if ctx.get(bus.stb) and ctx.get(bus.cyc):
                queue.append((2, ctx.get(bus.adr)))
            await ctx.tick()
        return reader, errors, errs_sent

    reader, errors, errs_sent = simulate(dut, bench)
    assert errors == errs_sent == len(erring)
    words = [first + k for first, _ in bursts for k in range(4)]
    assert len(reader.answers) == len(words)
    assert [answer for answer, adr in zip(reader.answers, words) if adr not in erring] == \
        [_word(adr) for adr in words if adr not in erring]


def test_the_memory_master_binds_to_cocotbext_wishbone():
    """cocotbext-wishbone's models find every signal they require on the master's signature, and the
    optional ones the master answers to (``stall``, ``err``); it has no ``sel`` (whole words) and no ``rty``."""
    from cocotbext.wishbone.monitor import Wishbone

    names = {"__".join(map(str, path)) for path, _ in wishbone_signature(23).members.flatten()}
    assert set(Wishbone._signals) <= names
    assert names == set(Wishbone._signals) | {"stall", "err"}
    assert {"sel", "rty"} <= set(Wishbone._optional_signals) - names


@pytest.mark.parametrize("make, message", [
    (lambda: wishbone_signature(0), "addr_bits must be an integer in 1..64, not 0"),
    (lambda: wishbone_signature(23, 12), "Wishbone data_bits must be 8, 16, 32 or 64, not 12"),
    (lambda: BurstArbiter((), (2,), 16), r"the arbiter needs a reader, not read_beats=\(\)"),
    (lambda: BurstArbiter((3,), (0,), 16), r"every burst needs at least one word, not read_beats=\(3,\), "
                                           r"write_beats=\(0,\)"),
])
def test_arguments_are_checked(make, message):
    with pytest.raises(ValueError, match=message):
        make()


class _ErringMemory(wiring.Component):
    """The accelerator on the memory model, the model's ``n``-th answer turned into ``err`` (its data kept)."""

    def __init__(self, params, n, **memory):
        self.accelerator, self.n = Accelerator(params), n
        self.model = MemoryModel(addr_bits=params.memory_address_bits, **memory)
        super().__init__({"ctrl": self.accelerator.signature.members["ctrl"], "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator, m.submodules.model = accelerator, model = self.accelerator, self.model
        wiring.connect(m, wiring.flipped(self.ctrl), accelerator.ctrl)
        master, slave = accelerator.mem, model.bus
        answers = Signal(range(self.n + 1))
        erring = slave.ack & (answers == self.n - 1)
        m.d.comb += [slave.cyc.eq(master.cyc), slave.stb.eq(master.stb), slave.we.eq(master.we),
                     slave.adr.eq(master.adr), slave.datwr.eq(master.datwr), master.stall.eq(slave.stall),
                     master.datrd.eq(slave.datrd), master.ack.eq(slave.ack & ~erring), master.err.eq(erring),
                     self.done.eq(accelerator.done)]
        with m.If(slave.ack & (answers != self.n)):
            m.d.sync += answers.eq(answers + 1)
        return m


def test_an_err_answer_sets_memory_error_for_the_run_and_the_driver_reports_it():
    """A run whose third answer from external memory is ``err`` still ends (DONE), with STATUS.MEMORY_ERROR,
    which the driver reports; the next run, without one, clears it."""
    params = small_params()
    image = end_image(params)
    dut = _ErringMemory(params, 3, depth=1 << 13, init=external_image(image))

    async def testbench(ports):
        driver = Driver(PortsBus(ports))
        await driver.load(image)
        with pytest.raises(DriverError, match=r"^external memory answered a request of the run with an error "
                                              r"\(STATUS.MEMORY_ERROR\): the results are not valid$"):
            await driver.run()
        status = await driver.csr("STATUS")
        cycles = await driver.run()
        return status, await driver.csr("STATUS"), cycles

    status, status_after, cycles = run_amaranth(dut, testbench)
    assert status >> STATUS_BITS["MEMORY_ERROR"] & 1 and status >> STATUS_BITS["DONE"] & 1
    assert not status_after >> STATUS_BITS["MEMORY_ERROR"] & 1 and cycles > 0
