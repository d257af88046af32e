"""Spike accumulator array: ``n_pe`` lanes, each event adds one weight row to one accumulator word."""

from amaranth import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .initial_contents import zeroed_memory

__all__ = ["AccumulatorArray"]


class AccumulatorArray(wiring.Component):
    """Accumulator memory of ``2**(t_bits + h_bits + w_bits)`` words × ``n_pe`` lanes.

    An event at cycle c reads the word at ``event_addr``; at c+1 every lane adds its weight of
    ``event_row`` and writes back (the read port is transparent to the write port, so an event on
    the word written in the same cycle sees the new sum). A drain at cycle c returns the word at
    ``drain_addr`` on ``drain_data`` at c+1 and clears it to 0, ready for the next tile. Events and
    drains never overlap (the engine runs them in separate phases). No multiplier: adds only. The
    first tile after configuration adds to the memory's initial contents: it starts at zero
    (:func:`~spikeforge.hw.initial_contents.zeroed_memory`).

    Ports
    -----
    event_valid : In(1)
    event_addr : In(addr_bits)
        Accumulator word ``{t, y, x}``.
    event_row : In(ArrayLayout(signed(weight_bits), n_pe))
        The weights selected by the spike, one per lane (output channel).
    event_shift : In(3)
        Left shift of the row (bit plane of an integer input: shift-and-add, no multiplier).
    drain_valid : In(1)
    drain_addr : In(addr_bits)
    drain_keep : In(1)
        Leave the drained word in place (a static input's result read at every timestep).
    drain_data : Out(ArrayLayout(signed(acc_bits), n_pe))
        The drained word, one cycle after the request.
    """

    def __init__(self, params):
        self.params = params
        self.addr_bits = params.t_bits + params.h_bits + params.w_bits
        row = data.ArrayLayout(signed(params.weight_bits), params.n_pe)
        self.word = data.ArrayLayout(signed(params.acc_bits), params.n_pe)
        super().__init__({"event_valid": In(1), "event_addr": In(max(1, self.addr_bits)), "event_row": In(row),
                          "event_shift": In(3),
                          "drain_valid": In(1), "drain_addr": In(max(1, self.addr_bits)), "drain_keep": In(1),
                          "drain_data": Out(self.word)})

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.acc = acc = zeroed_memory(shape=self.word, depth=1 << self.addr_bits)
        write = acc.write_port()
        read = acc.read_port(transparent_for=(write,))
        pending_add = Signal()
        pending_clear = Signal()
        pending_addr = Signal.like(self.event_addr)
        pending_row = Signal.like(self.event_row)
        pending_shift = Signal.like(self.event_shift)
        m.d.comb += read.addr.eq(self.event_addr)
        with m.If(self.drain_valid):
            m.d.comb += read.addr.eq(self.drain_addr)
        m.d.sync += [
            pending_add.eq(self.event_valid),
            pending_clear.eq(self.drain_valid & ~self.drain_keep),
            pending_addr.eq(read.addr),
            pending_row.eq(self.event_row),
            pending_shift.eq(self.event_shift),
        ]
        m.d.comb += [write.addr.eq(pending_addr), self.drain_data.eq(read.data)]
        with m.If(pending_add):
            m.d.comb += write.en.eq(1)
            for lane in range(p.n_pe):
                m.d.comb += write.data[lane].eq(read.data[lane] + (pending_row[lane] << pending_shift))
        with m.Elif(pending_clear):
            m.d.comb += write.en.eq(1)   # data stays 0: clear after draining
        return m
