"""cocotb test module that runs one :mod:`spikeforge.sim.transport` testbench.

Loaded inside the Verilator simulation by
:func:`spikeforge.sim.verilator_runner.run_verilator`, which passes what to run through
environment variables:

``SPIKEFORGE_TB_MODULE``, ``SPIKEFORGE_TB_NAME``
    Module and attribute name of the ``async def testbench(ports)``.
``SPIKEFORGE_TB_PORTS``
    JSON object mapping port names to :class:`~spikeforge.sim.transport.PortSpec` fields.
``SPIKEFORGE_TB_RESULT``
    Path of the JSON file receiving ``{"value": ...}`` or ``{"error": traceback}``.
"""

import importlib
import json
import os
import traceback

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, Timer, with_timeout
from cocotb.types import Logic

from .transport import Ports

__all__ = ["CLOCK_PERIOD_PS", "RESET_CYCLES", "run_testbench"]

#: Clock period in simulator steps; the runner builds with a 1 ps precision, so this
#: matches :data:`spikeforge.sim.amaranth_runner.CLOCK_PERIOD`.
CLOCK_PERIOD_PS = 10_000

# A quarter period: settles start half a period before the rising edge.
_MAX_SETTLES = CLOCK_PERIOD_PS // 4

#: Rising edges with ``rst`` asserted before the testbench starts.
RESET_CYCLES = 2


class _CocotbPorts(Ports):
    """:class:`~spikeforge.sim.transport.Ports` on a cocotb handle of the Verilog top.

    Between calls the simulation rests after a falling clock edge: registers hold the values
    of the last rising edge, and writes made now are sampled at the next one.
    """

    def __init__(self, dut, specs):
        super().__init__(specs)
        #: The cocotb handle of the top, for third-party bus models (cocotbext-wishbone) in Verilator-only tests.
        self.dut = dut
        self._clk = dut.clk
        self._handles = {name: getattr(dut, name) for name in specs}
        self._settle_steps = 0

    async def _write(self, name, value):
        self._handles[name].value = value

    def _read(self, name):
        value = self._handles[name].value
        # one-bit ports read as a Logic, wider ones as a LogicArray
        return int(value) if isinstance(value, Logic) else value.to_unsigned()

    def _peek(self, path, index):
        handle = self.dut
        for name in path:
            handle = getattr(handle, name)
        return handle[index].value.to_unsigned()

    async def _tick(self, n):
        await ClockCycles(self._clk, n)
        # The falling edge is half a period after the rising one, long after it settled.
        await FallingEdge(self._clk)
        self._settle_steps = 0

    async def _wait(self, name, value, limit):
        handle = self._handles[name]
        if self._read(name) != value:
            # the simulator runs on its own until the edge: no Python work per cycle
            edge = RisingEdge(handle) if value else FallingEdge(handle)
            try:
                await with_timeout(edge, limit * CLOCK_PERIOD_PS, "step")
            except cocotb.triggers.SimTimeoutError:
                raise TimeoutError(f"{name} did not become {value} within {limit} cycles") from None
        await FallingEdge(self._clk)
        self._settle_steps = 0

    async def _settle(self):
        # Each settle moves one step forward; stop well before reaching the rising edge.
        self._settle_steps += 1
        if self._settle_steps > _MAX_SETTLES:
            raise RuntimeError(f"more than {_MAX_SETTLES} settle() calls without a tick()")
        await Timer(1, unit="step")


def _write_result(path, result):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, path)


@cocotb.test()
async def run_testbench(dut):
    """Reset the design, then run the testbench named by the environment."""
    specs = json.loads(os.environ["SPIKEFORGE_TB_PORTS"])
    result_path = os.environ["SPIKEFORGE_TB_RESULT"]
    try:
        module = importlib.import_module(os.environ["SPIKEFORGE_TB_MODULE"])
        testbench = getattr(module, os.environ["SPIKEFORGE_TB_NAME"])
        # Verilator starts every input at 0; Amaranth starts them at their init value.
        for name, (_, is_input, init) in specs.items():
            if is_input:
                getattr(dut, name).value = init
        dut.rst.value = 1
        Clock(dut.clk, CLOCK_PERIOD_PS, unit="step").start(start_high=False)
        await ClockCycles(dut.clk, RESET_CYCLES)
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        # Let the deasserted reset propagate so the testbench starts from a settled state.
        await Timer(1, unit="step")
        value = await testbench(_CocotbPorts(dut, specs))
        _write_result(result_path, {"value": value})
    except Exception:
        _write_result(result_path, {"error": traceback.format_exc()})
        raise
