"""The integer golden model: ``docs/integer-semantics.md`` executed layer by layer.

It reads a bundle (weights, thresholds, layer program) and nothing else — no float model, no
floating-point tensor. Each layer runs the ``golden`` of its operation module (:mod:`spikeforge.ops`,
numpy int64); the trace, returned as int64 torch tensors, holds every LIF's spikes at every timestep,
the residual stream after every block and the logits; the hardware is checked against it.
"""

from dataclasses import dataclass, field

import numpy as np
import torch

from spikeforge.ops import OPERATIONS
from spikeforge.ops.base import GoldenRun
from spikeforge.ops.bundle import Bundle, load_bundle

__all__ = ["Trace", "GoldenModel"]


@dataclass
class Trace:
    """Integer results of one run (all int64, batch first, then time: ``[B, T, C, H, W]``)."""

    spikes: dict                       # LIF name -> spikes {0, 1}
    stream: dict                       # "block.j" -> residual stream after block j
    logits: torch.Tensor               # [B, num_classes]
    membranes: dict = field(default_factory=dict)   # LIF name -> membrane H (when recorded)
    overflow: list = field(default_factory=list)    # layers with a value wider than declared, program order
    overflow_per_image: list = field(default_factory=list)   # per image: its such layers, program order

    @property
    def predictions(self):
        return self.logits.argmax(1)   # first maximum wins, as torch.argmax on the float logits


def _torch(arrays):
    return {name: torch.from_numpy(np.ascontiguousarray(values)) for name, values in arrays.items()}


class GoldenModel:
    """Run a bundle's layer program on integer input.

    Parameters
    ----------
    bundle : Bundle or path
        A bundle from :func:`spikeforge.ops.bundle.load_bundle` (a path is loaded and validated).
    """

    def __init__(self, bundle):
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        manifest = self.bundle.manifest
        self.T = manifest["model"]["config"]["T"]
        self.input = manifest["input"]

    def check_input(self, x):
        """Integer input ``[B, C, H, W]`` (static, repeated over T) or ``[B, T, C, H, W]`` (events),
        as an int64 numpy array ``[B, T', C, H, W]`` (T' = 1 for a static image)."""
        dtype = x.dtype if isinstance(x, (torch.Tensor, np.ndarray)) else None
        if dtype not in (torch.int64, np.int64):
            raise ValueError(f"golden input must be int64 pixels, not {dtype}")
        x = x.numpy() if isinstance(x, torch.Tensor) else x
        shape = list(self.input["shape"])
        if list(x.shape[1:]) != shape:
            raise ValueError(f"golden input must have shape [B, {', '.join(map(str, shape))}], "
                             f"not {list(x.shape)}")
        if x.size and (x.min() < 0 or x.max() > self.input["max"]):
            raise ValueError(f"golden input values must lie in [0, {self.input['max']}]")
        return x[:, None] if not self.input["events"] else x   # static: one frame, broadcast

    def run(self, x, record_membranes=False):
        run = GoldenRun(values={"input": self.check_input(x)}, tables=self.bundle.tables, T=self.T,
                        record_membranes=record_membranes)
        for layer in self.bundle.program:
            OPERATIONS[layer.kind].golden(layer, run)
        stream = {block: run.values[name] for block, name in self.bundle.manifest["outputs"]["stream"].items()}
        return Trace(spikes=_torch(run.spikes), stream=_torch(stream), logits=torch.from_numpy(run.logits),
                     membranes=_torch(run.membranes), overflow=run.overflow,
                     overflow_per_image=run.overflow_per_image(len(run.values["input"])))
