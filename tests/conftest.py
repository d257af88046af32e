import pytest

from spikeforge.tests.helpers import run_cli


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    """``(checkpoint path, train --json result)`` of ``spikeforge train`` with default settings."""
    path = tmp_path_factory.mktemp("checkpoints") / "digits-tiny.pt"
    result = run_cli("train", "--model", "digits-tiny", "--out", path, "--json")
    assert result.code == 0, result.stderr
    return path, result.json
