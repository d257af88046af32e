"""The whole accelerator, end to end in Verilator: every random network (``network_cases``) and the trained
digits network on one shared build, the buses against third-party Wishbone models, the driver's reads of
external memory, overflow lists."""

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikeforge.firmware.compiler import compile_bundle
from spikeforge.firmware.image import external_image
from spikeforge.hw.accelerator import Accelerator
from spikeforge.hw.bus import wishbone_signature
from spikeforge.interface import regmap
from spikeforge.interface.params import AcceleratorParams
from spikeforge.quant import GoldenModel, load_bundle
from spikeforge.sim.network import first_difference, run_network
from spikeforge.tests.helpers import run_cli
from spikeforge.tests.sim.network_cases import (NETWORKS, OVERFLOW_LISTS, SHARED_N_PE, check_network, inputs,
                                                overflow_case)


@pytest.fixture(scope="module")
def shared_overrides(networks, digits_bundle):
    """Build parameters large enough for every network and the trained digits network: one Verilator
    build runs them all (the LIF's fractional bits are a descriptor field, so any T shares it)."""
    bundles = [bundle for bundle, _ in networks.values()] + [load_bundle(digits_bundle)]
    needed = [compile_bundle(bundle, n_pe=SHARED_N_PE).params for bundle in bundles]
    shared = {key: max(p[key] for p in needed) for key in needed[0] if key not in ("decay_mult", "decay_shift")}
    # the widest accumulators (a random network's) and the most fraction bits (another's, T = 4) take a membrane
    # wider than either network's own
    shared["membrane_bits"] = max(shared["membrane_bits"], shared["acc_bits"] + shared["frac_bits"] + 1)
    return {key: str(value) for key, value in shared.items()}


@pytest.fixture(scope="module")
def shared_build(tmp_path_factory):
    """Where the shared Verilator build lives (the working directory of the CLI test below)."""
    root = tmp_path_factory.mktemp("shared")
    (root / "verilator").mkdir()
    return root


@pytest.mark.parametrize("name", [n[0] for n in NETWORKS])
def test_random_network_is_bit_exact_in_verilator(networks, shared_overrides, shared_build, name):
    bundle, _ = networks[name]
    image = compile_bundle(bundle, overrides=shared_overrides)
    assert image.params["n_pe"] == SHARED_N_PE
    check_network(image, bundle, "verilator", n=1, build_root=shared_build / "verilator")


#: Cycles cocotbext-wishbone's master waits for a request to be taken or answered before it fails the test.
WISHBONE_TIMEOUT = 100


class _WishboneMasterBus:
    """The driver's bus on cocotbext-wishbone's pipelined master: a third-party model of the protocol, one bus
    cycle per ``write_all`` or ``read``."""

    def __init__(self, dut):
        from cocotb.triggers import RisingEdge
        from cocotbext.wishbone.driver import WishboneMaster

        # the master binds <name>_<signal>, the port's flattened names are ctrl__<signal>
        self.master = WishboneMaster(dut, "ctrl_", dut.clk, timeout=WISHBONE_TIMEOUT, width=regmap.BUS_DATA_BITS)
        self.done = lambda: RisingEdge(dut.done)
        self.dut = dut

    async def _cycle(self, accesses):
        """``(byte address, value or None for a read)`` pairs in one bus cycle; each must be acknowledged."""
        from cocotbext.wishbone.driver import WBOp

        results = await self.master.send_cycle([WBOp(addr >> regmap.BYTE_BITS, value, acktimeout=WISHBONE_TIMEOUT)
                                                for addr, value in accesses])
        assert [result.ack for result in results] == [1] * len(accesses), "ACK (1) for each, not ERR (2)"
        return results

    async def write(self, addr, value):
        await self._cycle([(addr, value)])

    async def write_all(self, writes):
        await self._cycle(writes)

    async def read(self, addr):
        result, = await self._cycle([(addr, None)])
        return result.datrd.to_unsigned()

    async def wait_done(self):
        if not self.dut.done.value:
            await self.done()


