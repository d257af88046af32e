"""The pipeline as a Python API, in the style of hls4ml's ``convert`` / ``compile`` / ``predict`` /
``build``: the ``spikeforge`` command is a thin layer over these functions.

README.md (Python API) shows the whole chain on the digits network.

Steps:

* :func:`export` — quantize a float model (a checkpoint, a model, or a random network from a seed)
  and write the bundle (weight tables + layer program), validated before anything is replaced.
* :func:`load_input` — an input spec (``digits:N``, ``random:N[:SEED]``, ``FILE.npy``,
  ``pixels:FILE.npy``) as a batch whose ``pixels`` are the integer input of the encoding
  (:func:`encode_input` turns float model inputs into them).
* :func:`golden` — the integer golden model's trace (every LIF's spikes, the stream, the logits).
* :func:`compile` — the program image for the accelerator.
* :func:`verilog` — the accelerator's Verilog (+ params, C header, program image).
* :func:`synth` — that Verilog synthesized and placed and routed on an ECP5 (Yosys, nextpnr):
  resources against the part, Fmax, the critical path, time per image (:mod:`.synth`).
* :func:`predict` — run inputs cycle-accurately (Verilator or the Amaranth simulator); with
  ``check`` compare every LIF, the stream after every block and the logits with the golden model.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikeforge.firmware.compiler import DEFAULT_N_PE, compile_bundle
from spikeforge.firmware.driver import overflow_names
from spikeforge.interface.params import AcceleratorParams
from spikeforge.model.encoding import encode_input, input_encoding
from spikeforge.ops.bundle import Bundle, load_bundle
from spikeforge.sim import BACKENDS, check_backend
from spikeforge.sim.network import first_difference, run_network

from .synth import synth

__all__ = ["BACKENDS", "Exported", "export", "load_input", "encode_input", "golden", "compile", "verilog",
           "synth", "predict"]


@dataclass
class Exported:
    """What :func:`export` made: the loaded bundle, how it was quantized, the golden firing rate of
    every LIF on the calibration input (empty without one) and the fake-quantized model."""

    bundle: Bundle
    method: str
    source: str
    calibration: str | None
    firing_rates: dict
    qmodel: object


def _config(preset, overrides):
    from spikeforge.model import make_config

    return make_config(preset, **{key: str(value) for key, value in (overrides or {}).items()})


def export(source, out, *, preset="digits-tiny", overrides=None, bits=8, seed=0, calib=None,
           bias_correction=False, qat_epochs=0, qonnx=True, progress=False):
    """Quantize and export a bundle to ``out``.

    Parameters
    ----------
    source : path, model or None
        A checkpoint (``spikeforge train`` or official), a float Spikingformer, or None for a random
        network from ``seed`` whose every LIF fires at a non-trivial rate.
    preset, overrides
        The model configuration (``overrides`` like ``{"dim": 64}``); a checkpoint must match it.
    bits : int
        Weight bits, 2..8.
    calib : str, optional
        Calibration input spec: tunes a random network's activity (default ``random:32:SEED``),
        feeds ``bias_correction``, and gives the reported firing rates.
    """
    import torch

    from spikeforge.model.data import parse_input, training_data
    from spikeforge.model.train import load_checkpoint
    from spikeforge.quant.calibrate import bias_correction as correct_biases
    from spikeforge.quant.calibrate import finetune, random_network
    from spikeforge.quant.export import export_bundle, quantize
    from spikeforge.quant.golden import GoldenModel

    config = _config(preset, overrides)
    encoding = input_encoding(config.as_dict())
    calib = calib or (f"random:32:{seed}" if source is None else None)
    calib_pixels = parse_input(calib, config).pixels if calib else None
    if source is None:
        model = random_network(config, seed, calib_pixels.float() * 2.0 ** encoding["scale_exp"])
        described = f"random (seed {seed}), activity tuned on {calib}"
    elif isinstance(source, torch.nn.Module):
        model, described = source, "model"
        if model.config != config:
            raise ValueError(f"the model's config does not match --model {preset} with its overrides")
    else:
        model, _ = load_checkpoint(source, config)       # a Spikformer checkpoint is refused by quantize
        described = f"checkpoint {source}"
    qmodel = quantize(model, bits)
    method = "ptq"
    if bias_correction:
        if calib_pixels is None:
            raise ValueError("bias correction needs calibration input: give --calib SPEC")
        correct_biases(qmodel, model, calib_pixels.float())
        method = "ptq+bias-correction"
    if qat_epochs:
        train_batch, _ = training_data(config)
        finetune(qmodel, encode_input(train_batch.x, encoding).float(), train_batch.y, qat_epochs, seed=seed, progress=progress)
        method += f"+qat({qat_epochs} epochs)"
    extra = {}
    if qonnx:
        from spikeforge.quant.qonnx_export import export_qonnx

        example = calib_pixels[:1] if calib_pixels is not None else parse_input("random:1:0", config).pixels
        extra["model.qonnx.onnx"] = lambda path: export_qonnx(qmodel, path, example.float())
    model_info = {"arch": "spikingformer", "preset": preset,
                  "overrides": {key: str(value) for key, value in sorted((overrides or {}).items())},
                  "source": described}
    export_bundle(out, qmodel, model_info, {"method": method, "calibration": calib, "seed": seed}, extra)
    bundle = load_bundle(out)
    rates = {}
    if calib_pixels is not None:
        trace = GoldenModel(bundle).run(calib_pixels)
        rates = {name: float(spikes.double().mean()) for name, spikes in trace.spikes.items()}
    return Exported(bundle, method, described, calib, rates, qmodel)


def _bundle(bundle):
    return bundle if isinstance(bundle, Bundle) else load_bundle(bundle)


def load_input(spec, target):
    """The batch an input ``spec`` denotes for ``target`` (a bundle, a bundle path or a model config):
    ``x`` (float model input), ``pixels`` (the integer input), ``y`` (labels or None).
    Raises ValueError naming the file, index and value of anything outside the encoding."""
    from spikeforge.model.config import ModelConfig
    from spikeforge.model.data import parse_input

    config = target if isinstance(target, ModelConfig) else ModelConfig(**_bundle(target).config)
    return parse_input(spec, config)


def golden(bundle, pixels, record_membranes=False):
    """The golden model's :class:`~spikeforge.quant.golden.Trace` of integer ``pixels``."""
    from spikeforge.quant.golden import GoldenModel

    return GoldenModel(_bundle(bundle)).run(pixels, record_membranes=record_membranes)


