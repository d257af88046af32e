"""The cycle model of the whole accelerator (sim/network_cycles.py) equals, by ``==``, the OP_CYCLES the
hardware logs for every descriptor, and the CYCLES of the run: for random networks compiled and run in
the Amaranth simulator, and for hand-made descriptors with sizes the compiler never emits."""

import numpy as np
import pytest
import torch

from spikeforge.firmware.compiler import compile_bundle
from spikeforge.firmware.driver import Driver, PortsBus
from spikeforge.firmware.image import external_image
from spikeforge.firmware.image import ProgramImage
from spikeforge.interface.descriptor import DESCRIPTOR_BITS, OPCODES, pack, unpack
from spikeforge.interface.layout import pack_fields, pack_row, spike_row_layout
from spikeforge.interface.params import AcceleratorParams
from spikeforge.interface.regmap import address
from spikeforge.model import make_config
from spikeforge.model.data import parse_input
from spikeforge.model.encoding import encode_input, input_encoding
from spikeforge.quant import GoldenModel, load_bundle
from spikeforge.quant.calibrate import random_network
from spikeforge.quant.export import export_bundle, quantize
from spikeforge.sim.amaranth_runner import run_amaranth
from spikeforge.sim.network import check_breakpoints, first_difference, run_network
from spikeforge.sim.system import system
from spikeforge.ops import BY_OPCODE
from spikeforge.sim.network_cycles import (SEQUENCER_CYCLES, bit_planes, descriptor_cycles, network_cycles,
                                           run_cycles, spikes_at, trace_tensors)

# (id, preset, overrides, n_pe, input patch, what the run must exercise so that every term of the model
# is pinned). The imagenet network's input is zero outside a top-left 4×4 patch (random pixels in 0..255
# light all 8 planes: a full 16×16 image costs ~26k cycles in the first conv alone).
NETWORKS = [
    ("digits-T2-planes5-static", "digits-tiny", dict(dim=16, heads=2, T=2), 16, None,
     {"static input over T > 1", "bit planes", "spikes over T > 1", "border rows", "unoccupied rows",
      "multi-tile CONV"}),
    ("imagenet-T1-3ch-planes8", "imagenet-8-384", dict(depth=1, dim=16, heads=2, T=1, img_size=16,
                                                       in_channels=3, num_classes=4), 4, 4,
     {"bit planes", "border rows", "unoccupied rows", "1x1 image, 3x3 kernel", "multi-tile CONV",
      "multi-tile POOL", "multi-tile ATTENTION", "multi-tile HEAD"}),
]


def _network(root, preset, overrides, patch, seed):
    """A random network (activity tuned on 8 images of its calibration input) and its first image."""
    config = make_config(preset, **overrides)
    encoding = input_encoding(config.as_dict())
    pixels = encode_input(parse_input(f"random:8:{seed}", config).x, encoding)
    if patch:
        pixels[..., patch:, :] = 0
        pixels[..., :, patch:] = 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)     # tiny tensors: threads only contend (×50 slower on a shared machine)
    try:
        model = random_network(config, seed, pixels.float() * 2.0 ** encoding["scale_exp"])
        export_bundle(root / preset, quantize(model, 8), {"arch": "spikingformer", "preset": preset},
                      {"method": "ptq"})
    finally:
        torch.set_num_threads(threads)
    return load_bundle(root / preset), pixels[:1]


def _features(image, tensors):
    """What the run exercises (to show that the comparison pins each term of the model)."""
    found = set()
    for pc, word in enumerate(image.memories["PROGRAM"][:-1]):
        f = unpack(word)
        kind = next(name for name, code in OPCODES.items() if code == f["op"])
        if f["tiles"] > 1:
            found.add(f"multi-tile {kind}")
        if kind != "CONV":
            continue
        x = spikes_at(image, pc, tensors)[..., :f["H"], :f["W"]]    # stored as max_h × max_w: the map's part
        if f["planes"] > 1:
            found.add("bit planes")
        if f["static"] and f["T"] > 1:
            found.add("static input over T > 1")
        if not f["static"] and f["T"] > 1 and x[1:].any():
            found.add("spikes over T > 1")
        if f["H"] == f["W"] == 1 and f["kernel3"]:
            found.add("1x1 image, 3x3 kernel")
        occupied = x.any(-1)
        if not occupied.all():
            found.add("unoccupied rows")
        if f["kernel3"] and (occupied & ~x[..., 1:].any(-1)).any():
            found.add("border rows")       # occupied, but no spike in the columns of the dx = 2 taps
    return found


@pytest.mark.parametrize("name,preset,overrides,n_pe,patch,exercised", NETWORKS, ids=[n[0] for n in NETWORKS])
def test_op_cycles_of_every_descriptor_equal_the_model(tmp_path, name, preset, overrides, n_pe, patch, exercised):
    bundle, pixels = _network(tmp_path, preset, overrides, patch, seed=1)
    image = compile_bundle(bundle, n_pe=n_pe)
    trace = GoldenModel(bundle).run(pixels)
    tensors = trace_tensors(trace, pixels.numpy(), index=0)
    assert exercised <= _features(image, tensors), exercised - _features(image, tensors)

    # check: the run stops at every block's breakpoint and before LIF spikes are overwritten (their cycles are
    # part of the total)
    results = run_network(image, pixels.numpy(), backend="amaranth", check=True)
    assert first_difference(results, trace) is None, first_difference(results, trace)
    hardware = [int(c) for c in results["op_cycles"][0]]
    model = network_cycles(image, tensors)
    ops = image.layout["ops"]
    assert len(hardware) == len(model) == len(ops) - 1
    wrong = [f"{pc} {ops[pc]}: hardware {h}, model {m}" for pc, (h, m) in enumerate(zip(hardware, model)) if h != m]
    assert not wrong, "\n".join(wrong)
    assert model == [descriptor_cycles(image, pc, tensors) for pc in range(len(ops) - 1)]
    breakpoints = len(check_breakpoints(image.layout))
    assert breakpoints > 0
    # the run's cycles: the core's, plus those it waited for external memory
    assert int(results["cycles"][0] - results["stall_cycles"][0]) == run_cycles(model, breakpoints)


