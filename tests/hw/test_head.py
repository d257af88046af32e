# amaranth: UnusedElaboratable=no
"""Head in the Amaranth simulator: logits = bias + Σ_c (stream sum of c) · w_c computed bit-serially,
the overflow checks of the sums and the logits, and the pass's cycles, against Python; with logits (and
their bias, in two rows) as wide as the accumulators and twice as wide."""

import random

import pytest
from amaranth import Const, signed
from amaranth.lib import data, memory

from spikeforge.hw.head import Head
from spikeforge.hw.logic import table_read
from spikeforge.interface.bits import fits_signed
from spikeforge.interface.descriptor import OPCODES
from spikeforge.interface.layout import high_lanes, pack_fields, stream_word_layout
from spikeforge.interface.params import EngineParams
from spikeforge.ops.base import wrap
from spikeforge.ops.conv import STREAM_READ_LATENCY
from spikeforge.ops.head import HORNER_STAGES
from spikeforge.tests.hw.bench import Harness, run_pass, set_desc, simulate, small_params

#: Logits as wide as the accumulators, and wider (sums and logits of 24 bits from stream words and bias
#: rows of 12).
PARAMS = {"equal": small_params(acc_bits=20), "wide": small_params(acc_bits=12, logit_bits=24)}
P = PARAMS["equal"]


def _harness(P, stream, weights, bias):
    acc_word = data.ArrayLayout(signed(P.acc_bits), P.n_pe)
    row = data.ArrayLayout(signed(P.weight_bits), P.n_pe)
    memories = dict(stream=memory.Memory(shape=acc_word, depth=len(stream), init=stream),
                    weights=memory.Memory(shape=row, depth=len(weights), init=weights),
                    bias=memory.Memory(shape=acc_word, depth=len(bias), init=bias))

    def connect(m, h):
        head = h.head
        stream_read, weight_read, bias_read = h.stream.read_port(), h.weights.read_port(), h.bias.read_port()
        m.d.comb += [head.stream_data.eq(table_read(m, stream_read, Const(1), head.stream_addr, "stream_request",
                                                    STREAM_READ_LATENCY)),
                     head.weight_data.eq(table_read(m, weight_read, head.weight_en, head.weight_addr,
                                                    "weight_request")),
                     head.bias_data.eq(table_read(m, bias_read, head.bias_en, head.bias_addr, "bias_request"))]

    return Harness(connect, head=Head(P), **memories)


def _run(P, desc, stream, weights, bias):
    dut = _harness(P, stream, weights, bias)

    async def bench(ctx):
        set_desc(ctx, dut.head.desc, **desc)
        overflows = []
        cycles = await run_pass(ctx, dut.head, lambda ctx: overflows.append(ctx.get(dut.head.overflow)))
        return cycles, [ctx.get(dut.head.logits[lane]) for lane in range(P.n_pe)], overflows

    return simulate(dut, bench)


