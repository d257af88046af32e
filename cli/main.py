"""The ``spikeforge`` command: a thin layer over the Python API (see ``cli/common.py`` for conventions)."""

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

from spikeforge.interface.fpga import (CONFIGURATIONS, DEFAULT_FREQ_MHZ, DEFAULT_LUT_MAPPER, DEFAULT_PACKAGE, DEFAULT_PART,
                                      LUT_MAPPERS, PART_CONFIGURATIONS, PARTS, SIZED_TO_BUNDLE, configured_params)
from spikeforge.sim import BACKENDS

from spikeforge.model import ARCHITECTURES

from .common import (EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE, CheckFailed, Reporter, add_model_args,
                     add_output_args, config_from_args)

__all__ = ["main", "build_parser"]

DEFAULT_DEMO_CHECKPOINT = Path("runs/digits-tiny.pt")
INPUT_HELP = "digits:N, random:N[:SEED], FILE.npy (float model inputs) or pixels:FILE.npy (integer pixels)"


def _train(args, out):
    from spikeforge.model.data import training_data
    from spikeforge.model.train import TrainSettings, evaluate, save_checkpoint, train

    config = config_from_args(args)
    args.arch = args.arch or ARCHITECTURES[0]
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    train_batch, test_batch = training_data(config, args.data_dir)
    out.say(f"training {args.arch} {args.model} on {config.dataset}: {len(train_batch)} train / "
            f"{len(test_batch)} test images, {settings.epochs} epochs")
    start = time.perf_counter()
    model, history = train(config, train_batch, test_batch, args.arch, settings, progress=not args.json)
    seconds = time.perf_counter() - start
    accuracy = evaluate(model, test_batch)["accuracy"]
    save_checkpoint(args.out, model, args.arch,
                    {"test_accuracy": accuracy, "history": history, "settings": settings.as_dict(),
                     "model": args.model})
    out.say(f"test accuracy {accuracy:.2%} after {seconds:.0f} s; checkpoint {args.out}")
    out.result({"checkpoint": str(args.out), "model": args.model, "arch": args.arch,
                "config": config.as_dict(), "test_accuracy": accuracy, "seconds": seconds,
                "history": history})


def _load(checkpoint, args):
    from spikeforge.model.train import load_checkpoint

    config = config_from_args(args) if getattr(args, "model", None) else None
    return load_checkpoint(checkpoint, config, getattr(args, "arch", None))


def _eval(args, out):
    from spikeforge.model.data import parse_input
    from spikeforge.model.train import evaluate

    model, meta = _load(args.checkpoint, args)
    batch = parse_input(args.input, model.config)
    result = evaluate(model, batch, progress=not args.json)
    accuracy = result["accuracy"]
    out.say(f"{meta['arch']} on {batch.source}: n={result['n']}"
            + ("" if accuracy is None else f", accuracy {accuracy:.2%}"))
    out.result({"checkpoint": str(args.checkpoint), "input": args.input, **result})
    if args.min_accuracy is not None:
        if accuracy is None:
            raise ValueError(f"--min-accuracy needs labelled input; {args.input!r} has no labels")
        if accuracy < args.min_accuracy:
            raise CheckFailed(f"accuracy {accuracy:.4f} is below --min-accuracy {args.min_accuracy}")


