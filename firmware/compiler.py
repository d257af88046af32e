"""Compiler: a bundle's layer program → a program image for the accelerator.

Each LIF is fused into the conv or attention that produces its input (the drain runs it); a
conv with ``pool`` becomes a POOL descriptor and a CONV; the first conv reads its integer pixels
as bit planes (spike channel ``ci·P + b`` holds bit ``b`` of channel ``ci``). Spike tensors get
their own groups of the spike memory, so every LIF's spikes stay readable after the run; the
residual stream lives in one place and is updated in place.
"""

from dataclasses import asdict

from spikeforge.interface.bits import ceil_div, next_power_of_two
from spikeforge.interface.descriptor import DESCRIPTOR_BITS, OPCODES, pack
from spikeforge.interface.layout import pack_lanes
from spikeforge.interface.params import AcceleratorParams
from spikeforge.quant.bundle import Bundle, load_bundle

from .image import ProgramImage

__all__ = ["CompileError", "compile_bundle", "DEFAULT_N_PE"]

DEFAULT_N_PE = 16


class CompileError(ValueError):
    """The bundle's program cannot run on the accelerator; the message names the layer."""


class _Program:
    def __init__(self, n_pe, tables):
        self.n_pe, self.tables = n_pe, tables
        self.descriptors, self.names = [], []
        self.weights, self.biases, self.thresholds = [], [], []   # lane lists, packed at the end
        self.groups = 0
        self.spikes = {}            # tensor name -> placement
        self.scratch_rows = 0       # the attention's Kᵀ·V rows (shared by every attention)

    def place(self, name, channels, T, H, W, **extra):
        groups = ceil_div(channels, self.n_pe)
        self.spikes[name] = dict(group=self.groups, groups=groups, channels=channels, T=T, H=H, W=W, **extra)
        self.groups += groups
        return self.spikes[name]

    def emit(self, name, **fields):
        self.descriptors.append(fields)
        self.names.append(name)

    def lanes(self, values, pad=0):
        """Split a per-channel list into ``n_pe``-lane rows."""
        values = list(values)
        rows = []
        for start in range(0, len(values), self.n_pe):
            chunk = values[start:start + self.n_pe]
            rows.append(chunk + [pad] * (self.n_pe - len(chunk)))
        return rows


