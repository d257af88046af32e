"""Bundle mutations for fuzzing the bundle loader, the format's rules and the firmware compiler.

Shared by ``tests/ops/test_bundle_fuzz.py`` (hypothesis draws a few dozen) and
``bench/bundle_fuzz.py`` (ten thousand). A :class:`Mutation` of a bundle is a set of file changes:
byte flips, truncations, extensions and deletions of any file (``manifest.json``, ``tables/*.bin``,
``tables/*.hex``, extra files), edits of any manifest field of any JSON type (other values, other
types, deleted, unknown fields added, list edits), layer programs reordered, thinned or padded, and
table rewrites that keep ``.bin``, ``.hex`` and the table index consistent. :func:`draw_mutation`
draws one from a ``random.Random``.

Each mutation is applied twice by :meth:`Evaluator.evaluate`:

* **as is**: the manifest's ``digest`` (and checksums) left as they were. ``load_bundle`` must
  refuse every such bundle with a one-line :class:`BundleError` naming a file in the bundle
  (a mutation that leaves the bundle's content unchanged, e.g. one that only changes JSON
  whitespace, is never drawn);
* **replayed**: the manifest's ``digest`` recomputed, and every well-formed table/file checksum
  recomputed from the files as they now are, so that only the format's rules can catch it. It is
  rejected by ``load_bundle`` (:class:`BundleError`), rejected by the compiler (``CompileError``),
  or accepted; an accepted bundle must compile losslessly (:func:`check_compiled`: every weight,
  bias and threshold row unpacks back to the bundle's table values, the built widths hold every
  declared width, the descriptors carry the layers' fields) and the golden model must run on two
  digits images without an exception or an overflow.

Any other exception anywhere is a ``traceback``. :func:`accelerated` swaps in exact, faster
equivalents of two helpers so that thousands of loads fit in minutes (see there).
"""

import contextlib
import copy
import json
import shutil
import traceback as traceback_module
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikeforge.interface.bits import readmemh_lines, signed_bits
from spikeforge.interface.descriptor import OPCODES, unpack
from spikeforge.interface.files import sha256_bytes, sha256_file
from spikeforge.ops import OPERATIONS
from spikeforge.ops import bundle as bundle_module
from spikeforge.ops.base import wrap
from spikeforge.ops.bundle import MANIFEST, BundleError, load_bundle, manifest_digest
from spikeforge.ops.lif import decay_fixed_point

__all__ = ["BaseBundle", "Mutation", "Result", "Evaluator", "MUTATORS", "draw_mutation", "check_compiled", "table_files",
           "accelerated", "AS_IS_OUTCOMES", "REPLAY_OUTCOMES", "FAILURES"]

#: Outcomes of a mutation applied as is (digest not recomputed); only ``rejected`` is a pass.
AS_IS_OUTCOMES = ("rejected", "accepted-without-digest", "bad-message", "traceback")
#: Outcomes of a replayed mutation (digest and checksums recomputed).
REPLAY_OUTCOMES = ("rejected-by-load", "rejected-by-compiler", "accepted", "bad-message", "lossy", "overflow",
                   "traceback")
#: Outcomes that fail the fuzzing.
FAILURES = ("accepted-without-digest", "bad-message", "traceback", "lossy", "overflow")

_HEX64 = frozenset("0123456789abcdef")


def _canonical(data):
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _dump(manifest):
    """``manifest.json`` as ``write_bundle`` writes it."""
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()


@dataclass
class BaseBundle:
    """The unmutated bundle in memory: every file by relative path, and the manifest."""

    root: Path
    files: dict
    manifest: dict

    @classmethod
    def read(cls, root):
        root = Path(root)
        files = {path.relative_to(root).as_posix(): path.read_bytes()
                 for path in sorted(root.rglob("*")) if path.is_file()}
        return cls(root, files, json.loads(files[MANIFEST]))

    @property
    def tables(self):
        return self.manifest["tables"]

    def table_values(self, name):
        entry = self.tables[name]
        dtype = np.dtype(entry["dtype"]).newbyteorder("<")
        return np.frombuffer(self.files[entry["file"]], dtype=dtype).astype(np.int64).reshape(entry["shape"])

    def names(self):
        """Names a string field may be changed to: tensors, tables, layers, files and strangers."""
        layers = self.manifest["layers"]
        names = {"input", "logits"}
        for layer in layers:
            names.update(value for key, value in layer.items()
                         if isinstance(value, str) and key not in ("kind", "order", "input_kind"))
        names.update(self.tables)
        names.update(self.files)
        names.update(entry["hex"] for entry in self.tables.values())
        return sorted(names) + ["", "nope", "Input", "input ", "x" * 300, "ü", "../manifest.json", "/etc/passwd",
                                "tables", "tables/", "./manifest.json", "tables/../manifest.json", "conv", "lif",
                                "pool", "attention", "head", "block.0", "block.1", "null", "0", "true", "\x00",
                                "spikes", "pixels", "qk_first", "kv_first", "cifar", "dvs", "imagenet"]


