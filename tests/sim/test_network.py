"""The whole accelerator, end to end: random Spikingformers of the cifar and imagenet families run
through the host driver in the Amaranth simulator (fast tier) and in Verilator, every LIF's spikes at
every timestep, the stream after every block and the logits compared with the golden model by ``==``."""

import asyncio
import dataclasses

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikeforge.firmware.compiler import CompileError, compile_bundle
from spikeforge.firmware.image import external_image, external_shapes
from spikeforge.hw.accelerator import Accelerator
from spikeforge.hw.bus import wishbone_signature
from spikeforge.interface import regmap
from spikeforge.interface.external import external_bytes
from spikeforge.interface.params import AcceleratorParams
from spikeforge.interface.regmap import OVERFLOW_LOG_BITS
from spikeforge.ops.base import fits
from spikeforge.model.config import ModelConfig
from spikeforge.model.data import parse_input
from spikeforge.quant import GoldenModel, load_bundle
from spikeforge.sim.network import check_breakpoints, first_difference, run_network
from spikeforge.sim.network_cycles import network_cycles, run_cycles, trace_tensors
from spikeforge.tests.helpers import run_cli

# (id, preset, overrides, n_pe in the Amaranth simulator): depth 1–2, dim 16–64, heads 1–4, T 1–4,
# both families; n_pe and widths vary per network there, while Verilator runs all on one build.
NETWORKS = [
    ("cifar-d1-dim16-h1-T1", "cifar10-4-384", dict(depth=1, dim=16, heads=1, T=1, img_size=8, num_classes=4), 4),
    ("cifar-d2-dim32-h4-T2", "cifar10-4-384", dict(depth=2, dim=32, heads=4, T=2, img_size=8, in_channels=1,
                                                   num_classes=8), 8),
    ("imagenet-d1-dim64-h4-T1", "imagenet-8-384", dict(depth=1, dim=64, heads=4, T=1, img_size=16, in_channels=1,
                                                       num_classes=8), 16),
    ("imagenet-d2-dim24-h3-T4", "imagenet-8-384", dict(depth=2, dim=24, heads=3, T=4, img_size=16, in_channels=1,
                                                       num_classes=8), 8),
]
#: Lanes of the one Verilator build that runs every network (the digits network's 10 classes need 16).
SHARED_N_PE = 16


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """Bundles of seeded random networks exported by ``spikeforge export`` (activity tuned)."""
    root = tmp_path_factory.mktemp("networks")
    bundles = {}
    for seed, (name, preset, overrides, n_pe) in enumerate(NETWORKS):
        sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
        result = run_cli("export", "--model", preset, *sets, "--seed", seed, "--no-qonnx", "--out", root / name)
        assert result.code == 0, result.stderr
        bundles[name] = (load_bundle(root / name), n_pe)
        bundles[name][0].seed = seed
    return bundles


def _inputs(bundle, n):
    """Images of the export's calibration input (``random:N:SEED``, the activity was tuned on them)."""
    return parse_input(f"random:{n}:{bundle.seed}", ModelConfig(**bundle.config)).pixels


def _check(image, bundle, backend, n, build_root=None):
    pixels = _inputs(bundle, n)
    trace = GoldenModel(bundle).run(pixels)
    results = run_network(image, pixels.numpy(), backend=backend, check=True,
                          **({"build_root": build_root} if build_root else {}))
    assert first_difference(results, trace) is None, first_difference(results, trace)
    # the comparison covered everything the golden model traces
    assert {f"spikes/{name}" for name in trace.spikes} <= set(results)
    assert {f"stream/{block}" for block in trace.stream} <= set(results)
    silent = [name for name, s in trace.spikes.items() if s.sum() == 0]
    assert not silent, f"silent layers make the comparison trivial: {silent}"
    return results


@pytest.mark.parametrize("name", [n[0] for n in NETWORKS])
def test_random_network_is_bit_exact_in_the_amaranth_simulator(networks, name):
    bundle, n_pe = networks[name]
    _check_with_cycles(compile_bundle(bundle, n_pe=n_pe), bundle)


def test_maps_larger_than_the_spike_memory_run_in_spatial_tiles(networks):
    """The cifar tokenizer's 8×8 maps on a spike memory of 4×4 rows and columns: its convs over 2×2 tiles
    (each output tile's sums gathered from its neighbours' edges over several descriptors), its first
    pool from the tiles it covers — bit-exact, and each descriptor's cycles as modelled."""
    bundle, n_pe = networks["cifar-d1-dim16-h1-T1"]
    image = compile_bundle(bundle, n_pe=n_pe, overrides={"max_h": "4", "max_w": "4"})
    assert (image.params["max_h"], image.params["max_w"]) == (4, 4)
    tiled = [name for name, place in image.layout["spikes"].items() if place["H"] > 4]
    assert len(tiled) >= 3 and len(image.layout["ops"]) > len(bundle.program)
    _check_with_cycles(image, bundle)


