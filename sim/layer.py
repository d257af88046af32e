"""Run single-layer cases on the layer engine in either simulator and check them."""

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from spikeforge.hw.layer_engine import LayerEngine
from spikeforge.hw.params import EngineParams

from .layer_case import LayerCase, check_fits, compare, layer_testbench

__all__ = ["BACKENDS", "engine", "run_layer", "CASE_ENV"]

BACKENDS = ("amaranth", "verilator")
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
    else:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    return result, compare(case, result)
