"""Program image: round trip, byte-identical rewrite, and every corruption refused naming file and field."""

import hashlib
import json

import pytest

from spikeforge.interface.descriptor import DESCRIPTOR_BITS, pack
from spikeforge.firmware.image import (IMAGE_MANIFEST, IMAGE_VERSION, ImageError, ProgramImage, load_image,
                                       write_image)


def sample_image():
    # Widths that are not multiples of 4 or 8, words wider than 64 bits, words that numpy would
    # make float64 ([2**63 + 1, 1]), and an empty memory.
    program = [pack(op=1, cin=3, planes=5, tiles=2, T=4, H=8, W=8, check_bits=12), pack(op=4), pack(op=0)]
    return ProgramImage(
        params={"n_pe": 16, "weight_bits": 8, "acc_bits": 18},
        memories={"PROGRAM": program, "WEIGHTS": [0, 1, (1 << 128) - 1, 0x80 << 120],
                  "BIAS": [5, (1 << 18 * 16) - 1, (1 << 63) + 1, 1], "THRESHOLD": []},
        word_bits={"PROGRAM": DESCRIPTOR_BITS, "WEIGHTS": 128, "BIAS": 18 * 16, "THRESHOLD": 7},
        layout={"ops": ["patch_embed.conv0", "head", "end"], "tensors": {"input": {"group": 0}}})


@pytest.fixture
def image_dir(tmp_path):
    return write_image(sample_image(), tmp_path / "image")


