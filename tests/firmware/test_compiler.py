"""The compiler's spike-memory placement on the trained digits network: tensors share groups by
liveness, which the tests recompute from the descriptors and the bundle's layers alone (not from the
allocator): no two tensors live at the same time share a group, each LIF's breakpoint is the first
overwrite of its groups, and a spike memory too small for the program is refused naming the layer."""

import itertools
import re
from dataclasses import asdict, replace

import pytest

from spikeforge.firmware.compiler import CompileError, compile_bundle
from spikeforge.firmware.image import write_image
from spikeforge.interface.bits import ceil_div, next_power_of_two
from spikeforge.interface.descriptor import OPCODES, unpack
from spikeforge.interface.fpga import CONFIGURATIONS, configuration
from spikeforge.interface.layout import unpack_lanes
from spikeforge.ops.bundle import load_bundle


@pytest.fixture(scope="module")
def digits(digits_bundle):
    bundle = load_bundle(digits_bundle)
    return bundle, compile_bundle(bundle)


def _spike_tensors(bundle, image):
    """Every spike tensor as the descriptors place it: name -> ``groups`` (a range), ``written`` (the
    descriptor that writes it; -1: the host, before the run) and ``reads`` (the descriptors that read it).
    A read must name the groups the tensor was written to."""
    n_pe = image.params["n_pe"]
    layers = {layer.name: layer for layer in bundle.program}
    fused_lif = {bundle.program[i - 1].name: layer for i, layer in enumerate(bundle.program) if layer.kind == "lif"}
    spec = image.layout["input"]
    tensors = {"input": dict(groups=range(spec["group"], spec["group"] + ceil_div(spec["channels"] * spec["planes"],
                                                                                 n_pe)), written=-1, reads=[])}

    def read(name, pc, base, groups):
        assert tensors[name]["groups"] == range(base, base + groups), f"descriptor {pc} reads {name!r} elsewhere"
        tensors[name]["reads"].append(pc)

    def write(name, pc, base, groups):
        tensors[name] = dict(groups=range(base, base + groups), written=pc, reads=[])

    for pc, (name, word) in enumerate(zip(image.layout["ops"], image.memories["PROGRAM"])):
        f, layer = unpack(word), layers.get(name)
        if f["op"] == OPCODES["CONV"]:
            read(layer.input, pc, f["in_base"], ceil_div(f["cin"] * f["planes"], n_pe))
        elif f["op"] == OPCODES["POOL"]:
            read(layer.input, pc, f["in_base"], f["tiles"])
            write(layer.output, pc, f["out_base"], f["tiles"])
        elif f["op"] == OPCODES["ATTENTION"]:
            for tensor, base in ((layer.q, "in_base"), (layer.k, "k_base"), (layer.v, "v_base")):
                read(tensor, pc, f[base], ceil_div(f["cin"], n_pe))
        if f["lif"]:
            write(fused_lif[name].output, pc, f["out_base"], f["tiles"])
    return tensors


def test_tensors_live_at_the_same_time_never_share_a_group(digits):
    bundle, image = digits
    tensors = _spike_tensors(bundle, image)
    assert set(image.layout["spikes"]) <= set(tensors)
    live = {name: range(max(t["written"], 0), max(t["reads"], default=t["written"]) + 1)
            for name, t in tensors.items()}
    reused = []
    for a, b in itertools.combinations(tensors, 2):
        shared = set(tensors[a]["groups"]) & set(tensors[b]["groups"])
        if shared:
            together = set(live[a]) & set(live[b])
            assert not together, f"{a} and {b} share groups {sorted(shared)} in descriptors {sorted(together)}"
            reused.append((a, b))
    assert reused, "no group is reused"
    # fewer groups than one set per tensor, and all within the build
    own_groups = sum(len(t["groups"]) for t in tensors.values())
    used = max(t["groups"].stop for t in tensors.values())
    assert used < own_groups
    assert image.params["spike_groups"] == next_power_of_two(used) < next_power_of_two(own_groups)


def test_each_lif_is_read_before_its_groups_are_overwritten(digits):
    bundle, image = digits
    tensors = _spike_tensors(bundle, image)
    for name, place in image.layout["spikes"].items():
        tensor = tensors[name]
        assert place["producer"] == tensor["written"]
        overwrites = [other["written"] for other in tensors.values()
                      if other["written"] > tensor["written"] and set(other["groups"]) & set(tensor["groups"])]
        assert place["breakpoint"] == min(overwrites, default=None), name
    assert any(place["breakpoint"] is not None for place in image.layout["spikes"].values())
    assert any(place["breakpoint"] is None for place in image.layout["spikes"].values())


