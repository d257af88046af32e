"""A toy accumulator and testbenches that exercise the simulation runners."""

import random

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Accumulate", "accumulate_model", "accumulate_testbench", "failing_testbench"]

#: Test vector seed, fixed so both simulators see the same stimulus.
SEED = 1234
STEPS = 40


class Accumulate(wiring.Component):
    """Sum the samples it is given.

    Parameters
    ----------
    width : int
        Width of a sample; the total is 8 bits wider and wraps around.

    Attributes
    ----------
    sample__value : In(width)
        Sample to add.
    sample__valid : In(1)
        Add ``sample__value`` at the next edge.
    enable : In(1), init 1
        Accumulate only while high.
    clear : In(1)
        Reset the total to 0 at the next edge; wins over ``sample__valid``.
    total : Out(width + 8)
        The registered sum.
    preview : Out(width + 8)
        Combinationally, what ``total`` becomes at the next edge.
    """

    def __init__(self, width):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        self.width = width
        super().__init__({
            "sample": In(wiring.Signature({"value": Out(width), "valid": Out(1)})),
            "enable": In(1, init=1),
            "clear": In(1),
            "total": Out(width + 8),
            "preview": Out(width + 8),
        })

    def elaborate(self, platform):
        m = Module()
        with m.If(self.clear):
            m.d.comb += self.preview.eq(0)
        with m.Elif(self.sample.valid & self.enable):
            m.d.comb += self.preview.eq(self.total + self.sample.value)
        with m.Else():
            m.d.comb += self.preview.eq(self.total)
        m.d.sync += self.total.eq(self.preview)
        return m


def _stimulus(width):
    """``(value, valid, disable, clear)`` per step; the first relies on ``enable``'s init."""
    rng = random.Random(SEED)
    return [((1 << width) - 1, True, False, False)] + [
        (rng.randrange(1 << width), rng.random() < 0.7, rng.random() < 0.2, rng.random() < 0.1)
        for _ in range(STEPS - 1)]


def accumulate_model(width):
    """The ``[preview, total]`` pairs :func:`accumulate_testbench` should observe."""
    mask = (1 << (width + 8)) - 1
    total = 0
    observed = [[total, total]]
    for value, valid, disable, clear in _stimulus(width):
        if clear:
            preview = 0
        elif valid and not disable:
            preview = (total + value) & mask
        else:
            preview = total
        total = preview
        observed.append([preview, total])
    return observed


async def accumulate_testbench(ports):
    """Drive :class:`Accumulate` with a fixed random stimulus.

    Returns
    -------
    list of [int, int]
        First ``[preview, total]`` before any input is written, then for every step the
        settled ``preview`` before the edge and ``total`` after it.
    """
    width = ports.width("sample__value")
    observed = [[ports.read("preview"), ports.read("total")]]
    # enable and clear are written only when they change, so their initial values and the
    # persistence of writes across edges matter.
    held = {"enable": 1, "clear": 0}
    for value, valid, disable, clear in _stimulus(width):
        await ports.write("sample__value", value)
        await ports.write("sample__valid", int(valid))
        for name, level in (("enable", int(not disable)), ("clear", int(clear))):
            if held[name] != level:
                await ports.write(name, level)
                held[name] = level
        await ports.settle()
        preview = ports.read("preview")
        await ports.tick()
        observed.append([preview, ports.read("total")])
    return observed


async def failing_testbench(ports):
    """Fail after two cycles with a recognisable message."""
    await ports.tick(2)
    total = ports.read("total")
    assert total == 12345, f"toy failure: total is {total}"
