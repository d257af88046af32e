"""Accelerator: host interface, program memory, sequencer and engine — the top level."""

from amaranth import Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.descriptor import DESCRIPTOR_BITS
from spikeforge.interface.regmap import ADDRESS_BITS, CTRL_BITS, STATUS_BITS, identity_values, register, window

from .bus import axi4_lite_signature
from .control_slave import ControlSlave
from .engine import Engine
from .sequencer import Sequencer

__all__ = ["Accelerator"]


class Accelerator(wiring.Component):
    """The whole Spikingformer accelerator behind a 32-bit AXI4-Lite control slave.

    Addresses, registers and windows are those of :mod:`spikeforge.interface.regmap`. The host
    loads the program image and the input through the windows, writes ``START_PC``/``STOP_PC``,
    writes ``CTRL.START``, waits for ``done`` (or polls ``STATUS.DONE``) and reads the results.
    Memory windows take writes only while the accelerator is not busy (else ``SLVERR``).

    Ports
    -----
    ctrl : In(axi4_lite_signature(ADDRESS_BITS))
        The control slave (:class:`~spikeforge.hw.control_slave.ControlSlave`).
    done : Out(1)
        High from the end of a run until the next start (an interrupt line).
    """

    def __init__(self, params):
        self.params = params
        super().__init__({"ctrl": In(axi4_lite_signature(ADDRESS_BITS)), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.engine = engine = Engine(p)
        m.submodules.sequencer = seq = Sequencer(p.program_depth)
        m.submodules.program = program = memory.Memory(shape=DESCRIPTOR_BITS, depth=p.program_depth, init=[])
        m.submodules.op_cycles = op_cycles = memory.Memory(shape=32, depth=p.program_depth, init=[])
        m.submodules.slave = slave = ControlSlave(p.host_word_bits)
        wiring.connect(m, wiring.flipped(self.ctrl), slave.bus)
        offset, win = slave.offset, slave.window
        # memory windows are the engine's while it runs; the registers stay writable
        m.d.comb += slave.reject.eq(seq.busy & (win != window("CSR").index))
        host_write = slave.we

        # program memory: host writes, sequencer reads; descriptor cycle log
        program_write, program_read, program_host = program.write_port(), program.read_port(), program.read_port()
        m.d.comb += [program_write.addr.eq(offset), program_write.data.eq(slave.wdata),
                     program_write.en.eq(host_write & (win == window("PROGRAM").index)),
                     program_read.addr.eq(seq.prog_addr), seq.prog_data.eq(program_read.data),
                     program_host.addr.eq(offset)]
        log_write, log_host = op_cycles.write_port(), op_cycles.read_port()
        m.d.comb += [log_write.en.eq(seq.log_valid), log_write.addr.eq(seq.log_pc),
                     log_write.data.eq(seq.log_cycles), log_host.addr.eq(offset)]

        # engine: descriptor from the sequencer, memory windows from the host
        m.d.comb += [engine.desc.eq(seq.desc), engine.start.eq(seq.engine_start),
                     seq.engine_done.eq(engine.done), engine.host_we.eq(host_write),
                     engine.host_window.eq(win), engine.host_offset.eq(offset),
                     engine.host_wdata.eq(slave.wdata)]

        # control and status registers
        csr = {name: register(name).offset for name in ("CTRL", "STATUS", "START_PC", "STOP_PC", "PC",
                                                         "CYCLES", "ERROR_PC", "OVERFLOW_PC", "VERSION",
                                                         "N_PE", "WIDTHS", "SHAPE")}
        start_pc, stop_pc = Signal(seq.pc_bits), Signal(seq.pc_bits)
        done, error, overflow = Signal(), Signal(), Signal()
        cycles = Signal(32)
        error_pc, overflow_pc = Signal(seq.pc_bits), Signal(seq.pc_bits)
        csr_write = host_write & (win == window("CSR").index)
        start = csr_write & (offset == csr["CTRL"]) & slave.wdata[CTRL_BITS["START"]]
        m.d.comb += [seq.start.eq(start), seq.start_pc.eq(start_pc), seq.stop_pc.eq(stop_pc),
                     self.done.eq(done)]
        with m.If(csr_write & (offset == csr["START_PC"])):
            m.d.sync += start_pc.eq(slave.wdata)
        with m.If(csr_write & (offset == csr["STOP_PC"])):
            m.d.sync += stop_pc.eq(slave.wdata)
        with m.If(start):
            m.d.sync += [done.eq(0), error.eq(0), overflow.eq(0), cycles.eq(0)]
        with m.If(seq.busy):
            m.d.sync += cycles.eq(cycles + 1)
        with m.If(seq.done):
            m.d.sync += done.eq(1)
        with m.If(seq.error):
            m.d.sync += [error.eq(1), error_pc.eq(seq.pc)]
        with m.If(engine.overflow & ~overflow):
            m.d.sync += [overflow.eq(1), overflow_pc.eq(seq.pc)]
        status = Signal(32)
        for name, bit in STATUS_BITS.items():
            m.d.comb += status[bit].eq({"BUSY": seq.busy, "DONE": done, "ERROR": error, "OVERFLOW": overflow}[name])
        csr_values = {"STATUS": status, "START_PC": start_pc, "STOP_PC": stop_pc, "PC": seq.pc,
                      "CYCLES": cycles, "ERROR_PC": error_pc, "OVERFLOW_PC": overflow_pc,
                      **identity_values(p)}
        csr_data = Signal(32)
        with m.Switch(offset):
            for name, value in csr_values.items():
                with m.Case(csr[name]):
                    m.d.sync += csr_data.eq(value)

        read_window = Signal.like(win)
        m.d.sync += read_window.eq(win)
        m.d.comb += slave.rdata.eq(engine.host_rdata)
        with m.Switch(read_window):
            with m.Case(window("CSR").index):
                m.d.comb += slave.rdata.eq(csr_data)
            with m.Case(window("PROGRAM").index):
                m.d.comb += slave.rdata.eq(program_host.data)
            with m.Case(window("OP_CYCLES").index):
                m.d.comb += slave.rdata.eq(log_host.data)
        return m