def _case(P, seed, tiles=2, T=2, H=2, W=3, cin=7, stream_range=60, bias_range=1000):
    """A random head pass: its descriptor, the memories (the bias, ``logit_bits`` wide, in rows 2 and 3: the
    low bits, then the bits above), the stream sums, the bias and the logits."""
    rng = random.Random(seed)
    depth = 1 << (P.stream_tile_bits + P.t_bits + P.h_bits + P.w_bits)
    stream = [[rng.randrange(-stream_range, stream_range) for _ in range(P.n_pe)] for _ in range(depth)]
    weights = [[rng.randrange(-128, 128) for _ in range(P.n_pe)] for _ in range(P.weight_rows)]
    logit_bias = [rng.randrange(-bias_range, bias_range) for _ in range(P.n_pe)]
    bias = [[rng.randrange(-100, 100) for _ in range(P.n_pe)] for _ in range(P.bias_rows)]
    bias[2:4] = [[int(v) for v in wrap(logit_bias, P.acc_bits)], high_lanes(logit_bias, P.acc_bits)]
    desc = dict(op=OPCODES["HEAD"], tiles=tiles, T=T, H=H, W=W, cin=cin, weight_base=20, bias_base=2,
                sum_bits=12, check_bits=P.logit_bits)
    sums = [sum(stream[pack_fields(stream_word_layout(P), tile=c // P.n_pe, t=t, y=y, x=x)][c % P.n_pe]
                for t in range(T) for y in range(H) for x in range(W)) for c in range(tiles * P.n_pe)]
    logits = [logit_bias[j] + sum(sums[c] * weights[20 + c][j] for c in range(cin)) for j in range(P.n_pe)]
    return desc, stream, weights, bias, sums, logit_bias, logits


def _cycles(desc):
    # SUM, its flush (the last word's read, its register, its sum), Horner per bit (cin + shift), its flush
    # (the rest of the last weight row's latency, the pick, the term, its add), bias, check
    return (desc["tiles"] * desc["T"] * desc["H"] * desc["W"] + STREAM_READ_LATENCY + 1
            + desc["sum_bits"] * (desc["cin"] + 1) + HORNER_STAGES + 2)


@pytest.mark.parametrize("shape", [(2, 2, 2, 3), (2, 1, 1, 1), (2, 3, 1, 2), (1, 1, 1, 1)])
def test_logits_are_the_bias_plus_the_weighted_stream_sums(shape):
    """Stream tensors of ``(tiles, T, H, W)``, among them loops of a single step, and a single word."""
    tiles, T, H, W = shape
    desc, stream, weights, bias, sums, _, logits = _case(P, seed=1, tiles=tiles, T=T, H=H, W=W,
                                                      cin=min(7, tiles * P.n_pe))
    assert all(fits_signed(s, desc["sum_bits"]) for s in sums) and any(s < 0 for s in sums)
    cycles, result, overflows = _run(P, desc, stream, weights, bias)
    assert result == logits
    assert cycles == _cycles(desc)
    assert not any(overflows)


@pytest.mark.parametrize("seed", range(3))
def test_logits_wider_than_the_accumulators(seed):
    """Sums and logits of 24 bits from stream words of 12: sums beyond 12 bits, logits and a bias (two rows)
    beyond 12 bits, sums and biases of either sign, and the sums' top bit (subtracted) set."""
    P = PARAMS["wide"]
    desc, stream, weights, bias, sums, _, logits = _case(P, seed=seed, tiles=2, T=4, H=4, W=8, cin=8,
                                                      stream_range=1 << (P.acc_bits - 1), bias_range=1 << 21)
    assert min(bias[3]) < -1 and max(bias[3]) > 0
    desc["sum_bits"] = max(s.bit_length() for s in sums) + 1
    assert not all(fits_signed(s, P.acc_bits) for s in sums) and any(s < 0 for s in sums)
    assert not all(fits_signed(v, P.acc_bits) for v in logits)
    assert all(fits_signed(v, P.logit_bits) for v in logits)
    cycles, result, overflows = _run(P, desc, stream, weights, bias)
    assert result == logits
    assert cycles == _cycles(desc)
    assert not any(overflows)


def test_sums_wider_than_sum_bits_overflow():
    desc, stream, weights, bias, sums, logit_bias, _ = _case(P, seed=2)
    desc["sum_bits"] = max(s.bit_length() for s in sums)    # some sum needs one bit more
    assert not all(fits_signed(s, desc["sum_bits"]) for s in sums)
    cycles, result, overflows = _run(P, desc, stream, weights, bias)
    assert cycles == _cycles(desc)
    # the last word is added the cycle after it comes (STREAM_READ_LATENCY after its read), its sums
    # checked the cycle after
    sum_stage = desc["tiles"] * desc["T"] * desc["H"] * desc["W"] + STREAM_READ_LATENCY + 2
    assert any(overflows[:sum_stage]) and not any(overflows[sum_stage:])
    # the logits take the sums as held in sum_bits bits, as the golden model (ops/head.py) does
    held = [int(s) for s in wrap(sums, desc["sum_bits"])]
    assert held != sums[:len(held)]
    assert result == [logit_bias[j] + sum(held[c] * weights[20 + c][j] for c in range(desc["cin"]))
                      for j in range(P.n_pe)]


@pytest.mark.parametrize("name, ranges", [("equal", {}), ("wide", dict(stream_range=1 << 11, bias_range=1 << 21))])
def test_logits_wider_than_check_bits_overflow(name, ranges):
    """The check of the logits, also of logits wider than the accumulators (declared wider too)."""
    P = PARAMS[name]
    desc, stream, weights, bias, _, _, logits = _case(P, seed=3, **ranges)
    desc["sum_bits"] = P.logit_bits
    desc["check_bits"] = max(abs(v) for v in logits).bit_length()
    assert name == "equal" or desc["check_bits"] > P.acc_bits
    assert not all(fits_signed(v, desc["check_bits"]) for v in logits)
    assert all(fits_signed(v, P.logit_bits) for v in logits)
    cycles, result, overflows = _run(P, desc, stream, weights, bias)
    assert result == logits
    assert overflows == [0] * (cycles - 1) + [1]      # in the last cycle, which adds the bias


def test_rejects_engine_params():
    with pytest.raises(TypeError, match="params must be an AcceleratorParams, not EngineParams"):
        Head(EngineParams())