@dataclass
class Mutation:
    """File changes (relative path -> new bytes, or None to delete) and, for the manifest, either the
    new JSON data (``manifest``, written as ``write_bundle`` writes it) or raw bytes (in ``files``)."""

    category: str
    description: str
    manifest: object = None
    files: dict = field(default_factory=dict)

    def as_is(self, base):
        """The changed files of the mutation as drawn (digest and checksums as they were)."""
        changes = dict(self.files)
        if self.manifest is not None:
            changes[MANIFEST] = _dump(self.manifest)
        return changes

    def replayed(self, base):
        """The changed files with the manifest's digest recomputed, and every well-formed table or
        file checksum recomputed from the files as they now are; a manifest that is no JSON object
        is replayed as is."""
        changes = self.as_is(base)
        raw = changes.get(MANIFEST, base.files[MANIFEST])
        if raw is None:
            return changes
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return changes
        if not isinstance(data, dict):
            return changes

        def current(relative):
            if not isinstance(relative, str):
                return None
            if relative in changes:
                return changes[relative]
            return base.files.get(relative)

        tables = data.get("tables")
        if isinstance(tables, dict):
            for entry in tables.values():
                if not isinstance(entry, dict):
                    continue
                for kind, checksum in (("file", "sha256"), ("hex", "hex_sha256")):
                    content = current(entry.get(kind))
                    if content is not None and _is_hex64(entry.get(checksum)):
                        entry[checksum] = sha256_bytes(content)
        files = data.get("files")
        if isinstance(files, dict):
            for name, entry in files.items():
                content = current(name)
                if content is not None and isinstance(entry, dict) and _is_hex64(entry.get("sha256")):
                    entry["sha256"] = sha256_bytes(content)
        if "digest" in data:
            try:
                data["digest"] = manifest_digest(data)
            except (ValueError, RecursionError):
                return changes
        changes[MANIFEST] = _dump(data)
        return changes

    def changes_content(self, base):
        """False when the mutation as drawn leaves the bundle's content as it was (only the manifest's
        JSON layout changed, or nothing): such a bundle is rightly accepted as is."""
        changes = self.as_is(base)
        for relative, content in changes.items():
            if relative != MANIFEST and content != base.files.get(relative):
                return True
        if MANIFEST not in changes:
            return False
        if changes[MANIFEST] is None:
            return True
        try:
            data = json.loads(changes[MANIFEST])
        except (ValueError, RecursionError):
            return True
        try:
            return _canonical(data) != _canonical(base.manifest)
        except (ValueError, RecursionError):
            return True


def _is_hex64(value):
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX64


# ---------------------------------------------------------------------------------------------
# drawing mutations


def _byte_files(base):
    return sorted(base.files)


def _mut_byte_flip(base, rng):
    relative = rng.choice(_byte_files(base))
    data = bytearray(base.files[relative])
    if not data:
        return Mutation("byte-flip", f"{relative}: append a byte (empty file)", files={relative: b"\x00"})
    flips = rng.choice((1, 1, 1, 2, 3, 8))
    where = []
    for _ in range(flips):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8) if rng.random() < 0.5 else rng.randrange(1, 256)
        where.append(i)
    return Mutation("byte-flip", f"{relative}: bytes {where} changed", files={relative: bytes(data)})


def _mut_manifest_text(base, rng):
    """A character of ``manifest.json`` replaced by one of its class (digit, letter, punctuation), so
    that the JSON mostly stays valid and reaches the rules after a replay."""
    text = base.files[MANIFEST].decode()
    kind = rng.choice(("digit", "digit", "digit", "letter", "punct"))
    if kind == "digit":
        pool, alphabet = [i for i, c in enumerate(text) if c.isdigit()], "0123456789"
    elif kind == "letter":
        pool, alphabet = [i for i, c in enumerate(text) if c.isalpha()], "abcdefghijklmnopqrstuvwxyzT_."
    else:
        pool, alphabet = [i for i, c in enumerate(text) if c in "[]{},:-.\""], "[]{},:-.\"0 e"
    i = rng.choice(pool)
    new = rng.choice([c for c in alphabet if c != text[i]])
    return Mutation("manifest-text", f"manifest.json: char {i} {text[i]!r} -> {new!r} (…{text[max(0, i - 30):i + 10]!r}…)",
                    files={MANIFEST: (text[:i] + new + text[i + 1:]).encode()})