# ---- descriptors the compiler does not emit: odd and cropped sizes, static input stored over T ----------

#: A small accelerator (4 lanes) for hand-made programs; its weight, bias and threshold memories stay zero. Every
#: width is given: the register map's addresses follow from them (the LOGITS words from logit_bits).
SMALL = dict(n_pe=4, weight_bits=8, acc_bits=16, membrane_bits=20, logit_bits=16, max_T=4, max_cin=16, max_tiles=4, max_h=8,
             max_w=8, frac_bits=2, decay_mult=1, decay_shift=1, spike_groups=16, stream_tiles=4, weight_rows=256,
             bias_rows=8, threshold_rows=8, program_depth=8)
#: Spike tensors the host writes: name -> (first group, channels); each [4, C, 8, 8], read cropped.
TENSORS = {"A": (0, 8), "B": (2, 8), "K": (4, 4), "V": (5, 4)}
#: (tensor at in_base or None, descriptor fields).
PROGRAM = [
    ("A", dict(op=OPCODES["CONV"], kernel3=1, static=1, T=3, H=5, W=7, cin=3, planes=2, tiles=2, in_base=0,
               weight_base=0, check_bits=16)),    # static: only t = 0 of the stored 4 steps; rows and columns cut
    ("B", dict(op=OPCODES["CONV"], kernel3=1, T=3, H=6, W=8, cin=3, planes=1, tiles=1, in_base=2, weight_base=100,
               check_bits=16)),
    ("A", dict(op=OPCODES["CONV"], kernel3=0, T=2, H=3, W=6, cin=8, planes=1, tiles=3, in_base=0, weight_base=0,
               check_bits=16)),
    ("A", dict(op=OPCODES["POOL"], tiles=2, T=3, H=7, W=5, in_base=0, out_base=8, check_bits=1)),    # odd H
    ("B", dict(op=OPCODES["ATTENTION"], cin=4, planes=1, tiles=1, T=3, H=3, W=5, in_base=2, k_base=4, v_base=5,
               head_dim=2, weight_base=200, check_bits=16)),
    (None, dict(op=OPCODES["HEAD"], cin=6, tiles=2, T=3, H=3, W=2, sum_bits=5, check_bits=16)),
    ("B", dict(op=OPCODES["CONV"], kernel3=1, T=2, H=2, W=1, cin=2, planes=1, tiles=1, in_base=2, weight_base=150,
               check_bits=16)),
]


def _hand_made_spikes():
    rng = np.random.default_rng(0)
    spikes = {name: (rng.random((4, channels, 8, 8)) < 0.15).astype(np.int64)
              for name, (_, channels) in TENSORS.items()}
    spikes["A"][0, 0, 2] = [1, 0, 0, 0, 0, 0, 0, 0]      # only column 0: the dx = 2 taps reach nothing
    spikes["A"][0, 1, 3] = [0, 0, 0, 0, 0, 0, 0, 1]      # only column 7, beyond W = 7: occupied, never reached
    return spikes


def test_hand_made_descriptors_take_the_modelled_cycles():
    spikes = _hand_made_spikes()
    words = [pack(**fields) for _, fields in PROGRAM] + [pack(op=OPCODES["END"])]
    image = ProgramImage(params=SMALL, memories={"PROGRAM": words}, word_bits={"PROGRAM": DESCRIPTOR_BITS})
    rows = spike_row_layout(AcceleratorParams(**SMALL))
    n_pe, max_w = SMALL["n_pe"], SMALL["max_w"]

    async def testbench(ports):
        driver = Driver(PortsBus(ports))
        await driver.load(image)
        for name, (first_group, channels) in TENSORS.items():
            for c0 in range(0, channels, n_pe):
                for t in range(4):
                    for y in range(8):
                        word = sum(pack_row(spikes[name][t, c, y]) << (c % n_pe * max_w)
                                   for c in range(c0, min(channels, c0 + n_pe)))
                        offset = pack_fields(rows, group=first_group + c0 // n_pe, t=t, y=y)
                        await driver.write_words("SPIKES", offset, [word])
        cycles = await driver.run() - await driver.csr("STALL_CYCLES")   # the core's cycles
        return cycles, [await driver.bus.read(address(SMALL, "OP_CYCLES", pc)) for pc in range(len(PROGRAM))]

    cycles, hardware = run_amaranth(system(init=external_image(image), **SMALL), testbench)
    model = []
    for tensor, fields in PROGRAM:
        f = unpack(pack(**fields))
        model.append(SEQUENCER_CYCLES + BY_OPCODE[f["op"]].cycles(f, spikes.get(tensor)))
    assert hardware == model
    assert cycles == run_cycles(model)


def test_bit_planes_follow_the_drivers_layout():
    pixels = np.array([[[5, 2]], [[1, 0]]])            # [C=2, H=1, W=2]
    planes = bit_planes(pixels, 3)
    assert planes.shape == (1, 6, 1, 2)
    assert planes[0, :, 0].tolist() == [[1, 0], [0, 1], [1, 0], [1, 0], [0, 0], [0, 0]]


def test_the_model_needs_no_torch():
    import subprocess
    import sys

    code = "import sys, spikeforge.sim.network_cycles; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
