"""Run a :mod:`spikeforge.sim.transport` testbench in the Amaranth simulator."""

import os

from amaranth.sim import Simulator

from .transport import Ports, flat_ports, port_specs

__all__ = ["CLOCK_PERIOD", "run_amaranth"]

#: Period of the ``sync`` clock in seconds (the Verilator runner uses the same).
CLOCK_PERIOD = 1e-8


class _AmaranthPorts(Ports):
    """:class:`~spikeforge.sim.transport.Ports` on an Amaranth testbench context."""

    def __init__(self, ctx, component):
        super().__init__(port_specs(component))
        self._ctx = ctx
        self._component = component
        self._signals = {name: value for name, (value, _) in flat_ports(component).items()}

    async def _write(self, name, value):
        # ctx.set wraps an unsigned value into a signed signal's range, as Verilog would.
        self._ctx.set(self._signals[name], value)

    def _read(self, name):
        return self._ctx.get(self._signals[name].as_unsigned())

    def _peek(self, path, index):
        # the path's attributes lead from the component to the memory's MemoryData
        target = self._component
        for name in path:
            target = getattr(target, name)
        return self._ctx.get(target[index])

    async def _tick(self, n):
        # A testbench resumes after the edge, once registers and comb logic have updated.
        await self._ctx.tick().repeat(n)

    async def _wait(self, name, value, limit):
        signal = self._signals[name]
        for _ in range(limit):
            if self._ctx.get(signal) == value:
                return
            await self._ctx.tick()
        if self._ctx.get(signal) != value:
            raise TimeoutError(f"{name} did not become {value} within {limit} cycles")

    async def _settle(self):
        """Nothing to do: ``ctx.set`` propagates through comb logic before returning."""


def run_amaranth(component, testbench, vcd=None):
    """Simulate ``component`` in Amaranth, driven by ``testbench``.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The design under test; its logic must be in the ``sync`` domain.
    testbench : async callable
        ``async def testbench(ports)`` taking a :class:`~spikeforge.sim.transport.Ports`.
    vcd : path-like, optional
        Write a VCD waveform of the whole run here.

    Returns
    -------
    object
        What ``testbench`` returned.
    """
    sim = Simulator(component)
    sim.add_clock(CLOCK_PERIOD)
    result = []

    async def adapter(ctx):
        result.append(await testbench(_AmaranthPorts(ctx, component)))

    sim.add_testbench(adapter)
    if vcd is None:
        sim.run()
    else:
        # Amaranth treats only str as a file name.
        with sim.write_vcd(os.fspath(vcd)):
            sim.run()
    return result[0]
