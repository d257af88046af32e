import json
import os

# One thread per torch process: the suite runs on two pytest-xdist workers (and CLI subprocesses),
# and more threads than cores make torch's thread pool spin against itself.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
from filelock import FileLock  # noqa: E402

from spikeforge.tests.helpers import run_cli  # noqa: E402


def _shared(tmp_path_factory, name):
    """A directory shared by every pytest-xdist worker of this run, and a lock on it: the expensive
    session fixtures below are made once per run, not once per worker."""
    root = tmp_path_factory.getbasetemp()
    if root.name.startswith("popen-gw"):        # a worker's own temp dir; its parent is the run's
        root = root.parent
    directory = root / name
    directory.mkdir(exist_ok=True)
    return directory, FileLock(str(directory) + ".lock")


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    """``(checkpoint path, train --json result)`` of ``spikeforge train`` with default settings."""
    directory, lock = _shared(tmp_path_factory, "checkpoints")
    path, result_path = directory / "digits-tiny.pt", directory / "train.json"
    with lock:
        if not result_path.is_file():
            result = run_cli("train", "--model", "digits-tiny", "--out", path, "--json")
            assert result.code == 0, result.stderr
            result_path.write_text(result.stdout)
    return path, json.loads(result_path.read_text())


@pytest.fixture(scope="session")
def digits_bundle(trained_digits, tmp_path_factory):
    """An 8-bit bundle of the trained digits-tiny checkpoint, exported by ``spikeforge export``."""
    checkpoint, _ = trained_digits
    directory, lock = _shared(tmp_path_factory, "bundles")
    out = directory / "digits-8bit"
    with lock:
        if not out.is_dir():
            result = run_cli("export", "--model", "digits-tiny", "--checkpoint", checkpoint, "--out", out, "--json")
            assert result.code == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def networks(tmp_path_factory):
    """Bundles of the seeded random networks of ``tests/sim/network_cases.py`` exported by ``spikeforge export``
    (activity tuned), ``{name: (bundle, n_pe)}``, each bundle's ``seed`` set."""
    from spikeforge.quant import load_bundle
    from spikeforge.tests.sim.network_cases import NETWORKS

    directory, lock = _shared(tmp_path_factory, "networks")
    bundles = {}
    with lock:
        for seed, (name, preset, overrides, n_pe) in enumerate(NETWORKS):
            if not (directory / name).is_dir():
                sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
                result = run_cli("export", "--model", preset, *sets, "--seed", seed, "--no-qonnx", "--out",
                                 directory / name)
                assert result.code == 0, result.stderr
            bundles[name] = (load_bundle(directory / name), n_pe)
            bundles[name][0].seed = seed
    return bundles
