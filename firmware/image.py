"""The program image: what the compiler writes and the host driver loads, versioned and checksummed.

An image is a directory::

    image.json     format, version, hardware params, compiler layout, and per memory: file names,
                   word_bits, depth and the SHA-256 of both files (JSON, keys sorted)
    NAME.hex       one word per line for Verilog $readmemh: lower-case hex, ceil(word_bits/4) digits
    NAME.bin       the same words, each little-endian in ceil(word_bits/8) bytes

    EXTERNAL.hex   the tables as they lie in external memory (interface/external.py): 32-bit words
    EXTERNAL.bin   from byte 0 — what a host copies to the board's memory, and what the simulation's
                   memory model preloads

``NAME`` is a table of the image in external memory (:data:`~spikeforge.interface.external.IMAGE_TABLES`:
``PROGRAM``, ``WEIGHTS``, ``BIAS``, ``THRESHOLD``; the ``SPILL`` region after them is the accelerator's
to write, :func:`external_shapes`); words are unsigned (signed lanes are already packed as two's
complement). The tables must fit the accelerator's external address space: ``EXTERNAL`` holds fewer
than ``2**memory_address_bits`` bytes (``params.memory_address_bits``, the default of
:class:`~spikeforge.interface.params.AcceleratorParams` where absent). ``docs/firmware.md`` describes
the format. Writing and loading validate everything and raise :class:`ImageError` naming the file and field.
"""

import json
import operator
from dataclasses import dataclass, field
from pathlib import Path

from spikeforge.interface.bits import index_bits, readmemh_lines
from spikeforge.interface.external import BEAT_BITS, IMAGE_TABLES, SPILL, external_bytes, external_words, spill_shape
from spikeforge.interface.files import sha256_bytes, staged_directory
from spikeforge.interface.params import MEMORY_ADDRESS_RANGE, AcceleratorParams

__all__ = ["IMAGE_FORMAT", "IMAGE_VERSION", "IMAGE_MANIFEST", "MEMORY_WINDOWS", "EXTERNAL", "ImageError",
           "ProgramImage", "write_image", "load_image", "external_image", "external_shapes"]

IMAGE_FORMAT = "spikeforge-program-image"
#: 4: spike groups reused by liveness; layout.spikes carry producer and breakpoint. 5: params.logit_bits, a
#: head's bias in two BIAS rows.
IMAGE_VERSION = 5
IMAGE_MANIFEST = "image.json"
#: The memories an image holds: its tables in external memory.
MEMORY_WINDOWS = IMAGE_TABLES
#: Name of the files holding the whole external-memory image.
EXTERNAL = "EXTERNAL"


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and the field."""


@dataclass
class ProgramImage:
    """A program image in memory.

    Attributes
    ----------
    params : dict
        Hardware build parameters the image was compiled for (plain ints), e.g. ``{"n_pe": 16}``.
    memories : dict
        Window name -> list of unsigned int words, loaded from offset 0.
    word_bits : dict
        Window name -> word width in bits (same keys as ``memories``).
    layout : dict
        JSON-serialisable compiler metadata (tensor placement, op names, ...).
    """

    params: dict
    memories: dict
    word_bits: dict
    layout: dict = field(default_factory=dict)


def _fail(path, name, expected, found):
    raise ImageError(f"{path}: field '{name}' expected {expected}, found {found}")


def _check_memory(path, name, words, bits):
    """Shared by writer and reader: a known window, a sane width, words that fit."""
    if name not in MEMORY_WINDOWS:
        _fail(path, f"memories.{name}", f"one of {', '.join(MEMORY_WINDOWS)}", repr(name))
    if not isinstance(bits, int) or isinstance(bits, bool) or bits < 1:
        _fail(path, f"memories.{name}.word_bits", "a positive int", repr(bits))
    for i, word in enumerate(words):
        if not 0 <= word < 1 << bits:
            _fail(path, f"memories.{name}.word_bits", f"words of {bits} unsigned bits", f"word {i} = {word:#x}")


def _check_external_fits(path, params, shapes):
    """The tables of ``shapes`` (``{name: (word_bits, depth)}``) fit the external address space of ``params``."""
    bits = params.get("memory_address_bits", AcceleratorParams.memory_address_bits)
    lo, hi = MEMORY_ADDRESS_RANGE
    if not isinstance(bits, int) or isinstance(bits, bool) or not lo <= bits <= hi:
        _fail(path, "params.memory_address_bits", f"an int in {lo}..{hi}", repr(bits))
    size = external_bytes(shapes)
    if size > 1 << bits:
        _fail(path, "params.memory_address_bits", f"room for the {size}-byte external image (2**{bits} bytes "
                                                  f"is too small: at least {index_bits(size)} bits)", bits)


def external_image(image):
    """The 32-bit words of external memory from byte 0 holding ``image``'s tables."""
    return external_words({name: (image.word_bits[name], image.memories[name]) for name in image.memories})


