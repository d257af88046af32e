# amaranth: UnusedElaboratable=no
"""RowReader in the Amaranth simulator: a read port on external memory, whatever the order of the
requests (in sequence, repeated, jumping) and the memory's latency, against the rows themselves."""

import random

import pytest

from spikeforge.hw.row_reader import BURSTS_IN_FLIGHT, RowReader
from spikeforge.interface.external import BEAT_BITS, ROW_READ_LATENCY, row_stride
from spikeforge.tests.hw.bench import simulate

ROW_BITS, TAG_BITS, ADDR_BITS, BASE = 70, 6, 16, 0x1000


def _row(tag):
    return random.Random(tag).getrandbits(ROW_BITS)


def _requests(rng, n):
    """Row numbers as the engine asks for them: mostly the next row, sometimes the same or a jump."""
    tag, out = rng.randrange(1 << TAG_BITS), []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.6:
            tag = (tag + 1) % (1 << TAG_BITS)
        elif roll < 0.75:
            tag = rng.randrange(1 << TAG_BITS)
        out.append(tag if rng.random() < 0.8 else None)   # None: a cycle without a request
    return out


@pytest.mark.parametrize("seed,latency,depth,other_stalls", [(1, 1, 2, 0), (2, 5, 4, 0), (3, 0, 4, 0.2), (4, 9, 3, 0.3),
                                                            (5, 2, 2, 0.5)])
def test_every_request_gets_its_row_at_the_third_cycle_without_stall(seed, latency, depth, other_stalls):
    rng = random.Random(seed)
    served, stalled, most_in_flight = _serve(rng, _requests(rng, 300), latency, depth, other_stalls=other_stalls)
    assert stalled > 0      # the memory is slow enough for misses: the stall path ran
    assert most_in_flight == BURSTS_IN_FLIGHT


def test_a_miss_after_the_tags_wrapped_around_waits_for_its_own_row():
    """A whole tag space read in sequence without a miss (the head's tag is back at the last miss's),
    then a jump: the reader must wait for the jump's row, not serve the head."""
    first = 3
    requests = [first] + [tag % (1 << TAG_BITS) for tag in range(first + 1, first + (1 << TAG_BITS))] + [40, 41]
    served, _, _ = _serve(random.Random(0), requests, 1, 4, spacing=8)
    assert served == len(requests)


@pytest.mark.parametrize("first", [0, 1, (1 << TAG_BITS) - 1])
def test_the_first_request_after_a_flush_gets_its_own_row(first):
    """Nothing served yet (the reader then takes the row before row 0, the last, as served): a request
    for the last row must miss all the same, one for row 0 hit the head prefetched meanwhile."""
    requests = [None] * 20 + [(first + i) % (1 << TAG_BITS) for i in range(3)]
    _, stalled, _ = _serve(random.Random(first), requests, 2, 4)
    assert (stalled == 0) == (first == 0)


