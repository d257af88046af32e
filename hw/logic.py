"""Small pieces of logic shared by the engine's components: nested loop counters, the two's complement
range check, popcount, and the check of the build parameters they take."""

from amaranth import Const, Value

from spikeforge.interface.params import AcceleratorParams

__all__ = ["check_params", "count_nested", "fits", "popcount", "spike_group"]


def check_params(params):
    """Raise TypeError unless ``params`` is an :class:`AcceleratorParams` (the components need its
    memory depths, not only an ``EngineParams``)."""
    if not isinstance(params, AcceleratorParams):
        raise TypeError(f"params must be an AcceleratorParams, not {params!r}")
    return params


def count_nested(m, counters, finished):
    """Advance nested loop counters ``[(signal, last value), ...]`` (innermost first) by one step;
    when the outermost wraps, go to FSM state ``finished``. Returns the condition "every counter is
    at its last value" (the step that wraps the outermost)."""
    signal, last = counters[0]
    with m.If(signal == last):
        m.d.sync += signal.eq(0)
        if len(counters) > 1:
            count_nested(m, counters[1:], finished)
        else:
            m.next = finished
    with m.Else():
        m.d.sync += signal.eq(signal + 1)
    wraps = Const(1, 1)
    for counter, last_value in counters:
        wraps = wraps & (counter == last_value)
    return wraps


def fits(value, bits):
    """``value`` (signed) is representable in ``bits`` (a value) bits of two's complement: its bits from
    ``bits − 1`` up are all equal. The mask of those bits is a shift of a constant (no barrel shifter
    of ``value``), the same for every lane checked against the same ``bits``."""
    value = Value.cast(value)
    width = len(value)
    high = (Const((1 << width) - 1, width) << (Value.cast(bits) - 1).as_unsigned())[:width]
    masked = value.as_unsigned() & high
    return (masked == 0) | (masked == high)


def popcount(word):
    """Number of set bits of ``word`` (an adder chain)."""
    total = Const(0, 1)
    for bit in word:
        total = total + bit
    return total


def spike_group(params, base, index):
    """Spike-memory group ``base + index`` of a tensor placed at group ``base`` (its ``group`` field)."""
    return (base + index)[:params.group_bits] if params.group_bits else Const(0, 1)
