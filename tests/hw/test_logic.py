"""Shared pieces of logic (hw/logic.py) in the Amaranth simulator, against Python."""

import pytest
from amaranth import Cat, Module, Signal, signed

from spikeforge.hw.logic import fits_parts
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
