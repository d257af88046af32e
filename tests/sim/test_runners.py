"""The same testbench gives the same observations in Amaranth and in Verilator."""

import pytest

from spikeforge.sim.amaranth_runner import run_amaranth
from spikeforge.sim.transport import PortSpec, port_specs
from spikeforge.sim.verilator_runner import SimulationError, build_dir, run_verilator
from spikeforge.tests.sim.toy import Accumulate, accumulate_model, accumulate_testbench

TOY = "spikeforge.tests.sim.toy"


@pytest.fixture(scope="module")
def build_root(tmp_path_factory):
    """One build root per module, so the Verilator tests share a build."""
    return tmp_path_factory.mktemp("verilator")


def test_port_specs():
    assert port_specs(Accumulate(4)) == {
        "sample__value": PortSpec(4, True, 0),
        "sample__valid": PortSpec(1, True, 0),
        "enable": PortSpec(1, True, 1),
        "clear": PortSpec(1, True, 0),
        "total": PortSpec(12, False, 0),
        "preview": PortSpec(12, False, 0),
    }


def test_accumulate_validates_width():
    with pytest.raises(ValueError, match=r"^width must be a positive integer, not 0$"):
        Accumulate(0)


@pytest.mark.parametrize("width", [1, 4])
def test_amaranth_matches_model(width):
    assert run_amaranth(Accumulate(width), accumulate_testbench) == accumulate_model(width)


def test_amaranth_writes_vcd(tmp_path):
    run_amaranth(Accumulate(4), accumulate_testbench, vcd=tmp_path / "toy.vcd")
    assert "total" in (tmp_path / "toy.vcd").read_text()


@pytest.mark.parametrize(("action", "message"), [
    (lambda ports: ports.write("total", 1), r"^port 'total' is an output and cannot be written$"),
    (lambda ports: ports.write("clear", 2),
     r"^value for 1-bit port 'clear' must be an integer in \[-1, 1\], not 2$"),
    (lambda ports: ports.tick(0), r"^tick count must be a positive integer, not 0$"),
])
def test_ports_reject_misuse(action, message):
    async def testbench(ports):
        await action(ports)

    with pytest.raises(ValueError, match=message):
        run_amaranth(Accumulate(4), testbench)


def test_ports_reject_unknown_name():
    async def testbench(ports):
        ports.read("nope")

    with pytest.raises(KeyError, match=r"no port 'nope'; ports are sample__value, sample__valid"):
        run_amaranth(Accumulate(4), testbench)


def test_ports_require_settle_after_write():
    async def testbench(ports):
        await ports.write("sample__value", 3)
        ports.read("total")

    with pytest.raises(RuntimeError, match=r"^read of 'total' after writing 'sample__value': "):
        run_amaranth(Accumulate(4), testbench)


def test_verilator_matches_amaranth(build_root):
    expected = accumulate_model(4)
    assert run_amaranth(Accumulate(4), accumulate_testbench) == expected
    observed = run_verilator(Accumulate, {"width": 4}, TOY, "accumulate_testbench", build_root)
    assert observed == expected


def test_verilator_reports_testbench_failure(build_root):
    with pytest.raises(SimulationError, match=r"(?s)failing_testbench failed in Verilator:.*"
                                              r"AssertionError: toy failure: total is 0"):
        run_verilator(Accumulate, {"width": 4}, TOY, "failing_testbench", build_root)


def test_build_dir_is_per_parameter_set(tmp_path):
    four = build_dir(Accumulate, {"width": 4}, tmp_path)
    assert four == build_dir(Accumulate, {"width": 4}, tmp_path)
    assert four != build_dir(Accumulate, {"width": 5}, tmp_path)
    assert four.parent == tmp_path and four.name.startswith("Accumulate-")


def test_first_difference_names_the_axes_of_what_differs():
    import numpy as np

    from spikeforge.quant.golden import Trace
    from spikeforge.sim.network import first_difference

    spikes = np.zeros((1, 2, 3, 1, 1), dtype=np.int64)
    logits = np.array([[5, 7, 1]])
    trace = Trace(spikes={"lif": spikes}, stream={}, logits=logits, overflow=["conv", "lif"],
                  overflow_per_image=[["conv", "lif"]])
    results = {"spikes/lif": spikes.copy(), "logits": logits.copy(), "overflow": np.array(["conv, lif"])}
    assert first_difference(results, trace) is None
    results["overflow"][0] = "conv"          # every layer, in program order
    assert first_difference(results, trace) == "overflow: image 0: hardware conv, golden conv, lif"
    results["overflow"][0] = ""
    assert first_difference(results, trace) == "overflow: image 0: hardware none, golden conv, lif"
    results["logits"][0, 2] = 2
    assert first_difference(results, trace) == "logits: image 0, class 2: hardware 2, golden 1"
    results["spikes/lif"][0, 1, 2] = 1
    assert first_difference(results, trace) == "LIF lif: image 0, timestep 1, channel 2, y 0, x 0: hardware 1, golden 0"