def external_shapes(image):
    """``{name: (row_bits, rows)}`` of everything ``image`` places in external memory: its tables and,
    after them, the spill region of its build parameters."""
    shapes = {name: (image.word_bits[name], len(words)) for name, words in image.memories.items()}
    return {**shapes, SPILL: spill_shape(AcceleratorParams(**image.params))}


def _files(words, bits):
    hex_text = "".join(line + "\n" for line in readmemh_lines(words, bits)).encode()   # "\n" on every platform
    return hex_text, b"".join(w.to_bytes((bits + 7) // 8, "little") for w in words)


def write_image(image, path):
    """Write ``image`` to the directory ``path`` atomically (complete or absent; an existing one is
    replaced). Identical images give byte-identical files. Returns ``path``.

    Raises
    ------
    ImageError
        If a memory is not an image window, a word does not fit its width, or a param is not an int.
    """
    path = Path(path)
    where = "ProgramImage"
    if set(image.memories) != set(image.word_bits):
        _fail(where, "word_bits", f"keys {sorted(image.memories)}", sorted(image.word_bits))
    for key, value in image.params.items():
        if not isinstance(key, str) or not isinstance(value, int) or isinstance(value, bool):
            _fail(where, f"params.{key}", "a str key and an int", repr(value))
    _check_external_fits(where, image.params, {name: (image.word_bits[name], len(image.memories[name]))
                                               for name in image.memories})
    memories = {}
    with staged_directory(path) as tmp:
        for name in sorted(image.memories):
            words, bits = [operator.index(w) for w in image.memories[name]], image.word_bits[name]
            _check_memory(where, name, words, bits)
            hex_text, data = _files(words, bits)
            (tmp / f"{name}.hex").write_bytes(hex_text)
            (tmp / f"{name}.bin").write_bytes(data)
            memories[name] = {"hex": f"{name}.hex", "bin": f"{name}.bin", "word_bits": bits,
                              "depth": len(words), "hex_sha256": sha256_bytes(hex_text),
                              "bin_sha256": sha256_bytes(data)}
        hex_text, data = _files(external_image(image), BEAT_BITS)
        (tmp / f"{EXTERNAL}.hex").write_bytes(hex_text)
        (tmp / f"{EXTERNAL}.bin").write_bytes(data)
        manifest = {"format": IMAGE_FORMAT, "version": IMAGE_VERSION, "params": image.params,
                    "layout": image.layout, "memories": memories,
                    "external": {"hex": f"{EXTERNAL}.hex", "bin": f"{EXTERNAL}.bin",
                                 "hex_sha256": sha256_bytes(hex_text), "bin_sha256": sha256_bytes(data)}}
        (tmp / IMAGE_MANIFEST).write_bytes((json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return path


def _read(root, name, entry, kind):
    key = f"external.{kind}" if name == EXTERNAL else f"memories.{name}.{kind}"
    if not isinstance(entry.get(kind), str) or Path(entry[kind]).name != entry[kind]:
        _fail(root / IMAGE_MANIFEST, key, "a file name in the image directory", repr(entry.get(kind)))
    file = root / entry[kind]
    if not file.is_file():
        _fail(file, key, "an existing file", "none")
    data = file.read_bytes()
    if sha256_bytes(data) != entry.get(f"{kind}_sha256"):
        _fail(file, f"{key}_sha256", entry.get(f"{kind}_sha256"), sha256_bytes(data))
    return file, data


def _load_memory(root, name, entry):
    manifest = root / IMAGE_MANIFEST
    if not isinstance(entry, dict):
        _fail(manifest, f"memories.{name}", "an object", type(entry).__name__)
    bits, depth = entry.get("word_bits"), entry.get("depth")
    _check_memory(manifest, name, [], bits)
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        _fail(manifest, f"memories.{name}.depth", "a non-negative int", repr(depth))
    bin_file, data = _read(root, name, entry, "bin")
    hex_file, hex_data = _read(root, name, entry, "hex")
    nbytes = (bits + 7) // 8
    if len(data) != depth * nbytes:
        _fail(bin_file, f"memories.{name}.depth", f"{depth * nbytes} bytes ({depth} words)", f"{len(data)} bytes")
    words = [int.from_bytes(data[i:i + nbytes], "little") for i in range(0, len(data), nbytes)]
    _check_memory(bin_file, name, words, bits)
    lines = hex_data.decode("ascii", "replace").splitlines()
    if len(lines) != depth:
        _fail(hex_file, f"memories.{name}.depth", f"{depth} lines", f"{len(lines)} lines")
    for i, (line, want) in enumerate(zip(lines, readmemh_lines(words, bits))):
        if line != want:
            _fail(hex_file, f"memories.{name}.hex", f"line {i + 1} = {want} as in {bin_file.name}", repr(line))
    return words, bits


def load_image(path):
    """Load and validate a program image directory.

    Returns
    -------
    ProgramImage

    Raises
    ------
    ImageError
        One line ``FILE: field 'F' expected ..., found ...`` for any missing, corrupt or
        inconsistent part: format, version, checksums, depth, word widths, hex against bin.
    """
    root = Path(path)
    manifest_path = root / IMAGE_MANIFEST
    if not manifest_path.is_file():
        _fail(manifest_path, "format", "an existing file", "none")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        _fail(manifest_path, "format", "a JSON document", f"invalid JSON ({e})")
    if not isinstance(manifest, dict):
        _fail(manifest_path, "format", "a JSON object", type(manifest).__name__)
    if manifest.get("format") != IMAGE_FORMAT:
        _fail(manifest_path, "format", repr(IMAGE_FORMAT), repr(manifest.get("format")))
    if manifest.get("version") != IMAGE_VERSION:
        _fail(manifest_path, "version", IMAGE_VERSION, repr(manifest.get("version")))
    for key in ("params", "layout", "memories"):
        if not isinstance(manifest.get(key), dict):
            _fail(manifest_path, key, "an object", repr(manifest.get(key)))
    for key, value in manifest["params"].items():
        if not isinstance(value, int) or isinstance(value, bool):
            _fail(manifest_path, f"params.{key}", "an int", repr(value))
    memories, word_bits = {}, {}
    for name, entry in sorted(manifest["memories"].items()):
        memories[name], word_bits[name] = _load_memory(root, name, entry)
    _check_external_fits(manifest_path, manifest["params"], {name: (word_bits[name], len(memories[name]))
                                                             for name in memories})
    image = ProgramImage(manifest["params"], memories, word_bits, manifest["layout"])
    external = manifest.get("external")
    if not isinstance(external, dict):
        _fail(manifest_path, "external", "an object", repr(external))
    expected = dict(zip(("hex", "bin"), _files(external_image(image), BEAT_BITS)))
    for kind in ("hex", "bin"):
        file, data = _read(root, EXTERNAL, external, kind)
        if data != expected[kind]:
            _fail(file, f"external.{kind}", "the tables laid out as in interface/external.py", "other words")
    return image
