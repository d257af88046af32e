"""Spike pool: max-pooling 3/2/1 of spike bitmaps (an OR over 3×3 windows, stride 2)."""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.descriptor import DESCRIPTOR_LAYOUT
from spikeforge.interface.layout import cat_fields, spike_row_layout

from .logic import check_params, count_nested, delayed, descriptor_copy, spike_group
from .spike_memory import READ_LATENCY

__all__ = ["SpikePool"]


class SpikePool(wiring.Component):
    """Max-pooling of ``desc.tiles`` spike groups (``n_pe`` channels each, all lanes at once) of an
    ``H × W`` input at group ``in_base`` into ``⌈H/2⌉ × ⌈W/2⌉`` at group ``out_base``: kernel 3,
    stride 2, padding 1. On spikes the max is an OR: per output row, three input-row reads are ORed
    (rows outside the image contribute nothing), then three columns with stride 2, and the row is
    written. Output rows go innermost, then timesteps, then groups. The reads follow one another
    without a gap; each word is ORed into the window when it arrives
    (:data:`~spikeforge.hw.spike_memory.READ_LATENCY` cycles after its read) and the window's third
    row writes the pooled row.

    The pass takes ``3 · ⌈H/2⌉ · T · tiles + READ_LATENCY`` cycles from the one after ``start`` to
    ``done`` included (:func:`spikeforge.ops.pool.cycles`).

    Ports
    -----
    desc : In(DESCRIPTOR_LAYOUT)
        The descriptor (``tiles``, ``T``, ``H``, ``W``, ``in_base``, ``out_base``), from
        :data:`~spikeforge.interface.descriptor.DESCRIPTOR_SETTLE_CYCLES` cycles before ``start`` to
        ``done``: the pool copies these fields into registers, and derives its loop bounds and the
        pooled row's columns from the copies a cycle later.
    start : In(1)
        Begin the pass (the first read is next cycle).
    done : Out(1)
        The last cycle of the pass.
    group_addr : Out
        Row ``{group, t, y}`` read in every bank (:class:`SpikeMemory` ``group_addr``).
    group_data : In(ArrayLayout(max_w, n_pe))
        The rows requested READ_LATENCY cycles earlier.
    word_valid, word_addr, word_data : Out
        Write of one pooled row in every bank (:class:`SpikeMemory` ``word_*``).
    """

    def __init__(self, params):
        self.params = p = check_params(params)
        self.group_word = data.ArrayLayout(p.max_w, p.n_pe)
        addr = max(1, p.group_bits + p.t_bits + p.h_bits)
        super().__init__({
            "desc": In(DESCRIPTOR_LAYOUT), "start": In(1), "done": Out(1),
            "group_addr": Out(addr), "group_data": In(self.group_word),
            "word_valid": Out(1), "word_addr": Out(addr), "word_data": Out(self.group_word),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        d = descriptor_copy(m, self.desc, ("tiles", "T", "H", "W", "in_base", "out_base"))
        # derived from the copies a cycle later: the last loop indices (the last output row of ⌈H/2⌉),
        # the columns of the ⌈W/2⌉ of a pooled row (2·xo < W)
        last_tile, last_t = Signal.like(d.tiles, name="last_tile"), Signal.like(d.T, name="last_t")
        last_y, columns = Signal.like(d.H, name="last_y"), Signal(p.max_w, name="columns")
        m.d.sync += [last_tile.eq(d.tiles - 1), last_t.eq(d.T - 1), last_y.eq((d.H - 1) >> 1),
                     columns.eq(Cat(*(d.W > 2 * xo for xo in range(p.max_w))))]
        tile, t = Signal.like(d.tiles, name="tile"), Signal.like(d.T, name="t")
        y = Signal.like(d.H, name="y")   # the output row
        pool_r = Signal(range(3))     # input row of the window being read

        def spike_row(base, y_):
            return cat_fields(spike_row_layout(p), group=spike_group(p, base, tile), t=t, y=y_)

        # the reads: three input rows per output row, one per cycle, back to back
        reading, take, close, finish = Signal(), Signal(), Signal(), Signal()
        out_addr = Signal.like(self.word_addr)
        with m.FSM():
            with m.State("IDLE"):
                # the counters start over while idle, rather than at start (a register enable fewer on
                # its path)
                m.d.sync += [tile.eq(0), t.eq(0), y.eq(0), pool_r.eq(0)]
                with m.If(self.start):
                    m.next = "POOL_READ"
            with m.State("POOL_READ"):
                source_y = (y << 1) + pool_r - 1
                m.d.comb += [reading.eq(1), take.eq((source_y >= 0) & (source_y < d.H)), close.eq(pool_r == 2),
                             self.group_addr.eq(spike_row(d.in_base, source_y)),
                             out_addr.eq(spike_row(d.out_base, y))]
                m.d.sync += pool_r.eq(pool_r + 1)
                with m.If(pool_r == 2):
                    m.d.sync += pool_r.eq(0)
                    m.d.comb += finish.eq(count_nested(m, [(y, last_y), (t, last_t), (tile, last_tile)],
                                                       "POOL_FLUSH"))
            with m.State("POOL_FLUSH"):
                with m.If(self.done):
                    m.next = "IDLE"

        # the words arrive SPIKE_READ_LATENCY cycles after their reads: ORed into the window (rows
        # outside the image contribute nothing); the window's third row closes it and writes the row
        flags = [reading & take, reading & close, reading & finish, out_addr]
        got, closing, last, write_addr = delayed(m, flags, "read", READ_LATENCY)
        window = Signal(self.group_word)
        window_or = Signal(self.group_word)
        m.d.comb += window_or.eq(Mux(got, window.as_value() | self.group_data.as_value(), window.as_value()))
        pooled = Signal(self.group_word)
        for lane in range(p.n_pe):
            word = window_or[lane]
            bits = []
            for xo in range(p.max_w):
                window_bits = [word[i] for i in (2 * xo - 1, 2 * xo, 2 * xo + 1) if 0 <= i < p.max_w]
                bits.append((Cat(*window_bits) != 0) & columns[xo] if window_bits else Const(0))
            m.d.comb += pooled[lane].eq(Cat(*bits))
        m.d.sync += window.eq(Mux(closing, 0, window_or))
        m.d.comb += [self.word_valid.eq(closing), self.word_addr.eq(write_addr), self.word_data.eq(pooled),
                     self.done.eq(last)]
        return m