def _energy(args, out):
    import torch

    from spikeforge.model import model_from_config
    from spikeforge.model.data import parse_input
    from spikeforge.model.energy import calibrate_batchnorm, measure_energy
    from spikeforge.model.train import load_checkpoint

    config = config_from_args(args)
    reports = {}
    for arch, checkpoint in (("spikingformer", args.checkpoint), ("spikformer", args.spikformer_checkpoint)):
        batch = parse_input(args.input, config)
        if checkpoint is not None:
            model, meta = load_checkpoint(checkpoint, config, arch)
            if meta["arch"] != arch:
                raise ValueError(f"{checkpoint}: field 'arch' is {meta['arch']!r}, expected {arch!r}")
            if model.config != config:
                raise ValueError(f"{checkpoint}: field 'config' does not match --model {args.model} "
                                 f"with its --set overrides")
            source = f"checkpoint {checkpoint}"
        else:
            torch.manual_seed(args.seed)
            model = calibrate_batchnorm(model_from_config(config, arch), batch.x)
            source = f"untrained (seed {args.seed}, BN statistics calibrated on the input)"
        report = measure_energy(model, batch.x)
        reports[arch] = {"source": source, **report.as_dict()}
        out.say(f"\n{arch} — {source}")
        out.say(f"  {'layer':<34} {'kind':<9} {'rate':>7} {'SOPs/MACs':>12} {'energy µJ':>10}")
        for layer in report.layers:
            out.say(f"  {layer.name:<34} {layer.kind:<9} {layer.input_rate:7.3f} {layer.ops:12.4g} "
                    f"{layer.energy_pj * 1e-6:10.4f}")
        out.say("  firing rates: " + ", ".join(f"{k} {v:.3f}" for k, v in report.firing_rates.items()))
        out.say(f"  total: {report.sops:.4g} SOPs + {report.first_conv_flops:.4g} MACs = "
                f"{report.energy_mj:.6f} mJ per image; non-spike multiplications in blocks: "
                f"{report.non_spike_mults_in_blocks:.4g}")
    ratio = reports["spikingformer"]["energy_mj"] / reports["spikformer"]["energy_mj"]
    out.say(f"\nenergy ratio Spikingformer / Spikformer = {ratio:.3f} ({(1 - ratio):+.1%} saving)")
    if args.plot:
        from spikeforge.model.plots import plot_energy

        plot_energy(reports, args.plot)
        out.say(f"plot: {args.plot}")
    out.result({"model": args.model, "config": config.as_dict(), "input": args.input,
                "spikingformer": reports["spikingformer"], "spikformer": reports["spikformer"],
                "energy_ratio": ratio})


def _demo(args, out):
    """Train (or reuse) digits-tiny, quantize and export it, check the golden model against the
    fake-quantized model, generate the accelerator's Verilog and program image, and run test images
    on the accelerator cycle-accurately, every spike checked against the golden model."""
    import torch

    from spikeforge import flow
    from spikeforge.model import make_config
    from spikeforge.model.data import training_data
    from spikeforge.model.train import TrainSettings, evaluate, load_checkpoint, save_checkpoint, train

    config = make_config("digits-tiny")
    checkpoint = Path(args.checkpoint)
    runs = checkpoint.parent
    model = None
    if checkpoint.is_file() and not args.retrain:
        try:
            model, _ = load_checkpoint(checkpoint, config)
        except ValueError as e:
            out.say(f"not reusing {checkpoint}: {e}")
    train_batch, test_batch = training_data(config)
    if not 1 <= args.images <= len(test_batch):
        raise ValueError(f"--images must lie in 1..{len(test_batch)}, not {args.images}")
    if model is None:
        out.say(f"[1/5] training digits-tiny ({len(train_batch)} images) → {checkpoint}")
        model, _ = train(config, train_batch, test_batch, settings=TrainSettings(seed=args.seed),
                         progress=not args.json)
        save_checkpoint(checkpoint, model, "spikingformer", {"model": "digits-tiny"})
    else:
        out.say(f"[1/5] reusing trained checkpoint {checkpoint} (--retrain to train again)")
    float_accuracy = evaluate(model, test_batch, progress=not args.json)["accuracy"]
    out.say(f"      float accuracy on the {len(test_batch)} digits test images: {float_accuracy:.2%}")

    bundle_dir = runs / "digits-tiny-8bit"
    exported = flow.export(model, bundle_dir, preset="digits-tiny", seed=args.seed, qonnx=False)
    bundle = exported.bundle
    out.say(f"[2/5] quantized to 8-bit weights and exported the bundle {bundle_dir}")

    pixels = flow.encode_input(test_batch.x, bundle.manifest["input"])
    trace = flow.golden(bundle, pixels)
    golden_accuracy = (trace.predictions == test_batch.y).double().mean().item()
    with torch.no_grad():
        fake_quant_logits = exported.qmodel(pixels.float())
    same = torch.equal(fake_quant_logits.round().long(), trace.logits)
    out.say(f"[3/5] integer golden model: accuracy {golden_accuracy:.2%}; logits "
            f"{'identical to' if same else 'DIFFERENT from'} the brevitas fake-quant model")

    image = flow.compile(bundle)
    written = flow.verilog(image, runs / "rtl")
    out.say(f"[4/5] accelerator Verilog ({image.params['n_pe']} lanes) and program image "
            f"({len(image.memories['PROGRAM'])} descriptors, {len(image.memories['WEIGHTS'])} weight rows): "
            f"{written.verilog.parent}")

    n = args.images
    out.say(f"[5/5] {n} test images on the accelerator in {args.backend}, every spike checked:")
    report = _hardware_run(bundle, pixels[:n], test_batch.y[:n], args.backend, True, {}, runs / "build", out)
    report.pop("results")
    _say_hardware_report(report, out)
    out.result({"checkpoint": str(checkpoint), "float_accuracy": float_accuracy, "n_test": len(test_batch),
                "bundle": str(bundle_dir), "golden_accuracy": golden_accuracy, "fake_quant_identical": same,
                "verilog": str(written.verilog), "hardware": report})
    if not (report["bit_exact"] and same):
        raise CheckFailed(report["first_difference"] or "the fake-quant model differs from the golden model")


