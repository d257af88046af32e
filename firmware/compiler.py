"""Compiler: a bundle's layer program → a program image for the accelerator.

Each operation module (:mod:`spikeforge.ops`) emits its own descriptors into a :class:`Program`;
this module places the input, collects the build parameters the operations need and packs the
memory images. A LIF is fused into the conv or attention that produces its input (the drain runs
it); the first conv reads its integer pixels as bit planes (spike channel ``ci·P + b`` holds bit
``b`` of channel ``ci``). Spike tensors get their own groups of the spike memory, so every LIF's
spikes stay readable after the run; the residual stream lives in one place and is updated in place.
"""

from dataclasses import asdict, replace

from spikeforge.interface.bits import ceil_div, index_bits, next_power_of_two
from spikeforge.interface.descriptor import DESCRIPTOR_BITS, OPCODES, pack
from spikeforge.interface.external import external_bytes
from spikeforge.interface.layout import pack_lanes
from spikeforge.interface.params import AcceleratorParams
from spikeforge.ops import OPERATIONS
from spikeforge.ops.bundle import Bundle, load_bundle

from .image import ProgramImage

__all__ = ["CompileError", "Program", "compile_bundle", "DEFAULT_N_PE", "MAX_PLANES"]

DEFAULT_N_PE = 16
#: Bit planes the first conv reads at most (8-bit pixels).
MAX_PLANES = 8
#: Parameters an override may set only to the value the bundle's LIFs use (the decay is built in).
_FIXED = ("decay_mult", "decay_shift")
#: Parameters an override may set to any valid value: the board's external memory, which the image must fit.
_BOARD = ("memory_address_bits",)


class CompileError(ValueError):
    """The bundle's program cannot run on the accelerator; the message names the layer."""


class Program:
    """What the operations emit into: descriptors, memory rows, spike-memory placement and the
    build parameters they need (``need``)."""

    def __init__(self, bundle, n_pe):
        self.n_pe, self.tables = n_pe, bundle.tables
        self.T = bundle.config["T"]
        self.events = bool(bundle.manifest["input"]["events"])
        self.descriptors, self.names = [], []
        self.weights, self.biases, self.thresholds = [], [], []   # lane lists, packed at the end
        self.groups = 0
        self.spikes = {}              # tensor name -> placement
        self.scratch_rows = 0         # the attention's Kᵀ·V rows (shared by every attention)
        self.stream, self.stream_shape = None, None
        self.breakpoints = {}
        self.needed = {"weight_bits": bundle.manifest["quant"]["weight_bits"], "acc_bits": 2, "membrane_bits": 2,
                       "frac_bits": 0, "max_cin": 1, "max_tiles": 1, "max_h": 1, "max_w": 1}
        self.decay, self.classes = None, None
        layers = bundle.program
        self._lif_after = {layers[i - 1].name: layer for i, layer in enumerate(layers) if layer.kind == "lif"}
        outputs = bundle.manifest["outputs"]
        self._block_of_stream = {tensor: block for block, tensor in outputs["stream"].items()}
        self.stream_names = (set(outputs["stream"].values())
                             | {layer.residual for layer in layers if layer.kind == "conv" and layer.residual}
                             | {layer.input for layer in layers if layer.kind == "head"})

    def error(self, layer, message):
        return CompileError(f"layer {layer.name!r}: {message}")

    def place(self, name, channels, T, H, W, **extra):
        """Give spike tensor ``name`` its own groups of ``n_pe`` channels in the spike memory."""
        groups = ceil_div(channels, self.n_pe)
        self.spikes[name] = dict(group=self.groups, groups=groups, channels=channels, T=T, H=H, W=W, **extra)
        self.groups += groups
        self.size(H, W)
        return self.spikes[name]

    def spike_tensor(self, layer, name):
        placed = self.spikes.get(name)
        if placed is None:
            raise self.error(layer, f"input {name!r} is not a spike tensor in memory")
        return placed

    def lif_after(self, layer):
        """The LIF layer right after ``layer`` (fused into its drain), or None."""
        return self._lif_after.get(layer.name)

    def emit(self, name, fields, scratch=False):
        self.descriptors.append(dict(fields, _scratch=scratch))
        self.names.append(name)

    def need(self, decay=None, layer=None, classes=None, scratch_rows=0, **minimums):
        """Record build parameters an operation needs (each the maximum over the program)."""
        for key, value in minimums.items():
            self.needed[key] = max(self.needed[key], value)
        self.scratch_rows = max(self.scratch_rows, scratch_rows)
        if classes is not None:
            self.classes = classes
        if decay is not None:
            if self.decay not in (None, decay):
                raise self.error(layer, "every LIF must share the decay (tau)")
            self.decay = decay

    def size(self, H, W):
        self.needed["max_h"] = max(self.needed["max_h"], H)
        self.needed["max_w"] = max(self.needed["max_w"], W)

    def block_end(self, tensor):
        """After the descriptor just emitted, the stream holds ``tensor``: a block's breakpoint if it
        is a block's output."""
        if tensor in self._block_of_stream:
            self.breakpoints[self._block_of_stream[tensor]] = len(self.descriptors)

    def pad(self, values, pad=0):
        return list(values) + [pad] * (self.n_pe - len(values))

    def lanes(self, values, pad=0):
        """Split a per-channel list into ``n_pe``-lane rows."""
        values = list(values)
        return [self.pad(values[start:start + self.n_pe], pad) for start in range(0, len(values), self.n_pe)]


