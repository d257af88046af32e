"""Spike memory: bitmap rows of every spike tensor, banked by lane, with row-occupancy words."""

from amaranth import Array, Const, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SpikeMemory"]


class SpikeMemory(wiring.Component):
    """``n_pe`` banks; channel ``c`` of a tensor placed at group ``g0`` lives in bank ``c % n_pe`` at
    group ``g0 + c // n_pe``. A word ``{group, t, y}`` of a bank is one image row (bit ``x``).

    Banking lets the LIF write one position of ``n_pe`` channels per cycle (one bit in each bank)
    and lets a group read return a position's ``n_pe`` channels at once (the V rows of attention,
    the pooling window, the host). Each bank keeps, per group, one occupancy bit per row
    ``{t, y}`` (set when the row holds a spike), written along with the rows, so that the scan
    visits only occupied rows.

    Ports
    -----
    scan_en, scan_addr, scan_lane : In
        Read row ``scan_addr = {group, t, y}`` of bank ``scan_lane``; ``scan_data`` next cycle
        (held while ``scan_en`` is low).
    scan_data : Out(max_w)
    occ_en, occ_group, occ_lane : In
        Read the occupancy word of ``occ_group`` in bank ``occ_lane``.
    occ_data : Out(max_T * max_h)
        Bit ``t * max_h + y`` set when row ``{t, y}`` holds a spike.
    group_addr : In
        Read row ``{group, t, y}`` of every bank; ``group_data`` next cycle.
    group_data : Out(ArrayLayout(max_w, n_pe))
    word_valid, word_addr, word_data : In
        Write row ``word_addr`` of every bank (the host's input, pooling).
    bit_valid, bit_addr, bit_x, bit_spikes : In
        Write bit ``bit_x`` of row ``bit_addr`` in every bank (lane b's spike into bank b).
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
            "bit_valid": In(1), "bit_addr": In(addr), "bit_x": In(max(1, p.w_bits)), "bit_spikes": In(p.n_pe),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        scan_words, occ_words = [], []
        write_addr = Mux(self.word_valid, self.word_addr, self.bit_addr)
        row_index = write_addr[:p.h_bits + p.t_bits] if p.h_bits + p.t_bits else Const(0, 1)
        row_bit = Signal(self.rows_bits)
        m.d.comb += row_bit.eq(Const(1, self.rows_bits) << row_index)
        group = write_addr[p.h_bits + p.t_bits:] if p.group_bits else Const(0, 1)
        for lane in range(p.n_pe):
            bank = memory.Memory(shape=p.max_w, depth=1 << self.addr_bits, init=[])
            occupancy = memory.Memory(shape=self.rows_bits, depth=p.spike_groups, init=[])
            m.submodules[f"bank{lane}"] = bank
            m.submodules[f"occupancy{lane}"] = occupancy
            write = bank.write_port(granularity=1)
            occ_write = occupancy.write_port(granularity=1)
            scan = bank.read_port()
            grouped = bank.read_port()
            occ_read = occupancy.read_port()
            spike = self.bit_spikes[lane]
            x_bit = Const(1, p.max_w) << self.bit_x
            nonzero = self.word_data[lane] != 0
            m.d.comb += [
                write.addr.eq(write_addr), occ_write.addr.eq(group),
                scan.addr.eq(self.scan_addr), scan.en.eq(self.scan_en),
                grouped.addr.eq(self.group_addr),
                occ_read.addr.eq(self.occ_group), occ_read.en.eq(self.occ_en),
            ]
            with m.If(self.word_valid):
                m.d.comb += [write.data.eq(self.word_data[lane]), write.en.eq(-1),
                             occ_write.data.eq(Mux(nonzero, row_bit, 0)), occ_write.en.eq(row_bit)]
            with m.Elif(self.bit_valid):
                # the first position of a row rewrites its occupancy bit, later spikes set it
                m.d.comb += [write.data.eq(Mux(spike, x_bit, 0)), write.en.eq(x_bit),
                             occ_write.data.eq(Mux(spike, row_bit, 0)),
                             occ_write.en.eq(Mux(spike | (self.bit_x == 0), row_bit, 0))]
            m.d.comb += self.group_data[lane].eq(grouped.data)
            scan_words.append(scan.data)
            occ_words.append(occ_read.data)
        # the bank selection follows the read by one cycle, like the data
        scan_lane = Signal.like(self.scan_lane)
        occ_lane = Signal.like(self.occ_lane)
        with m.If(self.scan_en):
            m.d.sync += scan_lane.eq(self.scan_lane)
        with m.If(self.occ_en):
            m.d.sync += occ_lane.eq(self.occ_lane)
        # a mux per bank (a variable word_select would multiply the index by the width)
        m.d.comb += [self.scan_data.eq(Array(scan_words)[scan_lane]),
                     self.occ_data.eq(Array(occ_words)[occ_lane])]
        return m
