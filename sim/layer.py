"""Run single-layer cases on the layer engine in either simulator and check them."""

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from spikeforge.hw.layer_engine import LayerEngine
from spikeforge.interface.bits import next_power_of_two
from spikeforge.interface.params import EngineParams

from . import check_backend
from .layer_case import LayerCase, check_fits, compare, layer_testbench

__all__ = ["engine", "run_layer", "CASE_ENV", "bundle_layer_case", "params_for"]
#: Environment variable through which the Verilator process receives the case file.
CASE_ENV = "SPIKEFORGE_LAYER_CASE"


def engine(**params):
    """The layer engine for keyword parameters (a picklable, named factory for the runners)."""
    return LayerEngine(EngineParams(**params))


def _case_to_json(case, params):
    fields = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in vars(case).items()}
    return json.dumps({"case": fields, "params": asdict(params)})


def _case_from_json(text):
    payload = json.loads(text)
    fields = {k: (torch.tensor(v) if isinstance(v, list) else v) for k, v in payload["case"].items()}
    return LayerCase(**fields), EngineParams(**payload["params"])


async def testbench_from_env(ports):
    """The layer testbench on the case named by ``$SPIKEFORGE_LAYER_CASE`` (Verilator side)."""
    case, params = _case_from_json(Path(os.environ[CASE_ENV]).read_text())
    return await layer_testbench(ports, case, params)


def run_layer(case, params, backend, build_root="build/verilator", waves=False):
    """Run ``case`` on the engine built with ``params``; returns ``(result, first difference or None)``.

    ``result`` holds the streamed ``spikes`` and ``membranes`` and the ``cycles`` and ``events``
    counters; the difference is against the golden model (``layer_case.compare``).
    """
    check_backend(backend)
    check_fits(case, params)
    if backend == "amaranth":
        from .amaranth_runner import run_amaranth

        dut = LayerEngine(params)
        vcd = Path(build_root) / "layer.vcd" if waves else None
        result = run_amaranth(dut, lambda ports: layer_testbench(ports, case, params), vcd=vcd)
    elif backend == "verilator":
        from .verilator_runner import run_verilator

        build_root = Path(build_root)
        build_root.mkdir(parents=True, exist_ok=True)
        case_file = build_root / f"case-{os.getpid()}.json"
        case_file.write_text(_case_to_json(case, params))
        try:
            result = run_verilator(engine, asdict(params), "spikeforge.sim.layer", "testbench_from_env",
                                   build_root, waves=waves, extra_env={CASE_ENV: str(case_file.resolve())})
        finally:
            case_file.unlink(missing_ok=True)
    return result, compare(case, result)


def bundle_layer_case(bundle, trace, conv_name, image=0):
    """A :class:`LayerCase` of one spike-input conv of a bundle and the LIF it feeds, with the
    input spikes the golden model computed for ``image``; also returns the golden output spikes.

    Only convs without residual or pooling map onto the layer engine (the tokenizer's stages and
    the Q/K/V and MLP convs); the case's expected result is that LIF's trace.
    """
    layers = {layer["name"]: layer for layer in bundle.layers}
    conv = layers.get(conv_name)
    if conv is None or conv["kind"] != "conv" or conv["input_kind"] != "spikes":
        raise ValueError(f"{conv_name!r} is not a spike-input conv of the bundle")
    if conv["residual"] or conv["input"] not in trace.spikes:
        raise ValueError(f"{conv_name!r} adds a residual or reads pooled spikes; the layer engine runs neither")
    lif = next(layer for layer in bundle.layers if layer["kind"] == "lif" and layer["input"] == conv["output"])
    kind = "conv3x3" if conv["kernel"] == 3 else "conv1x1"
    tables = {name: torch.from_numpy(bundle.tables[lif_or_conv[name]])
              for name, lif_or_conv in (("weight", conv), ("bias", conv), ("threshold", lif))}
    case = LayerCase(kind, tables["weight"], tables["bias"], tables["threshold"], trace.spikes[conv["input"]][image],
                     lif["frac_bits"], lif["decay_mult"], lif["decay_shift"])
    return case, trace.spikes[lif["name"]][image], (conv, lif)


def params_for(case, n_pe, acc_bits, membrane_bits, weight_bits):
    """The smallest engine parameters (powers of two) that hold ``case``."""
    T, cin, cout, H, W = case.shape

    return EngineParams(n_pe=n_pe, weight_bits=weight_bits, acc_bits=acc_bits,
                        membrane_bits=max(membrane_bits, acc_bits + case.frac_bits + 1), max_T=next_power_of_two(T),
                        max_cin=next_power_of_two(cin), max_tiles=next_power_of_two(-(-cout // n_pe)), max_h=next_power_of_two(H), max_w=next_power_of_two(W),
                        frac_bits=case.frac_bits, decay_mult=case.decay_mult, decay_shift=case.decay_shift)
