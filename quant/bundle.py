"""The bundle: what export writes and every consumer (golden model, firmware compiler) reads.

A bundle is a directory::

    manifest.json          format, model config, quantization, input encoding, layer program,
                           table index with shapes, bit widths and SHA-256 checksums
    tables/NAME.bin        integer table, little-endian two's complement, C order
    tables/NAME.hex        the same values for $readmemh: one word per line, two's complement hex
                           of the table's bit width
    model.qonnx.onnx       the fake-quantized model for QONNX/FINN tools (optional)

The manifest layout is defined here once (``LAYER_FIELDS``); ``docs/bundle-format.md`` describes it.
Loading validates everything and raises :class:`BundleError` naming the file and field.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spikeforge.interface.bits import readmemh_lines, signed_bits
from spikeforge.interface.files import staged_directory

__all__ = ["FORMAT", "FORMAT_VERSION", "LAYER_FIELDS", "BundleError", "Bundle", "write_bundle",
           "load_bundle"]

FORMAT = "spikeforge-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"

#: Fields of each layer kind in the layer program (``manifest["layers"]``), with their meaning.
#: Every layer also has ``kind`` and ``name``; ``docs/bundle-format.md`` shows this table.
LAYER_FIELDS = {
    "conv": {
        "input": "tensor read (spikes, or 'input' pixels)",
        "output": "tensor written",
        "kernel": "1 or 3 (stride 1, zero padding kernel//2)",
        "pool": "max-pool 3/2/1 (OR) on the input spikes first",
        "input_kind": "'spikes' or 'pixels'",
        "in_channels": "input channels",
        "out_channels": "output channels",
        "weight": "table [out_channels, in_channels, kernel, kernel]",
        "bias": "table [out_channels], output units",
        "residual": "stream tensor preloaded into the accumulator, or null",
        "acc_bits": "accumulator width (two's complement) from the worst-case bound",
        "scale_exp": "per output channel: one unit is 2**scale_exp in float terms",
    },
    "lif": {
        "input": "tensor read (integer, input units)",
        "output": "spike tensor written",
        "channels": "channels",
        "threshold": "table [channels]: θ in membrane units",
        "frac_bits": "F: fractional bits of the membrane",
        "decay_mult": "m of the decay m / 2**s",
        "decay_shift": "s of the decay m / 2**s",
        "membrane_bits": "membrane width from the worst-case bound",
        "v_threshold": "the float threshold θ was derived from",
    },
    "attention": {
        "q": "query spike tensor", "k": "key spike tensor", "v": "value spike tensor",
        "output": "count tensor written (units 1/8)",
        "heads": "heads; channel c belongs to head c // (C / heads)",
        "order": "official product order, 'qk_first' or 'kv_first' (both exact)",
        "count_bits": "count width (N · d)",
    },
    "head": {
        "input": "final stream tensor",
        "output": "logits tensor",
        "weight": "table [classes, channels]",
        "bias": "table [classes]",
        "sum_bits": "width of the stream sums",
        "logit_bits": "width of the logits",
        "scale_exp": "one logit unit is 2**scale_exp",
    },
}
_TABLE_FIELDS = {"conv": ("weight", "bias"), "head": ("weight", "bias"), "lif": ("threshold",)}
_DTYPES = {8: np.int8, 16: np.int16, 32: np.int32, 64: np.int64}


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the file and the field."""


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class Bundle:
    """A loaded, validated bundle: the manifest and its tables as int64 tensors."""

    path: Path
    manifest: dict
    tables: dict

    @property
    def layers(self):
        return self.manifest["layers"]

    @property
    def config(self):
        return self.manifest["model"]["config"]

    def table(self, name):
        return self.tables[name]


