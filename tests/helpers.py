"""Helpers shared by the whole test suite."""

import json
import subprocess
import sys
from dataclasses import dataclass

__all__ = ["CliResult", "run_cli"]


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self):
        return json.loads(self.stdout)


def run_cli(*args, cwd=None, timeout=900):
    """Run ``spikeforge ARGS...`` in a fresh interpreter, as a user's shell would."""
    proc = subprocess.run([sys.executable, "-m", "spikeforge.cli.main", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
