"""Spike memory: bitmap rows of every spike tensor, banked by lane, with row-occupancy words."""

from amaranth import Array, Const, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.ops.conv import SPIKE_READ_LATENCY

__all__ = ["SpikeMemory", "READ_LATENCY"]

#: Cycles from a read's address to its data on ``scan_data``, ``occ_data`` and ``group_data``.
READ_LATENCY = SPIKE_READ_LATENCY


class SpikeMemory(wiring.Component):
    """``n_pe`` banks; channel ``c`` of a tensor placed at group ``g0`` lives in bank ``c % n_pe`` at
    group ``g0 + c // n_pe``. A word ``{group, t, y}`` of a bank is one image row (bit ``x``).

    Banking lets a group read return a position's ``n_pe`` channels at once (the V rows of attention,
    the pooling window, the host) and a write store a row of every bank. Writes are whole words, so
    that each bank maps onto block RAM without bit write enables. Each bank keeps, per group, one
    occupancy bit per row ``{t, y}`` (set when the row holds a spike), so that the scan visits only
    occupied rows: every word write updates its row's bit by a read-modify-write of the group's
    occupancy word one cycle later (forwarded when consecutive writes share a group). The occupancy
    read port serves the scan when no write is under way (the engine never scans while it writes).

    Reads take :data:`READ_LATENCY` cycles: a block RAM's output (5.6 ns from the clock on an ECP5
    without its output register) goes straight into a flip-flop, and the 16-to-1 multiplexer of the
    scan and occupancy words ends in one, so no consumer's logic follows a block RAM or the bank
    multiplexer in the same cycle.

    Ports
    -----
    scan_en, scan_addr, scan_lane : In
        Read row ``scan_addr = {group, t, y}`` of bank ``scan_lane``; ``scan_data``
        :data:`READ_LATENCY` cycles later (held while ``scan_en`` is low).
    scan_data : Out(max_w)
    occ_en, occ_group, occ_lane : In
        Read the occupancy word of ``occ_group`` in bank ``occ_lane``.
    occ_data : Out(max_T * max_h)
        Bit ``t * max_h + y`` set when row ``{t, y}`` holds a spike.
    group_addr : In
        Read row ``{group, t, y}`` of every bank; ``group_data`` :data:`READ_LATENCY` cycles later.
    group_data : Out(ArrayLayout(max_w, n_pe))
    word_valid, word_addr, word_data : In
        Write row ``word_addr`` of every bank (the host's input, pooling, the drain's spikes).
    """

    def __init__(self, params):
        self.params = p = params
        self.addr_bits = p.group_bits + p.t_bits + p.h_bits
        self.rows_bits = p.max_T * p.max_h
        self.group_word = data.ArrayLayout(p.max_w, p.n_pe)
        addr = max(1, self.addr_bits)
        super().__init__({
            "scan_en": In(1), "scan_addr": In(addr), "scan_lane": In(max(1, p.lane_bits)),
            "scan_data": Out(p.max_w),
            "occ_en": In(1), "occ_group": In(max(1, p.group_bits)), "occ_lane": In(max(1, p.lane_bits)),
            "occ_data": Out(self.rows_bits),
            "group_addr": In(addr), "group_data": Out(self.group_word),
            "word_valid": In(1), "word_addr": In(addr), "word_data": In(self.group_word),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        row_bits = p.h_bits + p.t_bits
        scan_words, occ_words = [], []

        def split(addr):
            row = addr[:row_bits] if row_bits else Const(0, 1)
            group = addr[row_bits:] if p.group_bits else Const(0, 1)
            return row, group

        # occupancy update, one cycle behind the word write
        _, write_group = split(self.word_addr)
        update, update_group = Signal(), Signal.like(write_group)
        update_row = Signal(self.rows_bits)
        update_set = Signal(p.n_pe)
        row_index, _ = split(self.word_addr)
        m.d.sync += [update.eq(self.word_valid), update_group.eq(write_group),
                     update_row.eq(Const(1, self.rows_bits) << row_index)]
        for lane in range(p.n_pe):
            m.d.sync += update_set[lane].eq(self.word_data[lane] != 0)
        # the previous cycle's update, for a write to the same group in the cycle after it
        last_update, last_group = Signal(), Signal.like(write_group)
        m.d.sync += [last_update.eq(update), last_group.eq(update_group)]
        forward = last_update & (last_group == update_group)

        for lane in range(p.n_pe):
            bank = memory.Memory(shape=p.max_w, depth=1 << self.addr_bits, init=[])
            occupancy = memory.Memory(shape=self.rows_bits, depth=p.spike_groups, init=[])
            m.submodules[f"bank{lane}"] = bank
            m.submodules[f"occupancy{lane}"] = occupancy
            write, scan, grouped = bank.write_port(), bank.read_port(), bank.read_port()
            occ_write, occ_read = occupancy.write_port(), occupancy.read_port()
            m.d.comb += [write.addr.eq(self.word_addr), write.data.eq(self.word_data[lane]),
                         write.en.eq(self.word_valid),
                         scan.addr.eq(self.scan_addr), scan.en.eq(self.scan_en),
                         grouped.addr.eq(self.group_addr),
                         occ_read.addr.eq(Mux(self.word_valid, write_group, self.occ_group)),
                         occ_read.en.eq(self.word_valid | self.occ_en)]
            written = Signal(self.rows_bits)
            previous = Mux(forward, written, occ_read.data)
            m.d.comb += [occ_write.addr.eq(update_group), occ_write.en.eq(update),
                         occ_write.data.eq(Mux(update_set[lane], previous | update_row, previous & ~update_row))]
            m.d.sync += written.eq(occ_write.data)
            m.d.sync += self.group_data[lane].eq(grouped.data)
            scan_words.append(scan.data)
            occ_words.append(occ_read.data)
        # the bank selection follows the read by one cycle, like the banks' data, and the selected word is
        # registered (a mux per bank: a variable word_select would multiply the index by the width)
        scan_lane = Signal.like(self.scan_lane)
        occ_lane = Signal.like(self.occ_lane)
        with m.If(self.scan_en):
            m.d.sync += scan_lane.eq(self.scan_lane)
        with m.If(self.occ_en):
            m.d.sync += occ_lane.eq(self.occ_lane)
        m.d.sync += [self.scan_data.eq(Array(scan_words)[scan_lane]),
                     self.occ_data.eq(Array(occ_words)[occ_lane])]
        return m
