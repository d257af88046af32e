"""Engine: executes one layer descriptor (CONV, POOL, ATTENTION, HEAD, STORE, LOAD) on the accelerator's
memories."""

import operator
from functools import reduce

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.descriptor import DESCRIPTOR_LAYOUT, OPCODES
from spikeforge.interface.regmap import address_layout, window
from spikeforge.ops.conv import STREAM_READ_LATENCY

from .accumulator_array import AccumulatorArray
from .drain import Drain
from .head import Head
from .key_value_product import KeyValueProduct
from .logic import check_params, delayed, enabled_parts
from .spike_memory import READ_LATENCY, SpikeMemory
from .spike_pool import SpikePool
from .spike_scanner import SpikeScanner
from .spill_mover import SpillMover

__all__ = ["Engine", "host_data_bits", "HOST_READ_LATENCY"]

#: Cycles from the host's window and offset to ``host_rdata``: the spike memory's read latency, the
#: longest of the windows' (the stream's block RAM answers earlier, into a register), then each window's
#: word, or 0 unless it is the window read, into registers of its own, and their OR into ``host_rdata``
#: (the words come from memories and registers spread over the chip, and ``host_rdata`` is as wide as the
#: widest of them, :func:`host_data_bits`).
HOST_READ_LATENCY = READ_LATENCY + 2
assert STREAM_READ_LATENCY + 1 <= READ_LATENCY, \
    "a host read of the stream: its registered word must be there with the spike memory's (HOST_READ_LATENCY)"


def host_data_bits(params):
    """Width of the engine's host data: its widest memory word (threshold, bias, weight or spike rows, the logits)."""
    p = params
    return p.n_pe * max(p.weight_bits, p.acc_bits, p.membrane_bits, p.max_w, p.logit_bits)


