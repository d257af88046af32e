"""The architecture is checked by tools, not by convention: import-linter's contracts (pyproject.toml)
hold, and the hardware, firmware, operations and contract packages import without torch."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Any import of torch (or brevitas) fails, as in an environment without them.
_BLOCK_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "brevitas"):
            raise ImportError(f"{name} is blocked: this import must not need it")
sys.meta_path.insert(0, Block())
"""


def test_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout and "4 kept" in proc.stdout, proc.stdout


def _run_without_torch(code):
    return subprocess.run([sys.executable, "-c", _BLOCK_TORCH + code], capture_output=True, text=True)


def test_hardware_firmware_and_operations_import_without_torch(tmp_path):
    code = """
import spikeforge.interface.regmap, spikeforge.interface.layout, spikeforge.interface.files
import spikeforge.ops.bundle, spikeforge.firmware.compiler, spikeforge.firmware.driver, spikeforge.firmware.image
import spikeforge.hw.accelerator, spikeforge.hw.netlist
assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "brevitas")]
print("ok")
"""
    proc = _run_without_torch(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_the_blocker_really_blocks_torch():
    proc = _run_without_torch("import spikeforge.quant.golden")
    assert proc.returncode != 0 and "torch is blocked" in proc.stderr


def test_a_bundle_compiles_to_an_image_without_torch(digits_bundle, tmp_path):
    code = f"""
from spikeforge.firmware.compiler import compile_bundle
from spikeforge.firmware.image import load_image, write_image
image = compile_bundle({str(digits_bundle)!r})
assert load_image(write_image(image, {str(tmp_path / 'image')!r})).memories == image.memories
assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "brevitas")]
print(len(image.memories["PROGRAM"]))
"""
    proc = _run_without_torch(code)
    assert proc.returncode == 0 and int(proc.stdout) > 10, proc.stderr