def _export(args, out):
    from spikeforge import flow
    from spikeforge.quant.calibrate import ACTIVITY_RANGE

    from .common import parse_overrides

    source = args.checkpoint
    out.say(f"quantizing {args.model} ({'checkpoint ' + str(source) if source else f'random, seed {args.seed}'}) "
            f"to {args.bits}-bit weights")
    exported = flow.export(source, args.out, preset=args.model, overrides=parse_overrides(args.overrides),
                           bits=args.bits, seed=args.seed, calib=args.calib, bias_correction=args.bias_correction,
                           qat_epochs=args.qat_epochs, qonnx=not args.no_qonnx, progress=not args.json)
    bundle, rates = exported.bundle, exported.firing_rates
    if rates:
        lo, hi = ACTIVITY_RANGE
        quiet = [n for n, r in rates.items() if not lo <= r <= hi]
        out.say(f"golden firing rates on {exported.calibration}: "
                + ", ".join(f"{n} {r:.3f}" for n, r in rates.items()))
        if quiet:
            out.say(f"warning: firing rate outside {lo:.0%}..{hi:.0%} in {', '.join(quiet)}")
    widths = {k: max(getattr(layer, k, 0) for layer in bundle.program) for k in ("acc_bits", "membrane_bits")}
    out.say(f"bundle {args.out}: {len(bundle.layers)} layers, {len(bundle.tables)} tables, "
            f"widest accumulator {widths['acc_bits']} bits, widest membrane {widths['membrane_bits']} bits")
    out.result({"out": str(args.out), "bits": args.bits, "method": exported.method, "source": exported.source,
                "layers": len(bundle.layers), "tables": len(bundle.tables), "firing_rates": rates, **widths})


def _golden(args, out):
    import numpy as np

    from spikeforge import flow
    from spikeforge.quant import load_bundle

    bundle = load_bundle(args.bundle)
    batch = flow.load_input(args.input, bundle)
    trace = flow.golden(bundle, batch.pixels)
    predictions = trace.predictions
    accuracy = None if batch.y is None else (predictions == batch.y).double().mean().item()
    if args.out:
        arrays = {f"spikes/{k}": v.numpy().astype(np.uint8) for k, v in trace.spikes.items()}
        arrays.update({f"stream/{k}": v.numpy() for k, v in trace.stream.items()})
        arrays["logits"] = trace.logits.numpy()
        _save_npz(args.out, arrays)
    out.say(f"golden {args.bundle} on {batch.source}: n={len(batch)}"
            + ("" if accuracy is None else f", accuracy {accuracy:.2%}")
            + (f"; overflow in {', '.join(trace.overflow)}" if trace.overflow else ""))
    out.result({"bundle": str(args.bundle), "input": args.input, "n": len(batch), "accuracy": accuracy,
                "predictions": predictions.tolist(), "overflow": trace.overflow,
                "firing_rates": {k: v.double().mean().item() for k, v in trace.spikes.items()}})
    if trace.overflow:
        raise CheckFailed(f"values exceeded their declared widths in {', '.join(trace.overflow)}")


