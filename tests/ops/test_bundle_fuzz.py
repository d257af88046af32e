"""Fuzzing of the bundle format: mutated bundles (``bundle_mutations``) are refused by ``load_bundle``
unless their digest is recomputed; replayed with a recomputed digest they are refused by the rules or
the compiler, or accepted — and then compiled losslessly and run by the golden model. Never a
traceback. ``bench/bundle_fuzz.py`` runs ten thousand of them."""

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikeforge.firmware.compiler import compile_bundle
from spikeforge.interface.layout import pack_lanes, unpack_lanes
from spikeforge.model import make_config
from spikeforge.ops import bundle as bundle_module
from spikeforge.ops.bundle import MANIFEST, load_bundle
from spikeforge.quant.calibrate import random_network
from spikeforge.quant.export import export_bundle, quantize
from spikeforge.tests.ops.bundle_mutations import (MUTATORS, BaseBundle, Evaluator, Mutation, accelerated,
                                                    check_compiled, draw_mutation, table_files)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small digits bundle (dim 32, 2 heads) of a random network."""
    config = make_config("digits-tiny", dim=32, heads=2)
    torch.manual_seed(0)
    model = random_network(config, 0, torch.randint(0, 17, (8, 1, 8, 8)).float() / 16, steps=3)
    out = tmp_path_factory.mktemp("fuzz") / "bundle"
    export_bundle(out, quantize(model, 8), {"arch": "spikingformer", "preset": "digits-tiny"}, {"method": "ptq"})
    return BaseBundle.read(out)


@pytest.fixture(scope="module")
def evaluator(base, tmp_path_factory):
    return Evaluator(base, tmp_path_factory.mktemp("fuzz") / "scratch")


def _assert_passes(evaluator, mutation):
    result = evaluator.evaluate(mutation)
    assert not result.failed, (f"[{mutation.category}] {mutation.description}: as is {result.as_is}, replayed "
                               f"{result.replay}: {result.detail}")
    assert result.as_is == "rejected"
    return result


def test_the_unmutated_bundle_compiles_losslessly_and_runs(base, evaluator):
    bundle = load_bundle(base.root)
    assert check_compiled(bundle, compile_bundle(bundle)) == []
    assert evaluator.GoldenModel(bundle).run(evaluator.pixels(bundle.config)).overflow == []


def test_check_compiled_sees_masked_and_changed_values(base):
    bundle = load_bundle(base.root)
    image = compile_bundle(bundle)
    # weights packed 4 bits wide: every value beyond -8..7 is masked and unpacks to something else
    n_pe, bits = image.params["n_pe"], image.params["weight_bits"]
    lanes = [unpack_lanes(word, n_pe, bits) for word in image.memories["WEIGHTS"]]
    narrow = dict(image.params, weight_bits=4)
    masked = type(image)(params=narrow, memories={**image.memories, "WEIGHTS": [pack_lanes(row, 4) for row in lanes]},
                         word_bits=image.word_bits, layout=image.layout)
    assert any("unpacks to" in problem for problem in check_compiled(bundle, masked))
    # a table value the compiled rows do not hold
    name = bundle.program[-1].bias
    bundle.tables[name] = bundle.tables[name] + 1
    assert any("head" in problem for problem in check_compiled(bundle, image))


def test_accelerated_loading_is_exact(base):
    original = bundle_module._load_table
    plain = load_bundle(base.root)
    with accelerated():
        loaded, again = load_bundle(base.root), load_bundle(base.root)
    assert bundle_module._load_table is original
    assert loaded.program == plain.program and loaded.manifest == plain.manifest
    assert all(np.array_equal(loaded.tables[name], plain.tables[name]) and loaded.tables[name] is not again.tables[name]
               for name in plain.tables)


@pytest.mark.parametrize("mutator", sorted(MUTATORS))
def test_every_kind_of_mutation(evaluator, base, mutator):
    rng = random.Random(mutator)
    for _ in range(3):
        _assert_passes(evaluator, draw_mutation(base, rng, [mutator]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False))
def test_random_mutations(evaluator, base, rng):
    _assert_passes(evaluator, draw_mutation(base, rng))


def _manifest_with(base, edit):
    manifest = json.loads(base.files[MANIFEST])
    edit(manifest)
    return manifest


def test_mutants_through_the_cli(base, tmp_path):
    """``spikeforge golden`` (and ``verilog`` for a bundle only the compiler refuses) exit with 2 and
    one line on stderr, no traceback."""
    table = base.tables[base.manifest["layers"][0]["weight"]]
    flipped = bytearray(base.files[table["file"]])
    flipped[3] ^= 0x10

    def narrow(manifest):
        manifest["layers"][0]["acc_bits"] = 2

    def typed_wrong(manifest):
        manifest["layers"][0]["kernel"] = "3"

    def many_classes(manifest):
        manifest["model"]["config"]["num_classes"] = 40

    head = base.manifest["layers"][-1]
    wide = {}
    for key in ("weight", "bias"):
        values = base.table_values(head[key])
        values = np.resize(values, (40, *values.shape[1:]))
        data, hex_text, fields = table_files(values)
        wide[key] = (data, hex_text, fields)

    def resized(manifest):
        many_classes(manifest)
        for key, (_, _, fields) in wide.items():
            manifest["tables"][head[key]].update(fields)

    cases = [
        ("golden", Mutation("byte-flip", "first weight table", files={table["file"]: bytes(flipped)}), False),
        ("golden", Mutation("truncate", "manifest", files={MANIFEST: base.files[MANIFEST][:100]}), False),
        ("golden", Mutation("field", "kernel as a string", manifest=_manifest_with(base, typed_wrong)), False),
        ("golden", Mutation("field", "acc_bits 2", manifest=_manifest_with(base, narrow)), True),
        ("verilog", Mutation("consistent", "40 classes", manifest=_manifest_with(base, resized),
                             files={base.tables[head[k]][f]: wide[k][i] for k in wide
                                    for i, f in ((0, "file"), (1, "hex"))}), True),
    ]
    procs = []
    for i, (command, mutation, replay) in enumerate(cases):
        root = tmp_path / f"m{i}"
        root.mkdir()
        for relative, content in base.files.items():
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(content)
        for relative, content in (mutation.replayed(base) if replay else mutation.as_is(base)).items():
            (root / relative).write_bytes(content)
        extra = ["--input", "digits:2"] if command == "golden" else ["--out", str(tmp_path / f"v{i}")]
        procs.append(subprocess.Popen([sys.executable, "-m", "spikeforge.cli.main", command, str(root), *extra],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for (command, mutation, _), proc in zip(cases, procs):
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 2, (mutation.description, stderr)
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, (mutation.description, stderr)
        assert stderr.startswith(f"spikeforge {command}: error: "), stderr
