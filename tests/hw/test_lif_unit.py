"""The LIF unit against the integer LIF step of docs/integer-semantics.md §3, for several decays."""

import random

import pytest
import torch

from spikeforge.hw.lif_unit import LIFUnit
from spikeforge.interface.params import EngineParams
from spikeforge.ops.lif import lif_integer
from spikeforge.tests.hw.bench import simulate


@pytest.mark.parametrize("decay_mult, decay_shift", [(1, 1), (43691, 16), (3, 2), (1, 0)])
def test_lif_step_equals_the_integer_semantics(decay_mult, decay_shift):
    """τ = 2, τ = 1.5 in 16-bit fixed point, 3/4, and no leak (m = 2^s = 1)."""
    p = EngineParams(n_pe=4, acc_bits=12, membrane_bits=24, frac_bits=4, decay_mult=decay_mult,
                     decay_shift=decay_shift)
    dut = LIFUnit(p)
    rng = random.Random(decay_mult)

    async def bench(ctx):
        seen = set()
        for _ in range(200):
            F = rng.randrange(0, 5)
            acc = [rng.randrange(-2000, 2000) for _ in range(4)]
            bias = [rng.randrange(-50, 50) for _ in range(4)]
            v = [rng.randrange(-(1 << 18), 1 << 18) for _ in range(4)]
            theta = [rng.randrange(1, 1 << 16) for _ in range(4)]
            for lane in range(4):
                ctx.set(dut.scaled[lane], (acc[lane] + bias[lane]) << F)
                ctx.set(dut.v[lane], v[lane])
                ctx.set(dut.threshold[lane], theta[lane])
            for lane in range(4):
                x = (acc[lane] + bias[lane]) << F
                h = v[lane] + (((x - v[lane]) * decay_mult) >> decay_shift)
                spike = int(h >= theta[lane])
                assert ctx.get(dut.h[lane]) == h
                assert ctx.get(dut.spike) >> lane & 1 == spike
                assert ctx.get(dut.v_next[lane]) == (0 if spike else h)
                seen.add(spike)
        return seen

    assert simulate(dut, bench, clocked=False) == {0, 1}     # both outcomes were exercised


def test_lif_steps_over_timesteps_equal_the_golden_lif():
    """Six timesteps, the membrane fed back: spikes and H equal ``ops.lif.lif_integer``'s."""
    params = EngineParams(n_pe=4, acc_bits=12, membrane_bits=20, frac_bits=3, decay_mult=171, decay_shift=8)
    dut = LIFUnit(params)
    g = torch.Generator().manual_seed(0)
    acc = torch.randint(-500, 500, (6, 4), generator=g)
    bias = torch.randint(-50, 50, (4,), generator=g)
    theta = torch.randint(1, 2000, (4,), generator=g)
    expected_spikes, expected_h = lif_integer((acc + bias).unsqueeze(0).numpy(), theta.numpy(), 3, 171, 8)

    async def bench(ctx):
        v = [0] * 4
        rows = []
        for t in range(6):
            for lane in range(4):
                ctx.set(dut.scaled[lane], int(acc[t, lane] + bias[lane]) << 3)
                ctx.set(dut.threshold[lane], int(theta[lane]))
                ctx.set(dut.v[lane], v[lane])
            await ctx.delay(1e-9)
            h = [ctx.get(dut.h[lane]) for lane in range(4)]
            rows.append((h, [ctx.get(dut.spike) >> lane & 1 for lane in range(4)]))
            v = [ctx.get(dut.v_next[lane]) for lane in range(4)]
        return rows

    rows = simulate(dut, bench, clocked=False)
    assert [r[0] for r in rows] == expected_h[0].tolist()
    assert [r[1] for r in rows] == expected_spikes[0].tolist()