async def third_party_master_testbench(ports):
    """Verilator side of the compliance test: the network of the job file through cocotbext-wishbone."""
    import json
    import os
    from pathlib import Path

    from spikeforge.firmware.image import load_image
    from spikeforge.sim.network import run_on_bus

    job = json.loads(Path(os.environ["SPIKEFORGE_BUS_JOB"]).read_text())
    results = await run_on_bus(_WishboneMasterBus(ports.dut), load_image(job["image"]), np.load(job["inputs"]),
                               check=True)
    np.savez(job["results"], **results)
    return len(results["cycles"])


def test_control_bus_complies_with_a_third_party_wishbone_master(networks, shared_overrides, shared_build, tmp_path):
    """cocotbext-wishbone's WishboneMaster (not our driver's bus) loads a network, runs it and reads every layer
    back through the control slave; the results are bit-exact with the golden model."""
    from spikeforge.firmware.image import EXTERNAL
    from spikeforge.sim.memory_model import PRELOAD_PLUSARG
    from spikeforge.sim.system import memory_words, system
    from spikeforge.sim.verilator_runner import run_verilator

    bundle, _ = networks["cifar-d1-dim16-h1-T1"]
    image = compile_bundle(bundle, overrides=shared_overrides)
    pixels = inputs(bundle, 1)
    env = _write_job(tmp_path, image, pixels.numpy())
    params = dict(image.params, memory_words=memory_words(image))
    assert run_verilator(system, params, "spikeforge.tests.sim.test_network_verilator", "third_party_master_testbench",
                         shared_build / "verilator", extra_env=env,
                         plusargs=[f"+{PRELOAD_PLUSARG}={tmp_path / 'image' / (EXTERNAL + '.hex')}"]) == 1
    results = _job_results(tmp_path)
    trace = GoldenModel(bundle).run(pixels)
    assert first_difference(results, trace) is None, first_difference(results, trace)
    assert {f"spikes/{name}" for name in trace.spikes} <= set(results)


class _OneRequestAtATime(wiring.Component):
    """In front of cocotbext-wishbone's ``WishboneSlave``: it takes a request, then waits for its own answer
    before it looks at the bus again (a request taken meanwhile would go unanswered), and it waits for an
    answer even to a request it saw while it stalled. So this stalls the master while a request is
    unanswered, and while the model stalls hides the request from it; the answers, their data and delays
    and the model's stalls pass through. A pipelined slave that answers one request at a time does the same."""

    def __init__(self, addr_bits):
        super().__init__({"master": In(wishbone_signature(addr_bits)), "slave": Out(wishbone_signature(addr_bits))})

    def elaborate(self, platform):
        m = Module()
        master, slave = self.master, self.slave
        unanswered = Signal()
        taken = master.stb & ~unanswered & ~slave.stall
        m.d.comb += [slave.cyc.eq(master.cyc), slave.stb.eq(taken), slave.we.eq(master.we), slave.adr.eq(master.adr),
                     slave.datwr.eq(master.datwr), master.stall.eq(unanswered | slave.stall), master.ack.eq(slave.ack),
                     master.err.eq(slave.err), master.datrd.eq(slave.datrd)]
        with m.If(taken):
            m.d.sync += unanswered.eq(1)
        with m.If(slave.ack | slave.err):
            m.d.sync += unanswered.eq(0)
        return m