def compile(bundle, n_pe=DEFAULT_N_PE, overrides=None):
    """The program image of ``bundle`` for an accelerator of ``n_pe`` lanes sized to it (``overrides`` may
    enlarge any width or depth, e.g. ``{"acc_bits": 32}``), or planned onto a configuration's build
    parameters (``{"hardware": "lfe5u-85f"}``, :data:`~spikeforge.interface.fpga.CONFIGURATIONS`)."""
    return compile_bundle(_bundle(bundle), n_pe, {key: str(value) for key, value in (overrides or {}).items()})


@dataclass
class VerilogOutput:
    """Files :func:`verilog` wrote, and Yosys' cell counts when asked for."""

    verilog: Path
    params: Path
    image: Path | None
    cells: dict | None = None
    multiplier_cells: int | None = None


def verilog(target, out, stats=False):
    """Write the accelerator's Verilog, ``params.json`` and the register map's C header to ``out``
    (complete or not at all); ``target`` is a program image (its memories go to ``out/image``) or
    build parameters (:class:`~spikeforge.interface.params.AcceleratorParams`)."""
    from spikeforge.firmware.image import ProgramImage
    from spikeforge.hw.netlist import TOP_NAME, multiplier_cells, write_verilog, yosys_cell_counts

    image = target if isinstance(target, ProgramImage) else None
    params = AcceleratorParams(**image.params) if image else target
    verilog_path, params_path = write_verilog(params, out, image)
    result = VerilogOutput(verilog_path, params_path, Path(out) / "image" if image else None)
    if stats:
        result.cells = yosys_cell_counts(verilog_path.read_text(), TOP_NAME)
        result.multiplier_cells = multiplier_cells(result.cells)
    return result


def _per_layer(ops, cycles):
    """Mean cycles per layer from per-descriptor ``cycles`` (a layer over spatial tiles has several)."""
    per_layer = {}
    for op, c in zip(ops, cycles):
        per_layer[op] = per_layer.get(op, 0.0) + float(c)
    return per_layer


def predict(bundle, pixels, backend="verilator", check=True, labels=None, n_pe=DEFAULT_N_PE, overrides=None,
            build_dir="build/verilator", progress=None):
    """Run integer ``pixels`` on the accelerator compiled from ``bundle``, cycle-accurately.

    Returns the report ``spikeforge sim --json`` prints: ``predictions``, ``accuracy`` (with
    ``labels``), ``cycles`` (per image, mean, the cycles spent waiting for external memory per image and
    their fraction, per descriptor without those waits), ``firing_rates`` (with ``check``),
    ``overflow`` (the layers with a value wider than declared in any image, program order; the
    golden model's ``Trace.overflow``), ``overflow_per_image`` and, with ``check``, ``bit_exact``,
    ``first_difference`` and ``golden_accuracy``.
    Without ``check`` no layer is read back (faster); ``bit_exact`` is then None.
    """
    check_backend(backend)
    bundle = _bundle(bundle)
    pixels = np.asarray(pixels, dtype=np.int64)
    if len(pixels) == 0:
        raise ValueError("no input images (N = 0)")
    image = compile(bundle, n_pe, overrides)
    results = run_network(image, pixels, backend=backend, check=check, build_root=build_dir, progress=progress)
    predictions = [int(p) for p in np.argmax(results["logits"], axis=1)]   # first maximum, as the golden model
    labels = None if labels is None else np.asarray(labels)
    ops = image.layout["ops"][:-1]
    report = {"backend": backend, "n": len(pixels), "predictions": predictions, "n_pe": image.params["n_pe"],
              "cycles": {"per_image": [int(c) for c in results["cycles"]],
                         "mean": float(np.mean(results["cycles"])),
                         "stalled_per_image": [int(c) for c in results["stall_cycles"]],
                         "stalled_fraction": float(np.sum(results["stall_cycles"]) / np.sum(results["cycles"])),
                         "per_layer": _per_layer(ops, results["op_cycles"].mean(0))},
              "firing_rates": {key.split("/", 1)[1]: float(v.mean()) for key, v in results.items()
                               if key.startswith("spikes/")},
              "overflow": overflow_names(image, np.bitwise_or.reduce(results["overflow_log"], axis=0)),
              "overflow_per_image": [overflow_names(image, log) for log in results["overflow_log"]],
              "accuracy": None if labels is None else float(np.mean(np.array(predictions) == labels)),
              "bit_exact": None, "results": results}
    if check:
        trace = golden(bundle, pixels)
        difference = first_difference(results, trace)
        report["bit_exact"] = difference is None
        report["first_difference"] = difference
        report["golden_accuracy"] = (None if labels is None
                                     else float(np.mean(trace.predictions.numpy() == labels)))
    return report