def write_bundle(out_dir, manifest, tables, extra_files=None):
    """Write ``manifest`` (tables index and checksums filled in here) and integer ``tables``
    (``{name: int tensor/array}``) to ``out_dir`` atomically: a temporary directory beside it is
    renamed into place, so the bundle is complete or absent. ``extra_files``: ``{name: writer}``
    where ``writer(path)`` creates the file. An existing ``out_dir`` is replaced."""
    out_dir = Path(out_dir)
    with staged_directory(out_dir) as tmp:
        (tmp / "tables").mkdir()
        index = {}
        for name in sorted(tables):
            values = np.asarray(torch.as_tensor(tables[name]).to(torch.int64).numpy())
            bits = signed_bits(values)
            storage = next(b for b in sorted(_DTYPES) if b >= bits)
            bin_name, hex_name = f"tables/{name}.bin", f"tables/{name}.hex"
            (tmp / bin_name).write_bytes(values.astype(np.dtype(_DTYPES[storage]).newbyteorder("<")).tobytes())
            (tmp / hex_name).write_text("\n".join(readmemh_lines(values, bits)) + "\n")
            index[name] = {"file": bin_name, "hex": hex_name, "dtype": f"int{storage}", "bits": bits,
                           "shape": list(values.shape), "sha256": _sha256(tmp / bin_name),
                           "hex_sha256": _sha256(tmp / hex_name)}
        files = {}
        for name, writer in sorted((extra_files or {}).items()):
            writer(tmp / name)
            files[name] = {"sha256": _sha256(tmp / name)}
        manifest = {**manifest, "format": FORMAT, "format_version": FORMAT_VERSION,
                    "tables": index, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return out_dir


def _require(condition, where, message):
    if not condition:
        raise BundleError(f"{where}: {message}")


def _load_table(root, name, entry):
    where = f"{root / MANIFEST}: field 'tables.{name}'"
    _require(isinstance(entry, dict), where, "must be an object")
    for key in ("file", "dtype", "bits", "shape", "sha256"):
        _require(key in entry, where, f"missing '{key}'")
    dtype = {f"int{b}": t for b, t in _DTYPES.items()}.get(entry["dtype"])
    _require(dtype is not None, f"{where}.dtype", f"{entry['dtype']!r} is not one of int8/16/32/64")
    shape = entry["shape"]
    _require(isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape),
             f"{where}.shape", f"{shape!r} is not a list of sizes")
    bits = entry["bits"]
    _require(isinstance(bits, int) and 2 <= bits <= 64, f"{where}.bits", f"{bits!r} is not 2..64")
    path = root / entry["file"]
    _require(path.is_file(), path, f"missing (listed in {MANIFEST} field 'tables.{name}.file')")
    _require(_sha256(path) == entry["sha256"], path,
             f"checksum mismatch with {MANIFEST} field 'tables.{name}.sha256'")
    if "hex" in entry:
        hex_path = root / entry["hex"]
        _require(hex_path.is_file(), hex_path, f"missing (listed in {MANIFEST} field 'tables.{name}.hex')")
        _require(_sha256(hex_path) == entry.get("hex_sha256"), hex_path,
                 f"checksum mismatch with {MANIFEST} field 'tables.{name}.hex_sha256'")
    raw = path.read_bytes()
    itemsize = np.dtype(dtype).itemsize
    expected = int(np.prod(shape, dtype=np.int64)) * itemsize
    _require(len(raw) == expected, path, f"{len(raw)} bytes, expected {expected} for shape {shape} "
             f"{entry['dtype']} ({MANIFEST} field 'tables.{name}.shape')")
    values = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(np.int64).reshape(shape)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if values.size:
        bad = values[(values < lo) | (values > hi)]
        _require(bad.size == 0, path, f"value {int(bad.flat[0]) if bad.size else 0} out of range for "
                 f"{bits}-bit field 'tables.{name}.bits' [{lo}, {hi}]")
    return torch.from_numpy(values.copy())


