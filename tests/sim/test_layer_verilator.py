"""Verilator tier: the generated Verilog of the layer engine, built and run through cocotb,
bit-exact against the golden model on a fixed set of seeds."""

import pytest

from spikeforge.interface.params import EngineParams
from spikeforge.sim.cycles import layer_cycles
from spikeforge.sim.layer import run_layer
from spikeforge.sim.layer_case import random_case
from spikeforge.tests.helpers import run_cli

CASES = [  # (kind, cin, cout, size, T, rate, bits, n_pe, seed): two builds (4 and 16 lanes) serve all
    ("conv3x3", 3, 5, (3, 4), 2, 0.5, 8, 4, 1),
    ("linear", 2, 3, (1, 6), 2, 1.0, 8, 4, 3),
    ("conv3x3", 2, 9, (2, 2), 2, 0.0, 4, 16, 4),
    ("linear", 2, 40, (1, 4), 2, 0.5, 4, 16, 7),
]


@pytest.fixture(scope="module")
def build_root(tmp_path_factory):
    return tmp_path_factory.mktemp("verilator")


@pytest.mark.parametrize("case_args", CASES, ids=lambda c: f"{c[0]}-rate{c[5]}-bits{c[6]}-npe{c[7]}")
def test_layer_engine_in_verilator_is_bit_exact(case_args, build_root):
    kind, cin, cout, size, T, rate, bits, n_pe, seed = case_args
    # 8-bit weight lanes hold the 4-bit cases too, so the builds are shared
    params = EngineParams(n_pe=n_pe, weight_bits=8, max_T=4, max_cin=4, max_tiles=4, max_h=4, max_w=8,
                          frac_bits=4)
    case = random_case(kind, cin, cout, size=size, T=T, rate=rate, bits=bits, seed=seed, params=params)
    case.frac_bits = params.frac_bits
    result, difference = run_layer(case, params, "verilator", build_root=build_root)
    assert difference is None, difference
    assert result["cycles"] == layer_cycles(case, params)


def test_sim_layer_command(tmp_path):
    result = run_cli("sim-layer", "--kind", "conv3x3", "--cin", "2", "--cout", "4", "--size", "3x3", "--T", "2",
                     "--rate", "0.3", "--n-pe", "4", "--backend", "amaranth", "--json", cwd=tmp_path)
    assert result.code == 0, result.stderr
    payload = result.json
    assert payload["match"] is True and payload["cycles"] == payload["predicted_cycles"]
    assert 0 < payload["utilization"] <= 1


def test_amaranth_waveform_on_request(tmp_path):
    result = run_cli("sim-layer", "--kind", "conv1x1", "--cin", "2", "--cout", "2", "--size", "2x2", "--T", "1",
                     "--n-pe", "4", "--backend", "amaranth", "--waves", "--build-dir", tmp_path)
    assert result.code == 0, result.stderr
    assert (tmp_path / "layer.vcd").read_text().startswith("$date") or "$var" in (tmp_path / "layer.vcd").read_text()