def _hardware_target(args, hardware=SIZED_TO_BUNDLE):
    """The program image of ``args.bundle``, or without one the build parameters, for the ``--set``
    overrides: onto configuration ``--set hardware=NAME`` (default ``hardware``), or sized to the
    bundle (``bundle``; without a bundle, the default parameters), ``--set`` enlarging."""
    from spikeforge import flow

    from .common import parse_overrides

    overrides = {"hardware": hardware, **parse_overrides(args.overrides)}
    return flow.compile(args.bundle, overrides=overrides) if args.bundle else configured_params(overrides)


def _verilog(args, out):
    from spikeforge import flow

    written = flow.verilog(_hardware_target(args), args.out, stats=args.stats)
    out.say(f"wrote {written.verilog} ({written.verilog.stat().st_size} bytes), {written.params}, the C header"
            + (f" and the program image {written.image}" if written.image else ""))
    report = {"verilog": str(written.verilog), "params": json.loads(written.params.read_text())}
    if args.stats:
        report["cells"], report["multiplier_cells"] = written.cells, written.multiplier_cells
        out.say(f"yosys: {sum(written.cells.values())} word-level cells, {written.multiplier_cells} multipliers")
    out.result(report)


def _synth(args, out):
    from tqdm import tqdm

    from spikeforge import flow
    from spikeforge.flow.synth import check_part, sim_report_cycles

    check_part(args.part, args.package, args.freq)
    if args.cycles is not None and args.sim_report is not None:
        raise ValueError("give --cycles or --sim-report, not both")
    cycles = sim_report_cycles(args.sim_report) if args.sim_report is not None else args.cycles
    if cycles is not None and not cycles > 0:
        raise ValueError(f"--cycles must be a positive number of cycles per image, not {cycles!r}")
    if args.min_fmax is not None and not args.min_fmax > 0:
        raise ValueError(f"--min-fmax must be a frequency in MHz above 0, not {args.min_fmax!r}")
    from .common import parse_overrides

    hardware = parse_overrides(args.overrides).get("hardware", PART_CONFIGURATIONS.get(args.part, SIZED_TO_BUNDLE))
    target = _hardware_target(args, hardware)
    if hardware == SIZED_TO_BUNDLE:
        out.say(f"the build is sized to {'the bundle' if args.bundle else 'the --set parameters'}"
                + ("" if args.part in PART_CONFIGURATIONS else f" ({args.part} has no configuration)"))
    else:
        out.say(f"the build is configuration {hardware}" + (f", {args.bundle} planned onto it" if args.bundle else ""))
    bar = tqdm(bar_format="{desc}", file=out.text_stream, disable=out.as_json, leave=False)

    def progress(tool, seconds, line):
        bar.set_description_str(f"{tool}: {seconds:4.0f} s  {line[:70]}")

    out.say(f"synthesizing the accelerator for {args.part} ({args.package}) at {args.freq:g} MHz: "
            f"yosys, then nextpnr (minutes for a large accelerator)")
    try:
        summary = flow.synth(target, args.out, args.part, args.package, args.freq, cycles, progress,
                             args.lut_mapper)
    finally:
        bar.close()
    _say_synth_summary(summary, out)
    out.result({**summary, "hardware": hardware})
    if not summary["ok"]:
        raise CheckFailed(f"{summary['failure']}; reports in {summary['reports']}")
    if args.min_fmax is not None and summary["fmax_mhz"] is not None and summary["fmax_mhz"] < args.min_fmax:
        raise CheckFailed(f"Fmax {summary['fmax_mhz']:.2f} MHz is below --min-fmax {args.min_fmax:g}")


