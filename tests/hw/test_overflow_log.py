# amaranth: UnusedElaboratable=no
"""OverflowLog in the Amaranth simulator against a Python log: flags OR into their descriptor's word (those of
one descriptor in consecutive cycles too), ``any`` follows them, ``clear`` zeroes every word in ``depth``
cycles and drops the flags presented meanwhile; and the accelerator holds a START written during the clear."""

import random

import pytest

from spikeforge.hw.overflow_log import OverflowLog
from spikeforge.interface.regmap import CTRL_BITS, OVERFLOW_LOG_BITS, STATUS_BITS, register_address
from spikeforge.tests.hw.bench import SMALL, simulate

DEPTH = 12
KINDS = 1 << len(OVERFLOW_LOG_BITS)


async def _read_all(ctx, log):
    words = []
    for pc in range(log.depth):
        ctx.set(log.host_addr, pc)
        await ctx.tick()
        words.append(ctx.get(log.host_data))
    return words


async def _flag(ctx, log, pc, kinds):
    ctx.set(log.pc, pc)
    ctx.set(log.kinds, kinds)
    await ctx.tick()
    ctx.set(log.kinds, 0)


def test_flags_accumulate_per_descriptor():
    rng = random.Random(5)
    # runs of one descriptor in consecutive cycles, as a layer raises flags, and isolated flags
    flags = [(pc, rng.randrange(1, KINDS)) for pc in (3, 3, 3, 7, 0, 7, 11, 11, 3) for _ in range(rng.randrange(1, 3))]
    expected = [0] * DEPTH
    for pc, kinds in flags:
        expected[pc] |= kinds
    log = OverflowLog(DEPTH)

    async def bench(ctx):
        before = [ctx.get(log.any)] + await _read_all(ctx, log)
        for pc, kinds in flags:
            await _flag(ctx, log, pc, kinds)
        await ctx.tick()            # the last flag's word is written
        return before, ctx.get(log.any), await _read_all(ctx, log)

    before, any_flag, words = simulate(log, bench)
    assert before == [0] * (DEPTH + 1)
    assert any_flag and words == expected


@pytest.mark.parametrize("depth", [1, DEPTH])
def test_clear_zeroes_every_word_in_depth_cycles_and_drops_flags_meanwhile(depth):
    log = OverflowLog(depth)

    async def bench(ctx):
        for pc in range(depth):
            await _flag(ctx, log, pc, KINDS - 1)
        await ctx.tick()
        assert ctx.get(log.any)
        ctx.set(log.clear, 1)
        await ctx.tick()
        ctx.set(log.clear, 0)
        clearing = []
        for cycle in range(depth + 1):
            clearing.append(ctx.get(log.clearing))
            if cycle == depth // 2:         # dropped: the log is clearing
                ctx.set(log.kinds, 1)
            await ctx.tick()
            ctx.set(log.kinds, 0)
        return clearing, ctx.get(log.any), await _read_all(ctx, log)

    clearing, any_flag, words = simulate(log, bench)
    assert clearing == [1] * depth + [0]
    assert not any_flag and words == [0] * depth


def test_depth_is_checked():
    with pytest.raises(ValueError, match="depth must be a positive integer, not 0"):
        OverflowLog(0)


def test_a_start_written_while_the_log_clears_begins_when_it_is_done():
    """START alone, then CLEAR_OVERFLOW and START back to back: the second run of the END program begins once
    every word is cleared (``depth`` cycles after the clear's write, the START's own write among them) and
    ends with DONE as the first does."""
    from spikeforge.firmware.driver import PortsBus
    from spikeforge.sim.amaranth_runner import run_amaranth
    from spikeforge.sim.system import system

    depth = 64

    async def testbench(ports):
        bus, seen = PortsBus(ports), []
        for writes in ([CTRL_BITS["START"]], [CTRL_BITS["CLEAR_OVERFLOW"], CTRL_BITS["START"]]):
            for bit in writes:
                await bus.write(register_address("CTRL"), 1 << bit)
            await ports.settle()
            cycles = 0
            while not ports.read("done"):
                await ports.tick()
                cycles += 1
            seen.append((cycles, await bus.read(register_address("STATUS"))))
        return seen

    (alone, status_alone), (held, status_held) = run_amaranth(system(**{**SMALL, "program_depth": depth}), testbench)
    assert status_alone == status_held == 1 << STATUS_BITS["DONE"]
    assert depth - 8 <= held - alone <= depth
