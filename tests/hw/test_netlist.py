"""Generated Verilog: deterministic, and free of multipliers (Yosys statistics)."""

from amaranth import Module
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikeforge.hw.netlist import TOP_NAME, engine_verilog, multiplier_cells, yosys_cell_counts
from spikeforge.hw.params import EngineParams
from spikeforge.tests.helpers import run_cli


class _Multiplier(wiring.Component):
    a: In(8)
    b: In(8)
    product: Out(16)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.product.eq(self.a * self.b)
        return m


def test_layer_engine_has_no_multiplier_cells():
    params = EngineParams(n_pe=8, max_cin=8, max_tiles=2, max_h=4, max_w=8, frac_bits=4, decay_mult=171,
                          decay_shift=8)
    counts = yosys_cell_counts(engine_verilog(params), TOP_NAME)
    assert counts.get("$add", 0) > 0          # the statistics are real: the adders are there
    assert multiplier_cells(engine_verilog(params), TOP_NAME) == 0, counts


def test_the_multiplier_check_finds_a_multiplier():
    assert multiplier_cells(verilog.convert(_Multiplier(), name="mul"), "mul") == 1


def test_verilog_command_is_byte_identical_across_runs(tmp_path):
    outputs = []
    for i in range(2):
        result = run_cli("verilog", "--set", "n_pe=4", "--set", "max_cin=8", "--out", tmp_path / f"v{i}", "--json")
        assert result.code == 0, result.stderr
        assert result.json["params"]["n_pe"] == 4
        outputs.append({p.name: p.read_bytes() for p in (tmp_path / f"v{i}").iterdir()})
    assert outputs[0] == outputs[1]
    assert set(outputs[0]) == {f"{TOP_NAME}.v", "params.json"}
    assert b"module spikeforge_layer_engine" in outputs[0][f"{TOP_NAME}.v"]


def test_verilog_command_rejects_bad_parameters(tmp_path):
    result = run_cli("verilog", "--set", "n_pe=12", "--out", tmp_path / "v")
    assert result.code == 2 and "n_pe must be a power of two, not 12" in result.stderr
    assert not (tmp_path / "v").exists()