def files(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_round_trip_and_byte_identical_rewrite(image_dir, tmp_path):
    assert load_image(image_dir) == sample_image()
    again = write_image(load_image(image_dir), tmp_path / "again")
    assert files(again) == files(image_dir)
    write_image(sample_image(), image_dir)   # replacing an existing image
    assert files(image_dir) == files(again)


def test_hex_is_readmemh_and_bin_little_endian(image_dir):
    image = sample_image()
    for name, words in image.memories.items():
        bits = image.word_bits[name]
        lines = (image_dir / f"{name}.hex").read_text().splitlines()
        assert [int(line, 16) for line in lines] == words
        assert all(len(line) == -(-bits // 4) and line == line.lower() for line in lines)
        data = (image_dir / f"{name}.bin").read_bytes()
        n = -(-bits // 8)
        assert [int.from_bytes(data[i:i + n], "little") for i in range(0, len(data), n)] == words


def test_external_files_hold_the_tables_where_the_hardware_reads_them(image_dir):
    """Checked against the layout worked out by hand: tables on 4 KiB boundaries in the order PROGRAM,
    WEIGHTS, BIAS; a row of b bits in ⌈b/32⌉ little-endian beats, rows a power of two of beats apart."""
    words = [int(line, 16) for line in (image_dir / "EXTERNAL.hex").read_text().splitlines()]
    data = (image_dir / "EXTERNAL.bin").read_bytes()
    assert words == [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]
    image = sample_image()
    program_row = sum(words[k] << (32 * k) for k in range(7))            # 205 bits: 7 beats, 8 apart
    assert program_row == image.memories["PROGRAM"][0]
    assert sum(words[8 + k] << (32 * k) for k in range(7)) == image.memories["PROGRAM"][1]
    weights = 4096 // 4                                                 # 128 bits: 4 beats, 4 apart
    assert words[weights + 8:weights + 12] == [0xFFFFFFFF] * 4
    assert words[weights + 12:weights + 16] == [0, 0, 0, 0x80000000]
    bias = 2 * 4096 // 4                                                # 288 bits: 9 beats, 16 apart
    assert sum(words[bias + 16 + k] << (32 * k) for k in range(9)) == (1 << 288) - 1
    assert words[bias + 32:bias + 34] == [1, 1 << 31] and words[bias + 48] == 1
    assert len(words) == 3 * 4096 // 4 and not any(words[bias + 49:])   # up to the (empty) THRESHOLD


def edit_manifest(root, change):
    manifest = json.loads((root / IMAGE_MANIFEST).read_text())
    change(manifest)
    (root / IMAGE_MANIFEST).write_text(json.dumps(manifest))


def rewrite(root, file, data):
    """Replace ``file`` and fix its checksum, so only the deeper check can catch it."""
    (root / file).write_bytes(data)
    name, kind = file.split(".")
    edit_manifest(root, lambda m: m["memories"][name].__setitem__(f"{kind}_sha256", hashlib.sha256(data).hexdigest()))


def corrupt_wide_word(root):
    data = bytearray((root / "WEIGHTS.bin").read_bytes())
    data[-1] = 0xff
    rewrite(root, "WEIGHTS.bin", bytes(data))
    edit_manifest(root, lambda m: m["memories"]["WEIGHTS"].__setitem__("word_bits", 127))


def corrupt_hex(root):
    lines = (root / "BIAS.hex").read_text().splitlines()
    lines[0] = lines[0][:-1] + "6"
    rewrite(root, "BIAS.hex", ("\n".join(lines) + "\n").encode())


def edit_external(root):
    """A consistent EXTERNAL.bin (checksum updated) whose words are not the tables'."""
    path = root / "EXTERNAL.bin"
    data = bytearray(path.read_bytes())
    data[4096] ^= 1
    path.write_bytes(bytes(data))
    edit_manifest(root, lambda m: m["external"].__setitem__("bin_sha256", hashlib.sha256(bytes(data)).hexdigest()))


CORRUPTIONS = {
    "missing file": (lambda r: (r / "WEIGHTS.hex").unlink(), "WEIGHTS.hex", "memories.WEIGHTS.hex"),
    "checksum": (lambda r: (r / "PROGRAM.bin").write_bytes(b"\0" + (r / "PROGRAM.bin").read_bytes()[1:]),
                 "PROGRAM.bin", "memories.PROGRAM.bin_sha256"),
    "version": (lambda r: edit_manifest(r, lambda m: m.__setitem__("version", IMAGE_VERSION + 1)),
                IMAGE_MANIFEST, "version"),
    "format": (lambda r: edit_manifest(r, lambda m: m.__setitem__("format", "spikeforge-bundle")),
               IMAGE_MANIFEST, "format"),
    "word too wide": (corrupt_wide_word, "WEIGHTS.bin", "memories.WEIGHTS.word_bits"),
    "hex disagrees with bin": (corrupt_hex, "BIAS.hex", "memories.BIAS.hex"),
    "depth": (lambda r: edit_manifest(r, lambda m: m["memories"]["BIAS"].__setitem__("depth", 3)),
              "BIAS.bin", "memories.BIAS.depth"),
    "bad JSON": (lambda r: (r / IMAGE_MANIFEST).write_text("{not json"), IMAGE_MANIFEST, "format"),
    "missing manifest": (lambda r: (r / IMAGE_MANIFEST).unlink(), IMAGE_MANIFEST, "format"),
    "unknown window": (lambda r: edit_manifest(r, lambda m: m["memories"].__setitem__(
        "LOGITS", m["memories"]["BIAS"])), IMAGE_MANIFEST, "memories.LOGITS"),
    "external layout": (lambda r: edit_external(r), "EXTERNAL.bin", "external.bin"),
    "param not an int": (lambda r: edit_manifest(r, lambda m: m["params"].__setitem__("n_pe", "16")),
                         IMAGE_MANIFEST, "params.n_pe"),
    "path outside the image": (lambda r: edit_manifest(r, lambda m: m["memories"]["BIAS"].__setitem__(
        "bin", "../BIAS.bin")), IMAGE_MANIFEST, "memories.BIAS.bin"),
    "external memory too small": (lambda r: edit_manifest(r, lambda m: m["params"].__setitem__(
        "memory_address_bits", 13)), IMAGE_MANIFEST, "params.memory_address_bits"),
    "external address bits out of range": (lambda r: edit_manifest(r, lambda m: m["params"].__setitem__(
        "memory_address_bits", 33)), IMAGE_MANIFEST, "params.memory_address_bits"),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_corruption_names_file_and_field(image_dir, corruption):
    corrupt, file, field = CORRUPTIONS[corruption]
    corrupt(image_dir)
    with pytest.raises(ImageError) as info:
        load_image(image_dir)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(image_dir / file) + ": "), message
    assert f"field '{field}' expected " in message and ", found " in message, message


@pytest.mark.parametrize("change, field", [
    (lambda im: im.memories["WEIGHTS"].append(1 << 128), "memories.WEIGHTS.word_bits"),
    (lambda im: im.memories["WEIGHTS"].append(-1), "memories.WEIGHTS.word_bits"),
    (lambda im: im.memories.__setitem__("CSR", [0]), "word_bits"),
    (lambda im: im.params.__setitem__("n_pe", 16.0), "params.n_pe"),
    (lambda im: im.params.__setitem__("memory_address_bits", 13), "params.memory_address_bits"),
])
def test_write_refuses_bad_images_and_leaves_nothing(tmp_path, change, field):
    image = sample_image()
    change(image)
    with pytest.raises(ImageError, match=f"field '{field}' expected"):
        write_image(image, tmp_path / "image")
    assert list(tmp_path.iterdir()) == []


def test_an_image_larger_than_the_external_address_space_is_refused_naming_the_limit(tmp_path):
    """The sample's tables end at byte 12 288 (three 4 KiB regions, the last one empty): 14 address bits hold
    them, 13 do not."""
    image = sample_image()
    image.params["memory_address_bits"] = 14
    assert load_image(write_image(image, tmp_path / "fits")).params["memory_address_bits"] == 14
    image.params["memory_address_bits"] = 13
    with pytest.raises(ImageError) as info:
        write_image(image, tmp_path / "too-big")
    assert str(info.value) == ("ProgramImage: field 'params.memory_address_bits' expected room for the 12288-byte "
                               "external image (2**13 bytes is too small: at least 14 bits), found 13")
    assert not (tmp_path / "too-big").exists()
