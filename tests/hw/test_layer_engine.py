"""Layer engine in the Amaranth simulator: every spike and membrane equal to the golden model's,
cycles equal to the documented cycle model."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikeforge.interface.params import EngineParams
from spikeforge.hw.spike_to_event import SpikeToEvent
from spikeforge.sim.cycles import layer_cycles, layer_events, overhead_bound
from spikeforge.sim.layer import run_layer
from spikeforge.sim.layer_case import check_fits, random_case
from spikeforge.tests.hw.bench import simulate


def _params(n_pe, bits, T=4, cin=8, tiles=4, h=4, w=8):
    return EngineParams(n_pe=n_pe, weight_bits=bits, max_T=T, max_cin=cin, max_tiles=tiles, max_h=h, max_w=w,
                        frac_bits=T)


def _check(case, params):
    result, difference = run_layer(case, params, "amaranth")
    assert difference is None, difference
    assert result["cycles"] == layer_cycles(case, params)
    assert result["events"] == layer_events(case, params)
    assert result["cycles"] <= 1.1 * result["events"] + overhead_bound(case, params)
    return result


@pytest.mark.parametrize("kind", ["linear", "conv1x1", "conv3x3"])
@pytest.mark.parametrize("rate", [0.0, 0.05, 0.5, 1.0])
def test_every_kind_and_rate_is_bit_exact(kind, rate):
    params = _params(n_pe=4, bits=8)
    size = (2, 4) if kind == "linear" else (3, 5)
    _check(random_case(kind, 3, 6, size=size, T=3, rate=rate, bits=8, seed=7, params=params), params)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["linear", "conv1x1", "conv3x3"]), cin=st.integers(1, 5), cout=st.integers(1, 9),
       h=st.integers(1, 4), w=st.integers(1, 6), T=st.integers(1, 4), rate=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
       bits=st.sampled_from([4, 8]), n_pe=st.sampled_from([4, 8, 16, 64]), seed=st.integers(0, 2**16))
def test_random_layers_are_bit_exact(kind, cin, cout, h, w, T, rate, bits, n_pe, seed):
    params = _params(n_pe=n_pe, bits=bits, w=8 if kind != "linear" else 32)
    case = random_case(kind, cin, cout, size=(h, w), T=T, rate=rate, bits=bits, seed=seed, params=params)
    case.frac_bits = params.frac_bits
    _check(case, params)


def test_multi_tile_layer_with_64_lanes():
    params = _params(n_pe=64, bits=4, cin=4, tiles=2)
    _check(random_case("conv1x1", 4, 70, size=(2, 2), T=2, rate=0.5, bits=4, seed=3, params=params), params)


def test_capacity_errors_name_the_parameter():
    params = _params(n_pe=4, bits=8)
    with pytest.raises(ValueError, match="layer cin=9 exceeds the hardware's max_cin=8"):
        check_fits(random_case("conv1x1", 9, 2, params=params), params)


@pytest.mark.parametrize("field,value,message", [
    ("n_pe", 12, "n_pe must be a power of two, not 12"),
    ("max_w", 0, "max_w must be a power of two, not 0"),
    ("weight_bits", 1, "weight_bits must be an integer in 2..16, not 1"),
    ("decay_mult", 3, "decay_mult must be in 1..2\\*\\*decay_shift, not 3"),
    ("membrane_bits", 20, "membrane_bits must be at least acc_bits \\+ frac_bits \\+ 1"),
    ("logit_bits", 64, "logit_bits must be an integer in 4..63, not 64"),
    ("logit_bits", 23, "logit_bits must be in acc_bits..2·acc_bits \\(24..48\\), not 23"),
    ("logit_bits", 49, "logit_bits must be in acc_bits..2·acc_bits \\(24..48\\), not 49"),
])
def test_parameter_validation_messages(field, value, message):
    with pytest.raises(ValueError, match=message):
        EngineParams(**{field: value})


def test_logits_are_as_wide_as_the_accumulators_unless_given():
    assert EngineParams(acc_bits=20, membrane_bits=25).logit_bits == 20
    assert EngineParams(acc_bits=20, membrane_bits=25, logit_bits=40).logit_bits == 40


@pytest.mark.parametrize("presearched", [False, True])
def test_spike_to_event_emits_each_set_bit_once_lowest_first(presearched):
    dut = SpikeToEvent(8, presearched)

    def searched(word):   # the fields of searched_layout(8), from Python's own bit tricks
        lowest = word & -word
        return {"bits": word, "lowest": lowest, "any": int(word != 0), "single": int(word & (word - 1) == 0)}

    async def bench(ctx):
        seen = []
        for word in (0b10110010, 0, 0b1, 0b11000000):
            ctx.set(dut.word, searched(word) if presearched else word)
            ctx.set(dut.load, 1)
            while True:
                valid, index, last = ctx.get(dut.valid), ctx.get(dut.index), ctx.get(dut.last)
                ctx.set(dut.advance, valid)
                if valid:
                    seen.append(index)
                await ctx.tick()
                ctx.set(dut.load, 0)
                if last:
                    break
            seen.append("|")
        return seen

    assert simulate(dut, bench) == [1, 4, 5, 7, "|", "|", 0, "|", 6, 7, "|"]


def test_cycles_follow_the_spikes_not_the_dense_size():
    """Same layer, same weights: 5 % input firing takes at most 1/8 of the cycles of 50 %."""
    params = EngineParams(n_pe=4, max_T=1, max_cin=32, max_tiles=1, max_h=16, max_w=16, frac_bits=1)
    cycles = {}
    for rate in (0.05, 0.5):
        case = random_case("conv3x3", 32, 4, size=(16, 16), T=1, rate=rate, bits=8, seed=11, params=params)
        cycles[rate] = _check(case, params)["cycles"]
    assert cycles[0.05] <= cycles[0.5] / 8, cycles


def test_compare_names_the_first_difference():
    from spikeforge.sim.layer_case import compare, expected

    params = _params(n_pe=4, bits=8)
    case = random_case("conv1x1", 2, 3, size=(2, 2), T=2, rate=0.5, seed=1, params=params)
    spikes, membranes = expected(case)
    result = {"spikes": spikes.tolist(), "membranes": membranes.tolist()}
    assert compare(case, result) is None
    result["membranes"][1][2][0][1] += 1
    assert compare(case, result)[:5] == ("membrane", 1, 2, 0, 1)