def _check_with_cycles(image, bundle):
    """:func:`_check` in the Amaranth simulator, and every descriptor's cycles equal the operations' cycle
    model; the run's total follows from them and the cycles spent waiting for external memory."""
    results = _check(image, bundle, "amaranth", n=1)
    pixels = _inputs(bundle, 1)
    modelled = network_cycles(image, trace_tensors(GoldenModel(bundle).run(pixels), pixels.numpy()))
    assert list(results["op_cycles"][0]) == modelled
    assert results["stall_cycles"][0] > 0
    assert results["cycles"][0] - results["stall_cycles"][0] == run_cycles(
        modelled, breakpoints=len(check_breakpoints(image.layout)))


@pytest.fixture(scope="module")
def shared_overrides(networks, digits_bundle):
    """Build parameters large enough for every network and the trained digits network: one Verilator
    build runs them all (the LIF's fractional bits are a descriptor field, so any T shares it)."""
    bundles = [bundle for bundle, _ in networks.values()] + [load_bundle(digits_bundle)]
    needed = [compile_bundle(bundle, n_pe=SHARED_N_PE).params for bundle in bundles]
    return {key: str(max(p[key] for p in needed)) for key in needed[0] if key not in ("decay_mult", "decay_shift")}


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
    _check(image, bundle, "verilator", n=1, build_root=shared_build / "verilator")


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
    pixels = _inputs(bundle, 1)
    env = _write_job(tmp_path, image, pixels.numpy())
    params = dict(image.params, memory_words=memory_words(image))
    assert run_verilator(system, params, "spikeforge.tests.sim.test_network", "third_party_master_testbench",
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


def test_memory_master_complies_with_a_third_party_wishbone_slave(networks, shared_overrides, shared_build,
                                                                  tmp_path):
    """The accelerator's Wishbone master fetches a network's tables from cocotbext-wishbone's WishboneSlave
    (not our memory model), which stalls it and delays its answers; the results are bit-exact with the
    golden model."""
    from spikeforge.sim.verilator_runner import run_verilator

    bundle, _ = networks["cifar-d1-dim16-h1-T1"]
    image = compile_bundle(bundle, overrides=shared_overrides)
    pixels = _inputs(bundle, 1)
    env = _write_job(tmp_path, image, pixels.numpy(), "SPIKEFORGE_MEMORY_JOB")
    report = run_verilator(bare_accelerator, image.params, "spikeforge.tests.sim.test_network",
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
    env = _write_job(tmp_path, image, _inputs(bundle, 1).numpy(), "SPIKEFORGE_MEMORY_JOB")
    report = run_verilator(system, dict(image.params, memory_words=memory_words(image)),
                           "spikeforge.tests.sim.test_network", "model_memory_testbench", shared_build / "verilator",
                           extra_env=env, plusargs=[f"+{PRELOAD_PLUSARG}={tmp_path / 'image' / (EXTERNAL + '.hex')}"])
    assert report == {"image": True, "spill": [0, 0, 0, 0]}


def test_a_corrupted_weight_is_caught_and_named(networks):
    """The check can fail: one flipped bit in the first conv's weights of the program image shows up
    as a difference in the first LIF layer."""
    bundle, n_pe = networks["cifar-d1-dim16-h1-T1"]
    image = compile_bundle(bundle, n_pe=n_pe)
    image.memories["WEIGHTS"][4] ^= 1 << 3     # tile 0, input channel 0, tap (1, 1), lane 0
    pixels = _inputs(bundle, 1)
    pixels[0, 0] = bundle.manifest["input"]["max"]    # every pixel lights every plane: the tap is used
    results = run_network(image, pixels.numpy(), backend="amaranth", check=True)
    difference = first_difference(results, GoldenModel(bundle).run(pixels))
    assert difference is not None and difference.startswith("LIF patch_embed.block1_lif: image 0"), difference


#: Layers of the cifar-d1 network declared narrower than their values on some images only: the result of
#: the conv writing the residual stream, a LIF's membrane (fused into the descriptor of block2_conv, whose
#: own result fits), the attention's counts, the head's sums and its logits.
NARROWED = {"patch_embed.block4_conv": {"acc_bits": 10}, "patch_embed.block3_lif": {"membrane_bits": 10},
            "block.0.attn.attention": {"count_bits": 4}, "head": {"sum_bits": 12, "logit_bits": 18}}
#: Images of ``_inputs(bundle, 8)``: 2 overflows in every narrowed layer (the head in its sums); 3 in
#: none (after 2: the flags are cleared per image); 4 in the attention and the head's logits only.
OVERFLOW_IMAGES = [2, 3, 4]
OVERFLOW_LISTS = [["patch_embed.block3_lif", "patch_embed.block4_conv", "block.0.attn.attention", "head"], [],
                  ["block.0.attn.attention", "head"]]


def _narrowed(bundle, widths):
    """``bundle`` with the declared widths ``{layer: {field: bits}}``, past the bundle checker (which
    refuses a width that does not hold the worst case): the detection itself is what is tested."""
    program = tuple(layer.model_copy(update=widths[layer.name]) if layer.name in widths else layer
                    for layer in bundle.program)
    return dataclasses.replace(bundle, program=program)


def _overflow_case(networks, **compile_args):
    """The narrowed cifar-d1 network, compiled with the build widths of the original (which hold every
    value: the accelerator computes them exactly), its images and the golden trace."""
    bundle, n_pe = networks["cifar-d1-dim16-h1-T1"]
    widths = {key: str(value) for key, value in compile_bundle(bundle, n_pe=n_pe).params.items()
              if key in ("acc_bits", "membrane_bits", "weight_bits")}
    narrowed = _narrowed(bundle, NARROWED)
    image = compile_bundle(narrowed, **({"n_pe": n_pe, "overrides": widths} | compile_args))
    pixels = _inputs(bundle, 8)[OVERFLOW_IMAGES]
    trace = GoldenModel(narrowed).run(pixels)
    assert trace.overflow_per_image == OVERFLOW_LISTS
    assert trace.overflow == OVERFLOW_LISTS[0]
    return image, pixels, narrowed, trace


@pytest.mark.parametrize("check", [True, False])
def test_overflow_lists_equal_the_golden_models(networks, check):
    """Every kind of value wider than its declared width — a conv result, a LIF membrane, the attention's
    counts, the head's sums and logits — names the same layers, in program order, per image, in
    hardware and in the golden model. With ``check`` the run stops at its breakpoints: the flags of
    its earlier parts survive the restarts (sticky); the clean image after an overflowing one
    shows they are cleared per image. The head's logits take the sums as held in ``sum_bits`` in both,
    so the run stays bit-exact past the sums' overflow."""
    image, pixels, _, trace = _overflow_case(networks)
    results = run_network(image, pixels.numpy(), backend="amaranth", check=check)
    assert [name.split(", ") if name else [] for name in results["overflow"]] == OVERFLOW_LISTS
    assert first_difference(results, trace) is None, first_difference(results, trace)
    assert np.array_equal(results["logits"], trace.logits.numpy())
    # the driver's log: block2_conv's own result fits, its fused LIF's membrane does not
    ops = image.layout["ops"]
    log = results["overflow_log"][0]
    assert log[ops.index("patch_embed.block2_conv")] == 1 << OVERFLOW_LOG_BITS["MEMBRANE"]
    assert log[ops.index("patch_embed.block4_conv")] == 1 << OVERFLOW_LOG_BITS["RESULT"]
    # the head's sums overflow on image 0, its logits on image 2 (the sums fit there)
    sums = trace.stream["block.0"].sum((1, 3, 4))
    assert not fits(sums[0], 12) and fits(sums[2], 12) and not fits(trace.logits[2], 18)
    # a different list is reported, naming the image and the layers
    changed = dict(results, overflow=np.array(["", *results["overflow"][1:]]))
    assert first_difference(changed, trace) == ("overflow: image 0: hardware none, golden patch_embed.block3_lif, "
                                                "patch_embed.block4_conv, block.0.attn.attention, head")


def test_overflow_lists_equal_the_golden_models_in_verilator(networks, shared_overrides, shared_build):
    """The same on the shared Verilator build (with ``check``: breakpoints), two of the images."""
    image, pixels, narrowed, _ = _overflow_case(networks, overrides=shared_overrides)
    assert image.params["n_pe"] == SHARED_N_PE
    results = run_network(image, pixels[:2].numpy(), backend="verilator", check=True,
                          build_root=shared_build / "verilator")
    assert list(results["overflow"]) == [", ".join(names) for names in OVERFLOW_LISTS[:2]]
    trace = GoldenModel(narrowed).run(pixels[:2])
    assert first_difference(results, trace) is None, first_difference(results, trace)


def test_compile_refuses_what_the_hardware_cannot_hold(networks):
    bundle, _ = networks["imagenet-d1-dim64-h4-T1"]
    with pytest.raises(CompileError, match="8 classes need n_pe >= 8, not 4"):
        compile_bundle(bundle, n_pe=4)
    with pytest.raises(ValueError, match="the bundle needs at least acc_bits="):
        compile_bundle(bundle, n_pe=16, overrides={"acc_bits": "4"})
    needed = compile_bundle(bundle, n_pe=16).params
    image = compile_bundle(bundle, n_pe=16, overrides={"acc_bits": "40", "weight_rows": str(needed["weight_rows"] + 1)})
    assert image.params["acc_bits"] == 40 and image.params["weight_rows"] == needed["weight_rows"] + 1
    assert image.params["membrane_bits"] >= 40 + image.params["frac_bits"] + 1
    # the external memory: the board's default, any valid value the tables fit, and a clear error for less
    assert needed["memory_address_bits"] == AcceleratorParams.memory_address_bits == 25
    assert compile_bundle(bundle, n_pe=16, overrides={"memory_address_bits": "20"}).params["memory_address_bits"] == 20
    size = external_bytes(external_shapes(compile_bundle(bundle, n_pe=16)))
    with pytest.raises(CompileError, match=f"--set memory_address_bits=12: the tables and the spill region take {size} "
                                           f"bytes of external memory, which needs memory_address_bits="
                                           f"{(size - 1).bit_length()}"):
        compile_bundle(bundle, n_pe=16, overrides={"memory_address_bits": "12"})
    # the spike memory: the cifar network's 3 channels of 8 bit planes take two groups of 16 lanes
    bundle, _ = networks["cifar-d1-dim16-h1-T1"]
    with pytest.raises(CompileError, match=r"^--set spike_groups=1: the input's bit planes take groups 0\.\.1, which "
                                           r"needs spike_groups="):
        compile_bundle(bundle, n_pe=16, overrides={"spike_groups": "1"})


def test_driver_refuses_an_image_for_other_hardware(networks):
    from spikeforge.firmware.driver import Driver, DriverError, PortsBus
    from spikeforge.sim.amaranth_runner import run_amaranth
    from spikeforge.sim.system import system

    bundle, n_pe = networks["cifar-d1-dim16-h1-T1"]
    image = compile_bundle(bundle, n_pe=n_pe)
    other = dict(image.params, acc_bits=image.params["acc_bits"] + 1, membrane_bits=image.params["membrane_bits"] + 1)

    # a build of other address widths: the ADDRESS register tells (the registers' addresses are the same)
    wider = dict(image.params, memory_address_bits=image.params["memory_address_bits"] + 1)
    layout = regmap.identity_values(image.params)["ADDRESS"]

    async def testbench(ports):
        with pytest.raises(DriverError, match="register WIDTHS: the image needs"):
            await Driver(PortsBus(ports)).load(image)
        return True

    async def testbench_wider(ports):
        with pytest.raises(DriverError, match=f"register ADDRESS: the image needs {layout:#x}, the hardware has "
                                              f"{layout + (1 << 24):#x}"):
            await Driver(PortsBus(ports)).load(image)
        return True

    assert run_amaranth(system(**other), testbench)
    assert run_amaranth(system(**wider), testbench_wider)


def test_driver_refuses_tables_beyond_the_external_address_space(networks):
    """Checked before the driver touches the bus."""
    from spikeforge.firmware.driver import Driver, DriverError

    bundle, n_pe = networks["cifar-d1-dim16-h1-T1"]
    image = compile_bundle(bundle, n_pe=n_pe)
    end = external_bytes(external_shapes(image))      # the spill region's end
    assert end > 4 * len(external_image(image))
    base = (1 << image.params["memory_address_bits"]) - end + 4

    class NoBus:
        def __getattr__(self, name):
            raise AssertionError(f"the driver used the bus ({name})")

    with pytest.raises(DriverError, match=f"the image's tables and spill region occupy external memory bytes "
                                          f"{base:#x}..{base + end:#x}; the accelerator addresses 0x2000000 bytes "
                                          r"\(memory_address_bits = 25\)"):
        asyncio.run(Driver(NoBus()).load(image, memory_base=base))


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


def test_sim_command_reports_usage_errors(digits_bundle, tmp_path):
    result = run_cli("sim", digits_bundle, "--backend", "amaranth", "--input", "digits:1", "--set", "n_pe=4")
    assert result.code == 2 and "10 classes need n_pe >= 10, not 4" in result.stderr
    result = run_cli("sim", tmp_path / "missing", "--backend", "amaranth", "--input", "digits:1")
    assert result.code == 2 and "missing" in result.stderr
