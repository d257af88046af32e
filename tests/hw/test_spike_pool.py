# amaranth: UnusedElaboratable=no
"""SpikePool in the Amaranth simulator: max-pooling 3/2/1 of spike bitmaps (every output row of every
group and timestep) and its cycles, against Python."""

import random

import pytest

from spikeforge.hw.spike_memory import READ_LATENCY, SpikeMemory
from spikeforge.hw.spike_pool import SpikePool
from spikeforge.interface.descriptor import OPCODES
from spikeforge.interface.params import EngineParams
from spikeforge.tests.hw.bench import Harness, SpikeHost, read_spike_rows, run_pass, set_desc, simulate, \
    small_params, spike_addr, write_spike_rows


def _harness(p):
    def connect(m, h):
        pool = h.pool
        h.host.connect(m, h.spikes, pool.word_valid, pool.word_addr, pool.word_data, pool.group_addr)
        m.d.comb += pool.group_data.eq(h.spikes.group_data)

    spikes = SpikeMemory(p)
    harness = Harness(connect, pool=SpikePool(p), spikes=spikes)
    harness.host = SpikeHost(spikes)
    return harness


def _max_pool(rows, H, W):
    """Output rows of a 3×3, stride 2, padding 1 max-pool of ``rows[y]`` (bit x = column x)."""
    out = []
    for yo in range((H + 1) // 2):
        row = 0
        for xo in range((W + 1) // 2):
            window = [rows[y] >> x & 1 for y in (2 * yo - 1, 2 * yo, 2 * yo + 1) if 0 <= y < H
                      for x in (2 * xo - 1, 2 * xo, 2 * xo + 1) if 0 <= x < W]
            row |= max(window) << xo
        out.append(row)
    return out


@pytest.mark.parametrize("H,W,T,tiles", [(4, 8, 2, 2), (3, 5, 1, 1), (1, 1, 2, 1)])
def test_pool_is_an_or_over_3x3_windows_with_stride_2(H, W, T, tiles):
    p = small_params()
    rng = random.Random(H * 100 + W)
    in_base, out_base = 1, 5
    rows = {(g, t, lane): [rng.getrandbits(W) if rng.random() < 0.7 else 0 for _ in range(H)]
            for g in range(tiles) for t in range(T) for lane in range(p.n_pe)}
    # output rows already holding spikes: the pool overwrites them (and its padding columns) with zeros
    stale = {spike_addr(p, out_base + g, t, y): [(1 << p.max_w) - 1] * p.n_pe
             for g in range(tiles) for t in range(T) for y in range(p.max_h)}
    words = {spike_addr(p, in_base + g, t, y): [rows[g, t, lane][y] for lane in range(p.n_pe)]
             for g in range(tiles) for t in range(T) for y in range(H)}
    Ho = (H + 1) // 2
    out_addrs = [spike_addr(p, out_base + g, t, y) for g in range(tiles) for t in range(T) for y in range(Ho)]
    dut = _harness(p)

    async def bench(ctx):
        await write_spike_rows(ctx, dut.host, {**stale, **words})
        ctx.set(dut.host.select, 0)
        set_desc(ctx, dut.pool.desc, op=OPCODES["POOL"], tiles=tiles, T=T, H=H, W=W, in_base=in_base,
                 out_base=out_base)
        cycles = await run_pass(ctx, dut.pool)
        ctx.set(dut.host.select, 1)
        return cycles, await read_spike_rows(ctx, dut.host, out_addrs)

    cycles, out = simulate(dut, bench)
    assert cycles == 3 * Ho * T * tiles + READ_LATENCY   # reads back to back, then the last word's latency
    expected = {spike_addr(p, out_base + g, t, y): [_max_pool(rows[g, t, lane], H, W)[y] for lane in range(p.n_pe)]
                for g in range(tiles) for t in range(T) for y in range(Ho)}
    assert out == expected


def test_rejects_engine_params():
    with pytest.raises(TypeError, match="params must be an AcceleratorParams, not EngineParams"):
        SpikePool(EngineParams())
