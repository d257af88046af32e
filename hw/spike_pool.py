"""Spike pool: max-pooling 3/2/1 of spike bitmaps (an OR over 3×3 windows, stride 2)."""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.descriptor import DESCRIPTOR_LAYOUT
from spikeforge.interface.layout import cat_fields, spike_row_layout

from .logic import check_params, count_nested, spike_group

__all__ = ["SpikePool"]


class SpikePool(wiring.Component):
    """Max-pooling of ``desc.tiles`` spike groups (``n_pe`` channels each, all lanes at once) of an
    ``H × W`` input at group ``in_base`` into ``⌈H/2⌉ × ⌈W/2⌉`` at group ``out_base``: kernel 3,
    stride 2, padding 1. On spikes the max is an OR: per output row, three input-row reads are ORed
    (rows outside the image contribute nothing), then three columns with stride 2, and the row is
    written. Output rows go innermost, then timesteps, then groups.

    The pass takes ``4 · ⌈H/2⌉ · T · tiles`` cycles from the one after ``start`` to ``done`` included.

    Ports
    -----
    desc : In(DESCRIPTOR_LAYOUT)
        The descriptor (``tiles``, ``T``, ``H``, ``W``, ``in_base``, ``out_base``).
    start : In(1)
        Begin the pass (the first read is next cycle).
    done : Out(1)
        The last cycle of the pass.
    group_addr : Out
        Row ``{group, t, y}`` read in every bank (:class:`SpikeMemory` ``group_addr``).
    group_data : In(ArrayLayout(max_w, n_pe))
        The rows requested one cycle earlier.
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
        d = self.desc
        tile, t, y = Signal.like(d.tiles), Signal.like(d.T), Signal.like(d.H)   # y: the output row
        pool_r = Signal(range(3))     # input row of the window being read
        pending = Signal()            # a row read last cycle belongs to the window
        window = Signal(self.group_word)
        window_or = Signal(self.group_word)
        m.d.comb += window_or.eq(Mux(pending, window.as_value() | self.group_data.as_value(), window.as_value()))
        pooled_H = (d.H + 1) >> 1
        pooled_W = (d.W + 1) >> 1

        def spike_row(base, y_):
            return cat_fields(spike_row_layout(p), group=spike_group(p, base, tile), t=t, y=y_)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [tile.eq(0), t.eq(0), y.eq(0), pool_r.eq(0)]
                    m.next = "POOL_READ"
            with m.State("POOL_READ"):
                source_y = (y << 1) + pool_r - 1
                valid = (source_y >= 0) & (source_y < d.H)
                m.d.comb += self.group_addr.eq(spike_row(d.in_base, source_y))
                m.d.sync += [pending.eq(valid), window.eq(window_or), pool_r.eq(pool_r + 1)]
                with m.If(pool_r == 2):
                    m.d.sync += pool_r.eq(0)
                    m.next = "POOL_WRITE"
            with m.State("POOL_WRITE"):
                pooled = Signal(self.group_word)
                for lane in range(p.n_pe):
                    word = window_or[lane]
                    bits = []
                    for xo in range(p.max_w):
                        window_bits = [word[i] for i in (2 * xo - 1, 2 * xo, 2 * xo + 1) if 0 <= i < p.max_w]
                        bits.append((Cat(*window_bits) != 0) & (xo < pooled_W) if window_bits else Const(0))
                    m.d.comb += pooled[lane].eq(Cat(*bits))
                m.d.comb += [self.word_valid.eq(1), self.word_addr.eq(spike_row(d.out_base, y)),
                             self.word_data.eq(pooled)]
                m.d.sync += [pending.eq(0), window.eq(0)]
                m.next = "POOL_READ"
                m.d.comb += self.done.eq(count_nested(m, [(y, pooled_H - 1), (t, d.T - 1), (tile, d.tiles - 1)],
                                                      "IDLE"))
        return m
