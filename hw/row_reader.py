"""Row reader: a table in external memory read like a block-RAM read port, with prefetch."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import ResetInserter
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from spikeforge.interface.bits import ceil_div
from spikeforge.interface.external import BEAT_BITS, row_stride

__all__ = ["RowReader", "burst_signature"]


def burst_signature(addr_bits):
    """A reader's burst requests to the :class:`~spikeforge.hw.burst_arbiter.BurstArbiter`: ``valid``
    with ``addr`` until ``ready`` (accepted), then the burst's beats in order, ``last`` on the final one."""
    return wiring.Signature({
        "valid": Out(1), "addr": Out(addr_bits), "ready": In(1),
        "beat_valid": In(1), "beat_data": In(BEAT_BITS), "beat_last": In(1),
    })


class RowReader(wiring.Component):
    """Serves row requests of the engine from external memory, one row per burst of
    ``⌈row_bits / 32⌉`` beats (rows ``row_stride(row_bits)`` bytes apart from ``base``,
    :mod:`spikeforge.interface.external`).

    The engine reads rows mostly in sequence (a layer's weight rows, a tile's bias and threshold
    rows, descriptors), so the reader keeps fetching the rows after the last one asked for into a
    FIFO of ``depth`` rows while the engine computes; a request for the row served last, or for the
    FIFO's head, is a hit. Any other row restarts the stream there (the FIFO is dropped, a burst in
    flight discarded). A request that is not a hit sets ``waiting`` from the next cycle until the row
    is in ``data``: the accelerator stalls its core (``stall``) meanwhile. ``waiting`` is a register,
    so the stall that fans out to the whole core starts at a flip-flop, not at the request's
    address comparison. Prefetching runs while ``active``.

    Ports
    -----
    en : In(1)
    addr : In(tag_bits)
        Request row ``addr`` (taken only in a cycle without ``stall``); its data are in ``data`` at
        the next cycle without stall, like a read port of a memory (held while nothing is served).
    data : Out(row_bits)
    waiting : Out(1)
        A request missed and its row is not in ``data`` yet.
    stall : In(1)
        The core stands still this cycle (because some reader is ``waiting``): requests are ignored.
    flush : In(1)
        Forget every row (a new run: the memory may have been rewritten).
    active : In(1)
        Prefetch allowed.
    base : In(addr_bits)
        Byte address of row 0 (aligned to ``row_stride(row_bits)``); addresses have ``addr_bits`` bits
        (the build's ``memory_address_bits``) and wrap.
    burst : Out(burst_signature(addr_bits))
        Burst requests and their beats.
    """

    def __init__(self, row_bits, depth, tag_bits, addr_bits):
        if depth < 2:
            raise ValueError(f"depth must be at least 2, not {depth!r}")
        self.row_bits, self.depth, self.tag_bits = row_bits, depth, tag_bits
        self.beats = ceil_div(row_bits, BEAT_BITS)
        super().__init__({
            "en": In(1), "addr": In(tag_bits), "data": Out(row_bits), "waiting": Out(1), "stall": In(1),
            "flush": In(1), "active": In(1), "base": In(addr_bits), "burst": Out(burst_signature(addr_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        burst = self.burst
        drop = Signal()
        m.submodules.fifo = fifo = ResetInserter(drop)(SyncFIFOBuffered(width=self.row_bits, depth=self.depth))

        served, served_tag = Signal(), Signal(self.tag_bits)
        head_tag = Signal(self.tag_bits)     # the row at the FIFO's head, or the next to arrive
        fetch_tag = Signal(self.tag_bits)    # the next row to request
        in_flight, stale = Signal(), Signal()
        assembled = Signal(self.beats * BEAT_BITS)

        request = self.en & ~self.stall
        wanted = Signal(self.tag_bits)       # the row a waiting request asked for
        hit_served = served & (served_tag == self.addr)
        miss = request & ~hit_served & ~(fifo.r_rdy & (head_tag == self.addr))
        # the row to hand over from the FIFO's head this cycle: a new request's or the awaited one
        serve = Signal()
        serve_tag = Mux(self.waiting, wanted, self.addr)
        m.d.comb += serve.eq((request & ~hit_served | self.waiting) & fifo.r_rdy & (head_tag == serve_tag))
        with m.If(serve):
            m.d.comb += fifo.r_en.eq(1)
            m.d.sync += [self.data.eq(fifo.r_data), served.eq(1), served_tag.eq(serve_tag), head_tag.eq(head_tag + 1),
                         self.waiting.eq(0)]
        with m.If(miss):
            m.d.sync += [self.waiting.eq(1), wanted.eq(self.addr)]

        # prefetch: one burst in flight, the FIFO's free rows reserved for the rows asked for
        ahead = Signal(self.tag_bits)
        m.d.comb += ahead.eq(fetch_tag - head_tag)
        issue = Signal()
        m.d.comb += [burst.valid.eq(self.active & ~in_flight & (ahead < self.depth)),
                     burst.addr.eq(self.base + (fetch_tag << (row_stride(self.row_bits).bit_length() - 1))),
                     issue.eq(burst.valid & burst.ready)]
        with m.If(issue):
            m.d.sync += [in_flight.eq(1), fetch_tag.eq(fetch_tag + 1)]

        # a row off the stream: start over from it
        restart = miss & (self.addr != head_tag)
        with m.If(restart | self.flush):
            m.d.comb += drop.eq(1)
            m.d.sync += [head_tag.eq(self.addr), fetch_tag.eq(self.addr), stale.eq(in_flight | issue)]
        with m.If(self.flush):
            m.d.sync += [served.eq(0), head_tag.eq(0), fetch_tag.eq(0), self.waiting.eq(0)]

        with m.If(burst.beat_valid):
            row = Cat(assembled[BEAT_BITS:], burst.beat_data)
            m.d.sync += assembled.eq(row)
            with m.If(burst.beat_last):
                # no burst is issued while one is in flight, so nothing is left to discard
                m.d.comb += [fifo.w_en.eq(~stale & ~drop), fifo.w_data.eq(row[:self.row_bits])]
                m.d.sync += [in_flight.eq(0), stale.eq(0)]
        return m
