"""Burst arbiter: the row readers' bursts on one AXI4 read master."""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.external import BEAT_BITS

from .bus import axi4_read_signature
from .row_reader import burst_signature

__all__ = ["BurstArbiter"]


class BurstArbiter(wiring.Component):
    """Grants one reader's burst at a time, lowest index first, and issues it as an AXI4 INCR burst
    of that reader's ``beats[i]`` 32-bit beats; the read data go to the granted reader, a cycle after
    they are on the bus (from registers). Addresses have
    ``addr_bits`` bits (the build's ``memory_address_bits``).

    Ports
    -----
    readers : In(burst_signature(addr_bits)).array(len(beats))
        The readers' burst requests (:class:`~spikeforge.hw.row_reader.RowReader` ``burst``).
    bus : Out(axi4_read_signature(addr_bits))
        The AXI4 read master (read address and read data channels).
    """

    def __init__(self, beats, addr_bits):
        if not beats or any(not 1 <= b <= 256 for b in beats):
            raise ValueError(f"every reader needs 1..256 beats per burst, not {beats!r}")
        self.beats = tuple(beats)
        super().__init__({"readers": In(burst_signature(addr_bits)).array(len(beats)),
                          "bus": Out(axi4_read_signature(addr_bits, BEAT_BITS))})

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        grant = Signal(range(len(self.beats)))
        with m.FSM():
            with m.State("IDLE"):
                # the lowest index wins: the last If assigned takes effect
                for index in reversed(range(len(self.beats))):
                    reader = self.readers[index]
                    with m.If(reader.valid):
                        m.d.comb += [reader.ready.eq(1)] + [self.readers[other].ready.eq(0)
                                                           for other in range(index + 1, len(self.beats))]
                        m.d.sync += [grant.eq(index), bus.araddr.eq(reader.addr), bus.arlen.eq(self.beats[index] - 1),
                                     bus.arvalid.eq(1)]
                        m.next = "ADDRESS"
            with m.State("ADDRESS"):
                with m.If(bus.arready):
                    m.d.sync += bus.arvalid.eq(0)
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += bus.rready.eq(1)
                with m.If(bus.rvalid & bus.rlast):
                    m.next = "IDLE"
        # each beat goes to its reader from registers, a cycle after the bus: the bus's read data
        # channel ends in flip-flops, and every reader's beat strobes (the last beat's too: a row into
        # its ring) start at their own
        beat_data = Signal.like(bus.rdata)
        beat_to, last_to = Signal(len(self.beats)), Signal(len(self.beats))   # one-hot: the beat's reader
        beat = bus.rvalid & bus.rready
        m.d.sync += [beat_data.eq(bus.rdata), beat_to.eq(Mux(beat, 1 << grant, 0)),
                     last_to.eq(Mux(beat & bus.rlast, 1 << grant, 0))]
        for index, reader in enumerate(self.readers):
            m.d.comb += [reader.beat_data.eq(beat_data), reader.beat_valid.eq(beat_to[index]),
                         reader.beat_last.eq(last_to[index])]
        return m
