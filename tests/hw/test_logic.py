"""Shared pieces of logic (hw/logic.py) in the Amaranth simulator, against Python."""

import pytest
from amaranth import Cat, Const, Module, Signal, signed
from amaranth.hdl import EnableInserter

from spikeforge.hw.logic import fits_parts, high_bits
from spikeforge.interface.bits import fits_signed
from spikeforge.tests.hw.bench import simulate


@pytest.mark.parametrize("width, parts", [(10, 4), (6, 4), (4, 8), (7, 2)])
def test_fits_parts_are_the_range_check_in_exactly_parts_conditions(width, parts):
    """Every value of ``width`` bits against every declared width (the :func:`high_bits` mask: bit ``i``
    set where ``bits <= i + 1``); the units size the registers of the conditions by ``parts``, also
    where the word has fewer bits to split than that (10 bits in 4 parts once gave 3)."""
    value, high = Signal(signed(width)), Signal(width)
    checks = fits_parts(value, high, parts)
    assert len(checks) == parts
    m = Module()
    fits = Signal()
    m.d.comb += fits.eq(Cat(*checks).all())

    async def bench(ctx):
        for bits in range(1, width + 1):
            ctx.set(high, sum(1 << i for i in range(width) if bits <= i + 1))
            for v in range(-(1 << (width - 1)), 1 << (width - 1)):
                ctx.set(value, v)
                assert ctx.get(fits) == fits_signed(v, bits)

    simulate(m, bench, clocked=False)


def test_high_bits_masks_every_declared_width_in_a_copy_per_four_lanes():
    """Bit ``i`` of the mask set where ``0 < bits <= i + 1``, two cycles after ``bits``, in every lane's entry
    (lanes 0-3 share a register, lanes 4-5 another)."""
    width, m = 12, Module()
    bits = Signal(5)
    masks = high_bits(m, width, bits, "high", lanes=6)
    assert len(masks) == 6 and masks[0] is masks[3] and masks[4] is not masks[3]

    async def bench(ctx):
        for value in range(1 << len(bits)):
            ctx.set(bits, value)
            await ctx.tick().repeat(2)
            expected = sum(1 << i for i in range(width) if 0 < value <= i + 1)
            assert [ctx.get(mask) for mask in masks] == [expected] * 6, value

    simulate(m, bench)


def test_high_bits_puts_each_copy_in_its_part():
    """With ``parts``, the copy of each four lanes is a register of its part: a part held still keeps its
    copy at 0 while the other's follows ``bits``."""
    width, m = 12, Module()
    bits = Signal(5)
    parts = [Module(), Module()]
    masks = high_bits(m, width, bits, "high", lanes=6, parts=parts)
    m.submodules.running = parts[0]
    m.submodules.still = EnableInserter(Const(0))(parts[1])

    async def bench(ctx):
        ctx.set(bits, 3)
        await ctx.tick().repeat(2)
        expected = sum(1 << i for i in range(width) if 3 <= i + 1)
        assert [ctx.get(mask) for mask in masks] == [expected] * 4 + [0] * 2

    simulate(m, bench)
