"""Engine: executes one layer descriptor (CONV, POOL, ATTENTION, HEAD) on the accelerator's memories."""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.descriptor import DESCRIPTOR_LAYOUT, OPCODES
from spikeforge.interface.layout import cat_fields, spike_row_layout, stream_word_layout
from spikeforge.interface.regmap import OFFSET_BITS, WINDOW_BITS, window

from .accumulator_array import AccumulatorArray
from .lif_unit import LIFUnit
from .spike_memory import SpikeMemory
from .spike_to_event import SpikeToEvent

__all__ = ["Engine", "host_data_bits"]


def _fits(value, bits):
    """``value`` (signed) is representable in ``bits`` (a signal) bits of two's complement."""
    high = value >> (bits - 1).as_unsigned()
    return (high == 0) | (high == -1)


def _count(m, counters, finished):
    """Advance nested loop counters ``[(signal, last value), ...]`` (innermost first) by one step;
    when the outermost wraps, go to state ``finished``."""
    signal, last = counters[0]
    with m.If(signal == last):
        m.d.sync += signal.eq(0)
        if len(counters) > 1:
            _count(m, counters[1:], finished)
        else:
            m.next = finished
    with m.Else():
        m.d.sync += signal.eq(signal + 1)


def _popcount(word):
    total = Const(0, 1)
    for bit in word:
        total = total + bit
    return total


def host_data_bits(params):
    """Width of the engine's host data: its widest memory word (threshold, bias, weight or spike rows)."""
    p = params
    return p.n_pe * max(p.weight_bits, p.acc_bits, p.membrane_bits, p.max_w)


