"""docs/adding-an-operation.md stays honest: the files it names exist, and a toy operation added on a
copy of the package by touching only the operation module and the registry is validated in bundles,
executed by the golden model and refused by the compiler with a message naming it."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "adding-an-operation.md"
PACKAGES = ("interface", "ops", "model", "quant", "firmware", "hw", "sim", "flow", "cli")

TOY = '''"""``toggle``: the complement of a spike tensor (a toy operation)."""

from typing import Literal

from pydantic import Field

from .base import LayerFields, Name, Tensor

KIND = "toggle"
OPCODE = None


class Fields(LayerFields):
    kind: Literal["toggle"]
    input: Name = Field(description="spike tensor read")
    output: Name = Field(description="spike tensor written: 1 - input")


def check(layer, net):
    source = net.read(layer, "input", ("spikes",))
    net.write(layer, "output", Tensor("spikes", source.shape, producer=layer))


def golden(layer, run):
    run.values[layer.output] = run.spikes[layer.name] = 1 - run.values[layer.input]


def emit(layer, program):
    raise program.error(layer, "toggle has no hardware")


def cycles(fields, spikes):
    return 0
'''

SCRIPT = '''
import json, sys
import numpy as np
from spikeforge.ops import OPERATIONS
from spikeforge.ops.bundle import load_bundle, write_bundle
from spikeforge.quant import GoldenModel
from spikeforge.firmware.compiler import CompileError, compile_bundle
assert OPERATIONS["toggle"].__file__.startswith(sys.argv[3])
bundle = load_bundle(sys.argv[1])
manifest = {k: v for k, v in bundle.manifest.items() if k not in ("tables", "files", "digest")}
first_lif = next(i for i, layer in enumerate(manifest["layers"]) if layer["kind"] == "lif")
name = manifest["layers"][first_lif]["name"]
manifest["layers"].insert(first_lif + 1, {"kind": "toggle", "name": "toy", "input": name, "output": "toy"})
write_bundle(sys.argv[2], manifest, bundle.tables)
toy = load_bundle(sys.argv[2])
pixels = np.zeros((1, *toy.manifest["input"]["shape"]), dtype=np.int64)
trace = GoldenModel(toy).run(pixels)
assert (trace.spikes["toy"] == 1 - trace.spikes[name]).all()
try:
    compile_bundle(toy)
except CompileError as e:
    print(e)
'''


def test_the_guide_names_files_that_exist():
    paths = set(re.findall(r"`((?:[a-z_]+/)+[a-z_<>]+\.(?:py|md))`", GUIDE.read_text()))
    assert len(paths) >= 10, paths
    for path in paths:
        target = ROOT / path
        assert (target.parent.is_dir() if "<" in path else target.is_file()), path


def test_a_toy_operation_needs_only_its_module_and_the_registry(digits_bundle, tmp_path):
    guide = GUIDE.read_text()
    assert "`ops/<kind>.py`" in guide and "`ops/__init__.py`" in guide
    package = tmp_path / "pkg" / "spikeforge"
    package.mkdir(parents=True)
    for name in PACKAGES:
        if name != "ops":
            (package / name).symlink_to(ROOT / name)
    shutil.copytree(ROOT / "ops", package / "ops", ignore=shutil.ignore_patterns("__pycache__"))
    # the two files the guide names for a new operation
    (package / "ops" / "toggle.py").write_text(TOY)
    registry = package / "ops" / "__init__.py"
    text = registry.read_text()
    assert text.count("(conv, pool, lif, attention, head)") == 1
    registry.write_text(text.replace("from . import attention, conv, head, lif, pool",
                                     "from . import attention, conv, head, lif, pool, toggle")
                        .replace("(conv, pool, lif, attention, head)", "(conv, pool, lif, attention, head, toggle)"))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(digits_bundle), str(tmp_path / "toy"),
                           str(package / "ops")], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(tmp_path / "pkg"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "layer 'toy': toggle has no hardware" in proc.stdout
