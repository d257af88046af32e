"""Small pieces of logic shared by the engine's components: nested loop counters, the two's complement
range check, popcount, a many-term sum with one carry chain, a unit's registered copy of the descriptor,
the parts of a unit that stall apart, the check of the build parameters they take, the rings and row
addresses of the external-memory tables' readers and writers, and on-chip tables read like them."""

from types import SimpleNamespace

from amaranth import Cat, Const, Mux, Signal, Value, signed
from amaranth.hdl import EnableInserter

from spikeforge.interface.bits import ceil_div
from spikeforge.interface.external import BEAT_BITS, ROW_READ_LATENCY, row_stride
from spikeforge.interface.params import AcceleratorParams

__all__ = ["FANOUT_SUFFIX", "FITS_PARTS", "LANES_PER_COPY", "lane_groups", "carry_save_sum", "check_params", "count_nested",
           "delayed", "descriptor_copy", "enabled_parts", "fits_parts", "high_bits", "lane_copies", "popcount",
           "registered_select", "replicated", "ring_after", "row_address", "sign_extended", "spike_group",
           "table_read", "table_rows"]

#: Registers whose names hold this are copies of one another that synthesis must keep apart
#: (``flow/synth.py`` marks them ``keep``; Yosys would merge them back into one).
FANOUT_SUFFIX = "_fanout"
#: Lanes served by one copy of a flag, select or enable that drives every lane (:func:`replicated`): the
#: lanes spread over the chip with their memories, and one register reaching all of them is a long route.
LANES_PER_COPY = 4


def lane_copies(lanes):
    """Copies of a register that drives ``lanes`` lanes, one per :data:`LANES_PER_COPY` of them (lane ``i``
    takes copy ``i // LANES_PER_COPY``)."""
    return ceil_div(lanes, LANES_PER_COPY)


def lane_groups(lanes):
    """The lanes of each copy (:func:`lane_copies`), as ranges: a part of a unit per group."""
    return [range(first, min(lanes, first + LANES_PER_COPY)) for first in range(0, lanes, LANES_PER_COPY)]


def check_params(params):
    """Raise TypeError unless ``params`` is an :class:`AcceleratorParams` (the components need its
    memory depths, not only an ``EngineParams``)."""
    if not isinstance(params, AcceleratorParams):
        raise TypeError(f"params must be an AcceleratorParams, not {params!r}")
    return params


def count_nested(m, counters, finished=None):
    """Advance nested loop counters ``[(signal, last value), ...]`` (innermost first) by one step;
    when the outermost wraps, go to FSM state ``finished`` (if given: the caller may follow the
    wrap without an FSM). Returns the condition "every counter is at its last value" (the step
    that wraps the outermost)."""
    signal, last = counters[0]
    with m.If(signal == last):
        m.d.sync += signal.eq(0)
        if len(counters) > 1:
            count_nested(m, counters[1:], finished)
        elif finished is not None:
            m.next = finished
    with m.Else():
        m.d.sync += signal.eq(signal + 1)
    wraps = Const(1, 1)
    for counter, last_value in counters:
        wraps = wraps & (counter == last_value)
    return wraps


