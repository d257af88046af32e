"""Spike pool: max-pooling 3/2/1 of spike bitmaps (an OR over 3×3 windows, stride 2), also of one spatial
tile of a larger image."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.descriptor import DESCRIPTOR_LAYOUT
from spikeforge.interface.layout import cat_fields, spike_row_layout

from .logic import check_params, count_nested, delayed, descriptor_copy, spike_group
from .spike_memory import READ_LATENCY, row_access

__all__ = ["SpikePool"]

#: The column parts of a window row, each a whole word of its input tile: the last column of the tile to
#: the left of A, tile A, the tile to its right.
COLUMN_PARTS = ("left", "A", "right")


def _column_part(column, max_w):
    """The column part holding input column ``column`` (from A's origin, −1 … 2·max_w − 1) and its bit there."""
    if column < 0:
        return "left", max_w - 1
    if column < max_w:
        return "A", column
    return "right", column - max_w


class SpikePool(wiring.Component):
    """Max-pooling of ``desc.tiles`` spike groups (``n_pe`` channels each, all lanes at once) of an
    ``H × W`` input into ``⌈H/2⌉ × ⌈W/2⌉`` rows at group ``out_base``: kernel 3, stride 2, padding 1.
    On spikes the max is an OR.

    The input is input tile A (group ``in_base``) and, for one output tile of an image stored in spatial
    tiles, the tiles its windows reach: ``H``/``W`` count the rows/columns from A's origin, up to
    ``2·max_h``/``2·max_w``; row ``r`` lies in tile row ``r // max_h`` (``k_base`` groups after A's per
    tile row) at row ``r mod max_h``, column ``c`` in tile column ``c // max_w`` (``v_base`` groups after
    A's per tile column) at bit ``c mod max_w``. With ``tile_dy = 0b11`` input row −1 is the last row of
    the tile row above (``in_base − k_base``), with ``tile_dx = 0b11`` column −1 the last column of the
    tile column to the left (``in_base − v_base``); otherwise they are padding, as are the rows and
    columns from ``H``/``W`` on: they contribute nothing. An untiled input has ``H ≤ max_h``,
    ``W ≤ max_w`` and ``k_base = v_base = tile_dy = tile_dx = 0``.

    Per output row, each of its window's three input rows (one outside the image still takes its slot)
    is read in each column part present: the left tile's (``tile_dx = 0b11``, for its last column), A's,
    the right tile's (``W > max_w``) — whole words, one read per cycle, back to back. Each word is
    pooled over columns into the output row when it arrives
    (:data:`~spikeforge.hw.spike_memory.READ_LATENCY` cycles after its read): for each output column
    ``xo`` with ``2·xo < W``, the OR of the input columns ``2·xo − 1 … 2·xo + 1`` (those below ``W``) that
    lie in its part; the window's last read writes the row. Output rows go innermost, then timesteps,
    then groups.

    The pass takes ``3 · parts · ⌈H/2⌉ · T · tiles + READ_LATENCY`` cycles from the one after ``start``
    to ``done`` included (:func:`spikeforge.ops.pool.cycles`).

    For the clock, ``group_addr`` is a register: each read's address and flags are registered in the
    cycle before the memory reads it (the start cycle issues the first), from the loop counters (the input
    row among them) and the groups of the nine tiles around A (``in_base ± k_base ± v_base``) in the
    current channel group, derived before the pass and stepped with the group: a multiplexer, no adder.

    Ports
    -----
    desc : In(DESCRIPTOR_LAYOUT)
        The descriptor (``tiles``, ``T``, ``H``, ``W``, ``tile_dy``, ``tile_dx``, ``in_base``,
        ``k_base``, ``v_base``, ``out_base``), from
        :data:`~spikeforge.interface.descriptor.DESCRIPTOR_SETTLE_CYCLES` cycles before ``start`` to
        ``done``: the pool copies these fields into registers, and derives its loop bounds, the groups
        of the tiles and the pooled row's columns from the copies a cycle later.
    start : In(1)
        Begin the pass (the first read is next cycle).
    done : Out(1)
        The last cycle of the pass.
    group_addr : Out
        Row ``{group, t, y}`` read in every bank (:class:`SpikeMemory` ``group_addr``), from a register.
    group_data : In(ArrayLayout(max_w, n_pe))
        The rows requested READ_LATENCY cycles earlier.
    word_valid, word_addr, word_data : Out
        Write of one pooled row in every bank (:class:`SpikeMemory` ``word_*``).
    """

    def __init__(self, params):
        self.params = p = check_params(params)
        self.group_word = data.ArrayLayout(p.max_w, p.n_pe)
        super().__init__({
            "desc": In(DESCRIPTOR_LAYOUT), "start": In(1), "done": Out(1), **row_access(p),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        d = descriptor_copy(m, self.desc, ("tiles", "T", "H", "W", "tile_dy", "tile_dx", "in_base", "k_base",
                                           "v_base", "out_base"))
        # derived from the copies a cycle later: the last loop indices (the last output row of ⌈H/2⌉, the
        # last column part), the halo and the right tile read, the columns of the ⌈W/2⌉ of a pooled row
        # (2·xo < W) and those whose window's right column is inside (2·xo + 1 < W)
        last_tile, last_t = Signal.like(d.tiles, name="last_tile"), Signal.like(d.T, name="last_t")
        last_y, last_part = Signal.like(d.H, name="last_y"), Signal(range(len(COLUMN_PARTS)), name="last_part")
        halo_row, halo_column = Signal(name="halo_row"), Signal(name="halo_column")
        right_tile = Signal(name="right_tile")
        columns, window_ends = Signal(p.max_w, name="columns"), Signal(p.max_w, name="window_ends")
        reads_left, reads_right = d.tile_dx == 0b11, d.W > p.max_w
        m.d.sync += [last_tile.eq(d.tiles - 1), last_t.eq(d.T - 1), last_y.eq((d.H - 1) >> 1),
                     halo_row.eq(d.tile_dy == 0b11), halo_column.eq(reads_left), right_tile.eq(reads_right),
                     last_part.eq(reads_left + reads_right),
                     columns.eq(Cat(*(d.W > 2 * xo for xo in range(p.max_w)))),
                     window_ends.eq(Cat(*(d.W > 2 * xo + 1 for xo in range(p.max_w))))]
        tile, t = Signal.like(d.tiles, name="tile"), Signal.like(d.T, name="t")
        y = Signal.like(d.H, name="y")                          # the output row
        pool_r = Signal(range(3))                               # the window's input row being read
        part = Signal(range(len(COLUMN_PARTS)))                 # the column part of that row being read
        # the input row 2·y + pool_r − 1, from A's origin (−1 … 2·max_h − 1), kept as a counter beside them
        source_y = Signal(range(-1, 2 * p.max_h), init=-1, name="source_y")
        # one read issued per cycle, from the start cycle on: its address and flags go into registers (the
        # memory reads the address the next cycle) and the counters step to the next read; the last read
        # wraps them to their first values
        issuing, issue, finish = Signal(), Signal(), Signal()
        m.d.comb += issue.eq(self.start | issuing)
        with m.If(issue):
            m.d.comb += finish.eq(count_nested(m, [(part, last_part), (pool_r, 2), (y, last_y), (t, last_t),
                                                   (tile, last_tile)]))
            with m.If(part == last_part):
                with m.If(pool_r != 2):
                    m.d.sync += source_y.eq(source_y + 1)
                with m.Elif(y == last_y):
                    m.d.sync += source_y.eq(-1)
                # (else the next output row's first input row, 2·(y + 1) − 1, is this one's last)
        m.d.sync += issuing.eq(issue & ~finish)
        inner_wrap = (part == last_part) & (pool_r == 2) & (y == last_y) & (t == last_t)

        # the group of each input tile a window reaches in the current channel group, by its tile row and
        # column from A's (−1, 0, +1: k_base and v_base groups apart): derived from the copies while no
        # pass runs, stepped with the channel group — no adder between the counters and the address
        tile_groups = {}
        for dy, row in ((-1, "above"), (0, "a"), (1, "below")):
            for dx, column in ((-1, "left"), (0, "a"), (1, "right")):
                group = Signal(max(1, p.group_bits), name=f"group_{row}_{column}")
                with m.If(~issuing):
                    m.d.sync += group.eq(_stepped(_stepped(d.in_base, d.k_base, dy), d.v_base, dx))
                with m.Elif(inner_wrap):
                    m.d.sync += group.eq(group + 1)
                tile_groups[dy, dx] = group

        above, below = source_y < 0, source_y >= p.max_h
        left, right = halo_column & (part == 0), right_tile & (part == last_part)

        def by_column(dy):
            return Mux(left, tile_groups[dy, -1], Mux(right, tile_groups[dy, 1], tile_groups[dy, 0]))

        group = Mux(above, by_column(-1), Mux(below, by_column(1), by_column(0)))
        # the row in its tile is source_y mod max_h: row −1 is the last row of the tile above
        m.d.sync += self.group_addr.eq(cat_fields(spike_row_layout(p), group=group, t=t, y=source_y))
        take = Mux(above, halo_row, source_y < d.H)             # rows outside the image contribute nothing
        in_part = {"left": left, "A": ~left & ~right, "right": right}
        out_addr = cat_fields(spike_row_layout(p), group=spike_group(p, d.out_base, tile), t=t, y=y)
        flags = [issue & take & in_part[name] for name in COLUMN_PARTS]
        flags += [issue & (pool_r == 2) & (part == last_part), finish, out_addr]
        *arrived, closing, last, write_addr = delayed(m, flags, "read", 1 + READ_LATENCY)
        arrived = dict(zip(COLUMN_PARTS, arrived))

        # the words arrive READ_LATENCY cycles after their reads: each is pooled over the columns of its part
        # into the output row; the window's last word closes the row, which is written and starts over
        pooled = Signal(self.group_word)
        merged = Signal(self.group_word)
        for lane in range(p.n_pe):
            word = self.group_data[lane]
            bits = []
            for xo in range(p.max_w):
                window_bits = []
                for column in (2 * xo - 1, 2 * xo, 2 * xo + 1):
                    name, bit = _column_part(column, p.max_w)
                    # (columns 2·xo − 1 and 2·xo are below W where 2·xo is)
                    inside = window_ends[xo] if column == 2 * xo + 1 else 1
                    window_bits.append(arrived[name] & word[bit] & inside)
                bits.append(pooled[lane][xo] | (Cat(*window_bits).any() & columns[xo]))
            m.d.comb += merged[lane].eq(Cat(*bits))
        m.d.sync += pooled.eq(Mux(closing, 0, merged))
        m.d.comb += [self.word_valid.eq(closing), self.word_addr.eq(write_addr), self.word_data.eq(merged),
                     self.done.eq(last)]
        return m


def _stepped(value, stride, steps):
    """``value + steps · stride`` for ``steps`` −1, 0 or +1 (an adder, no multiplier)."""
    if steps > 0:
        return value + stride
    if steps < 0:
        return value - stride
    return value
