"""Generated Verilog: deterministic, free of multipliers (Yosys statistics), and without initial
contents for memories loaded at run time."""

import re

from amaranth import Module
from amaranth.back import verilog
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.hw.initial_contents import zeroed_memory
from spikeforge.hw.accelerator import Accelerator
from spikeforge.hw.netlist import (TOP_NAME, accelerator_verilog, multiplier_cells, runtime_verilog,
                                   yosys_cell_counts, yosys_port_bits)
from spikeforge.interface.fpga import PART_CONFIGURATIONS, configuration
from spikeforge.interface.params import AcceleratorParams
from spikeforge.tests.flow.tiny_designs import io_bits
from spikeforge.tests.helpers import DIGITS, run_cli


class _Multiplier(wiring.Component):
    a: In(8)
    b: In(8)
    product: Out(16)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.product.eq(self.a * self.b)
        return m


#: Small memories keep Yosys quick; every component of the accelerator is in, with widths that are
#: not powers of two (index arithmetic on them would need a multiplier), logits wider than the accumulators and
#: the τ = 1.5 decay.
SMALL = dict(n_pe=4, weight_bits=7, acc_bits=27, membrane_bits=33, logit_bits=41, max_cin=8, max_tiles=2, max_h=8,
             max_w=8, frac_bits=4, decay_mult=171, decay_shift=8, spike_groups=4, stream_tiles=2, weight_rows=40,
             bias_rows=6, threshold_rows=6, program_depth=5)


class _Memories(wiring.Component):
    """A memory loaded at run time, one that must start at zero and a table."""

    addr: In(3)
    data: Out(8)

    def elaborate(self, platform):
        m = Module()
        m.submodules.loaded = loaded = memory.Memory(shape=8, depth=8, init=[])
        m.submodules.zeroed = zeroed = zeroed_memory(shape=8, depth=8)
        m.submodules.table = table = memory.Memory(shape=8, depth=8, init=[3, 5])
        data = 0
        for mem in (loaded, zeroed, table):
            if mem is not table:
                write = mem.write_port()
                m.d.comb += [write.addr.eq(self.addr), write.data.eq(self.addr), write.en.eq(1)]
            read = mem.read_port()
            m.d.comb += read.addr.eq(self.addr)
            data = data ^ read.data
        m.d.comb += self.data.eq(data)
        return m


#: A memory's declaration in Verilog (Yosys escapes names that are keywords: ``\\program``).
MEMORY = r"reg \[[^]]*\] \\?(\S+)\s*\[[^]]*\];"


def _initialized_memories(text):
    """``{memory: its initial words}`` of the memories that have an ``initial`` block in Verilog ``text``."""
    blocks = re.findall(MEMORY + r"\n\s*initial begin\n(.*?)\n\s*end\n", text, re.S)
    return {name: re.findall(r"\] = (\S+);", body) for name, body in blocks}


def test_memories_loaded_at_run_time_have_no_initial_contents():
    text = runtime_verilog(_Memories(), "memories")
    assert "reg [7:0] loaded [7:0];" in text
    assert _initialized_memories(text) == {"zeroed": ["8'h00"] * 8,
                                           "table": ["8'h03", "8'h05"] + ["8'h00"] * 6}
    assert runtime_verilog(_Memories(), "memories") == text        # byte-stable


def test_the_accelerator_zeroes_only_its_accumulators_and_overflow_log():
    """Cycle log, Kᵀ·V scratch, stream, spike banks and occupancy, head sums, the row readers' FIFOs: filled
    at run time (no initial block); the accumulators start at zero (the first tile adds to them), and so does
    the overflow log (its words, read-modify-written, hold no flag before the first run). The tables
    (program, weights, biases, thresholds) are in external memory, not on chip."""
    text = accelerator_verilog(AcceleratorParams(**SMALL))
    memories = set(re.findall(MEMORY, text))
    assert {"op_cycles", "scratch", "stream", "sums", "acc"} <= memories
    assert not {"program", "weights", "bias", "threshold"} & memories
    assert {"bank0", "occupancy0"} <= memories
    assert set(_initialized_memories(text)) == {"acc", "words"}


def test_the_whole_accelerator_has_no_multiplier_cells():
    text = accelerator_verilog(AcceleratorParams(**SMALL))
    counts = yosys_cell_counts(text, TOP_NAME)
    assert counts.get("$add", 0) > 0          # the statistics are real: the adders are there
    assert multiplier_cells(counts) == 0, counts


def test_the_multiplier_check_finds_a_multiplier():
    assert multiplier_cells(yosys_cell_counts(verilog.convert(_Multiplier(), name="mul"), "mul")) == 1


