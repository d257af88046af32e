# amaranth: UnusedElaboratable=no
"""SpillMover in the Amaranth simulator: a STORE copies every row of its groups to consecutive SPILL rows, a
LOAD copies them back to other groups — every row, and every occupancy bit the scan relies on (set where
the row holds a spike, cleared where it does not, the rows outside the copy untouched) — in the modelled
cycles, against first principles."""

import random

import pytest

from amaranth.lib import memory

from spikeforge.hw.logic import table_read
from spikeforge.hw.spike_memory import READ_LATENCY, SpikeMemory
from spikeforge.hw.spill_mover import SpillMover
from spikeforge.interface.descriptor import OPCODES, pack, unpack
from spikeforge.interface.external import ROW_READ_LATENCY
from spikeforge.interface.params import EngineParams
from spikeforge.ops import spill
from spikeforge.tests.hw.bench import Harness, SpikeHost, read_spike_rows, run_pass, set_desc, simulate, \
    small_params, spike_addr, write_spike_rows


def _harness(p):
    """The mover on a spike memory (shared with the testbench) and a SPILL table of block RAM, read like the
    SPILL reader (:func:`~spikeforge.hw.logic.table_read`)."""
    def connect(m, h):
        mover = h.mover
        h.host.connect(m, h.spikes, mover.word_valid, mover.word_addr, mover.word_data, mover.group_addr)
        write, read = h.table.write_port(), h.table.read_port()
        m.d.comb += [mover.group_data.eq(h.spikes.group_data),
                     write.en.eq(mover.spill_write_en), write.addr.eq(mover.spill_write_addr),
                     write.data.eq(mover.spill_write_data),
                     mover.spill_read_data.eq(table_read(m, read, mover.spill_read_en, mover.spill_read_addr,
                                                         "spill_request"))]

    spikes = SpikeMemory(p)
    table = memory.Memory(shape=p.n_pe * p.max_w, depth=p.spill_rows, init=[])
    harness = Harness(connect, mover=SpillMover(p), spikes=spikes, table=table)
    harness.host = SpikeHost(spikes)
    return harness


async def _occupancy(ctx, spikes, group, lane):
    ctx.set(spikes.occ_en, 1)
    ctx.set(spikes.occ_group, group)
    ctx.set(spikes.occ_lane, lane)
    await ctx.tick()
    ctx.set(spikes.occ_en, 0)
    await ctx.tick().repeat(READ_LATENCY - 1)
    return ctx.get(spikes.occ_data)


@pytest.mark.parametrize("groups,T,H", [(2, 3, 4), (1, 1, 3)])
def test_load_after_store_restores_every_row_and_occupancy_bit(groups, T, H):
    p = small_params(spill_rows=64)
    rng = random.Random(groups * 100 + T * 10 + H)
    source, destination, first_row = 1, 4, 5
    full = (1 << p.max_w) - 1
    # the source: rows with spikes, empty rows and rows with a spike in one lane only; the destination
    # held spikes in every row (its occupancy bits all set): the LOAD must clear those of its empty rows
    rows = {(g, t, y): [rng.choice([0, 0, rng.getrandbits(p.max_w), 1 << rng.randrange(p.max_w)])
                        for _ in range(p.n_pe)]
            for g in range(groups) for t in range(T) for y in range(H)}
    stale = {spike_addr(p, destination + g, t, y): [full] * p.n_pe
             for g in range(groups) for t in range(p.max_T) for y in range(p.max_h)}
    words = {spike_addr(p, source + g, t, y): lanes for (g, t, y), lanes in rows.items()}
    fields = dict(tiles=groups, T=T, H=H, weight_base=first_row)
    store = dict(fields, op=OPCODES["STORE"], in_base=source)
    load = dict(fields, op=OPCODES["LOAD"], out_base=destination)
    dut = _harness(p)

    async def bench(ctx):
        await write_spike_rows(ctx, dut.host, {**stale, **words})
        cycles = []
        for desc in (store, load):
            ctx.set(dut.host.select, 0)
            set_desc(ctx, dut.mover.desc, **desc)
            cycles.append(await run_pass(ctx, dut.mover))
            ctx.set(dut.host.select, 1)
        table = [ctx.get(dut.table.data[row]) for row in range(p.spill_rows)]
        loaded = await read_spike_rows(ctx, dut.host, list(stale))
        occupancy = {(g, lane): await _occupancy(ctx, dut.spikes, destination + g, lane)
                     for g in range(groups) for lane in range(p.n_pe)}
        return cycles, table, loaded, occupancy

    cycles, table, loaded, occupancy = simulate(dut, bench)
    assert cycles == [spill.cycles(unpack(pack(**store))), spill.cycles(unpack(pack(**load)))]
    assert cycles == [groups * T * H + READ_LATENCY, groups * T * H + ROW_READ_LATENCY]
    # the SPILL rows: the source's rows in order (y innermost, then t, then the group), lane 0 lowest
    order = sorted(rows, key=lambda key: (key[0], key[1], key[2]))
    stored = [sum(row << (lane * p.max_w) for lane, row in enumerate(rows[key])) for key in order]
    assert table[first_row:first_row + len(order)] == stored
    assert not any(table[:first_row]) and not any(table[first_row + len(order):])
    # the destination: the source's rows where copied, its own elsewhere; each occupancy bit tells whether
    # its row holds a spike
    expected = {spike_addr(p, destination + g, t, y): rows.get((g, t, y), [full] * p.n_pe)
                for g in range(groups) for t in range(p.max_T) for y in range(p.max_h)}
    assert loaded == expected
    for (g, lane), word in occupancy.items():
        bits = sum(int(expected[spike_addr(p, destination + g, t, y)][lane] != 0) << (t * p.max_h + y)
                   for t in range(p.max_T) for y in range(p.max_h))
        assert word == bits, (g, lane)
    assert any(word != (1 << p.max_T * p.max_h) - 1 for word in occupancy.values())


def test_rejects_engine_params():
    with pytest.raises(TypeError, match="params must be an AcceleratorParams, not EngineParams"):
        SpillMover(EngineParams())
