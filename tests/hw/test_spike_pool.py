# amaranth: UnusedElaboratable=no
"""SpikePool in the Amaranth simulator: max-pooling 3/2/1 of spike bitmaps (every output row of every
group and timestep, of an image in one tile or of every output tile of a tiled one) and its cycles,
against Python."""

import random

import numpy as np
import pytest

from spikeforge.hw.spike_memory import READ_LATENCY, SpikeMemory
from spikeforge.hw.spike_pool import SpikePool
from spikeforge.interface.descriptor import OPCODES, pack, unpack
from spikeforge.interface.layout import pack_row
from spikeforge.interface.params import EngineParams
from spikeforge.ops import pool
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


def _tiles(n, size):
    """Tiles of ``size`` that cover ``n`` rows (columns)."""
    return -(-n // size)


@pytest.mark.parametrize("H,W,groups,all_nine", [(13, 21, 1, False), (21, 41, 2, True)])
def test_tiled_pool_writes_every_output_tile_from_the_input_tiles_it_covers(H, W, groups, all_nine):
    """An ``H × W`` map stored in spatial tiles of ``max_h × max_w`` (``groups`` channel groups per tile,
    tile ``(ty, tx)`` at group ``in_first + (ty·TX + tx)·groups``): one POOL descriptor per output tile
    writes its rows equal to the max-pool of the whole map, in the modelled cycles. Edge tiles are cut
    (partial H, W; no halo at the image's top and left); what lies beyond the image in the stored tiles,
    and in the groups before the first tile (where a missing halo's address points), is random: padding
    the pool must ignore. 21 × 41 has an output tile that reads all nine tiles around its A, and edge
    tiles whose A has one row (column) below (right of) it."""
    p = small_params(spike_groups=128)
    T, channels = 2, groups * p.n_pe
    rng = np.random.default_rng(H * 100 + W)
    image = (rng.random((T, channels, H, W)) < 0.06).astype(np.int64)     # sparse: windows with and without a spike
    pooled = pool.maxpool_spikes(image)
    TY, TX = _tiles(H, p.max_h), _tiles(W, p.max_w)
    OY, OX = _tiles(pooled.shape[2], p.max_h), _tiles(pooled.shape[3], p.max_w)
    stored = (rng.random((T, channels, TY * p.max_h, TX * p.max_w)) < 0.5).astype(np.int64)
    stored[:, :, :H, :W] = image
    in_first = (TX + 1) * groups                    # the first tile's missing halo would lie in the groups before it
    out_first = in_first + TY * TX * groups
    assert out_first + OY * OX * groups <= p.spike_groups

    def tile_words(first, tile, rows_of):
        """Words ``{address: [row of lane 0, …]}`` of one tile's groups; ``rows_of(t, c, y)`` its row ``y``."""
        return {spike_addr(p, first + tile * groups + g, t, y): [rows_of(t, g * p.n_pe + lane, y)
                                                                  for lane in range(p.n_pe)]
                for g in range(groups) for t in range(T) for y in range(p.max_h)}

    words = {spike_addr(p, g, t, y): [int(rng.integers(1 << p.max_w)) for _ in range(p.n_pe)]
             for g in range(in_first) for t in range(T) for y in range(p.max_h)}
    for ty in range(TY):
        for tx in range(TX):
            words |= tile_words(in_first, ty * TX + tx, lambda t, c, y: pack_row(
                stored[t, c, ty * p.max_h + y, tx * p.max_w:(tx + 1) * p.max_w]))
    full = (1 << p.max_w) - 1                       # rows already holding spikes: the pool overwrites its own
    words |= {address: [full] * p.n_pe for tile in range(OY * OX)
              for address in tile_words(out_first, tile, lambda t, c, y: full)}
    passes = []
    for oy in range(OY):
        for ox in range(OX):
            ty, tx = 2 * oy, 2 * ox                 # input tile A
            desc = dict(op=OPCODES["POOL"], tiles=groups, T=T, H=min(2 * p.max_h, H - ty * p.max_h),
                        W=min(2 * p.max_w, W - tx * p.max_w), in_base=in_first + (ty * TX + tx) * groups,
                        k_base=TX * groups, v_base=groups, tile_dy=0b11 if oy else 0, tile_dx=0b11 if ox else 0,
                        out_base=out_first + (oy * OX + ox) * groups)
            tile_a = stored[:, :, ty * p.max_h:(ty + 1) * p.max_h, tx * p.max_w:(tx + 1) * p.max_w]
            rows = pool.pooled_size(desc["H"])
            expected = tile_words(out_first, oy * OX + ox, lambda t, c, y: pack_row(
                pooled[t, c, oy * p.max_h + y, ox * p.max_w:(ox + 1) * p.max_w]) if y < rows else full)
            passes.append((desc, pool.cycles(unpack(pack(**desc)), tile_a), expected))
    reaches = {(d["tile_dy"], d["tile_dx"], d["H"] > p.max_h, d["W"] > p.max_w) for d, _, _ in passes}
    assert ((0b11, 0b11, True, True) in reaches) == all_nine
    dut = _harness(p)

    async def bench(ctx):
        await write_spike_rows(ctx, dut.host, words)
        results = []
        for desc, _, expected in passes:
            ctx.set(dut.host.select, 0)
            set_desc(ctx, dut.pool.desc, **desc)
            cycles = await run_pass(ctx, dut.pool)
            ctx.set(dut.host.select, 1)
            results.append((cycles, await read_spike_rows(ctx, dut.host, list(expected))))
        return results

    for (desc, cycles, expected), (hardware_cycles, out) in zip(passes, simulate(dut, bench)):
        assert (hardware_cycles, out) == (cycles, expected), desc


def test_rejects_engine_params():
    with pytest.raises(TypeError, match="params must be an AcceleratorParams, not EngineParams"):
        SpikePool(EngineParams())
