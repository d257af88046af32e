"""Accelerator: control slave, external-memory readers and writer, sequencer and engine — the top level."""

from amaranth import Cat, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.external import SPILL, WORD_OFFSET_BITS
from spikeforge.interface.regmap import (CTRL_BITS, OVERFLOW_LOG_BITS, REGISTERS, STATUS_BITS, TABLES, address_layout,
                                        identity_values, window, word_bits)

from .burst_arbiter import BurstArbiter
from .bus import wishbone_signature
from .control_slave import ControlSlave
from .engine import HOST_READ_LATENCY, Engine
from .logic import enabled_parts, registered_select, replicated
from .overflow_log import OverflowLog
from .row_reader import RowReader
from .row_writer import RowWriter
from .sequencer import Sequencer

__all__ = ["Accelerator"]


class Accelerator(wiring.Component):
    """The whole Spikingformer accelerator: a 32-bit Wishbone B4 pipelined control slave and a Wishbone B4
    pipelined master to external memory.

    The program, weights, biases and thresholds stay in external memory (at the ``*_BASE`` registers);
    a :class:`~spikeforge.hw.row_reader.RowReader` per table serves the engine's and sequencer's row
    reads, prefetching, and a :class:`~spikeforge.hw.row_writer.RowWriter` takes the engine's writes of
    spilled tensors (SPILL, which has a reader too: it waits for the writes, see ``RowReader``), all over
    one :class:`~spikeforge.hw.burst_arbiter.BurstArbiter`. While a read misses, or the writer has no room
    for the next write, the core (sequencer and engine) stands still from the cycle after the next until the
    row (the room) is there — its logic runs under enables registered from the OR of the readers' and the
    writer's ``waiting`` registers, one copy per unit — and ``STALL_CYCLES`` counts those cycles; ``DONE``
    rises once the writes of the run have landed in external memory (the cycles after the sequencer's end
    count as stalls).
    ``CYCLES`` counts every cycle of the run, ``OP_CYCLES`` the core's own. A word that external memory
    answers with ``err`` sets ``STATUS.MEMORY_ERROR`` until the next start (the run goes on to ``DONE``;
    a read's word is then undefined). ``OVERFLOW_LOG`` (per descriptor: a value of its layer, or of its
    fused LIF's membrane, wider than declared; an :class:`~spikeforge.hw.overflow_log.OverflowLog`) and
    ``STATUS.OVERFLOW`` (any of it) are sticky across runs — a run split at breakpoints keeps them — until
    the host writes ``CTRL.CLEAR_OVERFLOW``, which clears the log in ``program_depth`` cycles: a ``START``
    written meanwhile begins when it is done.

    Addresses, registers and windows are those of :mod:`spikeforge.interface.regmap`. The host
    writes the table bases and the input, writes ``START_PC``/``STOP_PC``, writes ``CTRL.START``,
    waits for ``done`` (or polls ``STATUS.DONE``) and reads the results. Memory windows take writes
    only while the accelerator is not busy (else the bus answers ``err``).

    Ports
    -----
    ctrl : In(wishbone_signature(address_layout(params).word_address_bits))
        The control slave (:class:`~spikeforge.hw.control_slave.ControlSlave`), its word address as wide as
        the build needs (:func:`~spikeforge.interface.regmap.address_layout`).
    mem : Out(wishbone_signature(params.memory_address_bits - 2))
        The external memory master: 32-bit words at word addresses (byte address bits
        ``memory_address_bits``), each row a burst of requests for consecutive words.
    done : Out(1)
        High from the end of a run until the next start (an interrupt line).
    """

    def __init__(self, params):
        self.params = params
        #: The engine (a testbench may watch its ports).
        self.engine = Engine(params)
        super().__init__({"ctrl": In(wishbone_signature(address_layout(params).word_address_bits)),
                          "mem": Out(wishbone_signature(params.memory_address_bits - WORD_OFFSET_BITS)),
                          "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        p = self.params
        run_next = Signal()     # the core advances in the next cycle: no reader waits for a row, no writer for room
        # the core's enable, registered: one copy here (counters), one for the sequencer, one per reader and
        # writer, and the engine's own per unit
        run, = replicated(m, run_next, 1, "run", init=1)
        engine, seq = self.engine, Sequencer(p.program_depth)
        m.submodules.engine = engine
        enabled_parts(m, run_next, {"sequencer": seq}, "sequencer_run")
        m.submodules.op_cycles = op_cycles = memory.Memory(shape=32, depth=p.program_depth, init=[])
        # the window's word is registered before the slave picks its 32-bit slot (one more cycle): the
        # multiplexers of the engine's memories, the registers and the logs, and the slot's, in two stages
        m.submodules.slave = slave = ControlSlave(p.host_word_bits, address_layout(p), HOST_READ_LATENCY + 1)
        wiring.connect(m, wiring.flipped(self.ctrl), slave.bus)
        offset, win = slave.offset, slave.window
        # the run: the sequencer's, then until its writes to external memory have landed
        busy, draining = Signal(), Signal()
        m.d.comb += busy.eq(seq.busy | draining)
        # memory windows are the engine's while it runs; the registers stay writable
        m.d.comb += slave.reject.eq(busy & (win != window("CSR").index))
        host_write = slave.we
        csr = {r.name: r.offset for r in REGISTERS}

        # tables in external memory: one reader each, and a writer for SPILL, on one master
        bases = {name: Signal(p.memory_address_bits, name=f"{name.lower()}_base") for name in TABLES}
        requests = {"PROGRAM": (seq.prog_en, seq.prog_addr, seq.prog_data),
                    "WEIGHTS": (engine.weight_en, engine.weight_addr, engine.weight_data),
                    "BIAS": (engine.bias_en, engine.bias_addr, engine.bias_data),
                    "THRESHOLD": (engine.threshold_en, engine.threshold_addr, engine.threshold_data),
                    SPILL: (engine.spill_read_en, engine.spill_read_addr, engine.spill_read_data)}
        writes = {SPILL: (engine.spill_write_en, engine.spill_write_addr, engine.spill_write_data)}
        readers, writers = {}, {}
        for name, (en, addr, data) in writes.items():
            writers[name] = writer = RowWriter(word_bits(name, p), p.prefetch_rows, len(addr), p.memory_address_bits)
            m.submodules[f"{name.lower()}_writer"] = writer
            writer_run = replicated(m, run_next, 1, f"{name.lower()}_writer_run", init=1)[0]
            m.d.comb += [writer.en.eq(en), writer.addr.eq(addr), writer.data.eq(data), writer.stall.eq(~writer_run),
                         writer.base.eq(bases[name])]
        for name, (en, addr, data) in requests.items():
            readers[name] = reader = RowReader(word_bits(name, p), p.prefetch_rows, len(addr), p.memory_address_bits)
            m.submodules[f"{name.lower()}_reader"] = reader
            reader_run = replicated(m, run_next, 1, f"{name.lower()}_run", init=1)[0]
            m.d.comb += [reader.en.eq(en), reader.addr.eq(addr), data.eq(reader.data), reader.stall.eq(~reader_run),
                         reader.base.eq(bases[name])]
            if name in writers:
                # a table also written: its reader forgets its rows at each write and waits for them to land
                m.d.comb += [reader.invalidate.eq(writers[name].accepted),
                             reader.active.eq(seq.busy & writers[name].empty_next)]
            else:
                m.d.comb += reader.active.eq(seq.busy)
        m.submodules.arbiter = arbiter = BurstArbiter([reader.beats for reader in readers.values()],
                                                      [writer.beats for writer in writers.values()],
                                                      p.memory_address_bits)
        for index, writer in enumerate(writers.values()):
            wiring.connect(m, writer.burst, arbiter.writers[index])
        for index, reader in enumerate(readers.values()):
            wiring.connect(m, reader.burst, arbiter.readers[index])
        wiring.connect(m, arbiter.bus, wiring.flipped(self.mem))
        # from registers: a miss stalls the core two cycles after its decision (see RowReader)
        waits = [unit.waiting for unit in (*readers.values(), *writers.values())]
        m.d.comb += [run_next.eq(~Cat(*waits).any()), engine.run_next.eq(run_next)]
        writes_landed = Cat(*(writer.empty for writer in writers.values())).all()

        # descriptor cycle log: the core's cycles, waits excluded
        log_write, log_host = op_cycles.write_port(), op_cycles.read_port()
        m.d.comb += [log_write.en.eq(seq.log_valid & run), log_write.addr.eq(seq.log_pc),
                     log_write.data.eq(seq.log_cycles), log_host.addr.eq(offset)]

        # engine: descriptor from the sequencer, memory windows from the host
        m.d.comb += [engine.desc.eq(seq.desc), engine.start.eq(seq.engine_start),
                     seq.engine_done.eq(engine.done), engine.host_we.eq(host_write),
                     engine.host_window.eq(win), engine.host_offset.eq(offset),
                     engine.host_wdata.eq(slave.wdata)]

        # control and status registers
        start_pc, stop_pc = Signal(seq.pc_bits), Signal(seq.pc_bits)
        done, error, overflow, memory_error = Signal(), Signal(), Signal(), Signal()
        cycles, stall_cycles = Signal(32), Signal(32)
        error_pc = Signal(seq.pc_bits)
        csr_write = host_write & (win == window("CSR").index)
        # START acts the cycle after its write, from a register: the decode does not reach the readers'
        # flush and the sequencer in the same cycle. DONE is cleared by the write itself, so that it is
        # low when the write's ack is (a master may look at it as soon as the write completes). A START
        # is held while the overflow log clears, so that the run's flags are not cleared with it.
        m.submodules.overflow_log = overflow_log = OverflowLog(p.program_depth)
        start_write = csr_write & (offset == csr["CTRL"]) & slave.wdata[CTRL_BITS["START"]]
        start, start_held = Signal(), Signal()
        clear_overflow = csr_write & (offset == csr["CTRL"]) & slave.wdata[CTRL_BITS["CLEAR_OVERFLOW"]]
        begin = (start_write | start_held) & ~(clear_overflow | overflow_log.clearing)
        m.d.sync += [start.eq(begin), start_held.eq((start_write | start_held) & ~begin)]
        m.d.comb += [seq.start.eq(start), seq.start_pc.eq(start_pc), seq.stop_pc.eq(stop_pc),
                     self.done.eq(done)]
        for reader in readers.values():
            m.d.comb += reader.flush.eq(start)
        writable = {"START_PC": start_pc, "STOP_PC": stop_pc,
                    **{TABLES[name]: bases[name] for name in TABLES}}
        for name, target in writable.items():
            with m.If(csr_write & (offset == csr[name])):
                m.d.sync += target.eq(slave.wdata)
        with m.If(start_write):
            m.d.sync += [done.eq(0), error.eq(0), memory_error.eq(0), cycles.eq(0), stall_cycles.eq(0)]
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(~run | draining):
                m.d.sync += stall_cycles.eq(stall_cycles + 1)
        with m.If(seq.done & run):
            m.d.sync += [done.eq(writes_landed), draining.eq(~writes_landed)]
        with m.If(draining & writes_landed):
            m.d.sync += [done.eq(1), draining.eq(0)]
        with m.If(arbiter.error):
            m.d.sync += memory_error.eq(1)
        with m.If(seq.error & run):
            m.d.sync += [error.eq(1), error_pc.eq(seq.pc)]
        # overflow: sticky across runs (breakpoints) until the host clears it; one log word per descriptor.
        # The engine's flags (logic in its units) and their descriptor go into registers first; the log
        # takes them a cycle later
        overflow_kinds = Signal(len(OVERFLOW_LOG_BITS), name="overflow_kinds")
        overflow_pc = Signal(seq.pc_bits, name="overflow_pc")
        m.d.sync += [overflow_kinds[OVERFLOW_LOG_BITS["RESULT"]].eq(engine.overflow & run),
                     overflow_kinds[OVERFLOW_LOG_BITS["MEMBRANE"]].eq(engine.membrane_overflow & run),
                     overflow_pc.eq(seq.pc)]
        m.d.comb += [overflow_log.kinds.eq(overflow_kinds), overflow_log.pc.eq(overflow_pc),
                     overflow_log.clear.eq(clear_overflow), overflow_log.host_addr.eq(offset),
                     overflow.eq(overflow_log.any)]
        status = Signal(32)
        for name, bit in STATUS_BITS.items():
            m.d.comb += status[bit].eq({"BUSY": busy, "DONE": done, "ERROR": error, "OVERFLOW": overflow,
                                        "MEMORY_ERROR": memory_error}[name])
        csr_values = {"STATUS": status, "PC": seq.pc, "CYCLES": cycles, "STALL_CYCLES": stall_cycles,
                      "ERROR_PC": error_pc, **writable, **identity_values(p)}
        # the host reads registers two cycles after their offset, the logs three, within the window's
        # HOST_READ_LATENCY
        assert HOST_READ_LATENCY >= 3
        csr_data = registered_select(m, {csr[name]: value for name, value in csr_values.items()}, offset, "csr_data")

        # the logs' block-RAM words into registers first, like the engine's windows
        read_window = Signal.like(win)
        log_word, overflow_word = Signal.like(log_host.data), Signal.like(overflow_log.host_data)
        m.d.sync += [read_window.eq(win), slave.rdata.eq(engine.host_rdata),
                     log_word.eq(log_host.data), overflow_word.eq(overflow_log.host_data)]
        with m.Switch(read_window):
            with m.Case(window("CSR").index):
                m.d.sync += slave.rdata.eq(csr_data)
            with m.Case(window("OP_CYCLES").index):
                m.d.sync += slave.rdata.eq(log_word)
            with m.Case(window("OVERFLOW_LOG").index):
                m.d.sync += slave.rdata.eq(overflow_word)
        return m

