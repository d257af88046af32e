import pytest

from spikeforge.tests.helpers import run_cli


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    """``(checkpoint path, train --json result)`` of ``spikeforge train`` with default settings."""
    path = tmp_path_factory.mktemp("checkpoints") / "digits-tiny.pt"
    result = run_cli("train", "--model", "digits-tiny", "--out", path, "--json")
    assert result.code == 0, result.stderr
    return path, result.json


@pytest.fixture(scope="session")
def digits_bundle(trained_digits, tmp_path_factory):
    """An 8-bit bundle of the trained digits-tiny checkpoint, exported by ``spikeforge export``."""
    checkpoint, _ = trained_digits
    out = tmp_path_factory.mktemp("bundles") / "digits-8bit"
    result = run_cli("export", "--model", "digits-tiny", "--checkpoint", checkpoint, "--out", out, "--json")
    assert result.code == 0, result.stderr
    return out
