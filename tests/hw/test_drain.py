# amaranth: UnusedElaboratable=no
"""Drain in the Amaranth simulator: bias and residual added, the stream written back, the LIF's spikes
and membranes, the overflow check and the accumulator reads of one tile, against Python."""

import random

import pytest
from amaranth import Const, signed
from amaranth.lib import data, memory

from spikeforge.hw.drain import Drain
from spikeforge.hw.logic import delayed, table_read
from spikeforge.hw.spike_memory import SpikeMemory
from spikeforge.interface.bits import fits_signed
from spikeforge.interface.descriptor import OPCODES
from spikeforge.interface.layout import pack_fields, stream_word_layout
from spikeforge.interface.params import EngineParams
from spikeforge.ops.conv import ACC_READ_LATENCY, STREAM_READ_LATENCY, drain_cycles
from spikeforge.tests.hw.bench import Harness, SpikeHost, read_spike_rows, run_pass, set_desc, simulate, small_params, \
    spike_addr

P = small_params(decay_mult=171, decay_shift=8)


def _words(rng, depth, lo, hi):
    return [[rng.randrange(lo, hi) for _ in range(P.n_pe)] for _ in range(depth)]


def _contents(seed):
    rng = random.Random(seed)
    acc_depth = 1 << (P.t_bits + P.h_bits + P.w_bits)
    stream_depth = 1 << (P.stream_tile_bits + P.t_bits + P.h_bits + P.w_bits)
    return dict(acc=_words(rng, acc_depth, -400, 400), bias=_words(rng, P.bias_rows, -50, 50),
                threshold=_words(rng, P.threshold_rows, 1, 2500), stream=_words(rng, stream_depth, -300, 300))


def _harness(contents):
    acc_word = data.ArrayLayout(signed(P.acc_bits), P.n_pe)
    membrane_word = data.ArrayLayout(signed(P.membrane_bits), P.n_pe)
    memories = {name: memory.Memory(shape=membrane_word if name == "threshold" else acc_word,
                                    depth=len(words), init=words) for name, words in contents.items()}

    def connect(m, h):
        dr = h.drain
        acc, bias, threshold = h.acc.read_port(), h.bias.read_port(), h.threshold.read_port()
        stream_read, stream_write = h.stream.read_port(), h.stream.write_port()
        # the word ACC_READ_LATENCY cycles after its address, like the accumulator array's: the address
        # delayed, then two cycles, the block RAM's read and its word's register
        acc_addr, = delayed(m, [dr.acc_addr], "acc_request", ACC_READ_LATENCY - 2)
        m.d.sync += dr.acc_data.eq(acc.data)
        m.d.comb += [acc.addr.eq(acc_addr),
                     dr.bias_data.eq(table_read(m, bias, dr.bias_en, dr.bias_addr, "bias_request")),
                     dr.threshold_data.eq(table_read(m, threshold, dr.threshold_en, dr.threshold_addr,
                                                     "threshold_request")),
                     dr.stream_data.eq(table_read(m, stream_read, Const(1), dr.stream_addr, "stream_request",
                                                  STREAM_READ_LATENCY)),
                     stream_write.en.eq(dr.stream_we), stream_write.addr.eq(dr.stream_waddr),
                     stream_write.data.eq(dr.stream_wdata)]
        h.host.connect(m, h.spikes, dr.word_valid, dr.word_addr, dr.word_data, 0)

    spikes = SpikeMemory(P)
    harness = Harness(connect, drain=Drain(P), spikes=spikes, **memories)
    harness.host = SpikeHost(spikes)
    return harness


def _stream_addr(tile, t, y, x):
    return pack_fields(stream_word_layout(P), tile=tile, t=t, y=y, x=x)


def _run(desc, tile, contents):
    dut = _harness(contents)
    dr = dut.drain
    T, H, W = desc["T"], desc["H"], desc["W"]

    async def bench(ctx):
        set_desc(ctx, dr.desc, **desc)
        ctx.set(dr.tile, tile)
        seen = {"reads": [], "out": [], "overflow": [], "membrane_overflow": []}

        def observe(ctx):
            if ctx.get(dr.acc_valid):
                seen["reads"].append((ctx.get(dr.acc_addr), ctx.get(dr.acc_keep)))
            if ctx.get(dr.out_valid):
                position = (ctx.get(dr.out_t), ctx.get(dr.out_y), ctx.get(dr.out_x))
                seen["out"].append((position, [ctx.get(dr.out_spikes) >> lane & 1 for lane in range(P.n_pe)],
                                    [ctx.get(dr.out_membrane[lane]) for lane in range(P.n_pe)]))
                seen["overflow"].append(ctx.get(dr.overflow))
                seen["membrane_overflow"].append(ctx.get(dr.membrane_overflow))
            else:
                assert not ctx.get(dr.overflow) and not ctx.get(dr.membrane_overflow)

        ctx.set(dut.host.select, 0)
        seen["cycles"] = await run_pass(ctx, dr, observe)
        ctx.set(dut.host.select, 1)
        seen["stream"] = {(t, y, x): [ctx.get(dut.stream.data[_stream_addr(tile, t, y, x)])[lane]
                                      for lane in range(P.n_pe)]
                          for t in range(T) for y in range(H) for x in range(W)}
        group = desc["out_base"] + tile
        rows = await read_spike_rows(ctx, dut.host, [spike_addr(P, group, t, y) for t in range(T) for y in range(H)])
        seen["spikes"] = {(t, y, x): [rows[spike_addr(P, group, t, y)][lane] >> x & 1 for lane in range(P.n_pe)]
                          for t in range(T) for y in range(H) for x in range(W)}
        return seen

    return simulate(dut, bench)


