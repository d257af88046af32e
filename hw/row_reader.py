"""Row reader: a table in external memory read like a block-RAM read port, with prefetch."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.bits import ceil_div
from spikeforge.interface.external import BEAT_BITS, row_stride

__all__ = ["RowReader", "burst_signature"]


def burst_signature(addr_bits):
    """A reader's burst requests to the :class:`~spikeforge.hw.burst_arbiter.BurstArbiter`: ``valid``
    with ``addr`` until ``ready`` (accepted), then the burst's beats in order, ``beat_last`` with the
    final one's ``beat_valid`` (and never without)."""
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
    ring of ``depth`` rows while the engine computes; a request for the row served last, or for the
    ring's head, is a hit. A request that is not a hit sets ``waiting`` from the next cycle until the
    row is in ``data``: the accelerator stalls its core (``stall``) meanwhile. A row off the stream
    starts it over there in the next cycle (the ring emptied, a burst in flight discarded).
    ``waiting_next`` is its value in the next cycle, from which the accelerator registers the core's
    enables (one copy per unit, so that no single net reaches every flip-flop of the core); the
    request's address meets only the two tag comparisons before it. Prefetching runs while ``active``.

    Ports
    -----
    en : In(1)
    addr : In(tag_bits)
        Request row ``addr`` (taken only in a cycle without ``stall``); its data are in ``data`` at
        the next cycle without stall, like a read port of a memory (held while nothing is served).
    data : Out(row_bits)
    waiting : Out(1)
        A request missed and its row is not in ``data`` yet.
    waiting_next : Out(1)
        ``waiting`` in the next cycle.
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
            "en": In(1), "addr": In(tag_bits), "data": Out(row_bits), "waiting": Out(1), "waiting_next": Out(1),
            "stall": In(1),
            "flush": In(1), "active": In(1), "base": In(addr_bits), "burst": Out(burst_signature(addr_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        burst = self.burst
        # the prefetched rows: a ring of ``depth`` rows (distributed RAM), read asynchronously at its head
        m.submodules.ring = ring = memory.Memory(shape=self.row_bits, depth=self.depth, init=[])
        ring_write, ring_read = ring.write_port(), ring.read_port(domain="comb")
        head_ptr, tail_ptr = Signal(range(self.depth)), Signal(range(self.depth))
        count = Signal(range(self.depth + 1))     # rows in the ring
        has_head = Signal()                       # count != 0, kept in a register
        ahead = Signal(range(self.depth + 1))     # rows in the ring or on their way
        m.d.comb += ring_read.addr.eq(head_ptr)

        def after(ptr):
            return Mux(ptr == self.depth - 1, 0, ptr + 1)

        served, served_tag = Signal(), Signal(self.tag_bits)
        head_tag = Signal(self.tag_bits)     # the row at the ring's head, or the next to arrive
        fetch_tag = Signal(self.tag_bits)    # the next row to request
        in_flight, stale = Signal(), Signal()
        wanted = Signal(self.tag_bits)       # the row a waiting request asked for
        restart = Signal()                   # the cycle after a miss off the stream: start over at ``wanted``
        assembled = Signal(self.beats * BEAT_BITS)

        # A request's address meets two comparisons and little else before the registers it loads:
        # serving it is a pop of the ring (pointers and flags precomputed from registers), a miss
        # only sets ``waiting`` and ``wanted``; starting the stream over waits for the next cycle.
        request = self.en & ~self.stall
        at_head = head_tag == self.addr
        hit_served = served & (served_tag == self.addr)
        hit_head = has_head & at_head
        # the awaited row is at the head, compared a cycle late: right after a miss that comparison is
        # of the previous ``wanted``, but then either the miss restarts the stream (not served before
        # ``has_head`` is set again) or it asked for ``head_tag`` (the row at the head is the one wanted)
        awaited_at_head = Signal()
        m.d.sync += awaited_at_head.eq(head_tag == wanted)
        serve_waiting = self.waiting & ~restart & has_head & awaited_at_head
        serve = Signal()
        m.d.comb += serve.eq(request & ~hit_served & hit_head | serve_waiting)
        with m.If(serve):
            m.d.sync += [self.data.eq(ring_read.data), served.eq(1), served_tag.eq(head_tag),
                         head_tag.eq(head_tag + 1), head_ptr.eq(after(head_ptr))]
        miss = request & ~hit_served & ~hit_head
        with m.If(miss):
            m.d.sync += wanted.eq(self.addr)
        # a miss and the serving of a waiting request exclude each other (requests wait with the core)
        m.d.comb += self.waiting_next.eq(~self.flush & (miss | self.waiting & ~serve))
        m.d.sync += self.waiting.eq(self.waiting_next)
        m.d.sync += restart.eq(miss & ~at_head)

        # a row arrives: into the ring's tail, unless it belongs to a stream given up
        push = Signal()
        with m.If(burst.beat_valid):
            row = Cat(assembled[BEAT_BITS:], burst.beat_data)
            m.d.sync += assembled.eq(row)
            with m.If(burst.beat_last):
                # no burst is issued while one is in flight, so nothing is left to discard
                # (a restart or flush in this cycle empties the ring after the push)
                m.d.comb += [push.eq(~stale), ring_write.data.eq(row[:self.row_bits])]
                m.d.sync += [in_flight.eq(0), stale.eq(0)]
        m.d.comb += [ring_write.en.eq(push), ring_write.addr.eq(tail_ptr)]
        with m.If(push):
            m.d.sync += tail_ptr.eq(after(tail_ptr))
        m.d.sync += [count.eq(count + push - serve),
                     has_head.eq(push | Mux(serve, count > 1, count != 0))]

        # prefetch: one burst in flight, the ring's free rows reserved for the rows asked for. Whether
        # there is room is decided a cycle ahead, into a register (a burst issued since, or a restart,
        # withdraws it), so the arbiter's grant does not start at the ring's counters
        issue, room = Signal(), Signal()
        m.d.sync += room.eq(self.active & (ahead != self.depth) & ~issue)
        m.d.comb += [burst.valid.eq(room & ~in_flight & ~restart),
                     burst.addr.eq(self.base + (fetch_tag << (row_stride(self.row_bits).bit_length() - 1))),
                     issue.eq(burst.valid & burst.ready)]
        m.d.sync += ahead.eq(ahead + issue - serve)
        with m.If(issue):
            m.d.sync += [in_flight.eq(1), fetch_tag.eq(fetch_tag + 1)]

        # start over: the ring emptied, the burst in flight (if its last beat is not here now) discarded
        with m.If(restart | self.flush):
            m.d.sync += [count.eq(0), has_head.eq(0), ahead.eq(0), tail_ptr.eq(head_ptr),
                         stale.eq(in_flight & ~(burst.beat_valid & burst.beat_last))]
        with m.If(restart):
            m.d.sync += [head_tag.eq(wanted), fetch_tag.eq(wanted)]
        with m.If(self.flush):
            m.d.sync += [served.eq(0), head_tag.eq(0), fetch_tag.eq(0), restart.eq(0)]
        return m
