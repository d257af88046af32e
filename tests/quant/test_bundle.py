"""Bundle validation: every corruption is refused with one line naming the file and field."""

import json
import shutil

import numpy as np
import pytest
import torch

from spikeforge.model import make_config
from spikeforge.quant import BundleError, load_bundle
from spikeforge.ops import bundle as bundle_module
from spikeforge.interface.bits import readmemh_lines, signed_bits
from spikeforge.ops.bundle import write_bundle
from spikeforge.quant.calibrate import random_network
from spikeforge.quant.export import export_bundle, quantize
from spikeforge.tests.helpers import run_cli


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    config = make_config("digits-tiny", dim=32, heads=2)
    torch.manual_seed(0)
    model = random_network(config, 0, torch.randint(0, 17, (16, 1, 8, 8)).float() / 16)
    out = tmp_path_factory.mktemp("bundle") / "b"
    export_bundle(out, quantize(model, 8), {"arch": "spikingformer", "preset": "digits-tiny"}, {"method": "ptq"})
    return out


@pytest.fixture
def copy(bundle_dir, tmp_path):
    target = tmp_path / "b"
    shutil.copytree(bundle_dir, target)
    return target


def _manifest(path):
    return json.loads((path / "manifest.json").read_text())


def _write_manifest(path, manifest):
    (path / "manifest.json").write_text(json.dumps(manifest))


def _first_table(path, kind="conv", field="weight"):
    manifest = _manifest(path)
    layer = next(l for l in manifest["layers"] if l["kind"] == kind)
    return layer[field], manifest["tables"][layer[field]]


def test_valid_bundle_loads(bundle_dir):
    bundle = load_bundle(bundle_dir)
    assert bundle.manifest["format_version"] == 2 and bundle.layers[0]["kind"] == "conv"
    assert all(t.dtype == np.int64 for t in bundle.tables.values())


def _corrupt_missing_file(path):
    name, entry = _first_table(path)
    (path / entry["file"]).unlink()
    return entry["file"], f"field 'tables.{name}.file'"


def _corrupt_checksum(path):
    name, entry = _first_table(path)
    data = bytearray((path / entry["file"]).read_bytes())
    data[0] ^= 1
    (path / entry["file"]).write_bytes(bytes(data))
    return entry["file"], f"field 'tables.{name}.sha256'"


def _corrupt_shape(path):
    manifest = _manifest(path)
    name, _ = _first_table(path)
    manifest["tables"][name]["shape"][0] += 1
    _write_manifest(path, manifest)
    return "manifest.json", f"tables.{name}.shape"


def _corrupt_range(path):
    manifest = _manifest(path)
    name, entry = _first_table(path)
    manifest["tables"][name]["bits"] = 2
    _write_manifest(path, manifest)
    return entry["file"], f"field 'tables.{name}.bits' = 2"


def _corrupt_version(path):
    manifest = _manifest(path)
    manifest["format_version"] = 7
    _write_manifest(path, manifest)
    return "manifest.json", "field 'format_version': 'spikeforge-bundle' version 7, expected"


def _corrupt_json(path):
    text = (path / "manifest.json").read_text()
    (path / "manifest.json").write_text(text[: len(text) // 2])
    return "manifest.json", "invalid JSON"


def _corrupt_layer_table_shape(path):
    manifest = _manifest(path)
    index = next(i for i, l in enumerate(manifest["layers"]) if l["kind"] == "conv")
    manifest["layers"][index]["out_channels"] += 1
    _write_manifest(path, manifest)
    return "manifest.json", f"field 'layers[{index}].weight'"


def _corrupt_missing_manifest(path):
    (path / "manifest.json").unlink()
    return "manifest.json", "missing"


CORRUPTIONS = [_corrupt_missing_file, _corrupt_checksum, _corrupt_shape, _corrupt_range, _corrupt_version,
               _corrupt_json, _corrupt_layer_table_shape, _corrupt_missing_manifest]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__[9:])
def test_bad_bundle_is_refused_with_file_and_field(copy, corrupt):
    file, field = corrupt(copy)
    with pytest.raises(BundleError) as error:
        load_bundle(copy)
    assert file in str(error.value) and field in str(error.value)
    result = run_cli("golden", copy, "--input", "digits:2")
    assert result.code == 2
    assert file in result.stderr and field in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_interrupted_export_leaves_no_half_written_bundle(bundle_dir, tmp_path, monkeypatch):
    bundle = load_bundle(bundle_dir)
    out = tmp_path / "new"
    original = bundle_module.readmemh_lines
    calls = []

    def fail_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(bundle_module, "readmemh_lines", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        write_bundle(out, bundle.manifest, bundle.tables)
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_the_previous_bundle(copy, monkeypatch):
    before = {p.name: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    bundle = load_bundle(copy)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dumps", fail)
    with pytest.raises(OSError):
        write_bundle(copy, bundle.manifest, bundle.tables)
    assert {p.name: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in copy.parent.iterdir()) == ["b"]


def test_readmemh_is_twos_complement_of_the_table_width():
    assert readmemh_lines(np.array([-3, 0, 5, -128, 127]), 8) == ["fd", "00", "05", "80", "7f"]
    assert readmemh_lines(np.array([-1, 300]), 10) == ["3ff", "12c"]
    assert signed_bits(np.array([-128, 127])) == 8 and signed_bits(np.array([128])) == 9


def test_hex_files_hold_the_binary_tables(bundle_dir):
    bundle = load_bundle(bundle_dir)
    for name, entry in bundle.manifest["tables"].items():
        words = (bundle_dir / entry["hex"]).read_text().split()
        bits = entry["bits"]
        values = [int(w, 16) - (1 << bits) * (int(w, 16) >> (bits - 1)) for w in words]
        assert values == bundle.tables[name].reshape(-1).tolist(), name


def test_bundle_format_doc_tables_are_current():
    from pathlib import Path

    from spikeforge.ops.bundle import layer_fields_markdown

    text = (Path(__file__).resolve().parents[2] / "docs" / "bundle-format.md").read_text()
    begin, end = "<!-- layer-fields:begin -->", "<!-- layer-fields:end -->"
    assert text[text.index(begin) + len(begin):text.index(end)].strip() == layer_fields_markdown().strip()