def _expected(desc, tile, contents):
    """Per position (t innermost) the sum, spikes and membranes of every lane (docs/integer-semantics.md §3)."""
    T, H, W, F = desc["T"], desc["H"], desc["W"], desc["frac_bits"]
    out = {}
    for y in range(H):
        for x in range(W):
            v = [0] * P.n_pe
            for t in range(T):
                acc = contents["acc"][x | y << P.w_bits | (0 if desc.get("static") else t) << (P.w_bits + P.h_bits)]
                stream = contents["stream"][_stream_addr(tile, t, y, x)]
                total = [acc[j] + contents["bias"][desc["bias_base"] + tile][j]
                         + (stream[j] if desc.get("residual") else 0) for j in range(P.n_pe)]
                h = [v[j] + ((((total[j] << F) - v[j]) * P.decay_mult) >> P.decay_shift) for j in range(P.n_pe)]
                theta = contents["threshold"][desc["threshold_base"] + tile]
                spikes = [int(h[j] >= theta[j]) for j in range(P.n_pe)]
                v = [0 if s else hj for s, hj in zip(spikes, h)]
                out[t, y, x] = total, spikes, h
    return out


BASE = dict(op=OPCODES["CONV"], lif=1, T=3, H=2, W=3, bias_base=1, threshold_base=2, out_base=5, frac_bits=3,
            check_bits=P.acc_bits, membrane_bits=P.membrane_bits)


@pytest.mark.parametrize("flags", [dict(residual=1, stream_write=1), dict(static=1, stream_write=1), dict()])
def test_drain_adds_bias_and_residual_runs_the_lif_and_writes_back(flags):
    desc, tile = {**BASE, **flags}, 1
    contents = _contents(seed=len(flags) + 3 * flags.get("static", 0))
    seen = _run(desc, tile, contents)
    expected = _expected(desc, tile, contents)
    T, H, W = desc["T"], desc["H"], desc["W"]
    order = [(t, y, x) for y in range(H) for x in range(W) for t in range(T)]
    assert seen["cycles"] == drain_cycles(T, H, W)
    assert [position for position, _, _ in seen["out"]] == order
    assert [spikes for _, spikes, _ in seen["out"]] == [expected[k][1] for k in order]
    assert [membrane for _, _, membrane in seen["out"]] == [expected[k][2] for k in order]
    assert seen["spikes"] == {k: expected[k][1] for k in order}
    assert any(any(s) for s in seen["spikes"].values()) and not all(all(s) for s in seen["spikes"].values())
    initial = {k: contents["stream"][_stream_addr(tile, *k)] for k in order}
    assert seen["stream"] == ({k: expected[k][0] for k in order} if desc.get("stream_write") else initial)
    assert not any(seen["overflow"]) and not any(seen["membrane_overflow"])
    # accumulator reads {t, y, x}: a static input's t = 0 word, kept until the last timestep
    static = desc.get("static", 0)
    assert seen["reads"] == [(x | y << P.w_bits | (0 if static else t) << (P.w_bits + P.h_bits),
                              int(bool(static) and t != T - 1)) for t, y, x in order]


def test_overflow_flags_the_positions_whose_sum_exceeds_check_bits():
    desc, tile = {**BASE, "residual": 1, "check_bits": 10}, 0
    contents = _contents(seed=11)
    seen = _run(desc, tile, contents)
    expected = _expected(desc, tile, contents)
    order = [position for position, _, _ in seen["out"]]
    flags = [int(not all(fits_signed(value, 10) for value in expected[k][0])) for k in order]
    assert seen["overflow"] == flags and 0 < sum(flags) < len(flags)


@pytest.mark.parametrize("lif", [1, 0])
def test_membrane_overflow_flags_the_positions_whose_membrane_exceeds_membrane_bits(lif):
    """The LIF's H before reset (exact in the build's membrane_bits) against the descriptor's narrower
    membrane_bits, the fused LIF's declared width; a descriptor without a LIF checks none. The result
    itself fits check_bits: only the membrane is flagged."""
    desc, tile = {**BASE, "residual": 1, "membrane_bits": 12, "lif": lif}, 1
    contents = _contents(seed=5)
    seen = _run(desc, tile, contents)
    expected = _expected(desc, tile, contents)
    order = [position for position, _, _ in seen["out"]]
    flags = [int(lif and not all(fits_signed(h, 12) for h in expected[k][2])) for k in order]
    assert seen["membrane_overflow"] == flags and not any(seen["overflow"])
    if lif:
        assert 0 < sum(flags) < len(flags)


def test_rejects_engine_params():
    with pytest.raises(TypeError, match="params must be an AcceleratorParams, not EngineParams"):
        Drain(EngineParams())
