"""Simulator-independent port access for testbenches.

A testbench is an ``async def testbench(ports)`` that drives a component only through a
:class:`Ports` object, so the same function runs in the Amaranth simulator
(:func:`spikeforge.sim.amaranth_runner.run_amaranth`) and in Verilator through cocotb
(:func:`spikeforge.sim.verilator_runner.run_verilator`).

Ports are named by their flattened Verilog names: the member path of the component's
signature joined with ``__`` (``start``, ``cfg__cin``, ``out__payload``), which is how
``amaranth.back.verilog`` names them. Values are plain unsigned integers, as in Verilog;
the testbench decides how to interpret signed ports.

Timing contract, identical in both simulators:

* ``await ports.write(name, value)`` drives an input port; registers capture it at the next
  rising clock edge.
* ``await ports.tick(n)`` advances ``n`` rising edges; afterwards :meth:`Ports.read` sees the
  values the registers took at the last edge, with combinational logic settled.
* After a write, combinational outputs reflect it only once ``await ports.settle()`` (or a
  tick) has run. Reading any port between a write and the next settle or tick raises
  :class:`RuntimeError`, so a testbench cannot silently depend on one simulator's behaviour.
"""

from abc import ABC, abstractmethod
from typing import NamedTuple

from amaranth.hdl import Value
from amaranth.lib import wiring

__all__ = ["PortSpec", "Ports", "flat_ports", "port_specs"]


class PortSpec(NamedTuple):
    """What a testbench may know about one port.

    Attributes
    ----------
    width : int
        Width in bits.
    input : bool
        ``True`` for ports the testbench drives (``In`` members of the component).
    init : int
        Value of the port before anything is written, as an unsigned integer.
    """

    width: int
    input: bool
    init: int


def flat_ports(component):
    """Map the flattened port names of ``component`` to its signals.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The component whose ``signature`` members become top-level ports.

    Returns
    -------
    dict of str to (amaranth.hdl.Value, amaranth.lib.wiring.Flow)
        For each name (member path joined with ``__``), the raw value behind the member
        (views of data layouts and enums are cast to their underlying signal) and its flow:
        ``In`` for inputs of the component, ``Out`` for its outputs.
    """
    return {"__".join(map(str, path)): (Value.cast(value), member.flow)
            for path, member, value in component.signature.flatten(component)}


def port_specs(component):
    """Describe the flattened ports of ``component`` without referring to its signals.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The component to describe.

    Returns
    -------
    dict of str to PortSpec
        Keyed by flattened port name, in signature order; JSON-serialisable, so it can
        travel to a simulator process.
    """
    specs = {}
    for name, (value, flow) in flat_ports(component).items():
        width = len(value)
        specs[name] = PortSpec(width, flow == wiring.In, value.init & ((1 << width) - 1))
    return specs


class Ports(ABC):
    """Port access for one running simulation.

    Subclasses bind the four primitives ``_write``, ``_read``, ``_tick`` and ``_settle`` to a
    simulator; this class validates names and values and enforces the timing contract of
    the module docstring.

    Parameters
    ----------
    specs : dict of str to PortSpec
        The component's ports, as returned by :func:`port_specs`.
    """

    def __init__(self, specs):
        self._specs = {name: PortSpec(*spec) for name, spec in specs.items()}
        self._unsettled = None  # name of the last write not yet settled

    @property
    def names(self):
        """Flattened names of all ports, in signature order (tuple of str)."""
        return tuple(self._specs)

    def width(self, name):
        """Width in bits of port ``name``."""
        return self._spec(name).width

    async def write(self, name, value):
        """Drive input port ``name`` with ``value``.

        Parameters
        ----------
        name : str
            Flattened name of an input port.
        value : int
            Unsigned value, or a negative value in two's complement range, which is written
            as its unsigned encoding.

        Raises
        ------
        KeyError
            If there is no such port.
        ValueError
            If the port is an output, or ``value`` does not fit its width.
        """
        spec = self._spec(name)
        if not spec.input:
            raise ValueError(f"port {name!r} is an output and cannot be written")
        low, high = -(1 << (spec.width - 1)), (1 << spec.width) - 1
        if not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"value for {spec.width}-bit port {name!r} must be an integer in "
                             f"[{low}, {high}], not {value!r}")
        await self._write(name, value & high)
        self._unsettled = name

    def read(self, name):
        """Current value of port ``name`` as an unsigned integer.

        Raises
        ------
        KeyError
            If there is no such port.
        RuntimeError
            If a write has happened since the last :meth:`settle` or :meth:`tick`.
        """
        self._spec(name)
        if self._unsettled is not None:
            raise RuntimeError(f"read of {name!r} after writing {self._unsettled!r}: "
                               f"await settle() or tick() first")
        return self._read(name)

    async def tick(self, n=1):
        """Advance ``n`` rising clock edges (``n`` >= 1)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"tick count must be a positive integer, not {n!r}")
        await self._tick(n)
        self._unsettled = None

    def peek(self, path, index):
        """Word ``index`` of the memory at ``path`` inside the design, as it is now, as an unsigned
        integer: ``path`` names the submodules from the top down, then the memory (attributes of the
        components in Amaranth, instances and the array in the Verilog, e.g. ``("model", "storage")``).
        A back door for what a host reaches through a port of its own (a board's memory).

        Raises
        ------
        RuntimeError
            If a write has happened since the last :meth:`settle` or :meth:`tick`.
        """
        if self._unsettled is not None:
            raise RuntimeError(f"peek of {'.'.join(path)} after writing {self._unsettled!r}: "
                               f"await settle() or tick() first")
        return self._peek(tuple(path), index)

    async def wait(self, name, value, limit):
        """Advance until the one-bit output ``name`` equals ``value`` (at most ``limit`` cycles).

        The simulator runs freely while waiting (no per-cycle testbench work), which is what makes
        long runs in Verilator fast.

        Raises
        ------
        TimeoutError
            If ``name`` did not reach ``value`` within ``limit`` cycles.
        """
        if self._spec(name).width != 1 or value not in (0, 1):
            raise ValueError(f"wait needs a one-bit port and a value 0 or 1, not {name!r} = {value!r}")
        await self.settle()
        await self._wait(name, value, limit)
        self._unsettled = None

    async def settle(self):
        """Let combinational logic react to the writes made since the last edge."""
        if self._unsettled is not None:
            await self._settle()
            self._unsettled = None

    def _spec(self, name):
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(f"no port {name!r}; ports are {', '.join(self._specs)}") from None

    @abstractmethod
    async def _write(self, name, value):
        """Drive ``name`` with the unsigned ``value``."""

    @abstractmethod
    def _read(self, name):
        """Return the unsigned value of ``name``."""

    @abstractmethod
    def _peek(self, path, index):
        """Return word ``index`` of the memory at ``path``, unsigned."""

    @abstractmethod
    async def _tick(self, n):
        """Advance ``n`` rising edges and return once the last one has settled."""

    @abstractmethod
    async def _wait(self, name, value, limit):
        """Return after the rising edge at which ``name`` became ``value``, settled."""

    @abstractmethod
    async def _settle(self):
        """Return once combinational logic reflects all writes."""
