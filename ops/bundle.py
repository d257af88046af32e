"""The bundle: what export writes and every consumer (golden model, firmware compiler) reads.

A bundle is a directory::

    manifest.json          format, model config, quantization, input encoding, layer program,
                           table index with shapes, bit widths and SHA-256 checksums, and the
                           digest of all of it
    tables/NAME.bin        integer table, little-endian two's complement, C order
    tables/NAME.hex        the same values for $readmemh: one word per line, two's complement hex
                           of the table's bit width
    model.qonnx.onnx       the fake-quantized model for QONNX/FINN tools (optional)

The manifest schema is assembled here from the operation modules' field declarations
(:data:`spikeforge.ops.OPERATIONS`) and validated with pydantic (strict types, no unknown fields);
the rules beyond types — execution order, tensor kinds and shapes, table shapes and value ranges,
widths that hold the worst case, ``frac_bits``/``T`` — are each operation's ``check``.
``docs/bundle-format.md`` describes the format. Every failure raises :class:`BundleError` with one
line naming the file and the field path. Torch-free: tables are numpy int64 arrays.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spikeforge.interface.bits import readmemh_lines, signed_bits
from spikeforge.interface.encoding import input_encoding
from spikeforge.interface.files import sha256_bytes, sha256_file, staged_directory

from . import OPERATIONS
from .base import Network, RuleError, Tensor

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "BundleError", "Bundle", "Manifest", "manifest_digest",
           "check_manifest", "write_bundle", "load_bundle", "layer_fields_markdown"]

FORMAT = "spikeforge-bundle"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
_DTYPES = {8: np.int8, 16: np.int16, 32: np.int32, 64: np.int64}
_HEX64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


_Positive = Annotated[int, Field(ge=1, le=1 << 20)]


class ModelConfig(_Strict):
    family: Literal["cifar", "imagenet", "dvs"]
    depth: _Positive
    dim: _Positive
    heads: _Positive
    mlp_ratio: Annotated[float, Field(gt=0, le=64, allow_inf_nan=False)]
    T: Annotated[int, Field(ge=1, le=1024)]
    img_size: _Positive
    in_channels: _Positive
    num_classes: _Positive
    tau: Annotated[float, Field(ge=1.0, le=1e6, allow_inf_nan=False)]
    dataset: str


class ModelInfo(_Strict):
    arch: Literal["spikingformer"]
    config: ModelConfig
    preset: str | None = None
    overrides: dict[str, str] = {}
    source: str = ""


class QuantInfo(_Strict):
    weight_bits: Annotated[int, Field(ge=2, le=16)]
    frac_bits: Annotated[int, Field(ge=0, le=32)]
    method: str
    seed: int | None = None
    calibration: str | None = None


class InputEncoding(_Strict):
    shape: list[_Positive] = Field(min_length=3, max_length=4)
    scale_exp: Annotated[int, Field(ge=-64, le=64)]
    max: Annotated[int, Field(ge=1, le=255)]
    events: bool


class Outputs(_Strict):
    stream: dict[str, str]
    lif: list[str]
    logits: str


class TableEntry(_Strict):
    file: str
    hex: str
    dtype: Literal["int8", "int16", "int32", "int64"]
    bits: Annotated[int, Field(ge=2, le=64)]
    shape: list[Annotated[int, Field(ge=0, le=1 << 30)]] = Field(max_length=8)
    sha256: _HEX64
    hex_sha256: _HEX64


class FileEntry(_Strict):
    sha256: _HEX64


Layer = Annotated[Union[tuple(module.Fields for module in OPERATIONS.values())], Field(discriminator="kind")]


class Manifest(_Strict):
    """The whole ``manifest.json``."""

    format: Literal["spikeforge-bundle"]
    format_version: Literal[2]
    model: ModelInfo
    quant: QuantInfo
    input: InputEncoding
    layers: list[Layer] = Field(min_length=1)
    outputs: Outputs
    tables: dict[str, TableEntry]
    files: dict[str, FileEntry]
    digest: _HEX64


def manifest_digest(manifest):
    """SHA-256 of the canonical JSON of ``manifest`` without its ``digest`` field."""
    content = {key: value for key, value in manifest.items() if key != "digest"}
    return sha256_bytes(json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode())


@dataclass
class Bundle:
    """A loaded, validated bundle: the manifest (plain JSON data), its layers as validated field
    objects (``layer.kind``, ``layer.name``, …) and its tables as numpy int64 arrays."""

    path: Path
    manifest: dict
    tables: dict
    program: tuple = ()

    @property
    def layers(self):
        return self.manifest["layers"]

    @property
    def config(self):
        return self.manifest["model"]["config"]


def _path(loc, kinds):
    """``layers[3].pool`` from a pydantic error location (the union's tag left out)."""
    text = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
        elif i and isinstance(loc[i - 1], int) and part in kinds:
            continue
        else:
            text += f".{part}" if text else str(part)
    return text


def _schema_error(where, error, prefix=()):
    first = error.errors()[0]
    found = first.get("input")
    found = repr(found) if not isinstance(found, (dict, list)) else type(found).__name__
    return BundleError(f"{where}: field '{_path((*prefix, *first['loc']), OPERATIONS)}': {first['msg']} (found {found[:80]})")


def check_manifest(manifest, tables, where=MANIFEST):
    """Validate ``manifest`` (a dict, digest included) against the schema and every rule, with its
    ``tables`` (name -> int64 array). Returns the layers as field objects; raises :class:`BundleError`
    naming ``where`` and the field path."""
    try:
        parsed = Manifest.model_validate(manifest)
    except ValidationError as e:
        raise _schema_error(where, e) from None
    config, encoding = parsed.model.config, parsed.input
    if config.dim % config.heads:
        raise BundleError(f"{where}: field 'model.config.heads': {config.heads} does not divide dim {config.dim}")
    expected = input_encoding(config.model_dump())
    if encoding.model_dump() != expected:
        differing = next(key for key, value in expected.items() if getattr(encoding, key) != value)
        raise BundleError(f"{where}: field 'input.{differing}': {getattr(encoding, differing)!r}, but the "
                          f"{config.family} config ({config.dataset!r} data) has the input encoding {expected}")
    unknown = sorted(set(tables) ^ set(parsed.tables))
    if unknown:
        raise BundleError(f"{where}: field 'tables.{unknown[0]}': listed without a file or loaded without a listing")
    net = Network(config.model_dump(), parsed.quant.model_dump(), encoding.model_dump(), tables)
    T, C, H, W = encoding.shape if encoding.events else [1, *encoding.shape]
    net.tensors["input"] = Tensor("pixels", (T, C, H, W), np.full(C, encoding.max, dtype=np.int64))
    names, used_tables = set(), set()
    for i, layer in enumerate(parsed.layers):
        if layer.name in names:
            raise BundleError(f"{where}: field 'layers[{i}].name': {layer.name!r} appears twice")
        names.add(layer.name)
        try:
            OPERATIONS[layer.kind].check(layer, net)
        except RuleError as e:
            raise BundleError(f"{where}: field 'layers[{i}].{e.field}' ({layer.kind} {layer.name!r}): {e}") from None
        used_tables.update(getattr(layer, f) for f in ("weight", "bias", "threshold") if hasattr(layer, f))
        net.previous = layer
    _check_outputs(where, parsed, net, used_tables)
    if parsed.digest != manifest_digest(manifest):
        raise BundleError(f"{where}: field 'digest': {parsed.digest} does not match the manifest's content "
                          f"({manifest_digest(manifest)}); the manifest was changed after export")
    return tuple(parsed.layers)


def _check_outputs(where, parsed, net, used_tables):
    layers = parsed.layers
    unused = sorted(set(parsed.tables) - used_tables)
    if unused:
        raise BundleError(f"{where}: field 'tables.{unused[0]}': no layer uses this table")
    if layers[-1].kind != "head" or sum(layer.kind == "head" for layer in layers) != 1:
        raise BundleError(f"{where}: field 'layers': the program must end with its one head layer")
    if parsed.outputs.logits != layers[-1].output:
        raise BundleError(f"{where}: field 'outputs.logits': {parsed.outputs.logits!r}, expected the head's "
                          f"output {layers[-1].output!r}")
    lifs = [layer.name for layer in layers if layer.kind == "lif"]
    if parsed.outputs.lif != lifs:
        raise BundleError(f"{where}: field 'outputs.lif': must list the LIF layers in program order")
    blocks = [f"block.{j}" for j in range(parsed.model.config.depth)]
    if list(parsed.outputs.stream) != blocks:
        raise BundleError(f"{where}: field 'outputs.stream': keys {list(parsed.outputs.stream)}, expected {blocks}")
    for block, tensor_name in parsed.outputs.stream.items():
        tensor = net.tensors.get(tensor_name)
        if tensor is None or not tensor.stream:
            raise BundleError(f"{where}: field 'outputs.stream.{block}': {tensor_name!r} is not a residual stream "
                              f"tensor")


def _table_bytes(values):
    bits = signed_bits(values)
    storage = next(b for b in sorted(_DTYPES) if b >= bits)
    return bits, storage, values.astype(np.dtype(_DTYPES[storage]).newbyteorder("<")).tobytes()


def write_bundle(out_dir, manifest, tables, extra_files=None):
    """Write ``manifest`` (table index, checksums and digest filled in here) and integer ``tables``
    (``{name: int array}``) to ``out_dir``. Everything is validated first, so an invalid bundle
    never replaces a previous one; the directory is staged and renamed into place (complete or
    absent). ``extra_files``: ``{name: writer}`` where ``writer(path)`` creates the file."""
    out_dir = Path(out_dir)
    tables = {name: np.asarray(values, dtype=np.int64) for name, values in tables.items()}
    index, blobs = {}, {}
    for name in sorted(tables):
        values = tables[name]
        bits, storage, data = _table_bytes(values)
        hex_text = ("\n".join(readmemh_lines(values, bits)) + "\n").encode()
        bin_name, hex_name = f"tables/{name}.bin", f"tables/{name}.hex"
        blobs[bin_name], blobs[hex_name] = data, hex_text
        index[name] = {"file": bin_name, "hex": hex_name, "dtype": f"int{storage}", "bits": bits,
                       "shape": list(values.shape), "sha256": sha256_bytes(data), "hex_sha256": sha256_bytes(hex_text)}
    with staged_directory(out_dir) as tmp:
        files = {}
        for name, writer in sorted((extra_files or {}).items()):
            writer(tmp / name)
            files[name] = {"sha256": sha256_file(tmp / name)}
        manifest = {**manifest, "format": FORMAT, "format_version": FORMAT_VERSION, "tables": index, "files": files}
        manifest["digest"] = manifest_digest(manifest)
        check_manifest(json.loads(json.dumps(manifest)), tables, out_dir / MANIFEST)
        (tmp / "tables").mkdir()
        for name, data in blobs.items():
            (tmp / name).write_bytes(data)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return out_dir


def _is(path, kind):
    """``path.is_file()`` / ``is_dir()``, False where the path cannot even be looked up (a name
    too long for the file system, …) instead of an OSError."""
    try:
        return path.is_file() if kind == "file" else path.is_dir()
    except OSError:
        return False


def _load_table(root, name, entry):
    where = f"{root / MANIFEST}: field 'tables.{name}"
    for kind, checksum in (("file", "sha256"), ("hex", "hex_sha256")):
        relative = getattr(entry, kind)
        path = root / relative
        if Path(relative).is_absolute() or ".." in Path(relative).parts or not _is(path, "file"):
            raise BundleError(f"{where}.{kind}': {relative!r} is not a file inside the bundle")
        if sha256_file(path) != getattr(entry, checksum):
            raise BundleError(f"{path}: checksum mismatch with {MANIFEST} field 'tables.{name}.{checksum}'")
    path = root / entry.file
    raw = path.read_bytes()
    dtype = np.dtype(entry.dtype).newbyteorder("<")
    expected = math.prod(entry.shape) * dtype.itemsize     # Python ints: no wrap-around
    if len(raw) != expected:
        raise BundleError(f"{path}: {len(raw)} bytes, expected {expected} for shape {entry.shape} {entry.dtype} "
                          f"({MANIFEST} field 'tables.{name}.shape')")
    values = np.frombuffer(raw, dtype=dtype).astype(np.int64).reshape(entry.shape)
    if values.size and signed_bits(values) > entry.bits:
        raise BundleError(f"{path}: values need {signed_bits(values)} bits, more than {MANIFEST} field "
                          f"'tables.{name}.bits' = {entry.bits}")
    hex_lines = (root / entry.hex).read_bytes().decode("ascii", "replace").splitlines()
    if hex_lines != readmemh_lines(values, entry.bits):
        raise BundleError(f"{root / entry.hex}: does not hold the values of {entry.file} "
                          f"({MANIFEST} field 'tables.{name}.hex')")
    return values


def load_bundle(path):
    """Load and validate a bundle directory; raises :class:`BundleError` (one line, file and field)."""
    root = Path(path)
    manifest_path = root / MANIFEST
    if not _is(root, "dir"):
        raise BundleError(f"{root}: bundle directory does not exist")
    if not _is(manifest_path, "file"):
        raise BundleError(f"{manifest_path}: missing")
    try:
        manifest = json.loads(manifest_path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise BundleError(f"{manifest_path}: invalid JSON ({str(e)[:80]})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{manifest_path}: must hold a JSON object")
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{manifest_path}: field 'format_version': {manifest.get('format')!r} version "
                          f"{manifest.get('format_version')!r}, expected {FORMAT!r} version {FORMAT_VERSION} "
                          f"(export the bundle again)")
    raw_index = manifest.get("tables")
    if not isinstance(raw_index, dict):
        raise BundleError(f"{manifest_path}: field 'tables': must be an object")
    index = {}
    for name, entry in raw_index.items():
        try:
            index[name] = TableEntry.model_validate(entry)
        except ValidationError as e:
            raise _schema_error(manifest_path, e, ("tables", name)) from None
    tables = {name: _load_table(root, name, entry) for name, entry in index.items()}
    program = check_manifest(manifest, tables, manifest_path)
    for name, entry in manifest["files"].items():
        file = root / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not _is(file, "file"):
            raise BundleError(f"{manifest_path}: field 'files.{name}': not a file inside the bundle")
        if sha256_file(file) != entry["sha256"]:
            raise BundleError(f"{file}: checksum mismatch with {MANIFEST} field 'files.{name}.sha256'")
    return Bundle(root, manifest, tables, program)


def layer_fields_markdown():
    """The layer-field tables of ``docs/bundle-format.md``, generated from the operations' fields."""
    lines = []
    for kind, module in OPERATIONS.items():
        lines += [f"### `{kind}`", "", "| field | meaning |", "|---|---|"]
        lines += [f"| `{name}` | {info.description} |" for name, info in module.Fields.model_fields.items()
                  if info.description]
        lines.append("")
    return "\n".join(lines)
