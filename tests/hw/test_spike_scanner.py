# amaranth: UnusedElaboratable=no
"""SpikeScanner in the Amaranth simulator: the events of one accumulation pass (accumulator word, weight
row, plane shift) in order, and its cycles, against a direct Python reading of the bitmaps."""

import random

import pytest
from amaranth import signed
from amaranth.lib import data, memory

from spikeforge.hw.logic import table_read
from spikeforge.hw.spike_memory import READ_LATENCY, SpikeMemory
from spikeforge.hw.spike_scanner import ROW_QUEUE, SpikeScanner
from spikeforge.interface.descriptor import OPCODES
from spikeforge.interface.params import EngineParams
from spikeforge.tests.hw.bench import Harness, run_pass, set_desc, simulate, small_params, spike_addr, \
    write_spike_rows


def _harness(p, weight_rows):
    weights = memory.Memory(shape=data.ArrayLayout(signed(p.weight_bits), p.n_pe), depth=p.weight_rows,
                            init=weight_rows)

    def connect(m, h):
        s, spikes, read = h.scanner, h.spikes, h.weights.read_port()
        m.d.comb += [s.weight_data.eq(table_read(m, read, s.weight_en, s.weight_addr, "weight_request")),
                     spikes.occ_en.eq(s.occ_en), spikes.occ_group.eq(s.occ_group), spikes.occ_lane.eq(s.occ_lane),
                     s.occ_data.eq(spikes.occ_data),
                     spikes.scan_en.eq(s.scan_en), spikes.scan_addr.eq(s.scan_addr),
                     spikes.scan_lane.eq(s.scan_lane), s.scan_data.eq(spikes.scan_data)]

    return Harness(connect, scanner=SpikeScanner(p), spikes=SpikeMemory(p), weights=weights)


#: Kernel rows (columns) a pass visits, by the input tile's offset (tile_dy, tile_dx) from the output tile.
_KERNEL_INDICES = {0: (0, 1, 2), -1: (0,), 1: (2,)}


def _tile_offsets(desc):
    """The descriptor's ``tile_dy``, ``tile_dx`` (2-bit two's complement) as −1, 0 or +1."""
    return tuple(value - 4 if value & 2 else value for value in (desc.get("tile_dy", 0), desc.get("tile_dx", 0)))


def _taps(desc):
    """The taps ``(dy, dx)`` a pass visits, in fetch order."""
    sy, sx = _tile_offsets(desc)
    return [(dy, dx) for dy in _KERNEL_INDICES[sy] for dx in _KERNEL_INDICES[sx]] if desc["kernel3"] else [(1, 1)]


def _expected(p, desc, spikes, t_sel, first_row):
    """Events ``(accumulator word, weight row, shift)`` of a pass in order, and its cycles. The input tile
    lies ``tile_dy``, ``tile_dx`` tiles of ``max_h × max_w`` from the output tile (its rows and columns
    then reach the output's through the kernel rows and columns that cross)."""
    sy, sx = _tile_offsets(desc)
    taps = _taps(desc)
    if desc["op"] == OPCODES["ATTENTION"]:
        times = [t_sel]
    else:
        times = [0] if desc.get("static") else range(desc["T"])
    H, W = desc["H"], desc["W"]
    in_H, in_W = (p.max_h if sy else H), (p.max_w if sx else W)
    events, slots, row = [], [], first_row
    for ci in range(desc["cin"]):
        for dy, dx in taps:
            for plane in range(desc["planes"]):
                rows = []
                for t in times:
                    for y in range(in_H):
                        bits = spikes.get((ci * desc["planes"] + plane, t, y), 0)
                        out_y = y + sy * p.max_h - dy + 1
                        if not bits or not 0 <= out_y < H:
                            continue
                        xs = [x for x in range(in_W) if bits >> x & 1 and 0 <= x + sx * p.max_w - dx + 1 < W]
                        rows.append(max(1, len(xs)))
                        for x in xs:
                            word = (x + sx * p.max_w - dx + 1) | out_y << p.w_bits | t << (p.w_bits + p.h_bits)
                            events.append((word, row, plane))
                slots.append(rows)
            row += 1
    return events, _pass_cycles(slots)


