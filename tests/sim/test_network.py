"""The whole accelerator, end to end in the Amaranth simulator (fast tier): random Spikingformers of the cifar
and imagenet families run through the host driver (``network_cases``), maps larger than the spike memory
in spatial tiles, tensors spilled to external memory, overflow lists, and what the compiler and the driver refuse."""

import asyncio

import numpy as np
import pytest

from spikeforge.firmware.compiler import CompileError, compile_bundle
from spikeforge.firmware.image import external_image, external_shapes
from spikeforge.interface import regmap
from spikeforge.interface.descriptor import OPCODES, unpack
from spikeforge.interface.external import external_bytes
from spikeforge.interface.params import AcceleratorParams
from spikeforge.interface.regmap import OVERFLOW_LOG_BITS
from spikeforge.ops.base import fits
from spikeforge.quant import GoldenModel
from spikeforge.sim.network import first_difference, run_network
from spikeforge.tests.helpers import run_cli
from spikeforge.tests.sim.network_cases import (AMARANTH_NETWORKS, OVERFLOW_LISTS, check_network, edited_bundle, inputs,
                                                overflow_case)


@pytest.mark.parametrize("name", AMARANTH_NETWORKS)
def test_random_network_is_bit_exact_in_the_amaranth_simulator(networks, name):
    bundle, n_pe = networks[name]
    check_network(compile_bundle(bundle, n_pe=n_pe), bundle, "amaranth", n=1)


def test_a_head_wider_than_the_accumulators_is_bit_exact(networks):
    """The cifar-d1 network with a head bias beyond the build's acc_bits (the random network's is 0), declared
    6 bits wider than the accumulators: its two bias rows carry bits above acc_bits, the logits need them."""
    bundle, n_pe = networks["cifar-d1-dim16-h1-T1"]
    acc_bits = compile_bundle(bundle, n_pe=n_pe).params["acc_bits"]
    head = next(layer for layer in bundle.program if layer.kind == "head")
    bias = np.random.default_rng(0).integers(-1 << (acc_bits + 4), 1 << (acc_bits + 4), bundle.tables[head.bias].shape)
    wide = edited_bundle(bundle, {head.name: {"logit_bits": max(head.logit_bits, acc_bits + 6)}}, {head.bias: bias})
    image = compile_bundle(wide, n_pe=n_pe)
    assert image.params["acc_bits"] == acc_bits < image.params["logit_bits"] and not fits(bias, acc_bits)
    results = check_network(image, wide, "amaranth", n=1)
    assert not fits(results["logits"], acc_bits) and not results["overflow"][0]


def test_maps_larger_than_the_spike_memory_run_in_spatial_tiles(networks):
    """The cifar tokenizer's 8×8 maps on a spike memory of 4×4 rows and columns: its convs over 2×2 tiles
    (each output tile's sums gathered from its neighbours' edges over several descriptors), its first
    pool from the tiles it covers — bit-exact, and each descriptor's cycles as modelled."""
    bundle, n_pe = networks["cifar-d1-dim16-h1-T1"]
    image = compile_bundle(bundle, n_pe=n_pe, overrides={"max_h": "4", "max_w": "4"})
    assert (image.params["max_h"], image.params["max_w"]) == (4, 4)
    tiled = [name for name, place in image.layout["spikes"].items() if place["H"] > 4]
    assert len(tiled) >= 3 and len(image.layout["ops"]) > len(bundle.program)
    check_network(image, bundle, "amaranth", n=1)


def test_tensors_beyond_the_spike_memory_spill_to_external_memory(networks):
    """The imagenet-d2 network on half the spike groups it needs: its first MLP's 96-channel spikes and the
    block's spikes before them fit only side by side, so the latter are stored to the SPILL table and loaded
    back into free groups before the MLP reads them — bit-exact, every LIF checked (the spilled one read
    where it was written, before its groups are reused), and each STORE's and LOAD's cycles as modelled.
    (The cifar-d1 network cannot spill: its largest descriptor's operands already take every group the
    program needs.)"""
    bundle, n_pe = networks["imagenet-d2-dim24-h3-T4"]
    needed = compile_bundle(bundle, n_pe=n_pe).params["spike_groups"]
    image = compile_bundle(bundle, n_pe=n_pe, overrides={"spike_groups": str(needed // 2)})
    opcodes = [unpack(word)["op"] for word in image.memories["PROGRAM"]]
    assert opcodes.count(OPCODES["STORE"]) == opcodes.count(OPCODES["LOAD"]) == len(image.layout["loads"]) >= 1
    check_network(image, bundle, "amaranth", n=1)


def test_a_corrupted_weight_is_caught_and_named(networks):
    """The check can fail: one flipped bit in the first conv's weights of the program image shows up
    as a difference in the first LIF layer."""
    bundle, n_pe = networks["cifar-d1-dim16-h1-T1"]
    image = compile_bundle(bundle, n_pe=n_pe)
    image.memories["WEIGHTS"][4] ^= 1 << 3     # tile 0, input channel 0, tap (1, 1), lane 0
    pixels = inputs(bundle, 1)
    pixels[0, 0] = bundle.manifest["input"]["max"]    # every pixel lights every plane: the tap is used
    results = run_network(image, pixels.numpy(), backend="amaranth", check=True)
    difference = first_difference(results, GoldenModel(bundle).run(pixels))
    assert difference is not None and difference.startswith("LIF patch_embed.block1_lif: image 0"), difference


@pytest.mark.parametrize("check", [True, False])
def test_overflow_lists_equal_the_golden_models(networks, check):
    """Every kind of value wider than its declared width — a conv result, a LIF membrane, the attention's
    counts, the head's sums and logits — names the same layers, in program order, per image, in
    hardware and in the golden model. With ``check`` the run stops at its breakpoints: the flags of
    its earlier parts survive the restarts (sticky); the clean image after an overflowing one
    shows they are cleared per image. The head's logits take the sums as held in ``sum_bits`` in both,
    so the run stays bit-exact past the sums' overflow."""
    image, pixels, _, trace = overflow_case(networks)
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
    with pytest.raises(CompileError, match=r"^--set spike_groups=1: the input's bit planes take 2 groups at once, "
                                           r"which do not fit; build with spike_groups=2 or more$"):
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


def test_sim_command_reports_usage_errors(digits_bundle, tmp_path):
    result = run_cli("sim", digits_bundle, "--backend", "amaranth", "--input", "digits:1", "--set", "n_pe=4")
    assert result.code == 2 and "10 classes need n_pe >= 10, not 4" in result.stderr
    result = run_cli("sim", tmp_path / "missing", "--backend", "amaranth", "--input", "digits:1")
    assert result.code == 2 and "missing" in result.stderr
