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
                  "BIAS": [5, (1 << 18 * 16) - 1], "THRESHOLD": [], "SPIKES": [(1 << 63) + 1, 1]},
        word_bits={"PROGRAM": DESCRIPTOR_BITS, "WEIGHTS": 128, "BIAS": 18 * 16, "THRESHOLD": 7,
                   "SPIKES": 64},
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
    "param not an int": (lambda r: edit_manifest(r, lambda m: m["params"].__setitem__("n_pe", "16")),
                         IMAGE_MANIFEST, "params.n_pe"),
    "path outside the image": (lambda r: edit_manifest(r, lambda m: m["memories"]["BIAS"].__setitem__(
        "bin", "../BIAS.bin")), IMAGE_MANIFEST, "memories.BIAS.bin"),
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
])
def test_write_refuses_bad_images_and_leaves_nothing(tmp_path, change, field):
    image = sample_image()
    change(image)
    with pytest.raises(ImageError, match=f"field '{field}' expected"):
        write_image(image, tmp_path / "image")
    assert list(tmp_path.iterdir()) == []