def _pass_cycles(slots):
    """The pass's cycles, stepped cycle by cycle like the hardware: the reads (the first slot fetched
    in cycle 2, after a cycle of setup; a slot loaded into the row search once its occupancy word is
    there, READ_LATENCY cycles after its fetch, and the previous slot's rows are read, fetching the next
    slot; then a row read per cycle against free credits), the words READ_LATENCY + 1 cycles later in
    the queue, the rows taken one ahead and scanned, each event leaving a cycle later; done in the first
    cycle that finds every row read and nothing left in flight (the last event on its way out)."""
    arrivals, queue, credits = {}, [], ROW_QUEUE
    loaded, fetched, remaining = 0, 2, []
    held, row_left, cycle, quiet = None, 0, 0, False
    while True:
        cycle += 1
        issue = pop = False
        if remaining:                                                # a row of the loaded slot left
            if credits:
                arrivals[cycle + READ_LATENCY + 1] = remaining.pop(0)
                issue = True
        elif loaded == len(slots):                                   # the last slot's rows are read
            if quiet:
                return cycle
        elif cycle > fetched + READ_LATENCY:                         # load the next slot, fetch the one after
            remaining, loaded, fetched = list(slots[loaded]), loaded + 1, cycle
        starting = held is not None and row_left == 0
        if cycle in arrivals:
            queue.append(arrivals.pop(cycle))
        # (a word written this cycle is readable next cycle: arrivals are keyed one cycle late)
        if queue and (held is None or starting):
            pop = True
        if starting:
            row_left, held = held, None
        if pop:
            held = queue.pop(0)
        credits += pop - issue
        if row_left:
            row_left -= 1
        quiet = credits == ROW_QUEUE and held is None and not row_left     # as of the next cycle


def _random_spikes(p, desc, rate, seed, H=None, W=None):
    """Random rows of the input tile, ``H × W`` (default: the descriptor's)."""
    rng = random.Random(seed)
    channels = desc["cin"] * desc["planes"]
    return {(c, t, y): sum(1 << x for x in range(W or desc["W"]) if rng.random() < rate)
            for c in range(channels) for t in range(desc["T"]) for y in range(H or desc["H"])}