def _mut_truncate(base, rng):
    relative = rng.choice(_byte_files(base))
    data = base.files[relative]
    if not data:
        return _mut_delete_file(base, rng)
    n = len(data)
    size = rng.choice((0, rng.randrange(n), max(0, n - rng.randint(1, 16)), n // 2))
    size = min(size, n - 1)
    return Mutation("truncate", f"{relative}: truncated to {size} of {n} bytes", files={relative: data[:size]})


def _mut_extend(base, rng):
    relative = rng.choice(_byte_files(base))
    data = base.files[relative]
    extra = rng.choice((b"\x00", b"\n", b"0\n", bytes(rng.randrange(256) for _ in range(rng.randint(1, 9))),
                        data[:rng.randint(1, 64)], data))
    return Mutation("extend", f"{relative}: {len(extra)} bytes appended", files={relative: data + extra})


def _mut_delete_file(base, rng):
    relative = rng.choice(_byte_files(base))
    return Mutation("delete-file", f"{relative}: deleted", files={relative: None})


def _mut_manifest_json(base, rng):
    """The manifest replaced by other JSON documents or text."""
    text = base.files[MANIFEST]
    choice = rng.randrange(12)
    options = {
        0: ("empty", b""),
        1: ("a JSON list", b"[]\n"),
        2: ("a JSON string", b'"manifest"\n'),
        3: ("a JSON number", b"2\n"),
        4: ("null", b"null\n"),
        5: ("an empty object", b"{}\n"),
        6: ("deeply nested lists", b"[" * 100_000 + b"]" * 100_000),
        7: ("invalid UTF-8", b"\xff\xfe\xfa" + text[3:]),
        8: ("two objects", text + text),
        9: ("a list of the manifest", b"[" + text + b"]"),
        10: ("NUL bytes", text.replace(b'"', b"\x00", 1)),
        11: ("deeply nested field", text.replace(b'"source": ', b'"source": ' + b"[" * 5000 + b"]" * 5000 + b", \"x\": ", 1)),
    }
    what, data = options[choice]
    return Mutation("manifest-json", f"manifest.json: {what}", files={MANIFEST: data})


def _nodes(data, path=()):
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _nodes(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _nodes(value, (*path, i))


#: Where field edits land: the section and its weight.
_SECTIONS = (("layers", 10), ("model", 3), ("quant", 2), ("input", 2), ("outputs", 2), ("tables", 3),
             ("files", 1), ("format", 1), ("format_version", 1), ("digest", 1), (None, 1))


def _pick_section(manifest, rng):
    names, weights = zip(*_SECTIONS)
    section = rng.choices(names, weights)[0]
    return () if section is None or section not in manifest else (section,)


def _pick_node(manifest, rng, stop=0.2):
    """A random node: a section, then a random walk that stops early now and then."""
    path = _pick_section(manifest, rng)
    node = _get(manifest, path)
    while isinstance(node, (dict, list)) and node and (not path or rng.random() > stop):
        key = rng.choice(list(node) if isinstance(node, dict) else range(len(node)))
        path, node = (*path, key), node[key]
    return path


def _get(data, path):
    for key in path:
        data = data[key]
    return data


def _set(data, path, value):
    if not path:
        return value
    _get(data, path[:-1])[path[-1]] = value
    return data


def _path_text(path):
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text or "<root>"


def _other_ints(value, rng):
    return [0, 1, -1, 2, value + 1, value - 1, -value, 2 * value, value // 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 48,
            49, 63, 64, 65, 255, 256, 1024, 1025, 1 << 16, (1 << 16) + 1, 1 << 20, (1 << 20) + 1, 1 << 30, 2 ** 31,
            -(2 ** 31), 2 ** 63 - 1, 2 ** 63, 2 ** 64, -(2 ** 63) - 1, 10 ** 30, -(10 ** 30),
            rng.randint(-1000, 1000)]


def _replacements(value, base, rng):
    """Candidate values for a field holding ``value``: other values of its type and other types."""
    names = base.names()
    other_types = [None, True, False, 0, 1, -1, 0.5, float("nan"), float("inf"), "", "x", rng.choice(names), [],
                   {}, [value], {"value": value}]
    if isinstance(value, bool):
        return [not value, 0, 1, "true", "false", None, 1.0, [], {}]
    if isinstance(value, int):
        return _other_ints(value, rng) * 2 + [float(value), value + 0.5, float("nan"), float("inf"), -float("inf"),
                                              str(value), hex(value)] + other_types
    if isinstance(value, float):
        finite = [0.0, -0.0, -1.0, 0.25, 0.5, 0.999, 1.0, 1.5, 2.0, 3.0, 4.0, 64.0, 64.5, 1e6, 1e6 + 1, 1e300,
                  5e-324, value * 2, value / 2, value + 1e-9]
        return finite * 2 + [int(value), float("nan"), float("inf"), -float("inf"), str(value)] + other_types
    if isinstance(value, str):
        return names * 2 + [value.upper(), value + " ", value[:-1], value + "x", 0, 1, 1.0] + other_types
    if value is None:
        return [0, 1, -1, "", "input", rng.choice(names), float("nan"), True, False, [], {}, [None]]
    if isinstance(value, list):
        options = [[], [value[0]] if value else [0], value[:-1], value[1:], value + value[-1:], value + value[:1],
                   value[::-1], rng.sample(value, len(value)), value * 2, [value], None, "x", 0, {}]
        if value:
            i = rng.randrange(len(value))
            for other in (None, "x", 1.5, [], {}, True, -1, 10 ** 30):
                options.append(value[:i] + [other] + value[i + 1:])
        return options
    if isinstance(value, dict):
        keys = list(value)
        options = [{}, [], None, "x", 0, list(value.values()), {**value, "extra": 1}]
        if keys:
            key = rng.choice(keys)
            options.append({k: v for k, v in value.items() if k != key})
            options.append({(k + "_" if k == key else k): v for k, v in value.items()})
            options.append({(k.upper() if k == key else k): v for k, v in value.items()})
        return options
    return [None]


def _mut_field(base, rng):
    manifest = copy.deepcopy(base.manifest)
    path = _pick_node(manifest, rng)
    old = _get(manifest, path)
    new = rng.choice(_replacements(old, base, rng))
    manifest = _set(manifest, path, new)
    return Mutation(f"field-{type(old).__name__ if old is not None else 'null'}",
                    f"{_path_text(path)}: {_short(old)} -> {_short(new)}", manifest=manifest)


def _dict_paths(manifest):
    return [path for path, node in _nodes(manifest) if isinstance(node, dict) and node]


def _pick_dict(manifest, rng):
    section = _pick_section(manifest, rng)
    paths = [path for path in _dict_paths(manifest) if path[:len(section)] == section] or [()]
    return rng.choice(paths)


def _mut_delete_field(base, rng):
    manifest = copy.deepcopy(base.manifest)
    path = _pick_dict(manifest, rng)
    node = _get(manifest, path)
    key = rng.choice(list(node))
    del node[key]
    return Mutation("delete-field", f"{_path_text((*path, key))}: deleted", manifest=manifest)


def _mut_add_field(base, rng):
    manifest = copy.deepcopy(base.manifest)
    path = _pick_dict(manifest, rng)
    node = _get(manifest, path)
    key = rng.choice(("extra", "comment", "Name", "kind_", "weights", "version", "", "__proto__", "digest", "bits",
                      "residual", "name", "format"))
    value = rng.choice((None, 0, 1, "x", [], {}, True, 1.5, "input"))
    if key in node:                       # an existing key: a typed-wrong duplicate of it
        node[key] = value
        what = f"{_path_text((*path, key))}: set to {_short(value)}"
    else:
        node[key] = value
        what = f"{_path_text((*path, key))}: unknown field added ({_short(value)})"
    return Mutation("add-field", what, manifest=manifest)


def _mut_layers(base, rng):
    manifest = copy.deepcopy(base.manifest)
    layers = manifest["layers"]
    n = len(layers)
    i, j = rng.randrange(n), rng.randrange(n)
    choice = rng.randrange(11)
    if choice == 0:
        layers[i], layers[j] = layers[j], layers[i]
        what = f"swap layers {i} and {j}"
    elif choice == 1:
        layers.insert(j, layers.pop(i))
        what = f"move layer {i} to {j}"
    elif choice == 2:
        del layers[i]
        what = f"drop layer {i}"
    elif choice == 3:
        layers.insert(j, copy.deepcopy(layers[i]))
        what = f"duplicate layer {i} at {j}"
    elif choice == 4:
        twin = copy.deepcopy(layers[i])
        twin["name"] += ".twin"
        layers.insert(i + 1, twin)
        what = f"duplicate layer {i} under a new name"
    elif choice == 5:
        twin = copy.deepcopy(layers[i])
        twin["name"] += ".twin"
        if "output" in twin:
            twin["output"] += ".twin"
        layers.insert(i + 1, twin)
        what = f"duplicate layer {i} under a new name and output"
    elif choice == 6:
        layers.reverse()
        what = "reverse the layers"
    elif choice == 7:
        rng.shuffle(layers)
        what = "shuffle the layers"
    elif choice == 8:
        manifest["layers"] = layers[:i]
        what = f"keep the first {i} layers"
    elif choice == 9:
        manifest["layers"] = layers[i:]
        what = f"drop the first {i} layers"
    else:
        a, b = sorted((i, j))
        manifest["layers"] = layers[:a] + layers[b:]
        what = f"drop layers {a}..{b - 1}"
    if manifest == base.manifest:
        return _mut_layers(base, rng)
    return Mutation("layers", what, manifest=manifest)


def _mut_rename(base, rng):
    """A tensor, layer or table renamed consistently everywhere in the manifest (a rename the rules
    should accept), or a table swapped for another of a different layer."""
    manifest = copy.deepcopy(base.manifest)
    names = sorted({v for layer in manifest["layers"] for k, v in layer.items() if k in ("name", "output")}
                   | set(manifest["tables"]))
    old = rng.choice(names)
    new = rng.choice((old + ".renamed", "input", "logits", rng.choice(names)))

    def rename(node):
        if isinstance(node, dict):
            return {(new if k == old else k): rename(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rename(v) for v in node]
        return new if node == old else node

    manifest = {key: rename(value) for key, value in manifest.items()}
    return Mutation("rename", f"{old!r} renamed to {new!r} everywhere", manifest=manifest)


def table_files(values, bits=None, dtype=None):
    """``.bin`` and ``.hex`` bytes and index fields of integer ``values`` (as ``write_bundle`` writes
    them, unless ``bits``/``dtype`` are forced)."""
    values = np.asarray(values, dtype=np.int64)
    need = signed_bits(values)
    bits = need if bits is None else bits
    storage = dtype or next(f"int{b}" for b in (8, 16, 32, 64) if b >= need)
    data = values.astype(np.dtype(storage).newbyteorder("<")).tobytes()
    hex_text = ("\n".join(readmemh_lines(values, bits)) + "\n").encode()
    return data, hex_text, {"bits": bits, "dtype": storage, "shape": list(values.shape)}


def _table_edit(values, rng, weight_bits):
    """New values for a table (and what was done)."""
    values = values.copy()
    flat = values.reshape(-1)
    choice = rng.randrange(16)
    if choice < 6 and flat.size:
        i = rng.randrange(flat.size)
        bits = signed_bits(flat)
        new = rng.choice((0, -1, 1, (1 << (bits - 1)) - 1, -(1 << (bits - 1)), 1 << (bits - 1), -(1 << (bits - 1)) - 1,
                          (1 << (weight_bits - 1)) - 1, 1 << (weight_bits - 1), -(1 << (weight_bits - 1)),
                          -(1 << (weight_bits - 1)) - 1, 1 << 20, 1 << 40, (1 << 62), -(1 << 62),
                          np.iinfo(np.int64).max, np.iinfo(np.int64).min, int(flat[i]) * 2 + 1, -int(flat[i])))
        flat[i] = new
        return values, f"element {i} -> {new}"
    if choice == 6:
        return values * 2, "doubled"
    if choice == 7:
        return -values, "negated"
    if choice == 8:
        return np.zeros_like(values), "zeros"
    if choice == 9:
        k = rng.choice((1, 2, 4, 8, 9, 16, 17, 31, 32, 40, 62))
        return np.asarray([rng.randint(-(1 << k), (1 << k) - 1) for _ in range(flat.size)],
                          dtype=np.int64).reshape(values.shape), f"random values of {k + 1} bits"
    if choice == 10:
        return values.reshape(-1), f"flattened to {[values.size]}"
    if choice == 11 and values.shape and values.shape[0] > 1:
        return values[:-1], "last row dropped"
    if choice == 12 and values.shape:
        return np.concatenate([values, values[:1]]), "first row appended"
    if choice == 13 and values.ndim >= 2:
        return np.ascontiguousarray(np.swapaxes(values, 0, 1)), "first two axes swapped"
    if choice == 14:
        return values[None], "axis added"
    return np.zeros((0,) + values.shape[1:], dtype=np.int64), "emptied"


def _mut_table(base, rng):
    """A table rewritten: new values (or shape) in ``.bin`` and ``.hex`` and the index's bits, dtype
    and shape; now and then with a deliberately inconsistent width, dtype or hex."""
    name = rng.choice(sorted(base.tables))
    entry = base.tables[name]
    values, what = _table_edit(base.table_values(name), rng, base.manifest["quant"]["weight_bits"])
    data, hex_text, fields = table_files(values)
    manifest = copy.deepcopy(base.manifest)
    target = manifest["tables"][name]
    twist = rng.randrange(10)
    if twist == 0 and fields["bits"] > 2:
        fields["bits"] -= 1                      # index claims fewer bits than the values need
        what += ", index bits one short"
    elif twist == 1:
        fields["bits"] = min(64, fields["bits"] + rng.randint(1, 8))
        data, hex_text, _ = table_files(values, bits=fields["bits"], dtype=fields["dtype"])
        what += ", wider bits"
    elif twist == 2:
        wider = {"int8": "int16", "int16": "int32", "int32": "int64", "int64": "int64"}[fields["dtype"]]
        data, _, _ = table_files(values, bits=fields["bits"], dtype=wider)
        fields["dtype"] = wider
        what += f", stored as {wider}"
    elif twist == 3:
        _, hex_text, _ = table_files(base.table_values(name), bits=entry["bits"])
        what += ", hex left as it was"
    elif twist == 4:             # no bytes for a shape whose element count wraps around in int64
        data, hex_text = b"", b"\n"
        fields["shape"] = rng.choice(([1 << 30, 1 << 30, 16], [1 << 30, 1 << 30, 1 << 30, 1 << 30], [0, 1 << 30],
                                      [1 << 30] * 8))
        what = f"emptied, shape {fields['shape']}"
    target.update(fields)
    files = {entry["file"]: data, entry["hex"]: hex_text}
    return Mutation("table", f"table {name!r}: {what}", manifest=manifest, files=files)


def _mut_consistent(base, rng):
    """Several fields changed together so that the rules may well accept the result: widths widened,
    T, tau, heads, the input's max or the class count changed everywhere they appear."""
    manifest = copy.deepcopy(base.manifest)
    layers, config = manifest["layers"], manifest["model"]["config"]
    files = {}
    choice = rng.randrange(9)
    if choice == 0:
        key = rng.choice(("acc_bits", "membrane_bits", "count_bits", "sum_bits", "logit_bits"))
        delta = rng.choice((1, 2, 8, 16, 24, 30, 40, 47, 60))
        hits = [layer for layer in layers if key in layer]
        for layer in rng.sample(hits, rng.randint(1, len(hits))):
            layer[key] = min(64, layer[key] + delta)
        what = f"some {key} widened by {delta} (at most 64)"
    elif choice == 1:
        T = rng.choice((1, 2, 3, 5, 8, 15, 16, 17, 31, 32, 33))
        config["T"] = manifest["quant"]["frac_bits"] = T
        widen = rng.random() < 0.7
        for layer in layers:
            if layer["kind"] == "lif":
                layer["frac_bits"] = T
                if widen:
                    layer["membrane_bits"] = 64
        what = f"T = frac_bits = {T}" + (", membranes 64 bits" if widen else "")
    elif choice == 2:
        tau = rng.choice((1.0, 1.5, 3.0, 4.0, 100.0, 1e6))
        config["tau"] = tau
        m, s = decay_fixed_point(tau)
        for layer in layers:
            if layer["kind"] == "lif":
                layer["decay_mult"], layer["decay_shift"] = m, s
        what = f"tau = {tau}, decay {m}/2**{s}"
    elif choice == 3:
        heads = rng.choice((1, 2, 3, 8, 16, 32, 64, 128))
        config["heads"] = heads
        for layer in layers:
            if layer["kind"] == "attention":
                layer["heads"] = heads
        what = f"heads = {heads}"
    elif choice == 4:
        top = rng.choice((1, 2, 15, 17, 31, 32, 100, 255))
        manifest["input"]["max"] = top
        if rng.random() < 0.7:
            for layer in layers:
                if layer["kind"] in ("conv", "lif", "head"):
                    for key in ("acc_bits", "membrane_bits", "sum_bits", "logit_bits"):
                        if key in layer:
                            layer[key] = min(64, layer[key] + 8)
        what = f"input.max = {top}"
    elif choice == 5:
        classes = rng.choice((1, 2, 9, 11, 16, 17, 33))
        config["num_classes"] = classes
        head = next(layer for layer in layers if layer["kind"] == "head")
        for key in ("weight", "bias"):
            values = base.table_values(head[key])
            values = np.resize(values, (classes, *values.shape[1:]))
            data, hex_text, fields = table_files(values)
            entry = manifest["tables"][head[key]]
            entry.update(fields)
            files[entry["file"]], files[entry["hex"]] = data, hex_text
        what = f"num_classes = {classes} (head tables resized)"
    elif choice == 6:
        weight_bits = rng.choice((2, 3, 7, 9, 12, 16))
        manifest["quant"]["weight_bits"] = weight_bits
        what = f"quant.weight_bits = {weight_bits}"
    elif choice == 7:
        lifs = [layer for layer in layers if layer["kind"] == "lif"]
        layer = rng.choice(lifs)
        values = base.table_values(layer["threshold"])
        values = rng.choice((values + 1, np.maximum(values // 2, 1), np.full_like(values, 1),
                             np.full_like(values, (1 << (layer["membrane_bits"] - 1)) - 1)))
        data, hex_text, fields = table_files(values)
        entry = manifest["tables"][layer["threshold"]]
        entry.update(fields)
        files[entry["file"]], files[entry["hex"]] = data, hex_text
        what = f"thresholds of {layer['name']!r} changed within the membrane width"
    else:
        convs = [layer for layer in layers if layer["kind"] == "conv"]
        layer = rng.choice(convs)
        values = base.table_values(layer["weight"])
        limit = (1 << (manifest["quant"]["weight_bits"] - 1)) - 1
        values = np.clip(values * rng.choice((2, -1, 3)), -limit - 1, limit)
        layer["acc_bits"] = 64 if rng.random() < 0.5 else min(48, layer["acc_bits"] + 4)
        data, hex_text, fields = table_files(values)
        entry = manifest["tables"][layer["weight"]]
        entry.update(fields)
        files[entry["file"]], files[entry["hex"]] = data, hex_text
        what = f"weights of {layer['name']!r} scaled within weight_bits, acc_bits {layer['acc_bits']}"
    return Mutation("consistent", what, manifest=manifest, files=files)


def _mut_files_entry(base, rng):
    """An entry added to the manifest's ``files`` (extra files and their checksums)."""
    manifest = copy.deepcopy(base.manifest)
    table = base.tables[rng.choice(sorted(base.tables))]
    name = rng.choice(("model.qonnx.onnx", table["file"], MANIFEST, "tables", "../manifest.json", "/etc/passwd",
                       "tables/../" + table["file"], "", "nope.bin"))
    content = base.files.get(name)
    digest = sha256_bytes(content) if content is not None else "0" * 64
    manifest["files"][name] = {"sha256": digest}
    return Mutation("files-entry", f"files.{name}: added", manifest=manifest)


#: The mutators by name, each ``(function(base, rng) -> Mutation, weight)``.
MUTATORS = {"byte-flip": (_mut_byte_flip, 12), "manifest-text": (_mut_manifest_text, 6), "truncate": (_mut_truncate, 5),
            "extend": (_mut_extend, 2), "delete-file": (_mut_delete_file, 1), "manifest-json": (_mut_manifest_json, 1),
            "field": (_mut_field, 30), "delete-field": (_mut_delete_field, 6), "add-field": (_mut_add_field, 5),
            "layers": (_mut_layers, 8), "rename": (_mut_rename, 3), "table": (_mut_table, 8),
            "consistent": (_mut_consistent, 10), "files-entry": (_mut_files_entry, 1)}

def draw_mutation(base, rng, mutators=None):
    """A random :class:`Mutation` of ``base`` that changes its content (``rng``: a ``random.Random``;
    ``mutators``: names of :data:`MUTATORS` to draw from, default all, by weight)."""
    functions, weights = zip(*(MUTATORS[name] for name in (mutators or MUTATORS)))
    for _ in range(100):
        mutation = rng.choices(functions, weights)[0](base, rng)
        if mutation.changes_content(base):
            return mutation
    raise RuntimeError("no content-changing mutation drawn in 100 tries")


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


# ---------------------------------------------------------------------------------------------
# evaluating


@dataclass
class Result:
    """What became of one mutation: the as-is and the replayed outcome, and details of failures."""

    mutation: Mutation
    as_is: str
    replay: str
    detail: str = ""

    @property
    def failed(self):
        return self.as_is in FAILURES or self.replay in FAILURES


class Scratch:
    """A working copy of the bundle whose files are changed for one evaluation and then restored."""

    def __init__(self, base, root):
        self.base, self.root = base, Path(root)
        if self.root.exists():
            shutil.rmtree(self.root)
        shutil.copytree(base.root, self.root)

    @contextlib.contextmanager
    def applied(self, changes):
        try:
            for relative, content in changes.items():
                path = self.root / relative
                if content is None:
                    path.unlink(missing_ok=True)
                else:
                    path.write_bytes(content)
            yield self.root
        finally:
            for relative in changes:
                original = self.base.files.get(relative)
                path = self.root / relative
                if original is None:
                    path.unlink(missing_ok=True)
                else:
                    path.write_bytes(original)


def _message_problem(error, root):
    text = str(error)
    if "\n" in text or "\r" in text:
        return f"message of more than one line: {text[:300]!r}"
    if str(root) not in text:
        return f"message names no file of the bundle: {text[:300]!r}"
    return None


def _where(exc):
    frames = traceback_module.extract_tb(exc.__traceback__)
    last = frames[-1] if frames else None
    at = f" at {Path(last.filename).name}:{last.lineno} ({last.name})" if last else ""
    return f"{type(exc).__name__}: {str(exc)[:300]}{at}"


class Evaluator:
    """Evaluates mutations of ``base`` (the module docstring says how) in a scratch copy at ``work``,
    with ``n_pe`` lanes, each evaluation :func:`accelerated` unless ``accelerate`` is false."""

    def __init__(self, base, work, n_pe=16, accelerate=True):
        from spikeforge.firmware.compiler import CompileError, compile_bundle
        from spikeforge.quant.golden import GoldenModel

        self.base, self.n_pe, self.accelerate = base, n_pe, accelerate
        self.scratch = Scratch(base, work)
        self._compile, self.CompileError, self.GoldenModel = compile_bundle, CompileError, GoldenModel
        self._pixels, self._tables = {}, {}

    def pixels(self, config):
        """Two digits test images for ``config``, as ``spikeforge golden --input digits:2`` reads them
        (memoised per config: ``parse_input`` is a function of the spec and the config)."""
        from spikeforge.model.config import ModelConfig
        from spikeforge.model.data import parse_input

        key = _canonical(config)
        if key not in self._pixels:
            self._pixels[key] = parse_input("digits:2", ModelConfig(**config)).pixels
        return self._pixels[key]

    def as_is(self, mutation):
        with self.scratch.applied(mutation.as_is(self.base)) as root:
            try:
                load_bundle(root)
            except BundleError as e:
                problem = _message_problem(e, root)
                return ("bad-message", problem) if problem else ("rejected", "")
            except Exception as e:  # noqa: BLE001 - every other exception is what the fuzzing looks for
                return "traceback", f"load_bundle: {_where(e)}"
            return "accepted-without-digest", "load_bundle accepted the bundle without a recomputed digest"

    def replay(self, mutation):
        with self.scratch.applied(mutation.replayed(self.base)) as root:
            try:
                bundle = load_bundle(root)
            except BundleError as e:
                problem = _message_problem(e, root)
                return ("bad-message", problem) if problem else ("rejected-by-load", "")
            except Exception as e:  # noqa: BLE001
                return "traceback", f"load_bundle: {_where(e)}"
            try:
                image = self._compile(bundle, self.n_pe)
            except self.CompileError as e:
                if "\n" in str(e) or not str(e):
                    return "bad-message", f"compiler: message not one line: {str(e)[:300]!r}"
                return "rejected-by-compiler", ""
            except Exception as e:  # noqa: BLE001
                return "traceback", f"compile_bundle: {_where(e)}"
            try:
                problems = check_compiled(bundle, image)
            except Exception as e:  # noqa: BLE001
                return "traceback", f"check_compiled: {_where(e)}"
            if problems:
                return "lossy", "; ".join(problems[:3])
            try:
                pixels = self.pixels(bundle.config)
            except Exception as e:  # noqa: BLE001
                return "traceback", f"parse_input('digits:2'): {_where(e)}"
            try:
                trace = self.GoldenModel(bundle).run(pixels)
            except Exception as e:  # noqa: BLE001
                return "traceback", f"golden model: {_where(e)}"
            if trace.overflow:
                return "overflow", f"golden model overflowed in {trace.overflow} on digits:2"
            return "accepted", ""

    def evaluate(self, mutation):
        """The :class:`Result` of ``mutation``."""
        with accelerated(self._tables) if self.accelerate else contextlib.nullcontext():
            as_is, why_as_is = self.as_is(mutation)
            replay, why_replay = self.replay(mutation)
        detail = "; ".join(f"{what}: {why}" for what, why in (("as is", why_as_is), ("replayed", why_replay)) if why)
        return Result(mutation, as_is, replay, detail)


# ---------------------------------------------------------------------------------------------
# the compiled image against the bundle


def _unpacked(words, lanes, bits):
    """``[rows, lanes]`` int64 values of multi-lane words (lane 0 lowest, two's complement) — what
    ``interface.layout.unpack_lanes`` gives, for many words at once."""
    if not words:
        return np.zeros((0, lanes), dtype=np.int64)
    width = lanes * bits
    nbytes = (width + 7) // 8
    raw = np.frombuffer(b"".join(int(w).to_bytes(nbytes, "little") for w in words), dtype=np.uint8)
    bitplanes = np.unpackbits(raw.reshape(len(words), nbytes), axis=1, bitorder="little")[:, :width]
    bitplanes = bitplanes.reshape(len(words), lanes, bits).astype(np.uint64)
    unsigned = (bitplanes << np.arange(bits, dtype=np.uint64)).sum(-1, dtype=np.uint64)
    spare = 64 - bits          # sign extension: the sign bit to bit 63, then an arithmetic shift back
    return (unsigned << np.uint64(spare)).view(np.int64) >> np.int64(spare)


def _lane_rows(values, n_pe, pad):
    """``values`` per channel as ``n_pe``-lane rows (the compiler's ``Program.lanes``)."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    rows = -(-len(values) // n_pe)
    out = np.full(rows * n_pe, pad, dtype=np.int64)
    out[:len(values)] = values
    return out.reshape(rows, n_pe)


def check_compiled(bundle, image):
    """Problems (an empty list when none) that make the compiled ``image`` behave otherwise than
    ``bundle``: a weight, bias or threshold row that does not unpack to the table values of the
    descriptor using it (a value masked to a narrower width), built widths narrower than a width
    the bundle declares, descriptor fields that differ from the layer's."""
    problems = []
    params, memories = image.params, image.memories
    n_pe = params["n_pe"]
    weight_bits, acc_bits, membrane_bits = params["weight_bits"], params["acc_bits"], params["membrane_bits"]
    tables, program = bundle.tables, list(bundle.program)
    config, quant = bundle.config, bundle.manifest["quant"]
    memory = {name: {"WEIGHTS": weight_bits, "BIAS": acc_bits, "THRESHOLD": membrane_bits}[name]
              for name in ("WEIGHTS", "BIAS", "THRESHOLD")}
    unpacked = {name: _unpacked(memories[name], n_pe, bits) for name, bits in memory.items()}

    def rows(name, base, expected, what):
        got = unpacked[name][base:base + len(expected)]
        if got.shape != expected.shape:
            problems.append(f"{what}: {name} rows {base}..{base + len(expected) - 1} beyond the {len(unpacked[name])} "
                            f"rows compiled")
        elif not np.array_equal(got, expected):
            r, lane = (int(i) for i in np.argwhere(got != expected)[0])
            problems.append(f"{what}: {name} row {base + r} lane {lane} unpacks to {int(got[r, lane])}, the bundle "
                            f"has {int(expected[r, lane])}")

    def at_least(key, value, what):
        if params[key] < value:
            problems.append(f"built {key} {params[key]} < {value} ({what})")

    at_least("weight_bits", quant["weight_bits"], "quant.weight_bits")
    at_least("max_T", config["T"], "config.T")
    emitting = [(i, layer) for i, layer in enumerate(program) if layer.kind != "lif"]
    names = image.layout["ops"]
    words = memories["PROGRAM"]
    if names != [layer.name for _, layer in emitting] + ["end"] or len(words) != len(names):
        return problems + [f"descriptors {names} are not the program's non-LIF layers in order"]
    if unpack(words[-1])["op"] != OPCODES["END"]:
        problems.append("the last descriptor is not END")
    for (i, layer), word in zip(emitting, words):
        d = unpack(word)
        what = f"layer {layer.name!r}"
        if d["op"] != OPCODES[OPERATIONS[layer.kind].OPCODE]:
            problems.append(f"{what}: opcode {d['op']}")
            continue
        lif = program[i + 1] if i + 1 < len(program) and program[i + 1].kind == "lif" else None
        if layer.kind in ("conv", "attention", "head"):
            if d["T"] != config["T"]:
                problems.append(f"{what}: descriptor T {d['T']} != {config['T']}")
            at_least("max_h", d["H"], what)
            at_least("max_w", d["W"], what)
        if layer.kind == "conv":
            weight, bias = tables[layer.weight], tables[layer.bias]
            cout, cin, k, _ = weight.shape
            tiles = -(-cout // n_pe)
            padded = np.zeros((tiles * n_pe, cin, k, k), dtype=np.int64)
            padded[:cout] = weight
            expected = padded.reshape(tiles, n_pe, cin, k, k).transpose(0, 2, 3, 4, 1).reshape(-1, n_pe)
            rows("WEIGHTS", d["weight_base"], expected, f"{what} weights")
            rows("BIAS", d["bias_base"], _lane_rows(bias, n_pe, 0), f"{what} bias")
            for key, value in (("cin", cin), ("tiles", tiles), ("kernel3", int(k == 3)), ("check_bits", layer.acc_bits),
                               ("residual", int(layer.residual is not None))):
                if d[key] != value:
                    problems.append(f"{what}: descriptor {key} {d[key]} != {value}")
            at_least("acc_bits", layer.acc_bits, f"{what} acc_bits")
            at_least("max_cin", cin, what)
        elif layer.kind == "attention":
            C = d["cin"]
            tiles = -(-C // n_pe)
            rows("BIAS", d["bias_base"], np.zeros((tiles, n_pe), dtype=np.int64), f"{what} zero bias")
            for key, value in (("tiles", tiles), ("check_bits", layer.count_bits),
                               ("head_dim", C // layer.heads)):
                if d[key] != value:
                    problems.append(f"{what}: descriptor {key} {d[key]} != {value}")
            at_least("acc_bits", layer.count_bits, f"{what} count_bits")
            at_least("max_cin", C, what)
        elif layer.kind == "head":
            weight, bias = tables[layer.weight], tables[layer.bias]
            classes, C = weight.shape
            padded = np.zeros((C, n_pe), dtype=np.int64)
            padded[:, :classes] = weight.T
            rows("WEIGHTS", d["weight_base"], padded, f"{what} weights")
            # the bias in two rows of acc_bits lanes: its low bits (read back signed), then the bits above
            padded_bias = _lane_rows(bias, n_pe, 0)
            rows("BIAS", d["bias_base"], np.concatenate([wrap(padded_bias, acc_bits), padded_bias >> acc_bits]),
                 f"{what} bias")
            for key, value in (("cin", C), ("sum_bits", layer.sum_bits), ("check_bits", layer.logit_bits)):
                if d[key] != value:
                    problems.append(f"{what}: descriptor {key} {d[key]} != {value}")
            at_least("logit_bits", max(layer.sum_bits, layer.logit_bits + 1), f"{what} sum/logit bits")
            at_least("max_cin", C, what)
            at_least("max_tiles", -(-C // n_pe), what)
        if lif is not None:
            if not d["lif"]:
                problems.append(f"{what}: its LIF {lif.name!r} is not fused")
                continue
            channels = len(tables[lif.threshold])
            pad = (1 << (membrane_bits - 1)) - 1
            rows("THRESHOLD", d["threshold_base"], _lane_rows(tables[lif.threshold], n_pe, pad),
                 f"LIF {lif.name!r} thresholds")
            if d["frac_bits"] != lif.frac_bits:
                problems.append(f"LIF {lif.name!r}: descriptor frac_bits {d['frac_bits']} != {lif.frac_bits}")
            at_least("membrane_bits", lif.membrane_bits, f"LIF {lif.name!r}")
            at_least("frac_bits", lif.frac_bits, f"LIF {lif.name!r}")
            if (params["decay_mult"], params["decay_shift"]) != (lif.decay_mult, lif.decay_shift):
                problems.append(f"LIF {lif.name!r}: built decay {params['decay_mult']}/2**{params['decay_shift']}")
            if channels > d["tiles"] * n_pe:
                problems.append(f"LIF {lif.name!r}: {channels} channels in {d['tiles']} tiles")
        elif d.get("lif"):
            problems.append(f"{what}: a LIF is fused but none follows")
    return problems


# ---------------------------------------------------------------------------------------------
# speed


@contextlib.contextmanager
def accelerated(cache=None):
    """Run ``load_bundle`` fast enough for thousands of loads, with the same results:
    ``ops.bundle._load_table`` is memoised on the root, the table's index entry and the SHA-256
      of its two files as they are on disk: its result (values or error) is a function of exactly
      these. Only successful loads are kept (in ``cache``, a dict that may outlive the context; at
      most 512 entries), handed out as copies; every changed table or entry is loaded by the real
      function.
    """
    original_load = bundle_module._load_table
    cache = {} if cache is None else cache

    def load_table(root, name, entry):
        try:
            key = (str(root), name, entry.model_dump_json(), sha256_file(Path(root) / entry.file),
                   sha256_file(Path(root) / entry.hex))
        except (OSError, ValueError):
            return original_load(root, name, entry)
        if key not in cache:
            if len(cache) >= 512:
                cache.clear()
            cache[key] = original_load(root, name, entry)
        return cache[key].copy()

    bundle_module._load_table = load_table
    try:
        yield
    finally:
        bundle_module._load_table = original_load
