"""Spike scanner: the event-driven accumulation pass of CONV and ATTENTION over one output tile."""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.descriptor import DESCRIPTOR_LAYOUT, OPCODES
from spikeforge.interface.layout import cat_fields, spike_row_layout

from .logic import check_params, spike_group
from .spike_to_event import SpikeToEvent

__all__ = ["SpikeScanner"]


class SpikeScanner(wiring.Component):
    """One accumulation pass: for each input channel ``ci`` of ``desc.cin``, each bit plane and each
    tap (9 for ``kernel3``, else 1), fetch the weight row once, pick the occupied bitmap rows ``{t, y}``
    the tap reaches (a :class:`SpikeToEvent` over the occupancy word), scan each (a second one over
    the row, columns outside the tap's reach masked off) and emit one accumulator event per spike:
    the spike at ``(t, y, x)`` adds the row, shifted by the plane, to accumulator ``{t, y − dy + 1,
    x − dx + 1}``. Spike channel ``ci·planes + plane`` is read from group ``in_base``.

    Rows are those with ``t < T`` (``t = 0`` for a ``static`` input) or, for ATTENTION, ``t = t_sel``.
    The weight and occupancy reads of the next tap are issued in the last cycle of the current one.
    A pass takes ``1 + Σ_ci Σ_tap [1 + Σ_{occupied rows reached} max(1, spikes in the masked row)]``
    cycles from the one after ``start`` to ``done`` included; weight rows follow one another in
    (ci, tap, plane) order, continuing from the previous pass unless ``rewind``.

    Ports
    -----
    desc : In(DESCRIPTOR_LAYOUT)
        The descriptor (``op``, ``kernel3``, ``static``, ``cin``, ``planes``, ``T``, ``H``, ``W``,
        ``in_base``, ``weight_base``), stable during the pass.
    t_sel : In(DESCRIPTOR_LAYOUT["T"].shape)
        ATTENTION: the timestep whose rows are scanned.
    start : In(1)
        Begin a pass (the first weight fetch is next cycle).
    rewind : In(1)
        With ``start``: the first weight row is ``desc.weight_base``; otherwise the row after the
        previous pass's last (CONV tiles follow one another in the weight memory).
    done : Out(1)
        The last cycle of the pass.
    weight_en, weight_addr : Out
        Weight-row read (``weight_addr`` of ``range(weight_rows)``).
    weight_data : In(ArrayLayout(signed(weight_bits), n_pe))
        The row read one cycle earlier (held while ``weight_en`` is low).
    occ_en, occ_group, occ_lane : Out
        Occupancy read of a spike channel (:class:`SpikeMemory`).
    occ_data : In(max_T * max_h)
    scan_en, scan_addr, scan_lane : Out
        Bitmap row read of a spike channel (:class:`SpikeMemory`).
    scan_data : In(max_w)
    event_valid, event_addr, event_row, event_shift : Out
        One accumulation event per cycle (:class:`AccumulatorArray`): word ``{t, y, x}``, the weight
        row and its left shift (the bit plane).
    """

    def __init__(self, params):
        self.params = p = check_params(params)
        row = data.ArrayLayout(signed(p.weight_bits), p.n_pe)
        spike_addr = max(1, p.group_bits + p.t_bits + p.h_bits)
        lane = max(1, p.lane_bits)
        super().__init__({
            "desc": In(DESCRIPTOR_LAYOUT), "t_sel": In(DESCRIPTOR_LAYOUT["T"].shape),
            "start": In(1), "rewind": In(1), "done": Out(1),
            "weight_en": Out(1), "weight_addr": Out(range(p.weight_rows)), "weight_data": In(row),
            "occ_en": Out(1), "occ_group": Out(max(1, p.group_bits)), "occ_lane": Out(lane),
            "occ_data": In(p.max_T * p.max_h),
            "scan_en": Out(1), "scan_addr": Out(spike_addr), "scan_lane": Out(lane), "scan_data": In(p.max_w),
            "event_valid": Out(1), "event_addr": Out(max(1, p.t_bits + p.h_bits + p.w_bits)),
            "event_row": Out(row), "event_shift": Out(3),   # AccumulatorArray.event_shift
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        d = self.desc
        lb = p.lane_bits
        m.submodules.row_scanner = row_scanner = SpikeToEvent(p.max_T * p.max_h)
        m.submodules.scanner = scanner = SpikeToEvent(p.max_w)
        is_attention = d.op == OPCODES["ATTENTION"]

        ci = Signal.like(d.cin)              # input channel (weight column)
        plane = Signal.like(d.planes)
        channel = Signal.like(d.cin)         # spike channel scanned: ci * planes + plane
        channel_base = Signal.like(d.cin)    # ci * planes
        dy, dx = Signal(range(3)), Signal(range(3))
        row = Signal.like(d.weight_base)     # weight row of (ci, tap)
        t, y = Signal.like(d.T), Signal.like(d.H)   # the bitmap row being scanned
        fresh = Signal()                     # its word arrives this cycle
        x_mask = Signal(p.max_w)
        m.d.sync += fresh.eq(0)

        def group_of(ch):
            return spike_group(p, d.in_base, ch >> lb)

        row_t, row_y = Signal(max(1, p.t_bits)), Signal(max(1, p.h_bits))
        m.d.comb += [self.scan_addr.eq(cat_fields(spike_row_layout(p), group=group_of(channel),
                                                  t=row_t, y=row_y)),
                     self.scan_lane.eq(channel[:lb] if lb else 0),
                     self.event_shift.eq(plane)]

        # tap geometry: the rows and columns of the input the tap (dy, dx) reaches
        tap_dy = Mux(d.kernel3, dy, 1)
        tap_dx = Mux(d.kernel3, dx, 1)
        first_row = Mux(tap_dy == 2, 1, 0)
        last_row = Mux(tap_dy == 0, d.H - 2, d.H - 1)
        first_col = Mux(tap_dx == 2, 1, 0)
        last_col = Mux(tap_dx == 0, d.W - 2, d.W - 1)
        tap_is_last = ~d.kernel3 | ((dy == 2) & (dx == 2))
        scan_T = Mux(d.static, 1, d.T)

        def start_row():
            row_t_, row_y_ = row_scanner.index >> p.h_bits, row_scanner.index[:p.h_bits]
            m.d.comb += [row_scanner.advance.eq(1), self.scan_en.eq(1), row_t.eq(row_t_), row_y.eq(row_y_)]
            m.d.sync += [t.eq(row_t_), y.eq(row_y_), fresh.eq(1)]

        def fetch(row_addr, ch):
            m.d.comb += [self.weight_en.eq(1), self.weight_addr.eq(row_addr),
                         self.occ_en.eq(1), self.occ_group.eq(group_of(ch)),
                         self.occ_lane.eq(ch[:lb] if lb else 0)]

        def next_tap():
            with m.If(plane != d.planes - 1):
                m.d.sync += [plane.eq(plane + 1), channel.eq(channel + 1)]
                fetch(row, channel + 1)
                m.next = "ROWS"
            with m.Else():
                m.d.sync += [plane.eq(0), channel.eq(channel_base), row.eq(row + 1)]
                with m.If(tap_is_last):
                    m.d.sync += [dy.eq(0), dx.eq(0)]
                    with m.If(ci == d.cin - 1):
                        m.d.sync += [ci.eq(0), channel.eq(0), channel_base.eq(0)]
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        next_base = channel_base + d.planes
                        m.d.sync += [ci.eq(ci + 1), channel_base.eq(next_base), channel.eq(next_base)]
                        fetch(row + 1, next_base)
                        m.next = "ROWS"
                with m.Else():
                    with m.If(dx == 2):
                        m.d.sync += [dx.eq(0), dy.eq(dy + 1)]
                    with m.Else():
                        m.d.sync += dx.eq(dx + 1)
                    fetch(row + 1, channel_base)
                    m.next = "ROWS"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [ci.eq(0), plane.eq(0), channel.eq(0), channel_base.eq(0), dy.eq(0), dx.eq(0)]
                    with m.If(self.rewind):
                        m.d.sync += row.eq(d.weight_base)
                    m.next = "FETCH"
            with m.State("FETCH"):
                fetch(row, channel)
                m.next = "ROWS"
            with m.State("ROWS"):
                # the occupied rows this tap reaches, in time (t < T, or t_sel) and in height
                mask = [((i >= first_col) & (i <= last_col)) for i in range(p.max_w)]
                rows = []
                for b in range(p.max_T * p.max_h):
                    row_t_, row_y_ = b >> p.h_bits, b & (p.max_h - 1)
                    in_time = Mux(is_attention, row_t_ == self.t_sel, row_t_ < scan_T)
                    rows.append(in_time & (row_y_ >= first_row) & (row_y_ <= last_row))
                m.d.sync += x_mask.eq(Cat(*mask))
                m.d.comb += [row_scanner.word.eq(self.occ_data & Cat(*rows)), row_scanner.load.eq(1)]
                with m.If(row_scanner.valid & ~((d.H == 1) & (tap_dy != 1))):
                    start_row()
                    m.next = "SCAN"
                with m.Else():
                    next_tap()
            with m.State("SCAN"):
                m.d.comb += [scanner.word.eq(self.scan_data & x_mask), scanner.load.eq(fresh),
                             scanner.advance.eq(scanner.valid)]
                target_x = scanner.index - tap_dx + 1
                target_y = y - tap_dy + 1
                with m.If(scanner.valid):
                    m.d.comb += [self.event_valid.eq(1), self.event_row.eq(self.weight_data),
                                 self.event_addr.eq(Cat(target_x[:p.w_bits], target_y[:p.h_bits], t[:p.t_bits]))]
                with m.If(scanner.last):
                    with m.If(row_scanner.valid):
                        start_row()
                    with m.Else():
                        next_tap()
        return m