#: User I/O of the LFE5U-85F in CABGA381 that a top may use (DESIGN.md §4a; 205 balls bond).
USER_IO = 197


def test_the_digits_top_fits_the_pins_of_its_package():
    """Its ports are as narrow as the build needs: the control word address holds 3 window, 4 slot (480-bit
    logit words) and 10 offset bits (1024 spike-memory words), the memory master's word address 23 bits
    (32 MB), both buses Wishbone with reads and writes on the same 32-bit data pins (87 and 93 pins); no
    Wishbone SEL, RTY, CTI, BTE. Yosys counts the pins as ``spikeforge synth`` does."""
    params = AcceleratorParams(**DIGITS)
    top = Accelerator(params)
    widths = {"__".join(map(str, path)): len(value) for path, _, value in top.signature.flatten(top)}
    assert widths["ctrl__adr"] == 3 + 4 + 10 and widths["mem__adr"] == 23
    # each port: cyc, stb, we, adr, datwr, stall, ack, err, datrd
    assert sum(width for name, width in widths.items() if name.startswith("ctrl__")) == 6 + 17 + 2 * 32
    assert sum(width for name, width in widths.items() if name.startswith("mem__")) == 6 + 23 + 2 * 32
    assert not {f"{port}__{name}" for port in ("ctrl", "mem") for name in ("sel", "rty", "cti", "bte")} & set(widths)
    pins = yosys_port_bits(accelerator_verilog(params), TOP_NAME)
    assert pins == io_bits(top) == 183 <= USER_IO


def test_the_configuration_top_fits_the_pins_of_its_package():
    """Configuration lfe5u-85f, which ``spikeforge synth`` builds for the LFE5U-85F: 3 window, 5 slot (640-bit
    logit words) and 12 offset bits (4096 spike-memory words) on the control bus, 3 pins more than the digits
    top."""
    params = configuration(PART_CONFIGURATIONS["LFE5U-85F"])
    top = Accelerator(params)
    assert len(top.ctrl.adr) == 3 + 5 + 12 and len(top.mem.adr) == 23
    assert io_bits(top) == 183 + 3 <= USER_IO


def test_verilog_command_is_byte_identical_across_runs(tmp_path):
    outputs = []
    for i in range(2):
        sets = [arg for key, value in SMALL.items() for arg in ("--set", f"{key}={value}")]
        result = run_cli("verilog", *sets, "--out", tmp_path / f"v{i}", "--stats", "--json")
        assert result.code == 0, result.stderr
        assert result.json["params"]["n_pe"] == 4 and result.json["multiplier_cells"] == 0
        outputs.append({p.name: p.read_bytes() for p in (tmp_path / f"v{i}").iterdir()})
    assert outputs[0] == outputs[1]
    assert set(outputs[0]) == {f"{TOP_NAME}.v", "params.json", "spikeforge_regs.h"}
    assert b"module spikeforge_accelerator" in outputs[0][f"{TOP_NAME}.v"]


def test_verilog_command_sizes_the_hardware_for_a_bundle(digits_bundle, tmp_path):
    from spikeforge.firmware.image import load_image

    result = run_cli("verilog", digits_bundle, "--set", "acc_bits=40", "--out", tmp_path / "rtl", "--json")
    assert result.code == 0, result.stderr
    image = load_image(tmp_path / "rtl" / "image")
    assert result.json["params"] == image.params and image.params["acc_bits"] == image.params["logit_bits"] == 40
    result = run_cli("verilog", digits_bundle, "--set", "acc_bits=4", "--out", tmp_path / "small")
    assert result.code == 2 and "the bundle needs at least acc_bits=" in result.stderr
    assert not (tmp_path / "small").exists()


def test_verilog_command_rejects_bad_parameters(tmp_path):
    result = run_cli("verilog", "--set", "n_pe=12", "--out", tmp_path / "v")
    assert result.code == 2 and "n_pe must be a power of two, not 12" in result.stderr
    assert not (tmp_path / "v").exists()
    result = run_cli("verilog", "--set", "memory_address_bits=33", "--out", tmp_path / "v")
    assert result.code == 2 and "memory_address_bits must be an integer in 12..32, not 33" in result.stderr
    assert not (tmp_path / "v").exists()
    result = run_cli("verilog", "--set", "acc_bits=16", "--set", "logit_bits=33", "--out", tmp_path / "v")
    assert result.code == 2 and "logit_bits must be in acc_bits..2·acc_bits (16..32), not 33" in result.stderr
    assert not (tmp_path / "v").exists()
