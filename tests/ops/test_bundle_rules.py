"""Each rule of the bundle format catches the edits it exists for — with the digests recomputed, so the
rule itself (not a checksum) must refuse them — with one line naming the file and the field; and export
never loses a previous bundle."""

import copy
import json
import os
import shutil

import pytest

from spikeforge.ops.bundle import MANIFEST, BundleError, load_bundle, manifest_digest
from spikeforge.tests.helpers import run_cli


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rules") / "b"
    result = run_cli("export", "--model", "digits-tiny", "--set", "dim=16", "--set", "heads=2", "--set", "T=2",
                     "--seed", "1", "--no-qonnx", "--out", out)
    assert result.code == 0, result.stderr
    return out


def _layer(manifest, name):
    return next(layer for layer in manifest["layers"] if layer["name"] == name)


def _set(name, field, value):
    def edit(m):
        _layer(m, name)[field] = value
    return edit


def _narrow(name, field):
    """One bit less than export declared: export declares exactly the worst case."""
    def edit(m):
        _layer(m, name)[field] -= 1
    return edit


def _move(i, j):
    def edit(m):
        m["layers"].insert(j, m["layers"].pop(i))
    return edit


# (id, edit of the manifest, field path the message must name)
EDITS = [
    ("frac_bits -1", _set("block.0.attn.q_lif", "frac_bits", -1), "layers[13].frac_bits"),
    ("frac_bits 100", _set("block.0.attn.q_lif", "frac_bits", 100), "layers[13].frac_bits"),
    ("decay_shift 100", _set("block.0.attn.q_lif", "decay_shift", 100), "layers[13].decay_mult"),
    ("decay_mult 0", _set("block.0.attn.q_lif", "decay_mult", 0), "layers[13].decay_mult"),
    ("pool yes", _set("patch_embed.block3_conv", "pool", "yes"), "layers[7].pool"),
    ("kernel text", _set("patch_embed.block1_conv", "kernel", "3"), "layers[2].kernel"),
    ("acc_bits float", _set("patch_embed.block1_conv", "acc_bits", 14.0), "layers[2].acc_bits"),
    ("acc_bits huge", _set("patch_embed.block1_conv", "acc_bits", 10**30), "layers[2].acc_bits"),
    ("acc_bits below the worst case", _narrow("patch_embed.block1_conv", "acc_bits"), "layers[2].acc_bits"),
    ("membrane_bits below the worst case", _narrow("block.0.attn.q_lif", "membrane_bits"), "layers[13].membrane_bits"),
    ("count_bits below the worst case", _narrow("block.0.attn.attention", "count_bits"), "layers[18].count_bits"),
    ("sum_bits below the worst case", _narrow("head", "sum_bits"), "layers[25].sum_bits"),
    ("heads not dividing", _set("block.0.attn.attention", "heads", 3), "layers[18].heads"),
    ("unknown tensor", _set("block.0.attn.q_conv", "input", "nowhere"), "layers[12].input"),
    ("unknown table", _set("block.0.attn.q_conv", "weight", "nowhere"), "layers[12].weight"),
    ("LIF reads a LIF", _set("block.0.attn.q_lif", "input", "block.0.attn.proj_lif"), "layers[13].input"),
    ("config.T without frac_bits", lambda m: m["model"]["config"].update(T=3), "layers[1].frac_bits"),
    ("input.max 0", lambda m: m["input"].update(max=0), "input.max"),
    ("input.max 255", lambda m: m["input"].update(max=255), "input.max"),
    ("input.scale_exp", lambda m: m["input"].update(scale_exp=-8), "input.scale_exp"),
    ("weight_bits 2", lambda m: m["quant"].update(weight_bits=2), "layers[0].weight"),
    ("stream names a LIF", lambda m: m["outputs"]["stream"].update({"block.0": "block.0.mlp.mlp2_lif"}),
     "outputs.stream.block.0"),
    ("stream empty", lambda m: m["outputs"].update(stream={}), "outputs.stream"),
    ("config wrong type", lambda m: m["model"]["config"].update(depth="1"), "model.config.depth"),
    ("outputs wrong type", lambda m: m.update(outputs=[]), "outputs"),
    ("input wrong type", lambda m: m["input"].update(events=0), "input.events"),
    ("duplicated layer", lambda m: m["layers"].insert(3, copy.deepcopy(m["layers"][2])), "layers[3].name"),
    ("dropped layer", lambda m: m["layers"].pop(21), "layers[21].input"),
    ("reordered layers", _move(12, 14), "layers[12].input"),
    ("head not last", _move(25, 0), "layers[0].input"),
    ("unknown field", _set("head", "extra", 1), "layers[25].extra"),
    ("unknown kind", _set("head", "kind", "softmax"), "layers[25]"),
]


