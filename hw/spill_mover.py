"""Spill mover: spike groups copied to the SPILL table in external memory (STORE) and back (LOAD)."""

from amaranth import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.descriptor import DESCRIPTOR_LAYOUT, OPCODES
from spikeforge.interface.layout import cat_fields, spike_row_layout
from spikeforge.ops.spill import LOAD_LATENCY

from .logic import check_params, count_nested, delayed, descriptor_copy, spike_group
from .spike_memory import READ_LATENCY, row_access

__all__ = ["SpillMover"]


class SpillMover(wiring.Component):
    """Copies the rows ``{base + g, t, y}`` (``g < tiles``, ``t < T``, ``y < H``; ``y`` innermost, then
    ``t``, then ``g``) of the spike memory to SPILL rows ``weight_base``, ``weight_base + 1``, … (STORE,
    ``base`` = ``in_base``), or those SPILL rows back to them (LOAD, ``base`` = ``out_base``): one row
    requested per cycle, from the start cycle on (:mod:`spikeforge.ops.spill`).

    A STORE reads each row through the group port (all lanes) and writes it to the SPILL table when it
    arrives, :data:`~spikeforge.hw.spike_memory.READ_LATENCY` cycles after its read; a LOAD requests each
    SPILL row from a register and writes it to the spike memory when it is in hand,
    :data:`~spikeforge.ops.spill.LOAD_LATENCY` cycles later. A LOAD's writes are ordinary word writes, so
    that each row's occupancy bit is set or cleared from the row, as at every write: the scan's view of
    a group loaded is that of the group stored. The pass takes ``tiles · T · H`` cycles plus that latency,
    from the one after ``start`` to ``done`` included (:func:`spikeforge.ops.spill.cycles`); waits for
    external memory stall the core and are not counted.

    Ports
    -----
    desc : In(DESCRIPTOR_LAYOUT)
        The descriptor (``op``, ``tiles``, ``T``, ``H``, ``in_base``, ``out_base``, ``weight_base``), from
        :data:`~spikeforge.interface.descriptor.DESCRIPTOR_SETTLE_CYCLES` cycles before ``start`` to
        ``done``: copied into registers, from which the loop bounds follow a cycle later.
    start : In(1)
        Begin the pass (the first row is requested in this cycle).
    done : Out(1)
        The last cycle of the pass.
    group_addr : Out
        Row ``{group, t, y}`` read in every bank (:class:`SpikeMemory` ``group_addr``), from a register.
    group_data : In(ArrayLayout(max_w, n_pe))
        The rows requested READ_LATENCY cycles earlier.
    word_valid, word_addr, word_data : Out
        Write of one row in every bank (:class:`SpikeMemory` ``word_*``).
    spill_read_en, spill_read_addr : Out
        Request of a SPILL row (registers).
    spill_read_data : In(ArrayLayout(max_w, n_pe))
        The row requested, :data:`~spikeforge.ops.spill.LOAD_LATENCY` cycles the core runs after its
        request.
    spill_write_en, spill_write_addr, spill_write_data : Out
        Write of a SPILL row (taken in a cycle the core runs).
    """

    def __init__(self, params):
        self.params = p = check_params(params)
        self.group_word = data.ArrayLayout(p.max_w, p.n_pe)
        super().__init__({
            "desc": In(DESCRIPTOR_LAYOUT), "start": In(1), "done": Out(1), **row_access(p),
            "spill_read_en": Out(1), "spill_read_addr": Out(range(p.spill_rows)),
            "spill_read_data": In(self.group_word),
            "spill_write_en": Out(1), "spill_write_addr": Out(range(p.spill_rows)),
            "spill_write_data": Out(self.group_word),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        d = descriptor_copy(m, self.desc, ("op", "tiles", "T", "H", "in_base", "out_base", "weight_base"))
        last_group, last_t = Signal.like(d.tiles, name="last_group"), Signal.like(d.T, name="last_t")
        last_y, is_load = Signal.like(d.H, name="last_y"), Signal(name="is_load")
        m.d.sync += [last_group.eq(d.tiles - 1), last_t.eq(d.T - 1), last_y.eq(d.H - 1),
                     is_load.eq(d.op == OPCODES["LOAD"])]

        group, t, y = Signal.like(d.tiles, name="group"), Signal.like(d.T, name="t"), Signal.like(d.H, name="y")
        offset = Signal(len(d.weight_base), name="offset")      # the row's place among those copied
        # one row requested per cycle from the start cycle on; the last request wraps the counters to 0
        issuing, issue, finish = Signal(), Signal(), Signal()
        m.d.comb += issue.eq(self.start | issuing)
        with m.If(issue):
            m.d.comb += finish.eq(count_nested(m, [(y, last_y), (t, last_t), (group, last_group)]))
            m.d.sync += offset.eq(offset + 1)
        with m.If(finish):
            m.d.sync += offset.eq(0)
        m.d.sync += issuing.eq(issue & ~finish)
        spill_row = (d.weight_base + offset)[:len(self.spill_read_addr)]

        def row_of(base):
            return cat_fields(spike_row_layout(p), group=spike_group(p, base, group), t=t, y=y)

        # STORE: the spike row read from a register, written to its SPILL row when it arrives
        m.d.sync += self.group_addr.eq(row_of(d.in_base))
        stored, store_last, store_row = delayed(m, [issue & ~is_load, finish & ~is_load, spill_row], "store",
                                                1 + READ_LATENCY)
        m.d.comb += [self.spill_write_en.eq(stored), self.spill_write_addr.eq(store_row),
                     self.spill_write_data.eq(self.group_data)]
        # LOAD: the SPILL row requested from a register, written to its spike row when it is in hand
        m.d.sync += [self.spill_read_en.eq(issue & is_load), self.spill_read_addr.eq(spill_row)]
        loaded, load_last, load_row = delayed(m, [issue & is_load, finish & is_load, row_of(d.out_base)], "load",
                                              1 + LOAD_LATENCY)
        m.d.comb += [self.word_valid.eq(loaded), self.word_addr.eq(load_row), self.word_data.eq(self.spill_read_data),
                     self.done.eq(store_last | load_last)]
        return m
