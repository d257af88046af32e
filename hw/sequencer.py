"""Sequencer: fetches layer descriptors from program memory and runs each on the engine."""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.descriptor import DESCRIPTOR_BITS, DESCRIPTOR_LAYOUT, DESCRIPTOR_SETTLE_CYCLES, OPCODES
from spikeforge.interface.external import ROW_READ_LATENCY

__all__ = ["Sequencer"]


class Sequencer(wiring.Component):
    """Executes descriptors from ``start_pc`` until an END descriptor or the breakpoint ``stop_pc``
    (0: none), one at a time; logs each descriptor's cycles.

    Per descriptor: FETCH (the program read), ROW_READ_LATENCY − 1 READ cycles (the row on its way,
    :data:`~spikeforge.interface.external.ROW_READ_LATENCY`), DECODE (``desc`` loaded),
    :data:`~spikeforge.interface.descriptor.DESCRIPTOR_SETTLE_CYCLES` SETTLE cycles, in which the
    engine's units register the fields they use and what they derive from them, then RUN
    (``engine_start``) and WAIT until ``engine_done``.

    Ports
    -----
    start : In(1)
        Pulse: run from ``start_pc``.
    start_pc, stop_pc : In(pc_bits)
    busy, done : Out(1)
        ``done`` pulses once at the end of a run.
    error : Out(1)
        Pulses when an unknown opcode stops the run (``pc`` names it).
    pc : Out(pc_bits)
        Descriptor being executed, or where the run stopped.
    prog_en, prog_addr : Out
    prog_data : In(DESCRIPTOR_BITS)
        Program read port (data ROW_READ_LATENCY cycles after ``prog_en``, held while it is low); both
        from registers (``prog_addr`` is ``pc``).
    desc : Out(DESCRIPTOR_LAYOUT)
        The descriptor being executed, for the engine: loaded ``DESCRIPTOR_SETTLE_CYCLES`` cycles
        before ``engine_start``, held until ``engine_done``.
    engine_start : Out(1)
    engine_done : In(1)
    log_valid, log_pc, log_cycles : Out
        One write per finished descriptor: its cycles, fetch included.
    """

    def __init__(self, program_depth):
        self.pc_bits = max(1, (program_depth - 1).bit_length())
        super().__init__({
            "start": In(1), "start_pc": In(self.pc_bits), "stop_pc": In(self.pc_bits),
            "busy": Out(1), "done": Out(1), "error": Out(1), "pc": Out(self.pc_bits),
            "prog_en": Out(1), "prog_addr": Out(self.pc_bits), "prog_data": In(DESCRIPTOR_BITS),
            "desc": Out(DESCRIPTOR_LAYOUT), "engine_start": Out(1), "engine_done": In(1),
            "log_valid": Out(1), "log_pc": Out(self.pc_bits), "log_cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        op_cycles = Signal(32)
        m.d.comb += [self.log_pc.eq(self.pc), self.log_cycles.eq(op_cycles)]
        m.d.sync += op_cycles.eq(op_cycles + 1)
        fetched = self.prog_data
        settle = Signal(range(max(1, DESCRIPTOR_SETTLE_CYCLES)))
        reading = Signal(range(max(1, ROW_READ_LATENCY - 1)))
        opcode = fetched[:len(self.desc.op)]
        # the program read goes out of registers: the address is pc, the enable is loaded with pc in the
        # cycle before FETCH, false at the breakpoint (the comparison with the next pc is registered
        # while the engine runs: pc holds in WAIT, which lasts more than a cycle)
        prog_en, next_stops = Signal(), Signal()
        m.d.comb += [self.prog_addr.eq(self.pc), self.prog_en.eq(prog_en)]
        m.d.sync += [prog_en.eq(0), next_stops.eq((self.stop_pc != 0) & (self.pc + 1 == self.stop_pc))]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.pc.eq(self.start_pc), self.busy.eq(1),
                                 prog_en.eq((self.stop_pc == 0) | (self.start_pc != self.stop_pc))]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.sync += [op_cycles.eq(1), reading.eq(0)]
                with m.If(~prog_en):
                    m.next = "FINISH"
                with m.Else():
                    m.next = "READ" if ROW_READ_LATENCY > 1 else "DECODE"
            with m.State("READ"):
                m.d.sync += reading.eq(reading + 1)
                with m.If(reading == ROW_READ_LATENCY - 2):
                    m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += self.desc.eq(fetched)
                with m.If(opcode == OPCODES["END"]):
                    m.next = "FINISH"
                with m.Elif(opcode > max(OPCODES.values())):
                    m.d.comb += self.error.eq(1)
                    m.next = "FINISH"
                with m.Else():
                    m.d.sync += settle.eq(0)
                    m.next = "SETTLE" if DESCRIPTOR_SETTLE_CYCLES else "RUN"
            with m.State("SETTLE"):
                m.d.sync += settle.eq(settle + 1)
                with m.If(settle == DESCRIPTOR_SETTLE_CYCLES - 1):
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.engine_start.eq(1)
                m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(self.engine_done):
                    m.d.comb += self.log_valid.eq(1)
                    m.d.sync += [self.pc.eq(self.pc + 1), prog_en.eq(~next_stops)]
                    m.next = "FETCH"
            with m.State("FINISH"):
                m.d.sync += self.busy.eq(0)
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m