def compile_bundle(bundle, n_pe=DEFAULT_N_PE, overrides=None):
    """Compile ``bundle`` (a :class:`~spikeforge.ops.bundle.Bundle` or a path) for ``n_pe`` lanes.

    ``overrides`` (``{"acc_bits": "32", ...}``, from ``--set``) enlarge the build parameters beyond
    what the bundle needs; smaller values are refused with a ValueError naming the parameter.

    Returns
    -------
    ProgramImage
        Build parameters, memory images (PROGRAM, WEIGHTS, BIAS, THRESHOLD) and the layout the
        driver needs: where each spike tensor lives, the stream, the descriptor names and, per
        block, the breakpoint after which the stream holds that block's output.
    """
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    overrides = dict(overrides or {})
    if "n_pe" in overrides:
        try:
            n_pe = int(overrides.pop("n_pe"))
        except ValueError:
            raise CompileError("hardware parameter n_pe must be an integer") from None
    if n_pe not in (1, 2, 4, 8, 16, 32, 64, 128):
        raise CompileError(f"n_pe must be a power of two in 1..128, not {n_pe!r}")
    prog = Program(bundle, n_pe)
    encoding = bundle.manifest["input"]
    in_channels, in_H, in_W = encoding["shape"][-3:]
    planes = max(1, int(encoding["max"]).bit_length())
    if planes > MAX_PLANES:
        raise CompileError(f"input.max {encoding['max']} needs {planes} bit planes; at most {MAX_PLANES} are supported")
    prog.place("input", in_channels * planes, prog.T if prog.events else 1, in_H, in_W, planes=planes)

    for layer in bundle.program:
        OPERATIONS[layer.kind].emit(layer, prog)
    prog.emit("end", dict(op=OPCODES["END"]))

    for fields in prog.descriptors:   # the Kᵀ·V rows live on chip, from scratch row 0; every attention shares them
        if fields.pop("_scratch"):
            fields["weight_base"] = 0

    need = prog.needed
    decay = prog.decay or (1, 1)
    stream_tiles = ceil_div(prog.stream_shape[0], n_pe) if prog.stream_shape else 1
    needed = dict(
        n_pe=n_pe, weight_bits=need["weight_bits"], acc_bits=need["acc_bits"],
        membrane_bits=max(need["membrane_bits"], need["acc_bits"] + need["frac_bits"] + 1),
        max_T=next_power_of_two(prog.T), max_cin=next_power_of_two(need["max_cin"]),
        max_tiles=next_power_of_two(need["max_tiles"]), max_h=next_power_of_two(need["max_h"]),
        max_w=next_power_of_two(need["max_w"]), frac_bits=need["frac_bits"], decay_mult=decay[0],
        decay_shift=decay[1], spike_groups=next_power_of_two(prog.groups), stream_tiles=next_power_of_two(stream_tiles),
        weight_rows=len(prog.weights), bias_rows=len(prog.biases), threshold_rows=max(1, len(prog.thresholds)),
        program_depth=len(prog.descriptors), scratch_rows=max(1, prog.scratch_rows),
        prefetch_rows=AcceleratorParams.prefetch_rows, memory_address_bits=AcceleratorParams.memory_address_bits)
    params = _apply_overrides(needed, overrides)
    acc_bits, membrane_bits = params.acc_bits, params.membrane_bits
    # pad lanes of partial tiles get the largest threshold, which their zero input never reaches
    thresholds = [[value if value is not None else (1 << (membrane_bits - 1)) - 1 for value in row]
                  for row in prog.thresholds]
    memories = {
        "PROGRAM": [pack(**fields) for fields in prog.descriptors],
        "WEIGHTS": [pack_lanes(row, params.weight_bits) for row in prog.weights],
        "BIAS": [pack_lanes(row, acc_bits) for row in prog.biases],
        "THRESHOLD": [pack_lanes(row, membrane_bits) for row in thresholds] or [0],
    }
    word_bits = {"PROGRAM": DESCRIPTOR_BITS, "WEIGHTS": n_pe * params.weight_bits, "BIAS": n_pe * acc_bits,
                 "THRESHOLD": n_pe * membrane_bits}
    # the tables must fit the external address space: a larger image widens the default, never an override
    size = external_bytes({name: (word_bits[name], len(rows)) for name, rows in memories.items()})
    if size > 1 << params.memory_address_bits:
        if "memory_address_bits" in (overrides or {}):
            raise CompileError(f"--set memory_address_bits={params.memory_address_bits}: the tables take {size} bytes "
                               f"of external memory, which needs memory_address_bits={index_bits(size)}")
        params = replace(params, memory_address_bits=index_bits(size))
    manifest = bundle.manifest
    layout = {
        "bundle": {"preset": manifest["model"].get("preset"), "config": bundle.config,
                   "digest": manifest["digest"]},
        "classes": prog.classes,
        "input": {"channels": in_channels, "planes": planes, "events": prog.events,
                  "max": int(encoding["max"]), "H": in_H, "W": in_W, "group": 0},
        "spikes": {name: place for name, place in prog.spikes.items() if place.get("lif")},
        "stream": {"channels": prog.stream_shape[0], "H": prog.stream_shape[1], "W": prog.stream_shape[2],
                   "T": prog.T},
        "ops": prog.names,
        "breakpoints": prog.breakpoints,
    }
    return ProgramImage(params=asdict(params), memories=memories, word_bits=word_bits, layout=layout)


def _apply_overrides(needed, overrides):
    """``needed`` build parameters with ``--set`` overrides: widths and depths may grow, never shrink
    below what the bundle needs; the LIF constants must stay; the external memory's address bits may take
    any valid value (the caller checks that the tables fit)."""
    params = dict(needed)
    for key, text in (overrides or {}).items():
        if key not in params:
            raise ValueError(f"unknown hardware parameter {key!r}; allowed: {', '.join(sorted(params))}")
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise ValueError(f"hardware parameter {key} must be an integer, not {text!r}") from None
        if key in _FIXED and value != params[key]:
            raise ValueError(f"--set {key}={value}: the bundle's LIFs need {key}={params[key]}")
        if key not in _BOARD and value < params[key]:
            raise ValueError(f"--set {key}={value}: the bundle needs at least {key}={params[key]}")
        params[key] = value
    if "membrane_bits" not in (overrides or {}):   # a wider accumulator or more fraction bits widen it
        params["membrane_bits"] = max(params["membrane_bits"], params["acc_bits"] + params["frac_bits"] + 1)
    return AcceleratorParams(**params)