def _write(bundle_dir, tmp_path, edit):
    target = tmp_path / "b"
    shutil.copytree(bundle_dir, target)
    manifest = json.loads((target / MANIFEST).read_text())
    edit(manifest)
    manifest["digest"] = manifest_digest(manifest)
    (target / MANIFEST).write_text(json.dumps(manifest))
    return target


@pytest.mark.parametrize("edit, field", [e[1:] for e in EDITS], ids=[e[0] for e in EDITS])
def test_a_rule_refuses_the_edit_naming_the_field(bundle_dir, tmp_path, edit, field):
    target = _write(bundle_dir, tmp_path, edit)
    with pytest.raises(BundleError) as error:
        load_bundle(target)
    message = str(error.value)
    assert MANIFEST in message and f"field '{field}" in message and "\n" not in message, message


def test_an_edit_without_the_digest_is_refused(bundle_dir, tmp_path):
    target = tmp_path / "b"
    shutil.copytree(bundle_dir, target)
    manifest = json.loads((target / MANIFEST).read_text())
    _layer(manifest, "head")["scale_exp"] += 1          # type- and rule-correct, but not what was exported
    (target / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="field 'digest'"):
        load_bundle(target)


def test_the_cli_reports_a_broken_rule_in_one_line(bundle_dir, tmp_path):
    target = _write(bundle_dir, tmp_path, _set("block.0.attn.attention", "heads", 3))
    for command in (("golden", target, "--input", "digits:1"), ("verilog", target, "--out", tmp_path / "rtl")):
        result = run_cli(*command)
        assert result.code == 2 and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "layers[18].heads" in result.stderr


def _files(path):
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_a_failed_export_leaves_the_previous_bundle_loadable_and_unchanged(bundle_dir, tmp_path):
    target = tmp_path / "b"
    shutil.copytree(bundle_dir, target)
    before = _files(target)
    result = run_cli("export", "--model", "digits-tiny", "--set", "dim=16", "--set", "heads=2", "--set", "T=2",
                     "--set", "tau=1000", "--seed", "0", "--no-qonnx", "--out", target)
    assert result.code == 2 and "decay" in result.stderr and len(result.stderr.strip().splitlines()) == 1, \
        result.stderr
    assert _files(target) == before
    load_bundle(target)
    assert [p.name for p in tmp_path.iterdir()] == ["b"]          # no staging debris either


def test_export_refuses_a_regular_file_as_out_and_cleans_up_after_a_killed_run(tmp_path):
    regular = tmp_path / "file"
    regular.write_text("keep me")
    args = ("export", "--model", "digits-tiny", "--set", "dim=16", "--set", "heads=2", "--set", "T=2", "--seed", "1",
            "--no-qonnx", "--out")
    result = run_cli(*args, regular)
    assert result.code == 2 and "not a directory" in result.stderr and regular.read_text() == "keep me"
    out = tmp_path / "b"
    debris = tmp_path / ".b.staging-killed"          # what a SIGKILL during the write leaves behind
    (debris / "tables").mkdir(parents=True)
    os.utime(debris)
    result = run_cli(*args, out)
    assert result.code == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "file"]
    load_bundle(out)