def compile_bundle(bundle, n_pe=DEFAULT_N_PE, overrides=None):
    """Compile ``bundle`` (a :class:`~spikeforge.quant.bundle.Bundle` or a path) for ``n_pe`` lanes.

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
    manifest, tables = bundle.manifest, bundle.tables
    config = manifest["model"]["config"]
    T = config["T"]
    layers = bundle.layers
    prog = _Program(n_pe, tables)

    encoding = manifest["input"]
    in_channels, in_H, in_W = encoding["shape"]
    planes = max(1, int(encoding["max"]).bit_length())
    if planes > 8:
        raise CompileError(f"input.max {encoding['max']} needs {planes} bit planes; at most 8 are supported")
    prog.place("input", in_channels * planes, 1 if not encoding["events"] else T, in_H, in_W, planes=planes)

    lif_of = {}
    for i, layer in enumerate(layers):
        if layer["kind"] == "lif":
            producer = layers[i - 1] if i else None
            if producer is None or producer.get("output") != layer["input"] or producer["kind"] not in ("conv",
                                                                                                         "attention"):
                raise CompileError(f"layer {layer['name']!r}: a LIF must directly follow the conv or attention "
                                   f"that produces its input")
            lif_of[producer["name"]] = layer
    residual_inputs = {layer["residual"] for layer in layers if layer["kind"] == "conv" and layer["residual"]}
    head_inputs = {layer["input"] for layer in layers if layer["kind"] == "head"}
    stream_names = set(manifest["outputs"]["stream"].values()) | residual_inputs | head_inputs
    block_of_stream = {tensor: block for block, tensor in manifest["outputs"]["stream"].items()}

    sizes = {"input": (in_H, in_W)}
    stream, stream_shape = None, None
    breakpoints = {}
    widths = {"weight": manifest["quant"]["weight_bits"], "acc": 2, "membrane": 2, "frac": None, "decay": None}
    head_tiles = 1
    max_cin = 1

    for layer in layers:
        kind, name = layer["kind"], layer["name"]
        if kind == "conv":
            source = prog.spikes.get(layer["input"])
            if source is None:
                raise CompileError(f"layer {name!r}: input {layer['input']!r} is not a spike tensor")
            H, W = source["H"], source["W"]
            if layer["pool"]:
                pooled = prog.place(f"{name}.pool", source["channels"], source["T"], (H - 1) // 2 + 1,
                                    (W - 1) // 2 + 1)
                prog.emit(f"{name}.pool", op=OPCODES["POOL"], tiles=source["groups"], T=source["T"], H=H, W=W,
                          in_base=source["group"], out_base=pooled["group"], check_bits=1)
                source = pooled
                H, W = pooled["H"], pooled["W"]
            weight, bias = tables[layer["weight"]], tables[layer["bias"]]
            cout, cin, k, _ = weight.shape
            tiles = ceil_div(cout, n_pe)
            weight_base = len(prog.weights)
            for tile in range(tiles):
                for ci in range(cin):
                    for dy in range(k):
                        for dx in range(k):
                            column = weight[tile * n_pe:(tile + 1) * n_pe, ci, dy, dx].tolist()
                            prog.weights.append(column + [0] * (n_pe - len(column)))
            bias_base = len(prog.biases)
            prog.biases += prog.lanes(bias.tolist())
            fields = dict(op=OPCODES["CONV"], kernel3=int(k == 3), cin=cin, planes=source.get("planes", 1),
                          static=int(layer["input_kind"] == "pixels" and not encoding["events"]),
                          tiles=tiles, T=T, H=H, W=W, in_base=source["group"], weight_base=weight_base,
                          bias_base=bias_base, check_bits=layer["acc_bits"])
            max_cin = max(max_cin, cin)
            if layer["residual"]:
                if layer["residual"] != stream:
                    raise CompileError(f"layer {name!r}: residual {layer['residual']!r} is not the stream "
                                       f"in memory ({stream!r})")
                fields["residual"] = 1
            if layer["output"] in stream_names:
                fields["stream_write"] = 1
                stream, stream_shape = layer["output"], (cout, H, W)
            widths["acc"] = max(widths["acc"], layer["acc_bits"])
            _fuse_lif(prog, lif_of.get(name), fields, cout, T, H, W, widths)
            prog.emit(name, **fields)
            sizes[layer["output"]] = (H, W)
            if layer["output"] in block_of_stream:
                breakpoints[block_of_stream[layer["output"]]] = len(prog.descriptors)
        elif kind == "attention":
            q, k_, v = (prog.spikes[layer[key]] for key in ("q", "k", "v"))
            C, H, W = q["channels"], q["H"], q["W"]
            heads = layer["heads"]
            if (H * W).bit_length() + 1 > widths["weight"]:
                widths["weight"] = (H * W).bit_length() + 1     # Kᵀ·V counts ≤ N live in weight rows
            zero_bias = len(prog.biases)     # the attention adds no bias: one zero row per tile
            prog.biases += [[0] * n_pe] * ceil_div(C, n_pe)
            prog.scratch_rows = max(prog.scratch_rows, C)
            fields = dict(op=OPCODES["ATTENTION"], cin=C, planes=1, tiles=ceil_div(C, n_pe), T=T, H=H, W=W,
                          in_base=q["group"], k_base=k_["group"], v_base=v["group"], head_dim=C // heads,
                          bias_base=zero_bias, check_bits=layer["count_bits"])
            widths["acc"] = max(widths["acc"], layer["count_bits"])
            max_cin = max(max_cin, C)
            _fuse_lif(prog, lif_of.get(name), fields, C, T, H, W, widths)
            prog.emit(name, **fields)
        elif kind == "head":
            if layer["input"] != stream:
                raise CompileError(f"layer {name!r}: input {layer['input']!r} is not the stream in memory")
            weight, bias = tables[layer["weight"]], tables[layer["bias"]]
            classes, C = weight.shape
            if classes > n_pe:
                raise CompileError(f"layer {name!r}: {classes} classes need n_pe >= {classes}, not {n_pe}")
            weight_base = len(prog.weights)
            for c in range(C):
                column = weight[:, c].tolist()
                prog.weights.append(column + [0] * (n_pe - classes))
            bias_base = len(prog.biases)
            prog.biases += prog.lanes(bias.tolist())
            head_tiles = ceil_div(C, n_pe)
            _, H, W = stream_shape
            prog.emit(name, op=OPCODES["HEAD"], cin=C, tiles=head_tiles, T=T, H=H, W=W, weight_base=weight_base,
                      bias_base=bias_base, sum_bits=layer["sum_bits"], check_bits=layer["logit_bits"])
            # Horner doubles a partial sum before the last bit's columns are added: one spare bit
            widths["acc"] = max(widths["acc"], layer["sum_bits"], layer["logit_bits"] + 1)
            max_cin = max(max_cin, C)
    prog.emit("end", op=OPCODES["END"])

    if prog.scratch_rows:   # Kᵀ·V rows after all weights; every attention shares them
        base = len(prog.weights)
        prog.weights += [[0] * n_pe] * prog.scratch_rows
        for fields in prog.descriptors:
            if fields["op"] == OPCODES["ATTENTION"]:
                fields["weight_base"] = base

    acc_bits = widths["acc"]
    membrane_bits = max(widths["membrane"], acc_bits + (widths["frac"] or 0) + 1)
    stream_tiles = ceil_div(stream_shape[0], n_pe) if stream_shape else 1
    max_h = max(H for H, _ in sizes.values())
    max_w = max(W for _, W in sizes.values())
    needed = dict(
        n_pe=n_pe, weight_bits=widths["weight"], acc_bits=acc_bits, membrane_bits=membrane_bits,
        max_T=next_power_of_two(T), max_cin=next_power_of_two(max_cin), max_tiles=next_power_of_two(max(head_tiles, 1)), max_h=next_power_of_two(max_h),
        max_w=next_power_of_two(max_w), frac_bits=widths["frac"] or 0, decay_mult=widths["decay"][0] if widths["decay"] else 1,
        decay_shift=widths["decay"][1] if widths["decay"] else 1, spike_groups=next_power_of_two(prog.groups),
        stream_tiles=next_power_of_two(stream_tiles), weight_rows=len(prog.weights), bias_rows=len(prog.biases),
        threshold_rows=max(1, len(prog.thresholds)), program_depth=len(prog.descriptors))
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
    layout = {
        "bundle": {"preset": manifest["model"].get("preset"), "config": config},
        "classes": int(tables[next(l for l in layers if l["kind"] == "head")["weight"]].shape[0]),
        "input": {"channels": in_channels, "planes": planes, "events": bool(encoding["events"]),
                  "max": int(encoding["max"]), "H": in_H, "W": in_W, "group": 0},
        "spikes": {name: place for name, place in prog.spikes.items() if place.get("lif")},
        "stream": {"channels": stream_shape[0], "H": stream_shape[1], "W": stream_shape[2], "T": T},
        "ops": prog.names,
        "breakpoints": breakpoints,
    }
    return ProgramImage(params=asdict(params), memories=memories, word_bits=word_bits, layout=layout)


def _fuse_lif(prog, lif, fields, channels, T, H, W, widths):
    """Attach the LIF that reads this result: thresholds, output spikes, and the shared LIF constants."""
    if lif is None:
        return
    constants = (lif["decay_mult"], lif["decay_shift"])
    if widths["decay"] is None:
        widths["decay"] = constants
    elif widths["decay"] != constants:
        raise CompileError(f"layer {lif['name']!r}: every LIF must share the decay (tau)")
    widths["frac"] = max(widths["frac"] or 0, lif["frac_bits"])
    widths["membrane"] = max(widths["membrane"], lif["membrane_bits"])
    out = prog.place(lif["output"], channels, T, H, W, lif=lif["name"])
    fields.update(lif=1, out_base=out["group"], threshold_base=len(prog.thresholds), frac_bits=lif["frac_bits"])
    prog.thresholds += prog.lanes(prog.tables[lif["threshold"]].tolist(), pad=None)



#: Parameters an override may set only to the value the bundle's LIFs use (the decay is built in).
_FIXED = ("decay_mult", "decay_shift")


def _apply_overrides(needed, overrides):
    """``needed`` build parameters with ``--set`` overrides: widths and depths may grow, never shrink
    below what the bundle needs; the LIF constants must stay."""
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
        if value < params[key]:
            raise ValueError(f"--set {key}={value}: the bundle needs at least {key}={params[key]}")
        params[key] = value
    if "membrane_bits" not in (overrides or {}):   # a wider accumulator or more fraction bits widen it
        params["membrane_bits"] = max(params["membrane_bits"], params["acc_bits"] + params["frac_bits"] + 1)
    return AcceleratorParams(**params)
