# amaranth: UnusedElaboratable=no
"""The external memory model as a Wishbone B4 pipelined slave: each answer ``latency`` cycles after its
request at the earliest and one every ``4 // bytes_per_cycle`` cycles at most, in order; ``stall`` once
:data:`REQUEST_QUEUE` requests wait; writes stored, reads answering the words as they are then."""

import pytest

from spikeforge.sim.memory_model import REQUEST_QUEUE, MemoryModel
from spikeforge.tests.hw.bench import simulate

WORDS, ADDR_BITS = 256, 12


@pytest.mark.parametrize("latency,bytes_per_cycle", [(1, 4), (8, 2), (3, 1)])
def test_answers_follow_the_latency_and_the_bandwidth(latency, bytes_per_cycle):
    """Requests as fast as the slave takes them: reads of the initial words, writes, and reads of the words
    written (which must see them)."""
    dut = MemoryModel(WORDS, ADDR_BITS, latency, bytes_per_cycle, init=[3 * i + 1 for i in range(WORDS)])
    requests = ([(False, i, 0) for i in range(10)] + [(True, 100 + i, 0xabc0 + i) for i in range(10)]
                + [(False, 100 + i, 0) for i in range(10)])

    async def bench(ctx):
        bus, taken, answers, waiting, most_waiting = dut.bus, [], [], 0, 0
        pending = list(requests)
        for cycle in range(1000):
            ctx.set(bus.cyc, 1)
            ctx.set(bus.stb, bool(pending))
            if pending:
                we, adr, word = pending[0]
                ctx.set(bus.we, we)
                ctx.set(bus.adr, adr)
                ctx.set(bus.datwr, word)
            # (the queue's room as the cycle starts: an answer frees its place for the next cycle)
            assert ctx.get(bus.stall) == (waiting == REQUEST_QUEUE), f"stall with {waiting} waiting"
            most_waiting = max(most_waiting, waiting)
            if ctx.get(bus.ack):
                answers.append((cycle, ctx.get(bus.datrd)))
                waiting -= 1
            if pending and not ctx.get(bus.stall):
                taken.append(cycle)
                pending.pop(0)
                waiting += 1
            await ctx.tick()
            if len(answers) == len(requests):
                return taken, answers, most_waiting, [ctx.get(dut.storage[100 + i]) for i in range(10)]
        raise AssertionError("the model stopped answering")

    taken, answers, most_waiting, written = simulate(dut, bench)
    beat_cycles = 4 // bytes_per_cycle
    cycles = [cycle for cycle, _ in answers]
    assert cycles[0] == taken[0] + latency
    assert all(answer >= request + latency for answer, request in zip(cycles, taken))
    assert all(b - a >= beat_cycles for a, b in zip(cycles, cycles[1:]))
    # the bandwidth is what limits: once the queue is fed, the answers come at its rate
    assert cycles[-1] - cycles[0] == beat_cycles * (len(requests) - 1)
    assert [data for _, data in answers[:10]] == [3 * i + 1 for i in range(10)]
    assert [data for _, data in answers[20:]] == written == [0xabc0 + i for i in range(10)]
    assert most_waiting == (REQUEST_QUEUE if latency > 1 else 1)


@pytest.mark.parametrize("kwargs, message", [
    (dict(depth=3, addr_bits=12), "depth must be a power of two, not 3"),
    (dict(depth=2048, addr_bits=12), r"depth of 2048 words \(8192 bytes\) exceeds the 4096-byte address space of "
                                     r"addr_bits = 12"),
    (dict(depth=16, addr_bits=12, latency=0), "latency must be a positive number of cycles below 16384, not 0"),
    (dict(depth=16, addr_bits=12, bytes_per_cycle=3), "bytes_per_cycle must be 1, 2 or 4, not 3"),
])
def test_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MemoryModel(**kwargs)