def test_the_same_bundle_gives_a_byte_identical_image(digits, tmp_path):
    bundle, image = digits
    write_image(image, tmp_path / "a")
    write_image(compile_bundle(bundle), tmp_path / "b")
    files = sorted(path.name for path in (tmp_path / "a").iterdir())
    assert files == sorted(path.name for path in (tmp_path / "b").iterdir())
    assert all((tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes() for name in files)


def test_a_spike_memory_too_small_is_refused_naming_the_layer(digits):
    """Half the groups: the tensors that do not fit side by side would spill, but one descriptor's own
    operands (its inputs and its output) take more groups than the build has (``test_spill_planning``
    covers spilling itself)."""
    bundle, image = digits
    needed = image.params["spike_groups"]
    with pytest.raises(CompileError) as refused:
        compile_bundle(bundle, overrides={"spike_groups": str(needed // 2)})
    message = str(refused.value)
    found = re.fullmatch(r"--set spike_groups=(\d+): layer '(.+)' reads and writes (\d+) groups at once, which do "
                         r"not fit; build with spike_groups=(\d+) or more", message)
    assert found, message
    limit, layer, operands, needs = found.groups()
    assert (int(limit), int(needs)) == (needed // 2, next_power_of_two(int(operands)))
    # the named layer's descriptor reads and writes that many groups
    pc = image.layout["ops"].index(layer)
    tensors = _spike_tensors(bundle, image)
    named = [t for t in tensors.values() if pc in t["reads"] or t["written"] == pc]
    assert sum(len(t["groups"]) for t in named) == int(operands) > needed // 2
    # enough groups, or more, leave the program as it is
    more = compile_bundle(bundle, overrides={"spike_groups": str(needed * 2)})
    assert more.params["spike_groups"] == needed * 2
    assert (more.memories, more.layout) == (image.memories, image.layout)


def test_the_head_is_as_wide_as_it_needs_apart_from_the_accumulators(digits):
    """The digits head needs 30 bits, its other layers 15: the build's logits are twice as wide as its
    accumulators; overrides widen the other widths to hold theirs (acc_bits at least half of logit_bits,
    logit_bits at least acc_bits) and may not narrow what the bundle needs."""
    bundle, image = digits
    widths = ("acc_bits", "membrane_bits", "logit_bits")
    assert [image.params[key] for key in widths] == [15, 20, 30]
    for overrides, expected in [({"acc_bits": "20"}, [20, 25, 30]), ({"logit_bits": "40"}, [20, 25, 40]),
                                ({"acc_bits": "32"}, [32, 37, 32])]:
        assert [compile_bundle(bundle, overrides=overrides).params[key] for key in widths] == expected, overrides
    with pytest.raises(ValueError, match="^--set logit_bits=29: the bundle needs at least logit_bits=30$"):
        compile_bundle(bundle, overrides={"logit_bits": "29"})
    with pytest.raises(ValueError, match=r"^logit_bits must be in acc_bits..2·acc_bits \(15..30\), not 31$"):
        compile_bundle(bundle, overrides={"acc_bits": "15", "logit_bits": "31"})


def test_a_head_wider_than_any_build_is_refused_naming_the_parameter(digits):
    """Its 63-bit logits need a spare bit for Horner's doubling: 64, beyond RANGES["logit_bits"]."""
    bundle, _ = digits
    program = tuple(layer.model_copy(update={"logit_bits": 63}) if layer.kind == "head" else layer
                    for layer in bundle.program)
    with pytest.raises(CompileError, match="^layer 'head': needs logit_bits=64; the accelerator is built with "
                                           "logit_bits of at most 63$"):
        compile_bundle(replace(bundle, program=program))


@pytest.mark.parametrize("overrides", [{}, {"hardware": "lfe5u-85f"}, {"acc_bits": "30"}])
def test_the_head_bias_takes_two_bias_rows(digits, overrides):
    """The HEAD descriptor's bias rows hold its bias table: the low acc_bits bits of each class's bias
    (unsigned), then the bits above (signed); the same with logits as wide as the accumulators."""
    bundle, _ = digits
    image = compile_bundle(bundle, overrides=overrides)
    p = image.params
    head = next(unpack(word) for word in image.memories["PROGRAM"] if unpack(word)["op"] == OPCODES["HEAD"])
    low, high = (unpack_lanes(image.memories["BIAS"][head["bias_base"] + i], p["n_pe"], p["acc_bits"], signed=bool(i))
                 for i in range(2))
    layer = next(layer for layer in bundle.program if layer.kind == "head")
    classes = image.layout["classes"]
    assert [lo + (hi << p["acc_bits"]) for lo, hi in zip(low, high)][:classes] == bundle.tables[layer.bias].tolist()
    assert low[classes:] == high[classes:] == [0] * (p["n_pe"] - classes)


def test_every_network_is_planned_onto_the_configuration(digits, networks):
    """The digits network and the random networks compile onto configuration lfe5u-85f: the build parameters are
    the configuration's, whatever each bundle needs, and the LIFs' declared widths stay in the descriptors."""
    configured = asdict(configuration("lfe5u-85f"))
    bundles = {"digits": digits[0], **{name: bundle for name, (bundle, _) in networks.items()}}
    for name, bundle in bundles.items():
        image = compile_bundle(bundle, overrides={"hardware": "lfe5u-85f"})
        assert image.params == configured, name
        sized = compile_bundle(bundle, n_pe=configured["n_pe"], overrides={"max_h": "8", "max_w": "8"})
        assert ([unpack(word)["membrane_bits"] for word in image.memories["PROGRAM"]]
                == [unpack(word)["membrane_bits"] for word in sized.memories["PROGRAM"]]), name
    # a --set key still changes one value of the configuration
    assert compile_bundle(digits[0], overrides={"hardware": "lfe5u-85f", "program_depth": "512"}).params == {
        **configured, "program_depth": 512}


@pytest.mark.parametrize("change, message", [
    (dict(max_tiles=2), "layer 'head': needs max_tiles=4; the configuration small holds 2"),
    (dict(max_cin=128), r"layer '.+': needs max_cin=256; the configuration small holds 128"),
    (dict(acc_bits=14, membrane_bits=19, logit_bits=28), r"layer '.+': needs acc_bits=15; the configuration small "
                                                         r"holds 14"),
    (dict(logit_bits=29), "layer 'head': needs logit_bits=30; the configuration small holds 29"),
    (dict(decay_mult=3, decay_shift=2), "layer 'patch_embed.block1_lif': needs decay_mult=1; the configuration small "
                                        "holds 3"),
    (dict(program_depth=8), r"layer '.+': needs program_depth=16; the configuration small holds 8"),
    (dict(weight_rows=4096), r"layer '.+': needs weight_rows=\d+; the configuration small holds 4096"),
    (dict(spike_groups=16), r"layer '.+' reads and writes \d+ groups at once, which do not fit; build with "
                            r"spike_groups=32 or more; the configuration small holds 16"),
    (dict(memory_address_bits=12), r"the tables and the spill region take \d+ bytes of external memory, which needs "
                                   r"memory_address_bits=\d+; the configuration small holds 12"),
])
def test_a_bundle_needing_more_than_the_configuration_is_refused_naming_it(digits, monkeypatch, change, message):
    monkeypatch.setitem(CONFIGURATIONS, "small", replace(configuration("lfe5u-85f"), **change))
    with pytest.raises(CompileError, match=f"^{message}$"):
        compile_bundle(digits[0], overrides={"hardware": "small"})


def test_the_layer_named_is_the_first_needing_more(digits):
    """The rows' layer is the first whose descriptors reach beyond the configuration's; a ``--set`` that
    shrinks a configuration is named as such."""
    bundle, image = digits
    limit = image.params["weight_rows"] // 2
    with pytest.raises(CompileError) as refused:
        compile_bundle(bundle, overrides={"hardware": "lfe5u-85f", "weight_rows": str(limit)})
    found = re.fullmatch(r"layer '(.+)': needs weight_rows=(\d+); the configuration lfe5u-85f with --set weight_rows "
                         rf"holds {limit}", str(refused.value))
    assert found and int(found[2]) == image.params["weight_rows"], str(refused.value)
    # the named layer's weight rows hold row `limit`, the first beyond the configuration's
    starts = {}
    for name, word in zip(image.layout["ops"], image.memories["PROGRAM"]):
        fields = unpack(word)
        if fields["op"] in (OPCODES["CONV"], OPCODES["HEAD"]):
            starts[name] = min(starts.get(name, fields["weight_base"]), fields["weight_base"])
    ends = dict(zip(starts, [*list(starts.values())[1:], image.params["weight_rows"]]))
    assert starts[found[1]] <= limit < ends[found[1]]


def test_an_unknown_configuration_is_refused_naming_the_known_ones(digits):
    with pytest.raises(ValueError, match="^--set hardware=lfe5u-12f: no such configuration; expected bundle or one "
                                         "of lfe5u-85f$"):
        compile_bundle(digits[0], overrides={"hardware": "lfe5u-12f"})
