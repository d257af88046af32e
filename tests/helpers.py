"""Helpers shared by the whole test suite."""

import json
import subprocess
import sys
from dataclasses import dataclass

__all__ = ["CliResult", "run_cli", "DIGITS"]

#: Build parameters of the digits accelerator sized to its bundle (``spikeforge synth runs/digits-tiny-8bit
#: --set hardware=bundle``): 16 lanes, 15-bit accumulators, 30-bit head sums and logits, the default external
#: memory (25 address bits).
DIGITS = dict(n_pe=16, weight_bits=8, acc_bits=15, membrane_bits=20, logit_bits=30, max_T=4, max_cin=256, max_tiles=4,
              max_h=8, max_w=8, frac_bits=4, decay_mult=1, decay_shift=1, spike_groups=32, stream_tiles=4,
              weight_rows=6961, bias_rows=54, threshold_rows=48, program_depth=16, scratch_rows=64, prefetch_rows=4)


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