def _say_synth_summary(summary, out):
    out.say(f"{summary['top']} on {summary['part']} ({summary['package']}), nextpnr target {summary['freq_mhz']:g} MHz")
    if summary["resources"]:
        out.say(f"  {'resource':<11} {'used':>8} {'available':>10} {'%':>7}  counted by")
        for name, r in summary["resources"].items():
            percent = "" if r["percent"] is None else f"{r['percent']:.1f}"
            out.say(f"  {name:<11} {r['used']:>8} {r['available'] if r['available'] is not None else '?':>10} "
                    f"{percent:>7}  {r['source']}")
    if summary["fmax_mhz"] is not None:
        path = summary["critical_path"]
        out.say(f"  Fmax {summary['fmax_mhz']:.2f} MHz"
                + (f"; critical path {path['delay_ns']:.2f} ns ({path['logic_ns']:.2f} logic, {path['routing_ns']:.2f} "
                   f"routing) {path['start']} -> {path['end']}" if path else ""))
    if summary["us_per_image"] is not None:
        out.say(f"  {summary['cycles']:g} cycles per image: {summary['us_per_image']:.1f} µs per image, "
                f"{summary['images_per_s']:.0f} images/s at Fmax")
    out.say(f"  LUTs mapped by {summary['lut_mapper']}; "
            + ", ".join(f"{tool} {seconds:.1f} s" for tool, seconds in summary["seconds"].items())
            + f"; reports in {summary['reports']}")
    for warning in summary["warnings"]:
        out.say(f"  warning: {warning}")
    if summary["failure"]:
        out.say(f"  FAILED: {summary['failure']}")


def _hardware_run(bundle, pixels, labels, backend, check, overrides, build_dir, out, progress=True):
    """Run ``pixels`` on the accelerator compiled from ``bundle`` with a progress bar; returns the
    report of :func:`spikeforge.flow.predict` (its raw ``results`` included)."""
    from tqdm import tqdm

    from spikeforge import flow

    bar = tqdm(total=len(pixels), desc=f"{backend} images", unit="img", disable=not progress or out.as_json,
               file=out.text_stream)

    def advance(done):
        bar.update(done - bar.n)

    if backend == "verilator":
        out.say("building (or reusing) and running the accelerator in Verilator ...")
    try:
        return flow.predict(bundle, pixels, backend=backend, check=check, labels=labels, overrides=overrides,
                            build_dir=build_dir, progress=advance)
    finally:
        bar.close()


def _say_hardware_report(report, out):
    width = max(len(op) for op in report["cycles"]["per_layer"])
    out.say(f"{'descriptor':<{width}}  mean cycles")
    for op, cycles in report["cycles"]["per_layer"].items():
        out.say(f"{op:<{width}}  {cycles:12.1f}")
    out.say(f"cycles per image: {report['cycles']['mean']:.0f} (mean of {report['n']}), "
            f"{report['cycles']['stalled_fraction']:.1%} of them waiting for external memory")
    if report["overflow"]:
        flagged = [i for i, names in enumerate(report["overflow_per_image"]) if names]
        out.say(f"overflow: values wider than declared in {', '.join(report['overflow'])} "
                f"(images {', '.join(map(str, flagged[:20]))}{' ...' if len(flagged) > 20 else ''})")
    if report["accuracy"] is not None:
        out.say(f"hardware accuracy: {report['accuracy']:.2%}"
                + ("" if report.get("golden_accuracy") is None
                   else f" (golden model: {report['golden_accuracy']:.2%})"))
    if report["bit_exact"] is not None:
        out.say("bit-exact: every LIF's spikes at every timestep, the stream after every block and the logits "
                "equal the golden model" if report["bit_exact"] else f"MISMATCH: {report['first_difference']}")


