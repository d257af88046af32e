"""Every Python snippet of README.md and docs/*.md runs as written, on the trained digits network: the
snippets of one document run in order, in one interpreter, in a working directory holding the
checkpoint where the README says it is (``runs/digits-tiny.pt``)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNIPPET = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def snippets(path):
    return SNIPPET.findall(path.read_text())


def test_the_readme_has_python_snippets():
    assert len(snippets(ROOT / "README.md")) >= 2


@pytest.mark.parametrize("document", [d for d in DOCUMENTS if snippets(d)], ids=lambda d: d.name)
def test_python_snippets_run_as_written(document, trained_digits, tmp_path):
    checkpoint, _ = trained_digits
    (tmp_path / "runs").mkdir()
    shutil.copy(checkpoint, tmp_path / "runs" / "digits-tiny.pt")
    script = "\n\n".join(snippets(document))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          timeout=900)
    assert proc.returncode == 0, f"{document.name}:\n{proc.stderr[-3000:]}"