def _spike_words(p, desc, spikes):
    words = {}
    for (c, t, y), bits in spikes.items():
        addr = spike_addr(p, desc["in_base"] + c // p.n_pe, t, y)
        words.setdefault(addr, [0] * p.n_pe)[c % p.n_pe] = bits
    return words


def _run(p, desc, spikes, passes):
    """Run ``passes`` [(t_sel, rewind)] in a row; per pass the events and cycles."""
    rng = random.Random(1)
    weight_rows = [[rng.randrange(-128, 128) for _ in range(p.n_pe)] for _ in range(p.weight_rows)]
    dut = _harness(p, weight_rows)
    s = dut.scanner

    async def bench(ctx):
        await write_spike_rows(ctx, dut.spikes, _spike_words(p, desc, spikes))
        set_desc(ctx, s.desc, **desc)
        results = []
        for t_sel, rewind in passes:
            ctx.set(s.t_sel, t_sel)
            events = []

            def observe(ctx):
                if ctx.get(s.event_valid):
                    events.append((ctx.get(s.event_addr), [ctx.get(s.event_row[lane]) for lane in range(p.n_pe)],
                                   ctx.get(s.event_shift)))

            cycles = await run_pass(ctx, s, observe, rewind=rewind)
            results.append((events, cycles))
        return results

    return weight_rows, simulate(dut, bench)


def _check(p, desc, spikes, passes):
    weight_rows, results = _run(p, desc, spikes, passes)
    row = desc["weight_base"]
    taps = len(_taps(desc))
    for (t_sel, rewind), (events, cycles) in zip(passes, results):
        row = desc["weight_base"] if rewind else row
        expected, expected_cycles = _expected(p, desc, spikes, t_sel, row)
        assert [(word, weight_rows[r], shift) for word, r, shift in expected] == events
        assert cycles == expected_cycles
        row += desc["cin"] * taps
    return results


@pytest.mark.parametrize("tile_dy, tile_dx", [(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, 1), (-1, 1)])
def test_neighbouring_input_tile_reaches_the_output_edge_through_the_crossing_taps(tile_dy, tile_dx):
    """The input tile above/below/left/right of (or diagonal to) the output tile: only its edge next to the
    output tile is scanned, with the kernel rows and columns that cross, and its spikes land on the output
    tile's edge (the targets wrap modulo the tile) — the halo of a conv over a tiled image."""
    p = small_params()
    H, W = p.max_h, p.max_w          # a tile with a neighbour below or right is whole
    desc = dict(op=OPCODES["CONV"], kernel3=1, cin=2, planes=1, T=2, H=H, W=W, in_base=1, weight_base=3,
                tile_dy=tile_dy & 0b11, tile_dx=tile_dx & 0b11)     # 2-bit two's complement
    spikes = _random_spikes(p, desc, rate=0.5, seed=11, H=p.max_h, W=p.max_w)
    (events, _), = _check(p, desc, spikes, [(0, 1)])
    assert events
    rows = {word >> p.w_bits & (p.max_h - 1) for word, _, _ in events}
    columns = {word & (p.max_w - 1) for word, _, _ in events}
    assert rows == ({0} if tile_dy == -1 else {H - 1} if tile_dy == 1 else rows)
    assert columns == ({0} if tile_dx == -1 else {W - 1} if tile_dx == 1 else columns)


def test_conv3x3_with_bit_planes_emits_every_reachable_spike_in_order():
    p = small_params()
    desc = dict(op=OPCODES["CONV"], kernel3=1, cin=2, planes=2, T=2, H=3, W=5, in_base=1, weight_base=5)
    spikes = _random_spikes(p, desc, rate=0.3, seed=4)
    # a second pass continues with the next weight rows (the next tile of a CONV)
    results = _check(p, desc, spikes, [(0, 1), (0, 0)])
    assert all(events for events, _ in results)
    assert {shift for _, _, shift in results[0][0]} == {0, 1}


def test_static_input_scans_only_the_first_timestep():
    p = small_params()
    desc = dict(op=OPCODES["CONV"], static=1, kernel3=0, cin=3, planes=1, T=3, H=4, W=6, in_base=0, weight_base=0)
    spikes = _random_spikes(p, desc, rate=0.5, seed=2)
    events, _ = _check(p, desc, spikes, [(0, 1)])[0]
    assert events and all(word >> (p.w_bits + p.h_bits) == 0 for word, _, _ in events)


def test_attention_scans_the_selected_timestep_and_rewinds():
    p = small_params()
    desc = dict(op=OPCODES["ATTENTION"], kernel3=0, cin=5, planes=1, T=3, H=2, W=4, in_base=2, weight_base=40)
    spikes = _random_spikes(p, desc, rate=0.5, seed=9)
    results = _check(p, desc, spikes, [(2, 1), (0, 1)])
    for t_sel, (events, _) in zip((2, 0), results):
        assert events and all(word >> (p.w_bits + p.h_bits) == t_sel for word, _, _ in events)


def test_empty_input_costs_the_occupancy_read_per_channel_and_tap():
    p = small_params()
    desc = dict(op=OPCODES["CONV"], kernel3=1, cin=2, planes=1, T=1, H=3, W=3, in_base=0, weight_base=0)
    (events, cycles), = _check(p, desc, {}, [(0, 1)])
    # the setup and the fetch, then per slot its occupancy word's READ_LATENCY cycles, the last slot's
    # empty search
    assert events == [] and cycles == 2 + 2 * 9 * (READ_LATENCY + 1) + 1


def test_rejects_engine_params():
    with pytest.raises(TypeError, match="params must be an AcceleratorParams, not EngineParams"):
        SpikeScanner(EngineParams())