def _sim(args, out):
    import numpy as np

    from spikeforge import flow
    from spikeforge.quant import load_bundle

    from .common import parse_overrides

    bundle = load_bundle(args.bundle)
    batch = flow.load_input(args.input, bundle)
    report = _hardware_run(bundle, batch.pixels, batch.y, args.backend, args.check,
                           parse_overrides(args.overrides), args.build_dir, out)
    results = report.pop("results")
    report.update(bundle=str(args.bundle), input=args.input)
    out.say(f"{args.bundle} on {batch.source}, {args.backend}: predictions {report['predictions'][:20]}"
            + (" ..." if len(report["predictions"]) > 20 else ""))
    _say_hardware_report(report, out)
    if args.trace:
        _save_npz(args.trace, {key: (np.asarray(v, dtype=str) if key == "overflow" else v)
                               for key, v in results.items()})
        out.say(f"hardware trace: {args.trace}")
    out.result(report)
    if report["bit_exact"] is False:
        raise CheckFailed(report["first_difference"])


def _sim_layer(args, out):
    from spikeforge.interface.bits import next_power_of_two
    from spikeforge.interface.params import EngineParams
    from spikeforge.sim.cycles import layer_cycles, layer_events, overhead_bound
    from spikeforge.sim.layer import run_layer
    from spikeforge.sim.layer_case import random_case

    height, _, width = args.size.partition("x")
    try:
        size = (int(height), int(width))
    except ValueError:
        raise ValueError(f"--size {args.size!r}: expected HxW, e.g. 4x4") from None
    overrides = {"n_pe": args.n_pe, "weight_bits": args.bits, "max_T": next_power_of_two(args.T),
                 "max_cin": next_power_of_two(args.cin), "max_tiles": next_power_of_two(-(-args.cout // args.n_pe)),
                 "max_h": next_power_of_two(1 if args.kind == "linear" else size[0]),
                 "max_w": next_power_of_two(size[0] * size[1] if args.kind == "linear" else size[1]),
                 "frac_bits": args.T}
    params = EngineParams(**overrides)
    case = random_case(args.kind, args.cin, args.cout, size=size, T=args.T, rate=args.rate, bits=args.bits,
                       seed=args.seed, params=params)
    result, difference = run_layer(case, params, args.backend, build_root=args.build_dir, waves=args.waves)
    tiles = -(-args.cout // args.n_pe)
    sops = layer_events(case, params) // tiles * args.cout   # weight additions: in-image events × channels
    cycles = result["cycles"]
    report = {"match": difference is None, "backend": args.backend, "kind": args.kind, "cycles": cycles,
              "predicted_cycles": layer_cycles(case, params), "overhead_bound": overhead_bound(case, params),
              "events": result["events"], "sops": sops, "utilization": sops / (args.n_pe * cycles),
              "params": json.loads(params.as_json())}
    out.say(f"{args.kind} {args.cin}->{args.cout} {args.size} T={args.T} rate={args.rate} on {args.backend} "
            f"(n_pe={args.n_pe}): {'match' if difference is None else 'MISMATCH'}, {cycles} cycles, "
            f"{result['events']} events, {sops} SOPs, utilization {report['utilization']:.3f}")
    if difference is not None:
        what, t, c, y, x, golden, got = difference
        report["first_difference"] = {"what": what, "t": t, "channel": c, "position": [y, x],
                                      "golden": golden, "hardware": got}
    out.result(report)
    if difference is not None:
        raise CheckFailed(f"{what} differs at timestep {t}, channel {c}, position ({y}, {x}): "
                          f"golden {golden}, hardware {got}")


def _save_npz(path, arrays):
    """``np.savez_compressed`` written atomically (complete or absent)."""
    import numpy as np

    from spikeforge.interface.files import atomic_file

    with atomic_file(path) as tmp:
        np.savez_compressed(tmp, **arrays)


def _add_hardware_args(parser, default_hardware=SIZED_TO_BUNDLE):
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help=f"hardware=NAME: the build parameters of configuration NAME "
                             f"({', '.join(CONFIGURATIONS)}), onto which the bundle is planned, or {SIZED_TO_BUNDLE}: "
                             f"sized to the bundle (default {default_hardware}); or a hardware parameter (n_pe, "
                             f"weight_bits, acc_bits, membrane_bits, logit_bits, max_T, max_h, max_w, spike_groups, "
                             f"stream_tiles, weight_rows, bias_rows, threshold_rows, program_depth, ...); repeatable")


def build_parser():
    parser = argparse.ArgumentParser(prog="spikeforge", description=(
        "Spikingformer to bit-exact FPGA hardware: train, quantize, export, generate Verilog, "
        "simulate and verify."))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("train", help="train a model and write a checkpoint")
    add_model_args(p)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", help="CIFAR python-pickle batches folder (cifar presets)")
    p.add_argument("--out", required=True, type=Path, metavar="CKPT")
    add_output_args(p)
    p.set_defaults(run=_train)

    p = commands.add_parser("eval", help="accuracy of a checkpoint on an input set")
    p.add_argument("checkpoint", type=Path, metavar="CKPT")
    p.add_argument("--input", required=True, metavar="SPEC", help=INPUT_HELP)
    add_model_args(p, required=False)
    p.add_argument("--min-accuracy", type=float, help="exit 1 if the accuracy is below this fraction")
    add_output_args(p)
    p.set_defaults(run=_eval)

    p = commands.add_parser("energy", help="firing rates, SOPs and energy: Spikingformer vs Spikformer")
    add_model_args(p)
    p.add_argument("--checkpoint", type=Path, help="trained Spikingformer (default: untrained)")
    p.add_argument("--spikformer-checkpoint", type=Path, help="trained Spikformer (default: untrained)")
    p.add_argument("--input", required=True, metavar="SPEC", help=INPUT_HELP)
    p.add_argument("--seed", type=int, default=0, help="initialisation seed of untrained models")
    p.add_argument("--plot", type=Path, metavar="PNG", help="also draw energy per layer into this file")
    add_output_args(p)
    p.set_defaults(run=_energy)

    p = commands.add_parser("export", help="quantize and export a bundle (weight tables + layer program)")
    add_model_args(p)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path, help="trained checkpoint to quantize")
    source.add_argument("--seed", type=int, default=0, help="random network (default when no checkpoint)")
    p.add_argument("--bits", type=int, default=8, help="weight bit width, 2..8 (default 8)")
    p.add_argument("--calib", metavar="SPEC", help="calibration input: tunes the activity of random "
                   "networks (default random:32:SEED), feeds --bias-correction, reports firing rates")
    p.add_argument("--bias-correction", action="store_true",
                   help="post-training calibration: shift biases by the mean output error on --calib")
    p.add_argument("--qat-epochs", type=int, default=0, help="quantization-aware fine-tuning epochs")
    p.add_argument("--no-qonnx", action="store_true", help="skip the QONNX export")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    add_output_args(p)
    p.set_defaults(run=_export)

    p = commands.add_parser("golden", help="run the integer golden model on a bundle")
    p.add_argument("bundle", type=Path, metavar="DIR")
    p.add_argument("--input", required=True, metavar="SPEC", help=INPUT_HELP)
    p.add_argument("--out", type=Path, metavar="TRACE.npz", help="save spikes, stream and logits")
    add_output_args(p)
    p.set_defaults(run=_golden)

    p = commands.add_parser("verilog", help="generate the accelerator's Verilog (sized for a bundle, or by --set)")
    p.add_argument("bundle", nargs="?", type=Path, metavar="DIR",
                   help="size the hardware for this bundle and write its program image too")
    _add_hardware_args(p)
    p.add_argument("--stats", action="store_true", help="Yosys cell statistics (multipliers included)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    add_output_args(p)
    p.set_defaults(run=_verilog)

    p = commands.add_parser("synth", help="synthesize, place and route the accelerator on an ECP5 (Yosys, nextpnr)")
    p.add_argument("bundle", nargs="?", type=Path, metavar="DIR",
                   help="plan this bundle onto the hardware and write its program image too")
    _add_hardware_args(p, "the --part's configuration: " + ", ".join(f"{part} {name}" for part, name
                                                                      in PART_CONFIGURATIONS.items()))
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="the Verilog as the verilog command writes it; the reports in DIR/synth")
    p.add_argument("--part", default=DEFAULT_PART, help=f"ECP5 part: {', '.join(PARTS)} (default {DEFAULT_PART})")
    p.add_argument("--package", default=DEFAULT_PACKAGE, help=f"package (default {DEFAULT_PACKAGE})")
    p.add_argument("--freq", type=float, default=DEFAULT_FREQ_MHZ, metavar="MHZ",
                   help=f"nextpnr's target frequency (default {DEFAULT_FREQ_MHZ:g})")
    p.add_argument("--min-fmax", type=float, metavar="MHZ", help="exit 1 if Fmax is below this")
    p.add_argument("--lut-mapper", default=DEFAULT_LUT_MAPPER, metavar="|".join(LUT_MAPPERS),
                   help=f"Yosys' LUT mapping: the classic abc or synth_ecp5's timing-driven abc9 (falls back to abc on "
                        f"an internal error of Yosys); default {DEFAULT_LUT_MAPPER}")
    p.add_argument("--cycles", type=float, metavar="N", help="cycles per image: report µs per image and images/s")
    p.add_argument("--sim-report", type=Path, metavar="FILE",
                   help="take the cycles per image (cycles.mean) from a spikeforge sim --json report")
    add_output_args(p)
    p.set_defaults(run=_synth)

    p = commands.add_parser("sim", help="run a bundle on the whole accelerator, cycle-accurate")
    p.add_argument("bundle", type=Path, metavar="DIR")
    p.add_argument("--backend", default=BACKENDS[0], choices=BACKENDS)
    p.add_argument("--input", required=True, metavar="SPEC", help=INPUT_HELP)
    p.add_argument("--check", action="store_true",
                   help="compare every LIF, the stream after every block and the logits with the golden model")
    p.add_argument("--trace", type=Path, metavar="FILE.npz", help="save the hardware's spikes, stream, logits")
    _add_hardware_args(p)
    p.add_argument("--build-dir", type=Path, default=Path("build/verilator"))
    add_output_args(p)
    p.set_defaults(run=_sim)

    p = commands.add_parser("sim-layer", help="run one random layer on the hardware, check it bit for bit")
    p.add_argument("--kind", required=True, choices=("linear", "conv1x1", "conv3x3"))
    p.add_argument("--cin", required=True, type=int)
    p.add_argument("--cout", required=True, type=int)
    p.add_argument("--size", default="4x4", metavar="HxW", help="image size (linear: H·W tokens)")
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--rate", type=float, default=0.1, help="input firing rate (0..1)")
    p.add_argument("--bits", type=int, default=8, help="weight bits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-pe", type=int, default=16)
    p.add_argument("--backend", required=True, choices=BACKENDS)
    p.add_argument("--build-dir", type=Path, default=Path("build/verilator"))
    p.add_argument("--waves", action="store_true", help="write a VCD waveform into the build directory")
    add_output_args(p)
    p.set_defaults(run=_sim_layer)

    p = commands.add_parser("demo", help="the end-to-end demo on the embedded digits data")
    p.add_argument("--checkpoint", default=DEFAULT_DEMO_CHECKPOINT, type=Path,
                   help=f"where the trained model is kept and reused (default: {DEFAULT_DEMO_CHECKPOINT})")
    p.add_argument("--retrain", action="store_true", help="train again even if the checkpoint exists")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default=BACKENDS[0], choices=BACKENDS,
                   help="simulator for the hardware check (default: verilator)")
    p.add_argument("--images", type=int, default=50, help="test images run on the hardware (default 50)")
    add_output_args(p)
    p.set_defaults(run=_demo)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse exits with 2 on usage errors
    out = Reporter(args.json)
    try:
        args.run(args, out)
    except CheckFailed as e:
        print(f"spikeforge {args.command}: check failed: {e}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    except (ValueError, OSError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"spikeforge {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
