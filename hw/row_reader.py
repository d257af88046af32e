"""Row reader: a table in external memory read like a block-RAM read port, with prefetch."""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.external import BEAT_BITS, ROW_READ_LATENCY

from .burst_arbiter import burst_signature
from .logic import FANOUT_SUFFIX, ring_after, row_address, table_rows

__all__ = ["SERVE_FANOUT", "BURSTS_IN_FLIGHT", "RowReader"]

#: Bits of ``data`` whose clock enables one copy of a reader's hit logic drives, and of a slice of its ring.
SERVE_FANOUT = 64
#: Bursts a reader has in flight at most: the arbiter sends the next one's requests while the answers
#: to the previous one come, so that the rows of a stream follow one another at the memory's pace.
BURSTS_IN_FLIGHT = 2


class RowReader(wiring.Component):
    """Serves row requests of the engine from external memory, one row per burst of
    ``⌈row_bits / 32⌉`` beats (rows ``row_stride(row_bits)`` bytes apart from ``base``,
    :mod:`spikeforge.interface.external`).

    The engine reads rows mostly in sequence (a layer's weight rows, a tile's bias and threshold
    rows, descriptors), so the reader keeps fetching the rows after the last one asked for into a
    ring of ``depth`` rows while the engine computes, :data:`BURSTS_IN_FLIGHT` bursts at a time; a
    request for the row served last, or for the ring's head, is a hit. A request goes into a register
    first, is decided from there in the next cycle the core runs (the requesting unit may lie across
    the chip), and its row reaches ``data`` in the cycle after
    (:data:`~spikeforge.interface.external.ROW_READ_LATENCY`, 3, in the core's cycles). A request that
    is not a hit sets ``waiting``, a register, until its row is on its way to ``data``: the accelerator
    stalls its core from the cycle after (``stall``), through enables registered from the OR of every
    reader's ``waiting`` (one copy per unit, so that no single net reaches every flip-flop of the core).
    The core thus runs once more after a miss is decided; its request then waits behind the undecided
    one, which is decided once the missed row is served (and may miss in turn). A row off the stream
    starts it over there in the next cycle (the ring emptied, the bursts in flight discarded).
    Prefetching runs while ``active``.

    A table the accelerator also writes (SPILL, :class:`~spikeforge.hw.row_writer.RowWriter`) never
    serves a row older than a write to it: every write the writer takes makes the reader forget every row
    (``invalidate``: the ring, the row served last, the bursts in flight), a request decided in the same
    cycle misses, and no burst starts until the writes have landed (``active`` low while the writer is not
    ``empty`` in the next cycle). Writes and reads are registered alike, so the core's read in the cycle
    of its write is decided in the cycle the write is taken: a read sees every write the core made before
    it or in its cycle, and the prefetch never holds a row across a write. The core must not write the
    table in the two cycles after a read (while that read is decided, a write could reach memory before
    its row is fetched): the accelerator reads SPILL in LOAD descriptors and writes it in STORE descriptors.

    Ports
    -----
    en : In(1)
    addr : In(tag_bits)
        Request row ``addr`` (taken only in a cycle without ``stall``); its data are in ``data`` at
        the third cycle without stall after it, like a read port of a memory with its address and its
        data registered (held while nothing is served).
    data : Out(row_bits)
    waiting : Out(1)
        A register: a request missed and its row is not on its way to ``data`` yet (the core must stand
        still from the next cycle on).
    stall : In(1)
        The core stands still this cycle (because some reader was ``waiting`` in the cycle before):
        requests are ignored.
    flush : In(1)
        Forget every row (a new run: the memory may have been rewritten); a request in this cycle, or
        registered, is dropped.
    invalidate : In(1)
        Forget every row (a row of the table is written in this cycle); a request decided in this cycle
        misses.
    active : In(1)
        Bursts may start from the next cycle on (a burst request is a register, decided a cycle ahead).
    base : In(addr_bits)
        Byte address of row 0 (aligned to ``row_stride(row_bits)``); addresses have ``addr_bits`` bits
        (the build's ``memory_address_bits``) and wrap.
    burst : Out(burst_signature(addr_bits))
        Burst requests and their beats.
    """

    def __init__(self, row_bits, depth, tag_bits, addr_bits):
        table_rows(self, row_bits, depth, tag_bits)
        super().__init__({
            "en": In(1), "addr": In(tag_bits), "data": Out(row_bits), "waiting": Out(1),
            "stall": In(1), "flush": In(1), "invalidate": In(1), "active": In(1), "base": In(addr_bits),
            "burst": Out(burst_signature(addr_bits)),
        })

    def elaborate(self, platform):
        # the structure below answers in three cycles: the request registered, then decided and the row
        # loaded, then ``data``
        assert ROW_READ_LATENCY == 3, "the row reader answers a request in three cycles of the core"
        m = Module()
        burst = self.burst
        # positions in the ring, each a slot and a lap bit (a full ring differs from an empty one): the
        # rows served (``head``), arrived (``tail``) and asked of memory (``fetched``); the counts are
        # their differences, so that serving a row only steps ``head``
        slot_bits = (self.depth - 1).bit_length()
        slices = [slice(start, min(start + SERVE_FANOUT, self.row_bits))
                  for start in range(0, self.row_bits, SERVE_FANOUT)]
        heads, tails = ([Signal(slot_bits + 1, name=f"{name}{FANOUT_SUFFIX}{i}") for i in range(len(slices) + 1)]
                        for name in ("head", "tail"))
        head, tail, fetched = heads[-1], tails[-1], Signal(slot_bits + 1)
        # the prefetched rows: a ring of ``depth`` rows (distributed RAM), read asynchronously at its head,
        # in slices of ``SERVE_FANOUT`` bits, each with its own copies of ``head`` and ``tail`` (a load on
        # every one of its cells: a wide ring spreads over the chip)
        ring_writes, ring_reads = [], []
        for index, bits in enumerate(slices):
            m.submodules[f"ring{index}"] = ring = memory.Memory(shape=bits.stop - bits.start, depth=self.depth,
                                                                init=[])
            ring_write, ring_read = ring.write_port(), ring.read_port(domain="comb")
            m.d.comb += [ring_read.addr.eq(heads[index][:slot_bits]), ring_write.addr.eq(tails[index][:slot_bits])]
            ring_writes.append(ring_write)
            ring_reads.append(ring_read)

        def after(position):
            return ring_after(position, self.depth)

        served = Signal()                    # ``data`` holds a row
        fetch_tag = Signal(self.tag_bits)    # the next row to ask for
        # bursts asked for and not all here (at most two: the next goes out while one arrives), and of
        # those the ones given up (a restart): their rows are not pushed
        in_flight, stale = Signal(range(BURSTS_IN_FLIGHT + 1)), Signal(range(BURSTS_IN_FLIGHT + 1))
        wanted = Signal(self.tag_bits)       # the row asked for in the core's last cycle
        restart = Signal()                   # the cycle after a miss off the stream: start over at ``wanted``
        # the row a request waits for is at the head: serve it (a copy per slice of the ring, whose
        # registers it loads, and one for the rest)
        serve_waitings = [Signal(name=f"serve_waiting{FANOUT_SUFFIX}{i}") for i in range(len(slices) + 1)]
        serve_waiting = serve_waitings[-1]
        # the arbiter's beats, registered beside the ring, their flags copied per slice of the ring (they
        # enable every bit of a row); the reader sees a beat a cycle after the arbiter
        beat_data = Signal(BEAT_BITS)
        beat_valids, beat_lasts = ([Signal(name=f"beat_{name}{FANOUT_SUFFIX}{i}") for i in range(len(slices) + 1)]
                                   for name in ("valid", "last"))
        m.d.sync += ([beat_data.eq(burst.beat_data)] + [valid.eq(burst.beat_valid) for valid in beat_valids]
                     + [last.eq(burst.beat_last) for last in beat_lasts])
        beat_last = beat_lasts[-1]
        assembled = Signal(self.beats * BEAT_BITS)
        pushes = [last & (stale == 0) for last in beat_lasts]     # a row of the stream arrives
        push = pushes[-1]

        forget = self.flush | self.invalidate
        run = ~self.stall
        # The requests, registered in the core's cycles: everything below decides from these flip-flops.
        # A request is decided in the cycle after it (``decide``: the core runs, no miss is waited for), its
        # row loaded into ``row`` then and into ``data`` in the next cycle the core runs. A miss stalls the
        # core only two cycles later (``waiting`` is a register, and the core's enables are registered from
        # the OR of every reader's), so the core may run once more: its request then waits in a second
        # register (``skid``) behind the undecided one, and the core's next cycle needs the missed row in
        # ``data`` rather than in ``row``. Such a wait (``ahead``) serves the missed row into both, then
        # decides the request held (``redecide``, a miss of which waits again) before it ends.
        en, addr = Signal(name="request_en"), Signal(self.tag_bits, name="request_addr")
        skid_en, skid_addr = Signal(name="skid_en"), Signal(self.tag_bits, name="skid_addr")
        ahead, redecide = Signal(), Signal()
        decide = Signal()
        m.d.comb += decide.eq(run & ~self.waiting | redecide)
        with m.If(self.flush):
            m.d.sync += [en.eq(0), skid_en.eq(0)]
        with m.Elif(decide):
            m.d.sync += [en.eq(Mux(run, self.en, skid_en)), addr.eq(Mux(run, self.addr, skid_addr))]
        with m.Elif(run):
            m.d.sync += [skid_en.eq(self.en), skid_addr.eq(self.addr)]
        served_row = Signal(self.row_bits)   # the row served last; ``data`` follows it in the core's cycles
        # Hits. A request hits the row served last (tag s) or the ring's head (s + 1): the rows are a
        # stream, and a wait ends by serving the head. So the address is not compared with two tags:
        # s is subtracted from it once, on a carry chain (s is kept negated, so that this is a sum), and
        # a hit leaves 0 or 1. Each decision on that difference is folded with its flags into one more
        # carry chain (``_chained``), whose inputs are the difference's bits and single LUTs of
        # registers. A hit on the head steps ``head`` and loads ``row``; a miss (any request in a cycle
        # that invalidates the rows, too) only sets ``waiting``; starting the stream over waits for the
        # next cycle. ``row`` is loaded in the ring's slices, each under its own copy of -s and of the
        # serving chain, which steps its copy (one copy would drive every bit's clock enable); one more
        # copy steps ``head`` and decides the misses.
        empty = [("&" if i else "|", ~(head[i] ^ tail[i])) for i in range(slot_bits + 1)]   # head == tail
        copies, hits = len(slices) + 1, []
        for index in range(copies):
            # -s, the row before row 0 after a flush (-1)
            minus_served = Signal(self.tag_bits, init=1, name=f"minus_served{FANOUT_SUFFIX}{index}")
            # (a bit wider, and kept: Yosys maps a sum of at most 4 bits to LUTs, not to a carry chain)
            difference = Signal(self.tag_bits + 1, name=f"difference{index}", attrs={"keep": 1})
            m.d.comb += difference.eq(addr + minus_served)
            far = [("|", bit) for bit in difference[1:self.tag_bits]]    # the difference is neither 0 nor 1
            odd = addr[0] ^ minus_served[0]                         # its bit 0, from a LUT
            # a request for the head (difference 1) while in the ring, or the awaited row at the head
            serve = Signal(name=f"serve{index}")
            m.d.comb += serve.eq(_chained(empty + far + [("|", ~(en & odd & decide)), ("|", self.invalidate),
                                                         ("&", ~serve_waitings[index])], invert=True))
            with m.If(serve):
                # the awaited row is ``wanted``
                m.d.sync += minus_served.eq(Mux(serve_waitings[index], -wanted, minus_served - 1))
            with m.If(forget):
                m.d.sync += minus_served.eq(1)
            if index < len(slices):
                bits = slices[index]
                with m.If(serve):
                    m.d.sync += served_row[bits].eq(ring_reads[index].data)
                # ``data`` in the core's cycles, or the missed row at once when the core ran past the miss
                with m.If(serve_waitings[index] & ahead):
                    m.d.sync += self.data[bits].eq(ring_reads[index].data)
                with m.Elif(run):
                    m.d.sync += self.data[bits].eq(served_row[bits])
            hits.append((serve, difference, far))
        serve, difference, far = hits[-1]
        with m.If(serve):
            m.d.sync += [served.eq(1)] + [copy.eq(after(copy)) for copy in heads]
        with m.If(decide):
            m.d.sync += wanted.eq(addr)
        # A miss: a request neither for the served row (difference 0) nor for the head while in the ring
        # (1), or any request while the rows are invalidated; it restarts the stream unless it asked for
        # the head (of a ring not invalidated). Bit 0 of the difference comes from
        # the sum here, from a LUT above: a signal has one polarity, and an inverter is a level.
        head_missing = [("|", difference[0])] + [("&", bit) for _, bit in empty]   # 1 or more, ring empty
        # 0, with nothing served: then s is -1, and the difference's bit 0 the address's complement
        nothing_served = addr[0] & ~served
        # the wait goes on unless its row is served (and no request is held for a redecision) or a
        # redecision hits; a miss and the serving of a waiting request exclude each other
        going_on = Signal()
        m.d.comb += going_on.eq(self.waiting & ~(serve_waiting & ~ahead) & ~redecide)
        m.d.sync += self.waiting.eq(_chained(head_missing + far + [
            ("|", nothing_served), ("|", self.invalidate), ("&", en), ("&", decide), ("|", going_on),
            ("&", ~self.flush)]))
        restarting = [("|", nothing_served)] + far + [("|", self.invalidate), ("&", en), ("&", decide),
                                                      ("&", ~self.flush)]
        m.d.sync += restart.eq(_chained(restarting))
        # the core ran in the first cycle of a wait (its stall comes a cycle after the miss): the request
        # it made waits in ``skid``, and the one undecided is decided once the missed row is served
        with m.If(run & self.waiting):
            m.d.sync += ahead.eq(1)
        with m.If(redecide | self.flush):
            m.d.sync += ahead.eq(0)
        m.d.sync += redecide.eq(serve_waiting & ahead & ~self.flush)
        # the awaited row is the head (the miss asked for it, or restarted the stream there): it is
        # served once in the ring, decided a cycle ahead from registers, from the second cycle of the wait
        m.d.sync += [copy.eq(self.waiting & ~serve_waiting & ~redecide & ~restart & ~self.flush
                             & (push | (head != tail))) for copy in serve_waitings]

        # a row arrives: into the ring's slot at the tail, which it takes unless it belongs to a stream
        # given up (then the ring is empty and the slot stays free); each slice of the row assembles, and
        # is written, under its own copy of the beat's flags
        row = Cat(assembled[BEAT_BITS:], beat_data)
        ends = [bits.start for bits in slices[1:]] + [len(assembled)]
        for index, (bits, end) in enumerate(zip(slices, ends)):
            with m.If(beat_valids[index]):
                m.d.sync += assembled[bits.start:end].eq(row[bits.start:end])
            m.d.comb += [ring_writes[index].en.eq(beat_lasts[index]), ring_writes[index].data.eq(row[bits])]
        for copy, step in zip(tails, pushes):
            with m.If(step):
                m.d.sync += copy.eq(after(copy))

        # prefetch: two bursts in flight at most (the arbiter sends a burst's requests while the previous
        # one's answers come), the ring's free slots reserved for the rows asked for. ``valid`` is a
        # register, from the next values of what it depends on (the room a cycle ahead: a row served since
        # only adds to it; no burst right after an issue, at a restart, nor once invalidated: ``active``
        # drops only in the next cycle), so that the arbiter's grant starts at registers
        issue = burst.valid & burst.ready
        in_flight_next = Signal.like(in_flight)
        m.d.comb += in_flight_next.eq(in_flight + issue - beat_last)
        room = fetched != Cat(head[:slot_bits], ~head[slot_bits])     # ``fetched`` not a lap ahead
        # fewer than two bursts in flight next, but for an issue now
        idle = self.active & room & ~((in_flight == BURSTS_IN_FLIGHT) & ~beat_last)
        m.d.sync += [in_flight.eq(in_flight_next),
                     burst.valid.eq(_chained(restarting + [("|", self.invalidate), ("|", ~idle), ("|", issue)],
                                             invert=True))]
        with m.If(beat_last & (stale != 0)):
            m.d.sync += stale.eq(stale - 1)
        m.d.comb += burst.addr.eq(row_address(self.base, fetch_tag, self.row_bits))
        with m.If(issue):
            m.d.sync += [fetch_tag.eq(fetch_tag + 1), fetched.eq(after(fetched))]

        # start over: the ring emptied, the bursts in flight next (but a last beat here now) discarded
        with m.If(restart | forget):
            m.d.sync += [fetched.eq(head), stale.eq(in_flight_next)] + [t.eq(h) for t, h in zip(tails, heads)]
        with m.If(restart):
            m.d.sync += fetch_tag.eq(wanted)
        # forget: as after reset (a request invalidated restarts the stream at its row in the next cycle)
        with m.If(forget):
            m.d.sync += [served.eq(0), fetch_tag.eq(0), fetched.eq(0)] + [copy.eq(0) for copy in heads + tails]
        return m


def _chained(steps, invert=False):
    """``steps`` ``[(op, bit), ...]`` folded in order from 0, each ``op`` ``"|"`` or ``"&"`` (the
    result inverted with ``invert``), as the carry out of one sum: a bit added to 1 carries if it or
    the carry in is set, added to 0 if both are. On the FPGA that is a carry chain, a few tens of
    picoseconds a bit, where a tree of LUTs costs a routed hop per level (and the LUT mapper, blind to
    when its inputs arrive, may put the latest at the bottom)."""
    bits = Cat(*(bit for _, bit in steps), Const(int(invert), 1))
    ones = Const(sum(1 << i for i, (op, _) in enumerate(steps) if op == "|"), len(steps) + 1)
    # with ``invert``, the sum's top bit is 1 plus the carry out: its complement
    return (bits + ones)[len(steps)]
