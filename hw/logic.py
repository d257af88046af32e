"""Small pieces of logic shared by the engine's components: nested loop counters, the two's complement
range check, popcount, a many-term sum with one carry chain, and the check of the build parameters
they take."""

from amaranth import Cat, Const, Signal, Value, signed

from spikeforge.interface.params import AcceleratorParams

__all__ = ["FANOUT_SUFFIX", "carry_save_sum", "check_params", "count_nested", "delayed", "fits", "popcount",
           "registered_select", "replicated", "sign_extended", "spike_group"]

#: Registers whose names hold this are copies of one another that synthesis must keep apart
#: (``flow/synth.py`` marks them ``keep``; Yosys would merge them back into one).
FANOUT_SUFFIX = "_fanout"


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


def sign_extended(value, width):
    """``value`` (signed or not) as its two's complement in ``width`` bits (cut if wider)."""
    value = Value.cast(value)
    if len(value) >= width:
        return value[:width]
    fill = value[-1] if value.shape().signed else Const(0, 1)
    return Cat(value, fill.replicate(width - len(value)))


def carry_save_sum(m, terms, width, plus_one=False, name="sum"):
    """``Σ terms`` (+ 1 with ``plus_one``; values, signed or not) as ``signed(width)``, exact when the
    sum fits ``width`` bits; intermediate words are comb signals of ``m`` named after ``name``.

    The terms are reduced three to two (a sum bit and a carry bit per position: one LUT level each)
    until two remain, which one carry chain adds: ``k`` terms cost ``k − 2`` LUT levels and one
    chain instead of ``k − 1`` chains in a row. The ``+ 1`` rides in the free low bit of the first
    carry word (or is a term of its own when there are fewer than three)."""
    words = [sign_extended(term, width) for term in terms]
    if plus_one and len(words) < 3:
        words.append(Const(1, width))
        plus_one = False
    level = 0
    while len(words) > 2:
        a, b, c = words[:3]
        partial, carry = Signal(width, name=f"{name}_s{level}"), Signal(width, name=f"{name}_c{level}")
        m.d.comb += [partial.eq(a ^ b ^ c),
                     carry.eq(Cat(Const(int(plus_one), 1), ((a & b) | (a & c) | (b & c))[:width - 1]))]
        words = words[3:] + [partial, carry]
        plus_one, level = False, level + 1
    total = Signal(signed(width), name=name)
    m.d.comb += total.eq(words[0] if len(words) == 1 else words[0] + words[1])
    return total


def replicated(m, value, copies, name):
    """``copies`` registers, each loaded with ``value`` every cycle: a select that drives hundreds
    of bits spends more time in routing than in logic, so each group of bits gets its own copy.
    They are named ``{name}{FANOUT_SUFFIX}{i}``, so that synthesis keeps them apart."""
    registers = [Signal.like(Value.cast(value), name=f"{name}{FANOUT_SUFFIX}{i}") for i in range(copies)]
    m.d.sync += [register.eq(value) for register in registers]
    return registers


def delayed(m, values, name, cycles=1):
    """Registers holding ``values`` (a list of signals) ``cycles`` cycles later, named ``{name}_{i}``
    (``{name}{stage}_{i}`` over several cycles): what a pipeline stage carries along with its data
    (valid bit, position, flags)."""
    for stage in range(cycles):
        stage_name = name if cycles == 1 else f"{name}{stage}"
        registers = [Signal.like(value, name=f"{stage_name}_{i}") for i, value in enumerate(values)]
        m.d.sync += [register.eq(value) for register, value in zip(registers, values)]
        values = registers
    return list(values)


def registered_select(m, words, index, name, width=32):
    """``words[index]`` (``{position: value}``, 0 elsewhere) two cycles after ``index``, through two
    register stages: the word of each group of four positions, then the group. A wide multiplexer of
    registers (a register file read back over a bus) in one cycle is five LUT levels deep."""
    groups = {}
    for position, value in words.items():
        groups.setdefault(position >> 2, {})[position & 3] = value
    picked = {group: Signal(width, name=f"{name}_group{group}") for group in groups}
    for group, members in groups.items():
        with m.Switch(index[:2]):
            for low, value in members.items():
                with m.Case(low):
                    m.d.sync += picked[group].eq(value)
            with m.Default():
                m.d.sync += picked[group].eq(0)
    group_index = Signal(max(1, len(index) - 2), name=f"{name}_index")
    m.d.sync += group_index.eq(index[2:])
    out = Signal(width, name=name)
    with m.Switch(group_index):
        for group, register in picked.items():
            with m.Case(group):
                m.d.sync += out.eq(register)
        with m.Default():
            m.d.sync += out.eq(0)
    return out