def bare_accelerator(**params):
    """The accelerator alone, its memory master a port (through :class:`_OneRequestAtATime`) for a third-party
    slave model (a named factory for the Verilator runner)."""
    p = AcceleratorParams(**params)
    accelerator = Accelerator(p)

    class WithOneRequestAtATime(wiring.Component):
        def __init__(self):
            super().__init__({"ctrl": accelerator.signature.members["ctrl"],
                              "mem": accelerator.signature.members["mem"], "done": Out(1)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.accelerator = accelerator
            m.submodules.adapter = adapter = _OneRequestAtATime(len(accelerator.mem.adr))
            wiring.connect(m, wiring.flipped(self.ctrl), accelerator.ctrl)
            wiring.connect(m, accelerator.mem, adapter.master)
            wiring.connect(m, adapter.slave, wiring.flipped(self.mem))
            m.d.comb += self.done.eq(accelerator.done)
            return m

    return WithOneRequestAtATime()


class _Recorded:
    """A generator's values, each recorded as it is drawn."""

    def __init__(self, values):
        self.values, self.drawn = values, []

    def __iter__(self):
        return self

    def __next__(self):
        self.drawn.append(next(self.values))
        return self.drawn[-1]


async def third_party_memory_testbench(ports):
    """Verilator side: the accelerator's Wishbone master reads cocotbext-wishbone's ``WishboneSlave``, whose
    data generator answers each read with the image's word at the request's address (0 beyond the image),
    with stalls and answer delays from its generators."""
    import itertools
    import json
    import os
    from pathlib import Path

    import cocotb
    from cocotb.triggers import RisingEdge
    from cocotbext.wishbone.monitor import WishboneSlave

    from spikeforge.firmware.image import external_image, load_image
    from spikeforge.sim.network import network_testbench

    job = json.loads(Path(os.environ["SPIKEFORGE_MEMORY_JOB"]).read_text())
    image = load_image(job["image"])
    words, dut, slaves = external_image(image), ports.dut, []

    def read_data():
        while True:
            address = slaves[0].bus.adr.value.to_unsigned()
            yield words[address] if address < len(words) else 0

    delays = _Recorded(itertools.cycle([0, 0, 1, 3]))
    slaves.append(WishboneSlave(dut, "mem_", dut.clk, datgen=read_data(), waitreplygen=delays,
                                waitstallgen=itertools.cycle([[0, 3], [2, 1], [0, 1], [5, 2]])))
    stalled = []

    async def count_stalls():      # bus cycles in which the model stalls
        while True:
            await RisingEdge(dut.clk)
            if dut.mem__cyc.value and dut.mem__stall.value:
                stalled.append(1)

    cocotb.start_soon(count_stalls())
    results = await network_testbench(ports, image, np.load(job["inputs"]), check=True)
    np.savez(job["results"], **results)
    return {"images": len(results["cycles"]), "stalled": len(stalled), "delayed": sum(d > 0 for d in delays.drawn),
            "answered": len(delays.drawn)}


def _write_job(tmp_path, image, pixels, variable="SPIKEFORGE_BUS_JOB"):
    """The image, inputs and results paths of a Verilator job (read by the testbenches above), in the
    environment variable ``variable``."""
    import json

    from spikeforge.firmware.image import write_image

    write_image(image, tmp_path / "image")
    np.save(tmp_path / "inputs.npy", pixels)
    job = {"image": str(tmp_path / "image"), "inputs": str(tmp_path / "inputs.npy"),
           "results": str(tmp_path / "results.npz")}
    (tmp_path / "job.json").write_text(json.dumps(job))
    return {variable: str(tmp_path / "job.json")}


def _job_results(tmp_path):
    with np.load(tmp_path / "results.npz") as data:
        return {key: data[key] for key in data.files}


def test_memory_master_complies_with_a_third_party_wishbone_slave(networks, shared_build, tmp_path):
    """The accelerator's Wishbone master fetches a network's tables from cocotbext-wishbone's WishboneSlave
    (not our memory model), which stalls it and delays its answers; the results are bit-exact with the
    golden model. The smallest network on a build sized to it: the model answers in Python every cycle."""
    from spikeforge.sim.verilator_runner import run_verilator

    bundle, n_pe = networks["cifar-d1-dim16-h1-T1"]
    image = compile_bundle(bundle, n_pe=n_pe)
    pixels = inputs(bundle, 1)
    env = _write_job(tmp_path, image, pixels.numpy(), "SPIKEFORGE_MEMORY_JOB")
    report = run_verilator(bare_accelerator, image.params, "spikeforge.tests.sim.test_network_verilator",
                           "third_party_memory_testbench", shared_build / "verilator", extra_env=env)
    assert report["images"] == 1
    # the model's stalls and answer delays were exercised
    assert report["stalled"] > 0 and 0 < report["delayed"] < report["answered"]
    results = _job_results(tmp_path)
    trace = GoldenModel(bundle).run(pixels)
    assert first_difference(results, trace) is None, first_difference(results, trace)
    assert results["stall_cycles"][0] > 0


async def model_memory_testbench(ports):
    """Verilator side: the driver reads external memory through the model's storage (the cocotb handle of
    its array): the image's words as preloaded, the spill region after them (empty)."""
    import json
    import os
    from pathlib import Path

    from spikeforge.firmware.driver import Driver, PortsBus
    from spikeforge.firmware.image import load_image
    from spikeforge.sim.system import ModelMemory

    job = json.loads(Path(os.environ["SPIKEFORGE_MEMORY_JOB"]).read_text())
    image = load_image(job["image"])
    driver = Driver(PortsBus(ports), memory=ModelMemory(ports))
    await driver.load(image)
    words = external_image(image)
    return {"image": await driver.memory.read_words(0, len(words)) == words, "spill": await driver.read_spill(0, 4)}


def test_the_driver_reads_external_memory_in_verilator(networks, shared_overrides, shared_build, tmp_path):
    """The memory model's words are reachable from the testbench in Verilator (the spilled tensors' check
    reads them so), on the shared build."""
    from spikeforge.firmware.image import EXTERNAL
    from spikeforge.sim.memory_model import PRELOAD_PLUSARG
    from spikeforge.sim.system import memory_words, system
    from spikeforge.sim.verilator_runner import run_verilator

    bundle, _ = networks["cifar-d1-dim16-h1-T1"]
    image = compile_bundle(bundle, overrides=shared_overrides)
    env = _write_job(tmp_path, image, inputs(bundle, 1).numpy(), "SPIKEFORGE_MEMORY_JOB")
    report = run_verilator(system, dict(image.params, memory_words=memory_words(image)),
                           "spikeforge.tests.sim.test_network_verilator", "model_memory_testbench", shared_build / "verilator",
                           extra_env=env, plusargs=[f"+{PRELOAD_PLUSARG}={tmp_path / 'image' / (EXTERNAL + '.hex')}"])
    assert report == {"image": True, "spill": [0, 0, 0, 0]}


def test_overflow_lists_equal_the_golden_models_in_verilator(networks, shared_overrides, shared_build):
    """The same on the shared Verilator build (with ``check``: breakpoints), two of the images."""
    image, pixels, narrowed, _ = overflow_case(networks, overrides=shared_overrides)
    assert image.params["n_pe"] == SHARED_N_PE
    results = run_network(image, pixels[:2].numpy(), backend="verilator", check=True,
                          build_root=shared_build / "verilator")
    assert list(results["overflow"]) == [", ".join(names) for names in OVERFLOW_LISTS[:2]]
    trace = GoldenModel(narrowed).run(pixels[:2])
    assert first_difference(results, trace) is None, first_difference(results, trace)


def test_sim_command_on_the_trained_digits_network_in_verilator(digits_bundle, shared_overrides, shared_build,
                                                                tmp_path):
    """The CI's end-to-end case: real digits images through Verilator with --check (on the shared build;
    a relative --build-dir, as users type it, while the simulator process runs elsewhere)."""
    trace_path = tmp_path / "hw.npz"
    sets = [arg for key, value in shared_overrides.items() for arg in ("--set", f"{key}={value}")]
    result = run_cli("sim", digits_bundle, "--backend", "verilator", "--input", "digits:4", "--check",
                     "--trace", trace_path, *sets, "--build-dir", "verilator", "--json", cwd=shared_build)
    assert result.code == 0, result.stderr
    report = result.json
    assert report["bit_exact"] is True and report["n"] == 4
    assert report["accuracy"] == report["golden_accuracy"]
    assert len(report["predictions"]) == 4 and len(report["cycles"]["per_image"]) == 4
    assert set(report["firing_rates"]) == set(load_bundle(digits_bundle).manifest["outputs"]["lif"])
    assert all(0 < rate < 1 for rate in report["firing_rates"].values())
    with np.load(trace_path) as hw:
        assert np.array_equal(hw["logits"].argmax(1), report["predictions"])
