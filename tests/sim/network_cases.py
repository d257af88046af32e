"""The random networks the whole-accelerator tests run, in both simulators, and how they are checked: every
LIF's spikes at every timestep, the stream after every block and the logits against the golden model by
``==``; and a network narrowed to overflow on some images."""

import dataclasses


from spikeforge.firmware.compiler import compile_bundle
from spikeforge.model.config import ModelConfig
from spikeforge.model.data import parse_input
from spikeforge.quant import GoldenModel
from spikeforge.sim.network import check_breakpoints, first_difference, run_network
from spikeforge.sim.network_cycles import network_cycles, run_cycles, trace_tensors


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


#: The networks the Amaranth simulator runs whole (its fast tier stays small: the others run in Verilator).
AMARANTH_NETWORKS = ["cifar-d1-dim16-h1-T1"]


#: Lanes of the one Verilator build that runs every network (the digits network's 10 classes need 16).
SHARED_N_PE = 16


def inputs(bundle, n):
    """Images of the export's calibration input (``random:N:SEED``, the activity was tuned on them)."""
    return parse_input(f"random:{n}:{bundle.seed}", ModelConfig(**bundle.config)).pixels


def check_network(image, bundle, backend, n, build_root=None):
    """``n`` images through the hardware with ``check``, bit-exact with the golden model; every descriptor's
    cycles equal the operations' cycle model, and each run's total follows from them and the cycles spent
    waiting for external memory."""
    pixels = inputs(bundle, n)
    trace = GoldenModel(bundle).run(pixels)
    results = run_network(image, pixels.numpy(), backend=backend, check=True,
                          **({"build_root": build_root} if build_root else {}))
    assert first_difference(results, trace) is None, first_difference(results, trace)
    # the comparison covered everything the golden model traces
    assert {f"spikes/{name}" for name in trace.spikes} <= set(results)
    assert {f"stream/{block}" for block in trace.stream} <= set(results)
    silent = [name for name, s in trace.spikes.items() if s.sum() == 0]
    assert not silent, f"silent layers make the comparison trivial: {silent}"
    for index in range(n):
        modelled = network_cycles(image, trace_tensors(GoldenModel(bundle).run(pixels[index:index + 1]),
                                                       pixels[index:index + 1].numpy()))
        assert list(results["op_cycles"][index]) == modelled
        assert results["stall_cycles"][index] > 0
        assert results["cycles"][index] - results["stall_cycles"][index] == run_cycles(
            modelled, breakpoints=len(check_breakpoints(image.layout)))
    return results


#: Layers of the cifar-d1 network declared narrower than their values on some images only: the result of
#: the conv writing the residual stream, a LIF's membrane (fused into the descriptor of block2_conv, whose
#: own result fits), the attention's counts, the head's sums and its logits.
NARROWED = {"patch_embed.block4_conv": {"acc_bits": 10}, "patch_embed.block3_lif": {"membrane_bits": 10},
            "block.0.attn.attention": {"count_bits": 4}, "head": {"sum_bits": 12, "logit_bits": 18}}


#: Images of ``inputs(bundle, 8)``: 2 overflows in every narrowed layer (the head in its sums); 3 in
#: none (after 2: the flags are cleared per image); 4 in the attention and the head's logits only.
OVERFLOW_IMAGES = [2, 3, 4]


OVERFLOW_LISTS = [["patch_embed.block3_lif", "patch_embed.block4_conv", "block.0.attn.attention", "head"], [],
                  ["block.0.attn.attention", "head"]]


def edited_bundle(bundle, widths, tables=None):
    """``bundle`` with the declared widths ``{layer: {field: bits}}`` and the tables ``{name: array}``, past the
    bundle checker (which refuses a width that does not hold the worst case: the detection itself is what
    is tested); its ``seed`` kept (:func:`inputs`)."""
    program = tuple(layer.model_copy(update=widths[layer.name]) if layer.name in widths else layer
                    for layer in bundle.program)
    edited = dataclasses.replace(bundle, program=program, tables={**bundle.tables, **(tables or {})})
    edited.seed = bundle.seed
    return edited


def overflow_case(networks, **compile_args):
    """The narrowed cifar-d1 network, compiled with the build widths of the original (which hold every
    value: the accelerator computes them exactly), its images and the golden trace."""
    bundle, n_pe = networks["cifar-d1-dim16-h1-T1"]
    widths = {key: str(value) for key, value in compile_bundle(bundle, n_pe=n_pe).params.items()
              if key in ("acc_bits", "membrane_bits", "logit_bits", "weight_bits")}
    narrowed = edited_bundle(bundle, NARROWED)
    image = compile_bundle(narrowed, **({"n_pe": n_pe, "overrides": widths} | compile_args))
    pixels = inputs(bundle, 8)[OVERFLOW_IMAGES]
    trace = GoldenModel(narrowed).run(pixels)
    assert trace.overflow_per_image == OVERFLOW_LISTS
    assert trace.overflow == OVERFLOW_LISTS[0]
    return image, pixels, narrowed, trace