def _check_layer(root, i, layer, tables):
    def where(sub=None):
        return f"{root / MANIFEST}: field 'layers[{i}]{'.' + sub if sub else ''}'"

    _require(isinstance(layer, dict) and "kind" in layer and "name" in layer, where(),
             "must be an object with 'kind' and 'name'")
    kind = layer["kind"]
    _require(kind in LAYER_FIELDS, where("kind"), f"unknown layer kind {kind!r}")
    missing = sorted(set(LAYER_FIELDS[kind]) - set(layer))
    _require(not missing, where(missing[0] if missing else None), f"missing in {kind} layer {layer['name']!r}")
    for field in _TABLE_FIELDS.get(kind, ()):
        _require(layer[field] in tables, where(field), f"names no table ({layer[field]!r})")
    if kind == "conv":
        k, cin, cout = layer["kernel"], layer["in_channels"], layer["out_channels"]
        _require(k in (1, 3), where("kernel"), f"must be 1 or 3, not {k!r}")
        expected = [cout, cin, k, k]
        got = list(tables[layer["weight"]].shape)
        _require(got == expected, where("weight"), f"table shape {got}, expected {expected}")
        got = list(tables[layer["bias"]].shape)
        _require(got == [cout], where("bias"), f"table shape {got}, expected [{cout}]")
    elif kind == "lif":
        got = list(tables[layer["threshold"]].shape)
        _require(got == [layer["channels"]], where("threshold"),
                 f"table shape {got}, expected [{layer['channels']}]")
        _require(bool((tables[layer["threshold"]] > 0).all()), where("threshold"), "thresholds must be positive")
        _require(layer["decay_shift"] >= 0 and 0 < layer["decay_mult"] <= (1 << layer["decay_shift"]),
                 where("decay_mult"), "must satisfy 0 < decay_mult <= 2**decay_shift")
    elif kind == "head":
        weight, bias = tables[layer["weight"]], tables[layer["bias"]]
        _require(weight.dim() == 2 and list(bias.shape) == [weight.shape[0]], where("bias"),
                 f"table shape {list(bias.shape)}, expected [{weight.shape[0]}]")


def load_bundle(path):
    """Load and validate a bundle directory; raises :class:`BundleError` (one line, file and field)."""
    root = Path(path)
    manifest_path = root / MANIFEST
    _require(root.is_dir(), root, "bundle directory does not exist")
    _require(manifest_path.is_file(), manifest_path, "missing")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{manifest_path}: invalid JSON ({e})") from None
    _require(isinstance(manifest, dict), manifest_path, "must hold a JSON object")
    _require(manifest.get("format") == FORMAT, manifest_path,
             f"field 'format' is {manifest.get('format')!r}, expected {FORMAT!r}")
    _require(manifest.get("format_version") == FORMAT_VERSION, manifest_path,
             f"field 'format_version' is {manifest.get('format_version')!r}, expected {FORMAT_VERSION}")
    for field in ("model", "quant", "input", "layers", "tables", "outputs"):
        _require(field in manifest, manifest_path, f"missing field '{field}'")
    _require(isinstance(manifest["tables"], dict), manifest_path, "field 'tables' must be an object")
    tables = {name: _load_table(root, name, entry) for name, entry in manifest["tables"].items()}
    _require(isinstance(manifest["layers"], list) and manifest["layers"], manifest_path,
             "field 'layers' must be a non-empty list")
    for i, layer in enumerate(manifest["layers"]):
        _check_layer(root, i, layer, tables)
    for name, entry in manifest.get("files", {}).items():
        file = root / name
        _require(file.is_file(), file, f"missing (listed in {MANIFEST} field 'files')")
        _require(_sha256(file) == entry.get("sha256"), file,
                 f"checksum mismatch with {MANIFEST} field 'files.{name}.sha256'")
    return Bundle(root, manifest, tables)


def input_encoding(config):
    """How float model inputs become integer pixels for a config: ``x = pixel · 2**scale_exp``.

    digits: 0..16 in steps of 1/16 (exact); dvs: binary events; other images: 0..255 in steps of
    1/256.
    """
    frame = [config["in_channels"], config["img_size"], config["img_size"]]
    if config["family"] == "dvs":
        return {"shape": [config["T"], *frame], "scale_exp": 0, "max": 1, "events": True}
    if config.get("dataset") == "digits":
        return {"shape": frame, "scale_exp": -4, "max": 16, "events": False}
    return {"shape": frame, "scale_exp": -8, "max": 255, "events": False}


def encode_input(x, encoding):
    """Integer pixels (int64) of float model inputs ``x``: ``clamp(round(x / 2**scale_exp), 0, max)``."""
    pixels = torch.round(torch.as_tensor(x) * 2.0 ** -encoding["scale_exp"])
    return pixels.clamp(0, encoding["max"]).to(torch.int64)


def layer_fields_markdown():
    """The layer-field tables of ``docs/bundle-format.md``, generated from :data:`LAYER_FIELDS`."""
    lines = []
    for kind, fields in LAYER_FIELDS.items():
        lines += [f"### `{kind}`", "", "| field | meaning |", "|---|---|"]
        lines += [f"| `{name}` | {meaning} |" for name, meaning in fields.items()]
        lines.append("")
    return "\n".join(lines)


__all__ += ["input_encoding", "encode_input", "layer_fields_markdown"]