def _serve(rng, requests, latency, depth, spacing=1, other_stalls=0):
    """Run ``requests`` (row numbers, None for a cycle without one; each followed by ``spacing - 1``
    idle cycles) against a memory that answers bursts after ``latency`` cycles, the core's enable
    registered from ``waiting`` as in the accelerator (and, with probability ``other_stalls`` a cycle,
    stalled as if by another reader: a miss then comes with or without a cycle of the core after it);
    checks every row served :data:`ROW_READ_LATENCY` cycles without stall after its request. Returns
    (rows served, cycles stalled, most bursts in flight at once)."""
    requests = [tag if i == 0 else None for tag in requests for i in range(spacing)]
    dut = RowReader(ROW_BITS, depth, TAG_BITS, ADDR_BITS)
    stride = row_stride(ROW_BITS)

    async def bench(ctx):
        ctx.set(dut.base, BASE)
        ctx.set(dut.active, 1)
        ctx.set(dut.flush, 1)
        await ctx.tick()
        ctx.set(dut.flush, 0)
        beats = []            # the bursts being returned: (cycle it may go, data, last)
        most_in_flight = 0
        expected, served, stalled_cycles, cycle = [], 0, 0, 0     # expected: [cycles to go, row]
        pending = list(requests)
        run = True
        while pending or expected:
            cycle += 1
            stall = not run
            ctx.set(dut.stall, stall)
            if not stall:
                for entry in expected:
                    entry[0] -= 1
                if expected and expected[0][0] == 0:
                    _, tag = expected.pop(0)
                    assert ctx.get(dut.data) == _row(tag), f"row {tag} at cycle {cycle}"
                    served += 1
            ctx.set(dut.en, 0)
            if not stall and pending:
                tag = pending.pop(0)
                if tag is not None:
                    ctx.set(dut.en, 1)
                    ctx.set(dut.addr, tag)
                    expected.append([ROW_READ_LATENCY, tag])
            stalled_cycles += stall
            # the memory: accepts any burst asked for (now and then not at once), returns the beats in order
            # after ``latency`` cycles, now and then a gap; the reader keeps BURSTS_IN_FLIGHT at most
            ctx.set(dut.burst.ready, 0)
            ctx.set(dut.burst.beat_valid, 0)
            ctx.set(dut.burst.beat_last, 0)
            if ctx.get(dut.burst.valid) and rng.random() < 0.7:
                assert sum(last for _, _, last in beats) < BURSTS_IN_FLIGHT, "more bursts in flight than allowed"
                ctx.set(dut.burst.ready, 1)
                offset = ctx.get(dut.burst.addr) - BASE
                assert offset % stride == 0
                row = _row(offset // stride)
                count = dut.beats
                beats += [(cycle + latency + 1, row >> (BEAT_BITS * i) & (1 << BEAT_BITS) - 1, i == count - 1)
                          for i in range(count)]
                most_in_flight = max(most_in_flight, sum(last for _, _, last in beats))
            if beats and beats[0][0] <= cycle and rng.random() < 0.8:
                _, word, last = beats.pop(0)
                ctx.set(dut.burst.beat_valid, 1)
                ctx.set(dut.burst.beat_data, word)
                ctx.set(dut.burst.beat_last, last)
            # the next cycle's enable, registered from this cycle's ``waiting``
            run = not ctx.get(dut.waiting) and rng.random() >= other_stalls
            await ctx.tick()
            assert cycle < 100 * len(requests), "the reader stopped serving"
        return served, stalled_cycles, most_in_flight

    served, stalled, most_in_flight = simulate(dut, bench)
    assert served == sum(tag is not None for tag in requests)
    return served, stalled, most_in_flight


def test_a_flush_forgets_the_rows():
    """After ``flush`` a request for the row served last is fetched again (the memory may have changed)."""
    dut = RowReader(ROW_BITS, 2, TAG_BITS, ADDR_BITS)

    async def bench(ctx):
        ctx.set(dut.base, BASE)
        ctx.set(dut.active, 1)
        fetched = []
        for step in range(2):
            ctx.set(dut.flush, 1)
            await ctx.tick()
            ctx.set(dut.flush, 0)
            ctx.set(dut.en, 1)
            ctx.set(dut.addr, 5)
            await ctx.tick()
            ctx.set(dut.en, 0)
            await ctx.tick().repeat(ROW_READ_LATENCY - 1)      # the request decided: a miss
            for _ in range(40):
                if ctx.get(dut.burst.valid):
                    fetched.append(ctx.get(dut.burst.addr))
                    ctx.set(dut.burst.ready, 1)
                    await ctx.tick()
                    ctx.set(dut.burst.ready, 0)
                    for i in range(dut.beats):
                        ctx.set(dut.burst.beat_valid, 1)
                        ctx.set(dut.burst.beat_data, _row(5) >> (BEAT_BITS * i) & (1 << BEAT_BITS) - 1)
                        ctx.set(dut.burst.beat_last, i == dut.beats - 1)
                        await ctx.tick()
                    ctx.set(dut.burst.beat_valid, 0)
                    ctx.set(dut.burst.beat_last, 0)
                    ctx.set(dut.active, 0)
                if not ctx.get(dut.waiting) and fetched:
                    break
                await ctx.tick()
            assert ctx.get(dut.data) == _row(5)
            ctx.set(dut.active, 1)
        return fetched

    fetched = simulate(dut, bench)
    assert fetched[0] == fetched[-1] == BASE + 5 * row_stride(ROW_BITS) and len(fetched) == 2