class Engine(wiring.Component):
    """Runs the descriptor ``desc`` from ``start`` to ``done`` (docs/firmware.md, docs/hardware.md).

    CONV: event-driven spike accumulation (weight row per (tile, channel, tap, plane) fetched once,
    reused for every spike at every timestep), then a drain pass per tile that adds bias and residual,
    writes the stream and runs the LIF. POOL: OR over 3×3 windows, stride 2. ATTENTION: per tile and
    timestep, Kᵀ·V by AND-and-count into scratch weight rows, then the Q spikes accumulate them; the
    drain runs attn_lif. HEAD: stream sums per channel, then the logits bit-serially.

    Ports
    -----
    desc : In(DESCRIPTOR_LAYOUT)
        The descriptor, stable from ``start`` to ``done``.
    start : In(1)
    busy, done : Out(1)
        ``done`` pulses for one cycle at the end.
    overflow : Out(1)
        Pulses when a result exceeds the descriptor's ``check_bits`` (or a head sum its ``sum_bits``).
    events : Out(32)
        Accumulation events of the descriptor running or last run.
    host_we, host_window, host_offset, host_wdata : In
        Host writes into the WEIGHTS, BIAS, THRESHOLD and SPIKES windows (only while idle).
    host_rdata : Out(host_data_bits)
        Read data of the window and offset presented one cycle earlier.
    drain_valid, drain_tile, drain_t, drain_y, drain_x : Out
        One drained position per cycle (CONV, ATTENTION), for single-layer checks.
    drain_spikes : Out(n_pe)
    drain_membrane : Out(ArrayLayout(signed(membrane_bits), n_pe))
        The LIF's spikes and membrane H before reset at that position.
    """

    def __init__(self, params):
        self.params = p = params
        self.row = data.ArrayLayout(signed(p.weight_bits), p.n_pe)
        self.acc_word = data.ArrayLayout(signed(p.acc_bits), p.n_pe)
        self.membrane_word = data.ArrayLayout(signed(p.membrane_bits), p.n_pe)
        self.host_data_bits = host_data_bits(p)
        super().__init__({
            "desc": In(DESCRIPTOR_LAYOUT), "start": In(1), "busy": Out(1), "done": Out(1),
            "overflow": Out(1), "events": Out(32),
            "host_we": In(1), "host_window": In(WINDOW_BITS), "host_offset": In(OFFSET_BITS),
            "host_wdata": In(self.host_data_bits), "host_rdata": Out(self.host_data_bits),
            "drain_valid": Out(1), "drain_tile": Out(8), "drain_t": Out(5), "drain_y": Out(8), "drain_x": Out(8),
            "drain_spikes": Out(p.n_pe), "drain_membrane": Out(self.membrane_word),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        d = self.desc
        lb = p.lane_bits
        m.submodules.spikes = spikes = SpikeMemory(p)
        m.submodules.array = array = AccumulatorArray(p)
        m.submodules.scanner = scanner = SpikeToEvent(p.max_w)
        m.submodules.row_scanner = row_scanner = SpikeToEvent(p.max_T * p.max_h)
        m.submodules.lif = lif = LIFUnit(p)
        m.submodules.weights = weights = memory.Memory(shape=self.row, depth=p.weight_rows, init=[])
        m.submodules.bias = bias = memory.Memory(shape=self.acc_word, depth=p.bias_rows, init=[])
        m.submodules.threshold = threshold = memory.Memory(shape=self.membrane_word, depth=p.threshold_rows,
                                                           init=[])
        stream_addr_bits = p.stream_tile_bits + p.t_bits + p.h_bits + p.w_bits
        m.submodules.stream = stream = memory.Memory(shape=self.acc_word, depth=1 << stream_addr_bits, init=[])
        m.submodules.sums = sums = memory.Memory(shape=self.acc_word, depth=p.max_tiles, init=[])

        weight_write, weight_read, weight_host = weights.write_port(), weights.read_port(), weights.read_port()
        bias_write, bias_read, bias_host = bias.write_port(), bias.read_port(), bias.read_port()
        threshold_write, threshold_read = threshold.write_port(), threshold.read_port()
        threshold_host = threshold.read_port()
        stream_write, stream_read, stream_host = stream.write_port(), stream.read_port(), stream.read_port()
        sums_write, sums_read = sums.write_port(), sums.read_port()
        logits = Signal(self.acc_word)

        # ---- host access (idle only) -------------------------------------------------------
        host = {name: window(name).index for name in ("WEIGHTS", "BIAS", "THRESHOLD", "SPIKES", "STREAM",
                                                      "LOGITS")}
        host_write = self.host_we & ~self.busy
        for port, name in ((weight_write, "WEIGHTS"), (bias_write, "BIAS"), (threshold_write, "THRESHOLD")):
            m.d.comb += [port.addr.eq(self.host_offset), port.data.eq(self.host_wdata),
                         port.en.eq(host_write & (self.host_window == host[name]))]
        m.d.comb += [spikes.word_valid.eq(host_write & (self.host_window == host["SPIKES"])),
                     spikes.word_addr.eq(self.host_offset), spikes.word_data.eq(self.host_wdata)]
        for port in (weight_host, bias_host, threshold_host, stream_host):
            m.d.comb += port.addr.eq(self.host_offset)
        m.d.comb += spikes.group_addr.eq(self.host_offset)
        read_window = Signal.like(self.host_window)
        m.d.sync += read_window.eq(self.host_window)
        with m.Switch(read_window):
            for name, value in (("WEIGHTS", weight_host.data), ("BIAS", bias_host.data),
                                ("THRESHOLD", threshold_host.data), ("SPIKES", spikes.group_data),
                                ("STREAM", stream_host.data), ("LOGITS", logits)):
                with m.Case(host[name]):
                    m.d.comb += self.host_rdata.eq(value)
        for port in (weight_read, bias_read, threshold_read, sums_read):
            m.d.comb += port.en.eq(0)
        m.d.comb += [spikes.scan_en.eq(0), spikes.occ_en.eq(0)]

        # ---- loop state ----------------------------------------------------------------------
        busy = Signal()
        m.d.comb += self.busy.eq(busy)
        op = d.op
        is_attention = op == OPCODES["ATTENTION"]
        tile = Signal(8)
        ci = Signal(16)            # input channel (weight column)
        plane = Signal(4)
        channel = Signal(16)       # spike channel scanned: ci * planes + plane
        channel_base = Signal(16)  # ci * planes
        dy, dx = Signal(2), Signal(2)
        weight_addr = Signal(20)
        t, y, x = Signal(5), Signal(8), Signal(8)
        t_sel = Signal(5)          # attention: the timestep being accumulated
        fresh = Signal()
        x_mask = Signal(p.max_w)
        m.d.sync += fresh.eq(0)

        def group_of(base, ch):
            return (base + (ch >> lb))[:p.group_bits] if p.group_bits else Const(0, 1)

        spike_rows = spike_row_layout(p)

        def spike_row(group, t_, y_):
            return cat_fields(spike_rows, group=group, t=t_, y=y_)

        scan_group = group_of(d.in_base, channel)
        row_t, row_y = Signal(max(1, p.t_bits)), Signal(max(1, p.h_bits))
        m.d.comb += [spikes.scan_addr.eq(spike_row(scan_group, row_t, row_y)),
                     spikes.scan_lane.eq(channel[:lb] if lb else 0)]

        # ---- CONV / attention accumulation: tap geometry and scanning -----------------------
        tap_dy = Mux(d.kernel3, dy, 1)
        tap_dx = Mux(d.kernel3, dx, 1)
        first_row = Mux(tap_dy == 2, 1, 0)
        last_row = Mux(tap_dy == 0, d.H - 2, d.H - 1)
        first_col = Mux(tap_dx == 2, 1, 0)
        last_col = Mux(tap_dx == 0, d.W - 2, d.W - 1)
        tap_is_last = ~d.kernel3 | ((dy == 2) & (dx == 2))
        scan_T = Mux(d.static, 1, d.T)

        def read_spike_row(t_, y_):
            m.d.comb += [spikes.scan_en.eq(1), row_t.eq(t_), row_y.eq(y_)]
            m.d.sync += fresh.eq(1)

        def start_row():
            row_t_, row_y_ = row_scanner.index >> p.h_bits, row_scanner.index[:p.h_bits]
            m.d.comb += row_scanner.advance.eq(1)
            m.d.sync += [t.eq(row_t_), y.eq(row_y_)]
            read_spike_row(row_t_, row_y_)

        def fetch(row_addr, ch):
            m.d.comb += [weight_read.en.eq(1), weight_read.addr.eq(row_addr),
                         spikes.occ_en.eq(1), spikes.occ_group.eq(group_of(d.in_base, ch)),
                         spikes.occ_lane.eq(ch[:lb] if lb else 0)]

        def next_tap():
            with m.If(plane != d.planes - 1):
                m.d.sync += [plane.eq(plane + 1), channel.eq(channel + 1)]
                fetch(weight_addr, channel + 1)
                m.next = "ROWS"
            with m.Else():
                m.d.sync += [plane.eq(0), channel.eq(channel_base), weight_addr.eq(weight_addr + 1)]
                with m.If(tap_is_last):
                    m.d.sync += [dy.eq(0), dx.eq(0)]
                    with m.If(ci == d.cin - 1):
                        m.d.sync += [ci.eq(0), channel.eq(0), channel_base.eq(0)]
                        with m.If(is_attention & (t_sel != d.T - 1)):
                            m.d.sync += [t_sel.eq(t_sel + 1), y.eq(0)]
                            m.next = "KV"
                        with m.Else():
                            m.next = "DRAIN_START"
                    with m.Else():
                        next_base = channel_base + d.planes
                        m.d.sync += [ci.eq(ci + 1), channel_base.eq(next_base), channel.eq(next_base)]
                        fetch(weight_addr + 1, next_base)
                        m.next = "ROWS"
                with m.Else():
                    with m.If(dx == 2):
                        m.d.sync += [dx.eq(0), dy.eq(dy + 1)]
                    with m.Else():
                        m.d.sync += dx.eq(dx + 1)
                    fetch(weight_addr + 1, channel_base)
                    m.next = "ROWS"

        m.d.comb += array.event_shift.eq(plane)

        # ---- drain pipeline state ------------------------------------------------------------
        drain_pending = Signal()
        drain_t, drain_y, drain_x = Signal.like(t), Signal.like(y), Signal.like(x)
        membrane = Signal(self.membrane_word)

        stream_words = stream_word_layout(p)

        def stream_address(tile_, t_, y_, x_):
            return cat_fields(stream_words, tile=tile_, t=t_, y=y_, x=x_)

        # ---- pooling state -----------------------------------------------------------------
        pool_r = Signal(2)
        pool_pending = Signal()
        pool_acc = Signal(spikes.group_word)
        pool_or = Signal(spikes.group_word)
        m.d.comb += pool_or.eq(Mux(pool_pending, pool_acc.as_value() | spikes.group_data.as_value(),
                                   pool_acc.as_value()))
        pooled_H = (d.H + 1) >> 1
        pooled_W = (d.W + 1) >> 1

        # ---- attention Kᵀ·V state ------------------------------------------------------------
        kv_pending, kv_last = Signal(), Signal()
        kv_row_addr = Signal(20)
        kv_mask = Signal(p.n_pe)
        kv_counts = Signal(self.acc_word)
        head_start, head_count = Signal(16), Signal(8)

        # ---- head state ----------------------------------------------------------------------
        sum_pending, sum_last, sum_tile = Signal(), Signal(), Signal.like(tile)
        sum_acc = Signal(self.acc_word)
        bit = Signal(6)
        horner_pending = Signal()
        horner_lane = Signal(max(1, lb))
        horner_sign = Signal()
        horner_double = Signal()   # the last column of a bit: double for the next lower bit

        m.d.comb += [self.done.eq(0), self.overflow.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [busy.eq(1), self.events.eq(0), tile.eq(0), ci.eq(0), plane.eq(0), channel.eq(0),
                                 channel_base.eq(0), dy.eq(0), dx.eq(0), weight_addr.eq(d.weight_base),
                                 t.eq(0), y.eq(0), x.eq(0), t_sel.eq(0), pool_r.eq(0),
                                 head_start.eq(0), head_count.eq(0), bit.eq(d.sum_bits - 1)]
                    with m.Switch(op):
                        with m.Case(OPCODES["CONV"]):
                            m.next = "FETCH"
                        with m.Case(OPCODES["POOL"]):
                            m.next = "POOL_READ"
                        with m.Case(OPCODES["ATTENTION"]):
                            m.next = "KV"
                        with m.Case(OPCODES["HEAD"]):
                            m.next = "SUM"
                        with m.Default():
                            m.next = "DONE"

            # -- accumulation (CONV and the gated half of ATTENTION) --
            with m.State("FETCH"):
                fetch(weight_addr, channel)
                m.next = "ROWS"
            with m.State("ROWS"):
                mask = [((i >= first_col) & (i <= last_col)) for i in range(p.max_w)]
                rows = []
                for b in range(p.max_T * p.max_h):
                    row_t_, row_y_ = b >> p.h_bits, b & (p.max_h - 1)
                    in_time = Mux(is_attention, row_t_ == t_sel, row_t_ < scan_T)
                    rows.append(in_time & (row_y_ >= first_row) & (row_y_ <= last_row))
                m.d.sync += x_mask.eq(Cat(*mask))
                m.d.comb += [row_scanner.word.eq(spikes.occ_data & Cat(*rows)), row_scanner.load.eq(1)]
                with m.If(row_scanner.valid & ~((d.H == 1) & (tap_dy != 1))):
                    start_row()
                    m.next = "SCAN"
                with m.Else():
                    next_tap()
            with m.State("SCAN"):
                m.d.comb += [scanner.word.eq(spikes.scan_data & x_mask), scanner.load.eq(fresh),
                             scanner.advance.eq(scanner.valid)]
                target_x = scanner.index - tap_dx + 1
                target_y = y - tap_dy + 1
                with m.If(scanner.valid):
                    m.d.comb += [array.event_valid.eq(1), array.event_row.eq(weight_read.data),
                                 array.event_addr.eq(Cat(target_x[:p.w_bits], target_y[:p.h_bits],
                                                         t[:p.t_bits]))]
                    m.d.sync += self.events.eq(self.events + 1)
                with m.If(scanner.last):
                    with m.If(row_scanner.valid):
                        start_row()
                    with m.Else():
                        next_tap()

            # -- drain: bias + residual, stream write-back, LIF --
            with m.State("DRAIN_START"):
                m.d.comb += [bias_read.en.eq(1), bias_read.addr.eq(d.bias_base + tile),
                             threshold_read.en.eq(1), threshold_read.addr.eq(d.threshold_base + tile)]
                m.d.sync += [t.eq(0), y.eq(0), x.eq(0)]
                m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += [array.drain_valid.eq(1),
                             array.drain_addr.eq(Cat(x[:p.w_bits], y[:p.h_bits], Mux(d.static, 0, t)[:p.t_bits])),
                             array.drain_keep.eq(d.static & (t != d.T - 1)),
                             stream_read.addr.eq(stream_address(tile, t, y, x))]
                _count(m, [(t, d.T - 1), (x, d.W - 1), (y, d.H - 1)], "DRAIN_FLUSH")
            with m.State("DRAIN_FLUSH"):
                m.d.sync += [t_sel.eq(0), t.eq(0), y.eq(0), x.eq(0)]
                with m.If(tile == d.tiles - 1):
                    m.next = "DONE"
                with m.Else():
                    m.d.sync += tile.eq(tile + 1)
                    with m.If(is_attention):
                        m.next = "KV"
                    with m.Else():
                        m.next = "FETCH"

            # -- POOL: OR of three rows, then of three columns, stride 2 --
            with m.State("POOL_READ"):
                source_y = (y << 1) + pool_r - 1
                valid = (source_y >= 0) & (source_y < d.H)
                m.d.comb += spikes.group_addr.eq(spike_row(group_of(d.in_base, tile << lb), t, source_y))
                m.d.sync += [pool_pending.eq(valid), pool_acc.eq(pool_or), pool_r.eq(pool_r + 1)]
                with m.If(pool_r == 2):
                    m.d.sync += pool_r.eq(0)
                    m.next = "POOL_WRITE"
            with m.State("POOL_WRITE"):
                pooled = Signal(spikes.group_word)
                for lane in range(p.n_pe):
                    word = pool_or[lane]
                    bits = []
                    for xo in range(p.max_w):
                        window_bits = [word[i] for i in (2 * xo - 1, 2 * xo, 2 * xo + 1) if 0 <= i < p.max_w]
                        bits.append((Cat(*window_bits) != 0) & (xo < pooled_W) if window_bits else Const(0))
                    m.d.comb += pooled[lane].eq(Cat(*bits))
                m.d.comb += [spikes.word_valid.eq(1), spikes.word_addr.eq(spike_row(
                                 group_of(d.out_base, tile << lb), t, y)), spikes.word_data.eq(pooled)]
                m.d.sync += [pool_pending.eq(0), pool_acc.eq(0)]
                m.next = "POOL_READ"
                _count(m, [(y, pooled_H - 1), (t, d.T - 1), (tile, d.tiles - 1)], "DONE")

            # -- ATTENTION, first half: Kᵀ·V rows of timestep t_sel by AND-and-count --
            with m.State("KV"):
                m.d.comb += [spikes.scan_en.eq(1),
                             spikes.scan_addr.eq(spike_row(group_of(d.k_base, ci), t_sel, y)),
                             spikes.scan_lane.eq(ci[:lb] if lb else 0),
                             spikes.group_addr.eq(spike_row(group_of(d.v_base, tile << lb), t_sel, y))]
                lanes = [((tile << lb) + lane) for lane in range(p.n_pe)]
                m.d.sync += [kv_pending.eq(1), kv_last.eq(y == d.H - 1), kv_row_addr.eq(d.weight_base + ci),
                             kv_mask.eq(Cat(*[(j >= head_start) & (j < head_start + d.head_dim) for j in lanes]))]
                with m.If(y == d.H - 1):
                    m.d.sync += y.eq(0)
                    with m.If(head_count == d.head_dim - 1):
                        m.d.sync += [head_count.eq(0), head_start.eq(head_start + d.head_dim)]
                    with m.Else():
                        m.d.sync += head_count.eq(head_count + 1)
                    with m.If(ci == d.cin - 1):
                        m.d.sync += ci.eq(0)
                        m.next = "KV_FLUSH"
                    with m.Else():
                        m.d.sync += ci.eq(ci + 1)
                with m.Else():
                    m.d.sync += y.eq(y + 1)
            with m.State("KV_FLUSH"):
                m.d.sync += [kv_pending.eq(0), head_start.eq(0), head_count.eq(0), channel.eq(0),
                             channel_base.eq(0), weight_addr.eq(d.weight_base)]
                m.next = "FETCH"

            # -- HEAD: per-channel sums of the stream, then Horner over their bits --
            with m.State("SUM"):
                m.d.comb += stream_read.addr.eq(stream_address(tile, t, y, x))
                last = (x == d.W - 1) & (y == d.H - 1) & (t == d.T - 1)
                m.d.sync += [sum_pending.eq(1), sum_last.eq(last), sum_tile.eq(tile)]
                _count(m, [(x, d.W - 1), (y, d.H - 1), (t, d.T - 1), (tile, d.tiles - 1)], "SUM_FLUSH")
            with m.State("SUM_FLUSH"):
                m.d.sync += [sum_pending.eq(0), ci.eq(0), logits.eq(0)]
                m.next = "HORNER"
            with m.State("HORNER"):
                m.d.comb += [sums_read.en.eq(1), sums_read.addr.eq(ci >> lb),
                             weight_read.en.eq(1), weight_read.addr.eq(d.weight_base + ci)]
                m.d.sync += [horner_pending.eq(1), horner_lane.eq(ci[:lb] if lb else 0),
                             horner_sign.eq(bit == d.sum_bits - 1)]
                with m.If(ci == d.cin - 1):
                    m.d.sync += ci.eq(0)
                    m.next = "HORNER_SHIFT"
                with m.Else():
                    m.d.sync += ci.eq(ci + 1)
            with m.State("HORNER_SHIFT"):
                m.d.comb += [bias_read.en.eq(1), bias_read.addr.eq(d.bias_base), horner_double.eq(bit != 0)]
                m.d.sync += horner_pending.eq(0)
                with m.If(bit == 0):
                    m.next = "HEAD_BIAS"
                with m.Else():
                    m.d.sync += bit.eq(bit - 1)
                    m.next = "HORNER"
            with m.State("HEAD_BIAS"):
                for lane in range(p.n_pe):
                    value = logits[lane] + bias_read.data[lane]
                    m.d.sync += logits[lane].eq(value)
                    with m.If(~_fits(value, d.check_bits)):
                        m.d.comb += self.overflow.eq(1)
                m.next = "DONE"

            with m.State("DONE"):
                m.d.sync += busy.eq(0)
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"

        # ---- drain data stage: the word drained last cycle ------------------------------------
        m.d.sync += [drain_pending.eq(array.drain_valid), drain_t.eq(t), drain_y.eq(y), drain_x.eq(x)]
        total = Signal(self.acc_word)
        for lane in range(p.n_pe):
            value = (array.drain_data[lane] + bias_read.data[lane]
                     + Mux(d.residual, stream_read.data[lane], 0))
            m.d.comb += total[lane].eq(value)
            with m.If(drain_pending & ~_fits(value, d.check_bits)):
                m.d.comb += self.overflow.eq(1)
        m.d.comb += [lif.acc.eq(total), lif.bias.eq(0), lif.threshold.eq(threshold_read.data),
                     lif.frac_bits.eq(d.frac_bits),
                     lif.v.eq(Mux(drain_t == 0, 0, membrane))]
        m.d.comb += [self.drain_valid.eq(drain_pending), self.drain_tile.eq(tile), self.drain_t.eq(drain_t),
                     self.drain_y.eq(drain_y), self.drain_x.eq(drain_x), self.drain_spikes.eq(lif.spike),
                     self.drain_membrane.eq(lif.h)]
        with m.If(drain_pending):
            m.d.sync += membrane.eq(lif.v_next)
            m.d.comb += [stream_write.en.eq(d.stream_write),
                         stream_write.addr.eq(stream_address(tile, drain_t, drain_y, drain_x)),
                         stream_write.data.eq(total),
                         spikes.bit_valid.eq(d.lif),
                         spikes.bit_addr.eq(spike_row(group_of(d.out_base, tile << lb), drain_t, drain_y)),
                         spikes.bit_x.eq(drain_x), spikes.bit_spikes.eq(lif.spike)]

        # ---- Kᵀ·V data stage ------------------------------------------------------------------
        counts = Signal(self.acc_word)
        for lane in range(p.n_pe):
            m.d.comb += counts[lane].eq(kv_counts[lane]
                                        + _popcount(spikes.scan_data & spikes.group_data[lane]))
        with m.If(kv_pending):
            m.d.sync += kv_counts.eq(counts)
            with m.If(kv_last):
                m.d.sync += kv_counts.eq(0)
                m.d.comb += [weight_write.en.eq(1), weight_write.addr.eq(kv_row_addr)]
                for lane in range(p.n_pe):
                    m.d.comb += weight_write.data[lane].eq(Mux(kv_mask[lane], counts[lane], 0))

        # ---- head data stages -----------------------------------------------------------------
        sum_next = Signal(self.acc_word)
        for lane in range(p.n_pe):
            m.d.comb += sum_next[lane].eq(sum_acc[lane] + stream_read.data[lane])
        with m.If(sum_pending):
            m.d.sync += sum_acc.eq(sum_next)
            with m.If(sum_last):
                m.d.sync += sum_acc.eq(0)
                m.d.comb += [sums_write.en.eq(1), sums_write.addr.eq(sum_tile), sums_write.data.eq(sum_next)]
                for lane in range(p.n_pe):
                    with m.If(~_fits(sum_next[lane], d.sum_bits)):
                        m.d.comb += self.overflow.eq(1)
        # lane and bit selection by mux and shift (a variable word_select would multiply the index)
        lane_sum = Array(sums_read.data.as_value()[lane * p.acc_bits:(lane + 1) * p.acc_bits]
                         for lane in range(p.n_pe))[horner_lane]
        selected = (lane_sum >> bit)[0]
        with m.If(horner_pending):
            for lane in range(p.n_pe):
                term = Mux(selected, Mux(horner_sign, -weight_read.data[lane], weight_read.data[lane]), 0)
                added = logits[lane] + term
                m.d.sync += logits[lane].eq(Mux(horner_double, added << 1, added))
        return m
