"""Spike memory: bitmap rows of every spike tensor, banked by lane, with row-occupancy words."""

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.ops.conv import SPIKE_READ_LATENCY

from .logic import delayed, replicated

__all__ = ["SpikeMemory", "READ_LATENCY", "row_access"]

#: Cycles from a read's address to its data on ``scan_data``, ``occ_data`` and ``group_data``.
READ_LATENCY = SPIKE_READ_LATENCY


def row_access(params, user=True):
    """The members through which a unit reads a row ``{group, t, y}`` of every bank (``group_addr``, then
    ``group_data`` :data:`READ_LATENCY` cycles later) and writes one (``word_valid``, ``word_addr``,
    ``word_data``): as the unit declares them (``user``), or as the memory does."""
    p = params
    word, addr = data.ArrayLayout(p.max_w, p.n_pe), max(1, p.group_bits + p.t_bits + p.h_bits)
    drive, take = (Out, In) if user else (In, Out)
    return {"group_addr": drive(addr), "group_data": take(word),
            "word_valid": drive(1), "word_addr": drive(addr), "word_data": drive(word)}


class SpikeMemory(wiring.Component):
    """``n_pe`` banks; channel ``c`` of a tensor placed at group ``g0`` lives in bank ``c % n_pe`` at
    group ``g0 + c // n_pe``. A word ``{group, t, y}`` of a bank is one image row (bit ``x``).

    Banking lets a group read return a position's ``n_pe`` channels at once (the V rows of attention,
    the pooling window, the host) and a write store a row of every bank. Writes are whole words, so
    that each bank maps onto block RAM without bit write enables. Each bank keeps, per group, one
    occupancy bit per row ``{t, y}`` (set when the row holds a spike), so that the scan visits only
    occupied rows: every word write updates its row's bit by a read-modify-write of the group's
    occupancy word two cycles later: the word is read with the write and registered, and the two
    updates landing in between are forwarded into it (also into the scan's occupancy reads, which
    thus see every write made before them). The occupancy
    read port serves the scan when no write is under way (the engine never scans while it writes).

    Reads take :data:`READ_LATENCY` cycles: every input is registered first (the addresses in a copy
    per bank), each bank's block-RAM output (5.6 ns from the clock on an ECP5 without its output
    register) goes straight into a flip-flop, then the 16-to-1 multiplexer of the scan and occupancy
    words (and the group word, to keep one latency) ends in another, so no logic precedes or follows a
    block RAM, and no address or bank's word crosses the chip, in the same cycle as a unit's logic.
    Writes land a cycle after they are presented, as the reads are taken: the order stays.

    Ports
    -----
    scan_en, scan_addr, scan_lane : In
        Read row ``scan_addr = {group, t, y}`` of bank ``scan_lane``; ``scan_data``
        :data:`READ_LATENCY` cycles later (held while ``scan_en`` is low).
    scan_data : Out(max_w)
    occ_en, occ_group, occ_lane : In
        Read the occupancy word of ``occ_group`` in bank ``occ_lane``.
    occ_data : Out(max_T * max_h)
        Bit ``t * max_h + y`` set when row ``{t, y}`` holds a spike: :data:`READ_LATENCY` cycles after
        ``occ_en``, for that cycle only (the occupancy words are read every cycle, so that no enable
        but the core's reaches their registers).
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
            **row_access(p, user=False),
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

        # every input registered first, the block RAMs' addresses and enables in a copy per bank: the
        # units compute and multiplex their addresses, and the banks lie all over the chip (one net from
        # that logic to every bank took most of a cycle in routing); all inputs alike, so that reads and
        # writes keep their order
        scan_en, scan_lane, occ_en, occ_group, occ_lane, word_valid, word_addr, word_data = delayed(
            m, [self.scan_en, self.scan_lane, self.occ_en, self.occ_group, self.occ_lane, self.word_valid,
                self.word_addr, self.word_data], "input")
        bank_inputs = {name: replicated(m, value, p.n_pe, f"bank_{name}")
                       for name, value in (("scan_en", self.scan_en), ("scan_addr", self.scan_addr),
                                           ("group_addr", self.group_addr), ("word_valid", self.word_valid),
                                           ("word_addr", self.word_addr))}

        # occupancy update, two cycles behind the word write: the group's occupancy word is read with the
        # write and registered before it is modified
        row_index, write_group = split(word_addr)
        occ_addr = Mux(word_valid, write_group, occ_group)
        set_lanes = Cat(*(word_data[lane] != 0 for lane in range(p.n_pe)))
        *write_, read_group = delayed(
            m, [word_valid, write_group, Const(1, self.rows_bits) << row_index, set_lanes, occ_addr], "write")
        update, update_group, update_row, update_set = delayed(m, write_, "update")
        # a word read two cycles ago has not seen the two updates since (the last one lands now): they are
        # forwarded into it, for the update under way and for the scan's occupancy reads alike; whether
        # they hit its group is known a cycle ahead
        last_update, last_group = delayed(m, [update, update_group], "last_update")
        # (one copy of each flag per lane: each drives the lane's whole occupancy word)
        forward_last = replicated(m, update & (update_group == read_group), p.n_pe, "forward_last")
        forward_older = replicated(m, last_update & (last_group == read_group), p.n_pe, "forward_older")

        for lane in range(p.n_pe):
            # no word is read in the cycle it is written (the engine's phases write or read a tensor, and
            # the host's write cycle ignores its read): Yosys need not emulate read-during-write, which
            # would put address comparators between the read address and the word's register
            bank = memory.Memory(shape=p.max_w, depth=1 << self.addr_bits, init=[], attrs={"no_rw_check": 1})
            occupancy = memory.Memory(shape=self.rows_bits, depth=p.spike_groups, init=[])
            m.submodules[f"bank{lane}"] = bank
            m.submodules[f"occupancy{lane}"] = occupancy
            write, scan, grouped = bank.write_port(), bank.read_port(), bank.read_port()
            occ_write, occ_read = occupancy.write_port(), occupancy.read_port()
            copy = {name: copies[lane] for name, copies in bank_inputs.items()}
            m.d.comb += [write.addr.eq(copy["word_addr"]), write.data.eq(word_data[lane]),
                         write.en.eq(copy["word_valid"]),
                         scan.addr.eq(copy["scan_addr"]), scan.en.eq(copy["scan_en"]),
                         grouped.addr.eq(copy["group_addr"]),
                         occ_read.addr.eq(occ_addr)]
            # every block-RAM output straight into a register (the banks lie apart on the chip: routing
            # their words to one multiplexer takes most of a cycle by itself)
            group_word, scan_word, occ_stored = delayed(m, [grouped.data, scan.data, occ_read.data], f"bank{lane}")
            written_last, written_older = Signal(self.rows_bits), Signal(self.rows_bits)
            occ_word = Signal(self.rows_bits)
            m.d.comb += occ_word.eq(Mux(forward_last[lane], written_last,
                                        Mux(forward_older[lane], written_older, occ_stored)))
            m.d.comb += [occ_write.addr.eq(update_group), occ_write.en.eq(update),
                         occ_write.data.eq(Mux(update_set[lane], occ_word | update_row, occ_word & ~update_row))]
            m.d.sync += [written_last.eq(occ_write.data), written_older.eq(written_last)]
            m.d.sync += self.group_data[lane].eq(group_word)
            scan_words.append(scan_word)
            occ_words.append(occ_word)
        # the bank selection follows the read by two cycles, like the banks' registered words, and the
        # selected word is registered (a mux per bank: a variable word_select would multiply the index by
        # the width)
        scan_lane_held, occ_lane_held = Signal.like(self.scan_lane), Signal.like(self.occ_lane)
        with m.If(scan_en):
            m.d.sync += scan_lane_held.eq(scan_lane)
        with m.If(occ_en):
            m.d.sync += occ_lane_held.eq(occ_lane)
        scan_lane, occ_lane = delayed(m, [scan_lane_held, occ_lane_held], "lane")
        m.d.sync += [self.scan_data.eq(Array(scan_words)[scan_lane]),
                     self.occ_data.eq(Array(occ_words)[occ_lane])]
        return m