class Engine(wiring.Component):
    """Runs the descriptor ``desc`` from ``start`` to ``done`` (docs/firmware.md, docs/hardware.md).

    A thin top: it holds the on-chip memories (residual stream, spike bitmaps, accumulators, the
    attention's Kᵀ·V scratch rows), reads the weight, bias and threshold tables through its read
    ports, gives the host access to its memories while idle, and sequences the datapaths, routing
    each shared memory port to the one whose phase runs (one register per phase, set with the
    datapath's ``start``, cleared after its ``done``; the opcode decoded into registers while the
    descriptor settles: a port's select is a flip-flop, and requests are ORed, each datapath raising
    its own only during its pass):

    * CONV: per tile, a :class:`SpikeScanner` pass (event-driven accumulation, each weight row fetched
      once and reused for every spike at every timestep) and a :class:`Drain` pass (bias, residual,
      stream write-back, LIF, spikes); with ``accumulate_only`` (one tile) the scan pass alone, whose
      sums stay in the accumulators for the descriptors that add the rest and drain them;
    * POOL: one :class:`SpikePool` pass (OR over 3×3 windows, stride 2);
    * ATTENTION: per tile and timestep, a :class:`KeyValueProduct` pass (Kᵀ·V rows by AND-and-count
      into scratch weight rows) and a :class:`SpikeScanner` pass of that timestep's Q spikes over
      them; then a :class:`Drain` pass (``attn_lif``);
    * HEAD: one :class:`Head` pass (stream sums per channel, logits bit-serially);
    * STORE, LOAD: one :class:`SpillMover` pass (spike groups copied to SPILL rows, or back).

    Each pass starts in the cycle its predecessor signals ``done``, so the phases follow one another
    without a gap. The engine advances only in cycles after ``run_next``: each unit (and the engine's
    own control) runs under its own registered copy of it, the accumulator array, the drain, the head and
    the key-value product under one per part of theirs (:func:`~spikeforge.hw.logic.enabled_parts`), so
    that a stall reaches the core's flip-flops through one net per part rather than one net to all of them.

    Ports
    -----
    desc : In(DESCRIPTOR_LAYOUT)
        The descriptor, stable from :data:`~spikeforge.interface.descriptor.DESCRIPTOR_SETTLE_CYCLES`
        cycles before ``start`` to ``done`` (the datapaths register what they use of it).
    start : In(1)
    busy, done : Out(1)
        ``done`` pulses for one cycle at the end.
    overflow : Out(1)
        A value of the descriptor's own layer exceeds its declared width: a CONV/ATTENTION result or a
        Kᵀ·V count its ``check_bits``, a head sum its ``sum_bits``, a logit its ``check_bits``.
    membrane_overflow : Out(1)
        A membrane of the fused LIF exceeds the descriptor's ``membrane_bits``.
    events : Out(32)
        Accumulation events of the descriptor running or last run.
    weight_en, weight_addr : Out
    weight_data : In(ArrayLayout(signed(weight_bits), n_pe))
    bias_en, bias_addr : Out
    bias_data : In(ArrayLayout(signed(acc_bits), n_pe))
    threshold_en, threshold_addr : Out
    threshold_data : In(ArrayLayout(signed(membrane_bits), n_pe))
        Read ports of the weight, bias and threshold tables (:class:`~spikeforge.hw.row_reader.RowReader`
        or a memory read like one, :func:`~spikeforge.hw.logic.table_read`): data
        :data:`~spikeforge.interface.external.ROW_READ_LATENCY` cycles after ``en``, held while ``en`` is low.
    spill_read_en, spill_read_addr : Out
    spill_read_data : In(ArrayLayout(max_w, n_pe))
    spill_write_en, spill_write_addr : Out
    spill_write_data : Out(ArrayLayout(max_w, n_pe))
        Read and write ports of the SPILL table in external memory (``range(spill_rows)`` rows of one
        spike-memory group word: a reader like the others, and a
        :class:`~spikeforge.hw.row_writer.RowWriter`): the LOAD and STORE descriptors' (the spike tensors
        that do not fit the spike memory at the same time).
    host_we, host_window, host_offset, host_wdata : In
        Host writes into the SPIKES window (only while idle; the row is written a cycle later, from
        registers, like the datapaths' spike rows).
    host_rdata : Out(host_data_bits)
        Read data of the window and offset presented :data:`HOST_READ_LATENCY` cycles earlier (held
        while they are).
    drain_valid, drain_tile, drain_t, drain_y, drain_x : Out
        One drained position per cycle (CONV, ATTENTION), for single-layer checks; widths of the
        descriptor's ``tiles``, ``T``, ``H`` and ``W``.
    drain_spikes : Out(n_pe)
    drain_membrane : Out(ArrayLayout(signed(membrane_bits), n_pe))
        The LIF's spikes and membrane H before reset at that position.
    run_next : In(1, init=1)
        The engine advances in the next cycle (low: it stands still then, as while the accelerator
        waits for a row from external memory).
    """

    def __init__(self, params):
        self.params = p = check_params(params)
        self.row = data.ArrayLayout(signed(p.weight_bits), p.n_pe)
        self.acc_word = data.ArrayLayout(signed(p.acc_bits), p.n_pe)
        self.membrane_word = data.ArrayLayout(signed(p.membrane_bits), p.n_pe)
        self.group_word = data.ArrayLayout(p.max_w, p.n_pe)
        self.host_data_bits = host_data_bits(p)
        super().__init__({
            "desc": In(DESCRIPTOR_LAYOUT), "start": In(1), "busy": Out(1), "done": Out(1),
            "overflow": Out(1), "membrane_overflow": Out(1), "events": Out(32),
            "weight_en": Out(1), "weight_addr": Out(range(p.weight_rows)), "weight_data": In(self.row),
            "bias_en": Out(1), "bias_addr": Out(range(p.bias_rows)), "bias_data": In(self.acc_word),
            "threshold_en": Out(1), "threshold_addr": Out(range(p.threshold_rows)),
            "threshold_data": In(self.membrane_word),
            "spill_read_en": Out(1), "spill_read_addr": Out(range(p.spill_rows)),
            "spill_read_data": In(self.group_word),
            "spill_write_en": Out(1), "spill_write_addr": Out(range(p.spill_rows)),
            "spill_write_data": Out(self.group_word),
            "host_we": In(1), "host_window": In(address_layout(p).window_bits),
            "host_offset": In(address_layout(p).offset_bits),
            "host_wdata": In(self.host_data_bits), "host_rdata": Out(self.host_data_bits),
            "drain_valid": Out(1), "drain_tile": Out(DESCRIPTOR_LAYOUT["tiles"].shape),
            "drain_t": Out(DESCRIPTOR_LAYOUT["T"].shape), "drain_y": Out(DESCRIPTOR_LAYOUT["H"].shape),
            "drain_x": Out(DESCRIPTOR_LAYOUT["W"].shape),
            "drain_spikes": Out(p.n_pe), "drain_membrane": Out(self.membrane_word),
            "run_next": In(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()      # the engine's own control, memories and multiplexers
        p = self.params
        d = self.desc

        # ---- memories ------------------------------------------------------------------------
        spikes, array = SpikeMemory(p), AccumulatorArray(p)
        # the Kᵀ·V rows of the attention: written by KEY_VALUE, read by the scan like weight rows
        # (no word of these is read in the cycle it is written: KEY_VALUE writes the scratch rows the scan
        # reads later, the drain reads a position's stream word before it writes it back; Yosys need
        # not emulate read-during-write with address comparators before the read word's register)
        no_rw_check = {"no_rw_check": 1}
        m.submodules.scratch = scratch = memory.Memory(shape=self.row, depth=p.scratch_rows, init=[],
                                                       attrs=no_rw_check)
        stream_addr_bits = p.stream_tile_bits + p.t_bits + p.h_bits + p.w_bits
        m.submodules.stream = stream = memory.Memory(shape=self.acc_word, depth=1 << stream_addr_bits, init=[],
                                                     attrs=no_rw_check)
        # one read port per memory (block RAM has two ports): the host reads the stream through it while idle
        scratch_write, scratch_read = scratch.write_port(), scratch.read_port()
        stream_write, stream_read = stream.write_port(), stream.read_port()

        # ---- datapaths -----------------------------------------------------------------------
        scanner, drain, pool, key_value, head = SpikeScanner(p), Drain(p), SpikePool(p), KeyValueProduct(p), Head(p)
        mover = SpillMover(p)
        for unit in (scanner, drain, pool, key_value, head, mover):
            m.d.comb += unit.desc.eq(d)
        tile = Signal.like(d.tiles)
        t_sel = Signal.like(d.T)     # attention: the timestep being accumulated
        # desc-derived decisions in registers, a cycle behind desc (the last indices), then a cycle behind
        # those, tile and t_sel (desc is valid from two cycles before start on; tile and t_sel change many
        # cycles before the ends of phases that read these)
        is_attention, last_tile = Signal(), Signal()
        last_tile_index, last_t_index = Signal.like(d.tiles), Signal.like(d.T)
        m.d.sync += [is_attention.eq(d.op == OPCODES["ATTENTION"]), last_tile_index.eq(d.tiles - 1),
                     last_t_index.eq(d.T - 1), last_tile.eq(tile == last_tile_index)]
        m.d.comb += [scanner.t_sel.eq(t_sel), key_value.t_sel.eq(t_sel), drain.tile.eq(tile),
                     key_value.tile.eq(tile)]
        # read data goes to every unit; a unit uses it only in its own phase
        m.d.comb += [scanner.weight_data.eq(Mux(is_attention, scratch_read.data, self.weight_data)),
                     head.weight_data.eq(self.weight_data),
                     drain.bias_data.eq(self.bias_data), head.bias_data.eq(self.bias_data),
                     drain.threshold_data.eq(self.threshold_data),
                     drain.stream_data.eq(stream_read.data), head.stream_data.eq(stream_read.data),
                     drain.acc_data.eq(array.drain_data),
                     scanner.occ_data.eq(spikes.occ_data),
                     scanner.scan_data.eq(spikes.scan_data), key_value.scan_data.eq(spikes.scan_data),
                     pool.group_data.eq(spikes.group_data), key_value.group_data.eq(spikes.group_data),
                     mover.group_data.eq(spikes.group_data), mover.spill_read_data.eq(self.spill_read_data)]
        # ports with a single user (each drives them only in its phase)
        m.d.comb += [array.event_valid.eq(scanner.event_valid), array.event_addr.eq(scanner.event_addr),
                     array.event_row.eq(scanner.event_row), array.event_shift.eq(scanner.event_shift),
                     array.drain_valid.eq(drain.acc_valid), array.drain_addr.eq(drain.acc_addr),
                     array.drain_keep.eq(drain.acc_keep),
                     self.threshold_en.eq(drain.threshold_en), self.threshold_addr.eq(drain.threshold_addr),
                     self.spill_read_en.eq(mover.spill_read_en), self.spill_read_addr.eq(mover.spill_read_addr),
                     self.spill_write_en.eq(mover.spill_write_en), self.spill_write_addr.eq(mover.spill_write_addr),
                     self.spill_write_data.eq(mover.spill_write_data),
                     # two users, each requesting in its own phase only: no state decode
                     self.bias_en.eq(drain.bias_en | head.bias_en),
                     scratch_write.en.eq(key_value.weight_en), scratch_write.addr.eq(key_value.weight_addr),
                     scratch_write.data.eq(key_value.weight_data),
                     stream_write.en.eq(drain.stream_we), stream_write.addr.eq(drain.stream_waddr),
                     stream_write.data.eq(drain.stream_wdata),
                     self.overflow.eq(drain.overflow | head.overflow | key_value.overflow),
                     self.membrane_overflow.eq(drain.membrane_overflow)]
        m.d.comb += [self.drain_valid.eq(drain.out_valid), self.drain_tile.eq(tile), self.drain_t.eq(drain.out_t),
                     self.drain_y.eq(drain.out_y), self.drain_x.eq(drain.out_x),
                     self.drain_spikes.eq(drain.out_spikes), self.drain_membrane.eq(drain.out_membrane)]
        with m.If(array.event_valid):
            m.d.sync += self.events.eq(self.events + 1)

        # ---- sequencing: one register per phase (one-hot), so that no port's routing and no start
        # decodes a state: a phase's register is set in the cycle its datapath starts and cleared after
        # the cycle it signals done; the descriptor's opcode is decoded into registers while it settles
        phase_names = ("idle", "accumulate", "key_value", "drain", "pool", "head", "spill", "finish")
        phase = {name: Signal(name=f"in_{name}", init=int(name == "idle")) for name in phase_names}
        is_op = {name: Signal(name=f"is_{name.lower()}") for name in ("CONV", "POOL", "HEAD")}
        is_op["ATTENTION"] = is_attention
        m.d.sync += [flag.eq(d.op == OPCODES[name]) for name, flag in is_op.items() if name != "ATTENTION"]
        is_spill = Signal()
        m.d.sync += is_spill.eq((d.op == OPCODES["STORE"]) | (d.op == OPCODES["LOAD"]))
        # a CONV that only accumulates ends after its scan: the accumulators keep its sums for the next
        accumulate_only = Signal()
        m.d.sync += accumulate_only.eq(d.accumulate_only & (d.op == OPCODES["CONV"]))
        is_other = Signal()
        m.d.sync += is_other.eq(~Cat(*(d.op == code for name, code in OPCODES.items()
                                       if name in is_op or name in ("STORE", "LOAD"))).any())
        # what follows a scan pass and a drain pass, decided a cycle after t_sel and tile change (at the
        # ends of passes, many cycles before the next end)
        next_t, next_tile_scan, next_tile_product = Signal(), Signal(), Signal()
        m.d.sync += [next_t.eq(is_attention & (t_sel != last_t_index)),
                     next_tile_scan.eq(~is_attention & (tile != last_tile_index)),
                     next_tile_product.eq(is_attention & (tile != last_tile_index))]
        # a unit's done is high only in the last cycle of its own pass, so in its phase: the starts take
        # it as it is, with the registered decisions above
        go = phase["idle"] & self.start
        m.d.comb += [scanner.start.eq(go & is_op["CONV"] | key_value.done | drain.done & next_tile_scan),
                     scanner.rewind.eq(~phase["drain"]),     # the next tile's weights follow the last tile's
                     key_value.start.eq(go & is_attention | scanner.done & next_t | drain.done & next_tile_product),
                     drain.start.eq(scanner.done & ~next_t & ~accumulate_only),
                     pool.start.eq(go & is_op["POOL"]), head.start.eq(go & is_op["HEAD"]),
                     mover.start.eq(go & is_spill),
                     self.done.eq(phase["finish"])]
        ends = {"accumulate": scanner.done, "key_value": key_value.done, "drain": drain.done, "pool": pool.done,
                "head": head.done, "spill": mover.done}
        starts = {"accumulate": scanner.start, "key_value": key_value.start, "drain": drain.start,
                  "pool": pool.start, "head": head.start, "spill": mover.start}
        for name, end in ends.items():
            m.d.sync += phase[name].eq(phase[name] & ~end | starts[name])
        m.d.sync += [phase["idle"].eq(phase["idle"] & ~self.start | phase["finish"]),
                     phase["finish"].eq(go & is_other | drain.done & last_tile | pool.done | head.done
                                        | mover.done | scanner.done & accumulate_only)]
        with m.If(scanner.done & next_t):
            m.d.sync += t_sel.eq(t_sel + 1)
        with m.If(drain.done):
            m.d.sync += t_sel.eq(0)
            with m.If(~last_tile):
                m.d.sync += tile.eq(tile + 1)
        with m.If(go):
            m.d.sync += [self.busy.eq(1), self.events.eq(0), tile.eq(0), t_sel.eq(0)]
        with m.If(phase["finish"]):
            m.d.sync += self.busy.eq(0)

        # ---- the shared ports: each routed by the descriptor or by the phase's register (a flip-flop
        # selects, no state is decoded); requests (enables, valids) are ORed: a unit drives them only
        # in its own pass
        # weights: the scan's (CONV) or the head's; the scan of an ATTENTION reads the Kᵀ·V rows
        m.d.comb += [self.bias_addr.eq(Mux(is_op["HEAD"], head.bias_addr, drain.bias_addr)),
                     self.weight_en.eq(Mux(is_op["HEAD"], head.weight_en, scanner.weight_en & ~is_attention)),
                     self.weight_addr.eq(Mux(is_op["HEAD"], head.weight_addr, scanner.weight_addr)),
                     scratch_read.en.eq(scanner.weight_en & is_attention),
                     scratch_read.addr.eq(scanner.weight_addr)]
        # spike memory: occupancy reads are the scan's; bitmap row reads the scan's or the product's
        m.d.comb += [spikes.occ_en.eq(scanner.occ_en), spikes.occ_group.eq(scanner.occ_group),
                     spikes.occ_lane.eq(scanner.occ_lane),
                     spikes.scan_en.eq(scanner.scan_en | key_value.scan_en),
                     spikes.scan_addr.eq(Mux(phase["key_value"], key_value.scan_addr, scanner.scan_addr)),
                     spikes.scan_lane.eq(Mux(phase["key_value"], key_value.scan_lane, scanner.scan_lane))]
        # ... group reads: the product's, the pool's, a STORE's, or the host's while idle
        host = {name: window(name).index for name in ("SPIKES", "STREAM", "LOGITS")}
        m.d.comb += spikes.group_addr.eq(Mux(phase["key_value"], key_value.group_addr,
                                             Mux(phase["pool"], pool.group_addr,
                                                 Mux(phase["spill"], mover.group_addr, self.host_offset))))
        # ... row writes: the drain's, the pool's, a LOAD's, or the host's while idle, into the memory a cycle
        # later from registers (the write's group selects the occupancy word that every lane reads with it).
        # No phase reads a row in the cycle after it is written: the pool, the drain and a LOAD write their
        # last rows in their last cycle, and the next scan reads two cycles later
        word_valid, word_addr = Signal(), Signal.like(spikes.word_addr)
        word_data = Signal.like(spikes.word_data)
        host_write = self.host_we & ~self.busy & (self.host_window == host["SPIKES"])
        m.d.sync += [word_valid.eq(drain.word_valid | pool.word_valid | mover.word_valid | host_write),
                     word_addr.eq(Mux(phase["drain"], drain.word_addr,
                                      Mux(phase["pool"], pool.word_addr,
                                          Mux(phase["spill"], mover.word_addr, self.host_offset)))),
                     word_data.eq(Mux(phase["drain"], drain.word_data,
                                      Mux(phase["pool"], pool.word_data,
                                          Mux(phase["spill"], mover.word_data, self.host_wdata))))]
        m.d.comb += [spikes.word_valid.eq(word_valid), spikes.word_addr.eq(word_addr),
                     spikes.word_data.eq(word_data)]
        # stream reads: the drain's, the head's, or the host's while idle, the address registered
        # (STREAM_READ_LATENCY: the stream's block RAMs lie across the chip)
        stream_read_addr, = delayed(m, [Mux(phase["drain"], drain.stream_addr,
                                            Mux(phase["head"], head.stream_addr, self.host_offset))],
                                    "stream_read_addr", STREAM_READ_LATENCY - 1)
        m.d.comb += stream_read.addr.eq(stream_read_addr)

        # ---- host reads (idle only); the stream's word from a register, as the spike memory's is: no
        # block-RAM output crosses the chip to the host's multiplexers in the cycle it appears. Each
        # window's word goes into registers of its own (0 unless the window is read: its flag is
        # decoded into a register), whose OR loads host_rdata: no hold, no wide multiplexer. These registers
        # load in every cycle, under no enable: the host reads only while the core is idle, never stalled
        reading_host = Module()
        stream_word = Signal.like(stream_read.data)
        reading_host.d.sync += stream_word.eq(stream_read.data)
        chosen = []
        for name, value in (("SPIKES", spikes.group_data), ("STREAM", stream_word), ("LOGITS", head.logits)):
            reading, word = Signal(name=f"host_reads_{name.lower()}"), Signal(self.host_data_bits,
                                                                            name=f"host_{name.lower()}")
            reading_host.d.sync += [reading.eq(self.host_window == host[name]),
                                    word.eq(Mux(reading, value.as_value(), 0))]
            chosen.append(word)
        reading_host.d.sync += self.host_rdata.eq(reduce(operator.or_, chosen))

        # ---- each part under its own copy of the enable ---------------------------------------
        top = Module()
        top.submodules.host_reads = reading_host
        enabled_parts(top, self.run_next, {"control": m, "spikes": spikes, "scanner": scanner, "pool": pool,
                                           "mover": mover})
        # the accumulator array, the drain, the head and the key-value product, thousands of flip-flops each,
        # split themselves into parts that way
        for name, unit in (("array", array), ("drain", drain), ("head", head), ("key_value", key_value)):
            top.submodules[name] = unit
            top.d.comb += unit.run_next.eq(self.run_next)
        return top
