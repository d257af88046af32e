"""Shared pieces of the engine components' simulator tests: small build parameters, a harness that
wires a component to real memories, and testbench helpers (run a pass, load spike rows)."""

from dataclasses import asdict

from amaranth import Elaboratable, Module, Signal
from amaranth.sim import Simulator

from spikeforge.firmware.image import ProgramImage
from spikeforge.interface.descriptor import OPCODES, pack
from spikeforge.interface.external import IMAGE_TABLES
from spikeforge.interface.regmap import word_bits

from spikeforge.hw.spike_memory import READ_LATENCY
from spikeforge.interface.descriptor import DESCRIPTOR_LAYOUT, DESCRIPTOR_SETTLE_CYCLES
from spikeforge.interface.layout import pack_fields, spike_row_layout
from spikeforge.interface.params import AcceleratorParams

__all__ = ["SMALL", "small_params", "Harness", "SpikeHost", "simulate", "set_desc", "run_pass", "write_spike_rows",
           "read_spike_rows", "spike_addr", "end_image"]

#: Build parameters small enough for quick simulations (n_pe = 4 lanes, images up to 4 × 8).
SMALL = dict(n_pe=4, weight_bits=8, acc_bits=16, membrane_bits=24, max_T=4, max_cin=8, max_tiles=2, max_h=4,
             max_w=8, frac_bits=3, spike_groups=8, stream_tiles=2, weight_rows=64, bias_rows=4, threshold_rows=4,
             program_depth=1)


def small_params(**overrides):
    return AcceleratorParams(**{**SMALL, **overrides})


def end_image(params, program=()):
    """A program image for ``params`` whose program is the descriptors ``program`` (field dicts), then END
    (every table one row): without ``program``, a run of the whole accelerator that only fetches END."""
    return ProgramImage(asdict(params), {"PROGRAM": [pack(**fields) for fields in program] + [pack(op=OPCODES["END"])],
                                         "WEIGHTS": [0], "BIAS": [0], "THRESHOLD": [0]},
                        {name: word_bits(name, params) for name in IMAGE_TABLES})


class Harness(Elaboratable):
    """Submodules (given by name, reachable as attributes) wired by ``connect(m, harness)``."""

    def __init__(self, connect, **submodules):
        self._connect = connect
        self._names = list(submodules)
        for name, submodule in submodules.items():
            setattr(self, name, submodule)

    def elaborate(self, platform):
        m = Module()
        for name in self._names:
            m.submodules[name] = getattr(self, name)
        self._connect(m, self)
        return m


class SpikeHost:
    """Testbench-side word-write and group-read ports of a :class:`SpikeMemory` that a component
    shares: the harness gives them the memory while ``select`` is high (see :meth:`connect`)."""

    def __init__(self, spikes):
        self.select = Signal(init=1)
        self.word_valid = Signal()
        self.word_addr = Signal.like(spikes.word_addr)
        self.word_data = Signal(spikes.group_word)
        self.group_addr = Signal.like(spikes.group_addr)
        self.group_data = spikes.group_data

    def connect(self, m, spikes, word_valid, word_addr, word_data, group_addr):
        """Drive ``spikes``' word and group ports from the testbench or the component."""
        with m.If(self.select):
            m.d.comb += [spikes.word_valid.eq(self.word_valid), spikes.word_addr.eq(self.word_addr),
                         spikes.word_data.eq(self.word_data), spikes.group_addr.eq(self.group_addr)]
        with m.Else():
            m.d.comb += [spikes.word_valid.eq(word_valid), spikes.word_addr.eq(word_addr),
                         spikes.word_data.eq(word_data), spikes.group_addr.eq(group_addr)]


def simulate(dut, bench, clocked=True):
    """Run the async testbench ``bench(ctx)`` on ``dut`` (with a clock unless it is combinational);
    returns what it returns."""
    sim = Simulator(dut)
    if clocked:
        sim.add_clock(1e-8)
    out = {}

    async def testbench(ctx):
        out["value"] = await bench(ctx)

    sim.add_testbench(testbench)
    sim.run()
    return out["value"]


def set_desc(ctx, desc, **fields):
    """Drive the descriptor port ``desc`` with ``fields`` (missing ones are 0)."""
    ctx.set(desc.as_value(), pack_fields(DESCRIPTOR_LAYOUT, **fields))


async def run_pass(ctx, unit, observe=None, limit=10_000, **start_inputs):
    """Let the descriptor settle (:data:`DESCRIPTOR_SETTLE_CYCLES`, as the sequencer does), pulse
    ``unit.start`` (with ``start_inputs``, e.g. ``rewind=1``, held in that cycle) and tick until
    ``unit.done``; ``observe(ctx)`` samples every cycle of the pass. Returns the pass's cycles (from
    the one after ``start`` to ``done`` included)."""
    for _ in range(DESCRIPTOR_SETTLE_CYCLES):
        await ctx.tick()
    ctx.set(unit.start, 1)
    for name, value in start_inputs.items():
        ctx.set(getattr(unit, name), value)
    await ctx.tick()
    ctx.set(unit.start, 0)
    for name in start_inputs:
        ctx.set(getattr(unit, name), 0)
    for cycles in range(1, limit + 1):
        if observe is not None:
            observe(ctx)
        done = ctx.get(unit.done)
        await ctx.tick()
        if done:
            return cycles
    raise AssertionError(f"no done after {limit} cycles")


def spike_addr(params, group, t, y):
    """Spike-memory word address ``{group, t, y}``."""
    return pack_fields(spike_row_layout(params), group=group, t=t, y=y)


async def write_spike_rows(ctx, spikes, rows):
    """Write ``{address: [row of lane 0, …]}`` through the word port of ``spikes`` (a
    :class:`SpikeMemory` or a :class:`SpikeHost`)."""
    for addr, lanes in rows.items():
        ctx.set(spikes.word_valid, 1)
        ctx.set(spikes.word_addr, addr)
        for lane, row in enumerate(lanes):
            ctx.set(spikes.word_data[lane], row)
        await ctx.tick()
    ctx.set(spikes.word_valid, 0)


async def read_spike_rows(ctx, spikes, addrs):
    """``{address: [row of lane 0, …]}`` read through the group port of ``spikes`` (a
    :class:`SpikeMemory` or a :class:`SpikeHost`)."""
    out = {}
    for addr in addrs:
        ctx.set(spikes.group_addr, addr)
        await ctx.tick().repeat(READ_LATENCY)
        out[addr] = [ctx.get(spikes.group_data[lane]) for lane in range(len(spikes.group_data))]
    return out
