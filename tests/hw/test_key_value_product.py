# amaranth: UnusedElaboratable=no
"""KeyValueProduct in the Amaranth simulator: the Kᵀ·V scratch rows of one tile and timestep (AND-and-count,
masked to the heads), their check against the attention's count width and the pass's cycles, against Python."""

import random

import pytest
from amaranth import signed
from amaranth.lib import data, memory

from spikeforge.hw.key_value_product import KeyValueProduct
from spikeforge.hw.spike_memory import SpikeMemory
from spikeforge.interface.bits import fits_signed
from spikeforge.interface.descriptor import OPCODES
from spikeforge.interface.params import EngineParams
from spikeforge.ops.attention import KEY_VALUE_STAGES
from spikeforge.tests.hw.bench import Harness, SpikeHost, run_pass, set_desc, simulate, small_params, spike_addr, \
    write_spike_rows


def _harness(p):
    weights = memory.Memory(shape=data.ArrayLayout(signed(p.weight_bits), p.n_pe), depth=p.weight_rows,
                            init=[[-1] * p.n_pe] * p.weight_rows)

    def connect(m, h):
        kv, spikes, write = h.kv, h.spikes, h.weights.write_port()
        h.host.connect(m, spikes, 0, 0, 0, kv.group_addr)
        m.d.comb += [spikes.scan_en.eq(kv.scan_en), spikes.scan_addr.eq(kv.scan_addr),
                     spikes.scan_lane.eq(kv.scan_lane), kv.scan_data.eq(spikes.scan_data),
                     kv.group_data.eq(spikes.group_data),
                     write.en.eq(kv.weight_en), write.addr.eq(kv.weight_addr), write.data.eq(kv.weight_data)]

    spikes = SpikeMemory(p)
    harness = Harness(connect, kv=KeyValueProduct(p), spikes=spikes, weights=weights)
    harness.host = SpikeHost(spikes)
    return harness


@pytest.mark.parametrize("cin,head_dim,tile,t_sel,check_bits", [(6, 3, 1, 2, 16), (4, 4, 0, 0, 3), (8, 2, 1, 1, 3)])
def test_rows_count_the_positions_where_key_and_value_both_spike(cin, head_dim, tile, t_sel, check_bits):
    p = small_params()
    H, W, T = 3, 5, 3
    k_base, v_base, weight_base = 0, 3, 10
    rng = random.Random(cin * 10 + tile)
    # K and V: channels c at group base + c // n_pe, lane c % n_pe; rows [t][y]
    k = [[[rng.getrandbits(W) for _ in range(H)] for _ in range(T)] for _ in range(cin)]
    v = [[[rng.getrandbits(W) for _ in range(H)] for _ in range(T)] for _ in range(cin)]
    words = {}
    for base, tensor in ((k_base, k), (v_base, v)):
        for c in range(cin):
            for t in range(T):
                for y in range(H):
                    words.setdefault(spike_addr(p, base + c // p.n_pe, t, y), [0] * p.n_pe)[c % p.n_pe] = tensor[c][t][y]
    dut = _harness(p)

    async def bench(ctx):
        await write_spike_rows(ctx, dut.host, words)
        ctx.set(dut.host.select, 0)
        set_desc(ctx, dut.kv.desc, op=OPCODES["ATTENTION"], cin=cin, H=H, W=W, T=T, head_dim=head_dim,
                 k_base=k_base, v_base=v_base, weight_base=weight_base, check_bits=check_bits)
        ctx.set(dut.kv.tile, tile)
        ctx.set(dut.kv.t_sel, t_sel)
        flagged = []

        def observe(ctx):
            if ctx.get(dut.kv.overflow):
                assert ctx.get(dut.kv.weight_en)
                flagged.append(ctx.get(dut.kv.weight_addr) - weight_base)

        cycles = await run_pass(ctx, dut.kv, observe)
        rows = [[ctx.get(dut.weights.data[weight_base + i])[lane] for lane in range(p.n_pe)] for i in range(cin)]
        return cycles, rows, ctx.get(dut.weights.data[weight_base + cin])[0], flagged

    cycles, rows, after, flagged = simulate(dut, bench)
    assert cycles == cin * H + KEY_VALUE_STAGES
    expected = []
    for i in range(cin):
        row = []
        for lane in range(p.n_pe):
            j = tile * p.n_pe + lane
            same_head = j < cin and j // head_dim == i // head_dim
            row.append(sum(bin(k[i][t_sel][y] & v[j][t_sel][y]).count("1") for y in range(H)) if same_head else 0)
        expected.append(row)
    assert rows == expected and any(any(r) for r in rows)
    assert after == -1   # nothing written past the last key channel
    # the rows holding a count wider than check_bits (the attention's count_bits) raise overflow
    assert flagged == [i for i, row in enumerate(expected) if not all(fits_signed(n, check_bits) for n in row)]
    if check_bits < p.acc_bits:
        assert 0 < len(flagged) < cin


def test_rejects_engine_params():
    with pytest.raises(TypeError, match="params must be an AcceleratorParams, not EngineParams"):
        KeyValueProduct(EngineParams())