def high_bits(m, width, bits, name, lanes=1, parts=None):
    """Registers of ``m`` holding, two cycles after ``bits`` (a value; 0: none), the mask of the bits of
    a ``width``-bit word from ``bits − 1`` up, for every lane that :func:`fits_parts` checks against it:
    a list of ``lanes`` entries, a copy per :data:`LANES_PER_COPY` lanes (in ``parts``, a module per copy,
    where given: the parts of those lanes, under enables of their own).
    Bit ``i`` is set where ``0 < bits <= i + 1``: the first stage decodes the high and the low three
    bits of ``bits`` apart, the second takes each mask bit from three of the decoded bits — a LUT
    per bit in each stage, where a comparator or a shifter over all of ``bits`` takes several."""
    bits = Value.cast(bits)
    low = min(3, len(bits))
    high_values = 1 << (len(bits) - low)
    nonzero = Signal(name=f"{name}_nonzero")
    high_at, high_below = Signal(high_values, name=f"{name}_high_at"), Signal(high_values, name=f"{name}_high_below")
    low_upto = Signal(1 << low, name=f"{name}_low_upto")
    m.d.sync += [nonzero.eq(bits != 0),
                 high_at.eq(Cat(*(bits[low:] == k for k in range(high_values)))),
                 high_below.eq(Cat(*(bits[low:] < k for k in range(high_values)))),
                 low_upto.eq(Cat(*(bits[:low] <= j for j in range(1 << low))))]
    mask = []
    for i in range(width):
        top, rest = (i + 1) >> low, (i + 1) & ((1 << low) - 1)
        below = high_below[top] | (high_at[top] & low_upto[rest]) if top < high_values else 1
        mask.append(nonzero & below)
    if parts is None:
        copies = replicated(m, Cat(*mask), lane_copies(lanes), name)
    else:
        assert len(parts) == lane_copies(lanes), "a part per copy"
        copies = [replicated(part, Cat(*mask), 1, name)[0] for part in parts]
    return [copies[lane // LANES_PER_COPY] for lane in range(lanes)]


def fits_parts(value, high, parts):
    """``value`` (signed) is representable in the declared width whose :func:`high_bits` mask is
    ``high`` (as wide as ``value``): its bits from that width − 1 up are all equal, i.e. none there
    differs from the one above it (a LUT per bit, then OR trees). As ``parts`` conditions over
    consecutive bits, all true when it fits: registered apart, they split the check over two stages."""
    bits = Value.cast(value).as_unsigned()
    differs = (bits[:-1] ^ bits[1:]) & Value.cast(high)[:-1]
    # exactly ``parts`` of them, as the registers that hold them are sized (an empty one is true); the
    # top one, whose bits come last out of an adder's carry chain, the shortest
    size = -(-len(differs) // parts) or 1
    return [differs[i:i + size] == 0 for i in range(0, parts * size, size)]


#: Parts of a lane's range check registered apart (:func:`fits_parts`), where the word checked is some 32
#: bits wide or comes out of an adder.
FITS_PARTS = 4


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


def replicated(m, value, copies, name, init=0):
    """``copies`` registers, each loaded with ``value`` every cycle (``init`` after reset): a select that
    drives hundreds of bits spends more time in routing than in logic, so each group of bits gets its
    own copy. They are named ``{name}{FANOUT_SUFFIX}{i}``, so that synthesis keeps them apart."""
    registers = [Signal.like(Value.cast(value), init=init, name=f"{name}{FANOUT_SUFFIX}{i}") for i in range(copies)]
    m.d.sync += [register.eq(value) for register in registers]
    return registers


def enabled_parts(m, run_next, parts, name="run"):
    """Add ``parts`` (``{name: module or component}``) to ``m`` as submodules that run (their registers
    and memory ports advance) only in the cycles after ``run_next``, each under its own registered copy
    of it (:func:`replicated`): an enable that reaches thousands of clock enables through one net spends
    most of a cycle in routing, so each part of some hundred flip-flops gets its own."""
    enables = replicated(m, run_next, len(parts), name, init=1)
    for (part_name, part), enable in zip(parts.items(), enables):
        m.submodules[part_name] = EnableInserter(enable)(part)


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


def table_read(m, port, en, addr, name, latency=ROW_READ_LATENCY):
    """Connect the block-RAM read port ``port`` to a unit's requests ``en``, ``addr`` so that it answers
    ``latency`` cycles later (the request registered ``latency − 1`` times first); returns the read data.
    By default as the row readers of external memory do (:data:`~spikeforge.interface.external.ROW_READ_LATENCY`):
    for tables kept on chip (the layer engine's, the units' testbenches), where the core never stalls."""
    en_at, addr_at = delayed(m, [en, addr], name, latency - 1)
    m.d.comb += [port.en.eq(en_at), port.addr.eq(addr_at)]
    return port.data


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


def descriptor_copy(m, desc, fields):
    """A unit's own registers of the descriptor ``fields`` it uses (names), loaded every cycle from
    ``desc``, as attributes of the result: the descriptor fans out to one register per unit, whose
    copy then drives the unit's logic. Valid a cycle after ``desc`` (the sequencer's settle cycles,
    :data:`~spikeforge.interface.descriptor.DESCRIPTOR_SETTLE_CYCLES`, leave one more for what a
    unit derives from it)."""
    copies = {name: Signal.like(getattr(desc, name), name=f"desc_{name}") for name in fields}
    m.d.sync += [copy.eq(getattr(desc, name)) for name, copy in copies.items()]
    return SimpleNamespace(**copies)



def table_rows(port, row_bits, depth, tag_bits, least=2):
    """Set on ``port`` (a reader or writer of a table in external memory) its rows of ``row_bits``, its
    ring of ``depth`` rows (at least ``least``: for a reader 2, one on its way while another is used),
    the ``tag_bits`` of a row number and the ``beats`` of a row (32-bit words)."""
    if depth < least:
        raise ValueError(f"depth must be at least {least}, not {depth!r}")
    port.row_bits, port.depth, port.tag_bits = row_bits, depth, tag_bits
    port.beats = ceil_div(row_bits, BEAT_BITS)


def ring_after(position, depth):
    """The position after ``position`` in a ring of ``depth`` slots: a position is a slot (its low bits)
    and a lap bit above them, which tells a full ring (positions a lap apart) from an empty one (equal)."""
    slot_bits = (depth - 1).bit_length()
    slot, lap = position[:slot_bits], position[slot_bits]
    return Mux(slot == depth - 1, Cat(Const(0, slot_bits), ~lap), position + 1)


def row_address(base, row, row_bits):
    """Byte address of row ``row`` of a table of ``row_bits``-bit rows at ``base`` in external memory
    (:func:`~spikeforge.interface.external.row_stride` apart: a shift)."""
    return base + (row << (row_stride(row_bits).bit_length() - 1))
