"""Layer engine: one spike-input layer (conv 1×1 / linear or conv 3×3) over all T timesteps."""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .accumulator_array import AccumulatorArray
from .lif_unit import LIFUnit
from .spike_to_event import SpikeToEvent

__all__ = ["LayerEngine", "LOAD_WEIGHTS", "LOAD_BIAS", "LOAD_THRESHOLD", "LOAD_SPIKES"]

#: ``load_target`` values: which memory a host write goes to.
LOAD_WEIGHTS, LOAD_BIAS, LOAD_THRESHOLD, LOAD_SPIKES = 0, 1, 2, 3


class LayerEngine(wiring.Component):
    """Event-driven layer engine.

    Dataflow: for each output tile (``n_pe`` channels), for each input channel, for each tap
    (9 for 3×3, 1 for 1×1), the weight row is fetched once and reused for every spike of that
    channel at every timestep: the spike bitmap rows ``(t, ci, y)`` are scanned and each spike at
    ``x`` adds the row to accumulator ``(t, y − dy + 1, x − dx + 1)`` (events whose target falls
    outside the image are masked away before scanning). Then the LIF pass drains the tile's
    accumulators position by position, timestep by timestep, adds the bias, runs the LIF and
    streams spikes and membranes out. Cycle count: ``docs/hardware.md``.

    Ports
    -----
    load_valid, load_target, load_addr, load_data : In
        Host writes into the weight (rows in (tile, ci, tap) order), bias (per tile), threshold
        (per tile) or spike (address ``{t, ci, y}``, one image row per word) memories; lanes are
        packed lane 0 first (lowest bits), two's complement.
    cin, tiles, T, H, W, kernel3 : In
        Layer shape: input channels, output tiles, timesteps, image size, 3×3 (1) or 1×1 (0).
    start : In(1)
        Pulse to run the layer.
    busy, done : Out(1)
        Running; finished (held until the next start).
    cycles, events : Out(32)
        Cycles of the last run; spike events processed (events × taps × tiles).
    out_valid, out_tile, out_t, out_y, out_x : Out
        One LIF result per cycle during the LIF pass.
    out_spikes : Out(n_pe)
    out_membrane : Out(ArrayLayout(signed(membrane_bits), n_pe))
        Membrane H before reset.
    """

    def __init__(self, params):
        self.params = p = params
        self.row = data.ArrayLayout(signed(p.weight_bits), p.n_pe)
        self.acc_word = data.ArrayLayout(signed(p.acc_bits), p.n_pe)
        self.membrane_word = data.ArrayLayout(signed(p.membrane_bits), p.n_pe)
        self.spike_addr_bits = p.t_bits + p.c_bits + p.h_bits
        load_data_bits = max(self.row.size, self.acc_word.size, self.membrane_word.size, p.max_w)
        load_addr_bits = max((p.weight_depth - 1).bit_length(), self.spike_addr_bits, p.tile_bits, 1)
        super().__init__({
            "load_valid": In(1), "load_target": In(2), "load_addr": In(load_addr_bits),
            "load_data": In(load_data_bits),
            "cin": In(p.c_bits + 1), "tiles": In(p.tile_bits + 1), "T": In(p.t_bits + 1),
            "H": In(p.h_bits + 1), "W": In(p.w_bits + 1), "kernel3": In(1),
            "start": In(1), "busy": Out(1), "done": Out(1), "cycles": Out(32), "events": Out(32),
            "out_valid": Out(1), "out_tile": Out(max(1, p.tile_bits)), "out_t": Out(max(1, p.t_bits)),
            "out_y": Out(max(1, p.h_bits)), "out_x": Out(max(1, p.w_bits)), "out_spikes": Out(p.n_pe),
            "out_membrane": Out(self.membrane_word),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.weights = weights = memory.Memory(shape=self.row, depth=p.weight_depth, init=[])
        m.submodules.bias = bias = memory.Memory(shape=self.acc_word, depth=p.max_tiles, init=[])
        m.submodules.threshold = threshold = memory.Memory(shape=self.membrane_word, depth=p.max_tiles, init=[])
        m.submodules.spikes = spikes = memory.Memory(shape=p.max_w, depth=1 << self.spike_addr_bits, init=[])
        m.submodules.array = array = AccumulatorArray(p)
        m.submodules.scanner = scanner = SpikeToEvent(p.max_w)
        # Row occupancy: per input channel one bit per bitmap row {t, y}, kept by the load path, so
        # the scan visits only rows that hold spikes.
        rows_bits = p.max_T * p.max_h
        m.submodules.occupancy = occupancy = memory.Memory(shape=rows_bits, depth=p.max_cin, init=[])
        m.submodules.row_scanner = row_scanner = SpikeToEvent(rows_bits)
        m.submodules.lif = lif = LIFUnit(p)

        # Host loading: one write port per memory, selected by load_target.
        for target, mem in ((0, weights), (1, bias), (2, threshold), (3, spikes)):
            port = mem.write_port()
            m.d.comb += [port.addr.eq(self.load_addr), port.data.eq(self.load_data),
                         port.en.eq(self.load_valid & (self.load_target == target))]
        occupancy_write = occupancy.write_port()
        occupancy_read = occupancy.read_port(transparent_for=(occupancy_write,))
        load_row = self.load_addr[:p.h_bits + p.c_bits + p.t_bits]
        load_ci = load_row[p.h_bits:p.h_bits + p.c_bits]
        load_bit = Cat(load_row[:p.h_bits], load_row[p.h_bits + p.c_bits:])     # {t, y}
        loading_spikes = self.load_valid & (self.load_target == LOAD_SPIKES)
        pending_load, pending_ci = Signal(), Signal.like(load_ci)
        pending_bit, pending_nonzero = Signal.like(load_bit), Signal()
        m.d.sync += [pending_load.eq(loading_spikes), pending_ci.eq(load_ci), pending_bit.eq(load_bit),
                     pending_nonzero.eq(self.load_data[:p.max_w] != 0)]
        m.d.comb += occupancy_read.addr.eq(load_ci)
        with m.If(pending_load):   # read at c, write at c+1; transparency covers back-to-back rows
            m.d.comb += [occupancy_write.en.eq(1), occupancy_write.addr.eq(pending_ci),
                         occupancy_write.data.eq((occupancy_read.data & ~(Const(1, rows_bits) << pending_bit))
                                                 | (pending_nonzero << pending_bit))]
        weight_read = weights.read_port()
        spike_read = spikes.read_port()
        bias_read = bias.read_port()
        threshold_read = threshold.read_port()
        for port in (weight_read, spike_read, bias_read, threshold_read):
            m.d.comb += port.en.eq(0)

        tile = Signal.like(self.tiles)
        ci = Signal.like(self.cin)
        dy = Signal(2)
        dx = Signal(2)
        weight_addr = Signal.like(weight_read.addr)
        t = Signal.like(self.T)
        y = Signal.like(self.H)
        x = Signal.like(self.W)
        x_mask = Signal(p.max_w)
        fresh = Signal()          # the spike word read last cycle arrives now

        # Tap geometry: output row y' = y - dy + 1 must lie in [0, H-1].
        tap_dy = Mux(self.kernel3, dy, 1)
        tap_dx = Mux(self.kernel3, dx, 1)
        first_row = Mux(tap_dy == 2, 1, 0)
        last_row = Mux(tap_dy == 0, self.H - 2, self.H - 1)
        first_col = Mux(tap_dx == 2, 1, 0)
        last_col = Mux(tap_dx == 0, self.W - 2, self.W - 1)
        tap_is_last = ~self.kernel3 | ((dy == 2) & (dx == 2))

        row_t = Signal(max(1, p.t_bits))
        row_y = Signal(max(1, p.h_bits))
        m.d.comb += spike_read.addr.eq(Cat(row_y[:p.h_bits], ci[:p.c_bits], row_t[:p.t_bits]))

        def read_spike_row(t_, y_):
            m.d.comb += [spike_read.en.eq(1), row_t.eq(t_), row_y.eq(y_)]   # fixed widths for Cat
            m.d.sync += fresh.eq(1)

        row_mask = Signal(p.max_T * p.max_h)

        def start_row():
            """Read the bitmap row of the row scanner's next event {t, y} and consume it."""
            row_t_, row_y_ = row_scanner.index >> p.h_bits, row_scanner.index[:p.h_bits]
            m.d.comb += row_scanner.advance.eq(1)
            m.d.sync += [t.eq(row_t_), y.eq(row_y_)]
            read_spike_row(row_t_, row_y_)

        def fetch(row_addr, channel):
            """Read the weight row and the channel's occupancy word (data arrive next cycle)."""
            m.d.comb += [weight_read.en.eq(1), weight_read.addr.eq(row_addr),
                         occupancy_read.addr.eq(channel[:p.c_bits])]

        def next_tap():
            """Advance (tap, ci, tile) after a tap's pass, fetching for the next tap at once so
            that it starts with its occupancy in the next cycle; one weight row per tap."""
            m.d.sync += weight_addr.eq(weight_addr + 1)
            with m.If(tap_is_last):
                m.d.sync += [dy.eq(0), dx.eq(0)]
                with m.If(ci == self.cin - 1):
                    m.d.sync += ci.eq(0)
                    m.next = "LIF_START"
                with m.Else():
                    m.d.sync += ci.eq(ci + 1)
                    fetch(weight_addr + 1, ci + 1)
                    m.next = "ROWS"
            with m.Else():
                with m.If(dx == 2):
                    m.d.sync += [dx.eq(0), dy.eq(dy + 1)]
                with m.Else():
                    m.d.sync += dx.eq(dx + 1)
                fetch(weight_addr + 1, ci)
                m.next = "ROWS"

        busy = Signal()
        m.d.comb += self.busy.eq(busy)
        m.d.sync += fresh.eq(0)
        with m.If(busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        drain_pending = Signal()
        drain_t, drain_y, drain_x = Signal.like(t), Signal.like(y), Signal.like(x)
        membrane = Signal(self.membrane_word.size)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [busy.eq(1), self.done.eq(0), self.cycles.eq(0), self.events.eq(0),
                                 tile.eq(0), ci.eq(0), dy.eq(0), dx.eq(0), weight_addr.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):   # first tap of a tile
                fetch(weight_addr, ci)
                m.next = "ROWS"
            with m.State("ROWS"):
                # weight row and occupancy word arrived: visit only the occupied rows this tap reaches
                mask = [((i >= first_col) & (i <= last_col)) for i in range(p.max_w)]
                rows = [((b >> p.h_bits) < self.T) & ((b & (p.max_h - 1)) >= first_row)
                        & ((b & (p.max_h - 1)) <= last_row) for b in range(p.max_T * p.max_h)]
                m.d.comb += row_mask.eq(Cat(*rows))
                m.d.sync += x_mask.eq(Cat(*mask))
                m.d.comb += [row_scanner.word.eq(occupancy_read.data & row_mask), row_scanner.load.eq(1)]
                with m.If(row_scanner.valid & ~((self.H == 1) & (tap_dy != 1))):
                    start_row()
                    m.next = "SCAN"
                with m.Else():
                    next_tap()
            with m.State("SCAN"):
                m.d.comb += [scanner.word.eq(spike_read.data & x_mask), scanner.load.eq(fresh),
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
            with m.State("LIF_START"):
                m.d.comb += [bias_read.en.eq(1), bias_read.addr.eq(tile),
                             threshold_read.en.eq(1), threshold_read.addr.eq(tile)]
                m.d.sync += [t.eq(0), y.eq(0), x.eq(0)]
                m.next = "LIF"
            with m.State("LIF"):
                m.d.comb += [array.drain_valid.eq(1),
                             array.drain_addr.eq(Cat(x[:p.w_bits], y[:p.h_bits], t[:p.t_bits]))]
                with m.If(t == self.T - 1):
                    m.d.sync += t.eq(0)
                    with m.If(x == self.W - 1):
                        m.d.sync += x.eq(0)
                        with m.If(y == self.H - 1):
                            m.next = "LIF_FLUSH"
                        with m.Else():
                            m.d.sync += y.eq(y + 1)
                    with m.Else():
                        m.d.sync += x.eq(x + 1)
                with m.Else():
                    m.d.sync += t.eq(t + 1)
            with m.State("LIF_FLUSH"):
                with m.If(tile == self.tiles - 1):
                    m.next = "DONE"
                with m.Else():
                    m.d.sync += tile.eq(tile + 1)
                    m.next = "FETCH"
            with m.State("DONE"):
                m.d.sync += [busy.eq(0), self.done.eq(1)]
                m.next = "IDLE"

        # LIF data stage: the drained word of the previous cycle.
        m.d.sync += [drain_pending.eq(array.drain_valid), drain_t.eq(t), drain_y.eq(y), drain_x.eq(x)]
        m.d.comb += [lif.acc.eq(array.drain_data), lif.bias.eq(bias_read.data),
                     lif.threshold.eq(threshold_read.data),
                     lif.v.eq(Mux(drain_t == 0, 0, membrane))]
        with m.If(drain_pending):
            m.d.sync += membrane.eq(lif.v_next)
        m.d.comb += [self.out_valid.eq(drain_pending), self.out_tile.eq(tile), self.out_t.eq(drain_t),
                     self.out_y.eq(drain_y), self.out_x.eq(drain_x), self.out_spikes.eq(lif.spike),
                     self.out_membrane.eq(lif.h)]
        return m
