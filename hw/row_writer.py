"""Row writer: a table in external memory written like a block-RAM write port, through a queue."""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.external import BEAT_BITS

from .burst_arbiter import burst_signature
from .logic import ring_after, row_address, table_rows

__all__ = ["RowWriter"]


class RowWriter(wiring.Component):
    """Takes the engine's row writes like a block-RAM write port and writes each row to external memory
    as one burst of ``⌈row_bits / 32⌉`` words (rows ``row_stride(row_bits)`` bytes apart from ``base``,
    :mod:`spikeforge.interface.external`), the mirror of :class:`~spikeforge.hw.row_reader.RowReader`.

    A write goes into a register first, and into the ring in the next cycle (``accepted``), as a reader
    registers its requests: the writing unit may lie across the chip. A row waits in the ring of
    ``depth`` rows (distributed RAM) until its burst's words are all answered (it has landed); rows go
    out in the order they were written. The core must not write while the ring has no room for its
    write: ``waiting`` (a register) says that the cycle after the next may not write — the ring holds
    ``depth − 2`` rows or more besides the write registered now (writes may still come in this cycle and
    the next, before the stall the accelerator registers from it) — and the accelerator stalls the core
    then, as for a reader's miss. ``empty``
    tells the table's reader that no write is pending (it starts no burst before; ``accepted`` makes it
    forget its rows) and the accelerator that the run's writes have all landed.

    Ports
    -----
    en : In(1)
    addr : In(tag_bits)
    data : In(row_bits)
        Write ``data`` to row ``addr`` (taken only in a cycle without ``stall``).
    accepted : Out(1)
        A write enters the ring in this cycle (the one registered in the cycle before).
    waiting : Out(1)
        A register: no write may come in the next cycle but one (the core must stand still from the next
        cycle on).
    stall : In(1)
        The core stands still this cycle: ``en`` is ignored.
    empty : Out(1)
        No row registered, queued or in flight (a register: low from the cycle after a write until its
        last word is answered).
    empty_next : Out(1)
        ``empty`` in the next cycle (for the reader's burst requests, registers decided a cycle ahead).
    base : In(addr_bits)
        Byte address of row 0 (aligned to ``row_stride(row_bits)``); addresses have ``addr_bits`` bits
        (the build's ``memory_address_bits``) and wrap.
    burst : Out(burst_signature(addr_bits, write=True))
        Write bursts: a row's words, lowest first, and their answers.
    """

    def __init__(self, row_bits, depth, tag_bits, addr_bits):
        # room for the rows written until the stall comes, and one more
        table_rows(self, row_bits, depth, tag_bits, least=3)
        super().__init__({
            "en": In(1), "addr": In(tag_bits), "data": In(row_bits), "accepted": Out(1), "waiting": Out(1),
            "stall": In(1), "empty": Out(1, init=1), "empty_next": Out(1), "base": In(addr_bits),
            "burst": Out(burst_signature(addr_bits, write=True)),
        })

    def elaborate(self, platform):
        m = Module()
        burst = self.burst
        addr_bits = len(self.base)
        # the queued rows with their byte addresses (the sum is taken as a row comes in, so that the address
        # a grant takes is read from the ring): a ring of ``depth`` (distributed RAM), read asynchronously at
        # the row whose words go out
        m.submodules.ring = ring = memory.Memory(shape=addr_bits + self.row_bits, depth=self.depth, init=[])
        ring_write, ring_read = ring.write_port(), ring.read_port(domain="comb")
        # positions in the ring (a slot and a lap bit, ``ring_after``): the rows written (``tail``), granted
        # (their bursts started: ``granted``), sent (their words all taken by the arbiter: ``sent``) and
        # landed (their words all answered: ``head``)
        slot_bits = (self.depth - 1).bit_length()
        head, sent, granted, tail = (Signal(slot_bits + 1, name=name) for name in ("head", "sent", "granted", "tail"))
        m.d.comb += [ring_write.addr.eq(tail[:slot_bits]), ring_read.addr.eq(sent[:slot_bits])]

        # a write: into a register, then into the ring's slot at the tail
        written = self.en & ~self.stall
        request_addr = Signal.like(self.addr, name="request_addr")
        request_data = Signal.like(self.data, name="request_data")
        # (the row and its address load in every cycle, used only when ``accepted``: no clock enable
        # from the writing unit's ``en`` across the chip to every bit of the row)
        m.d.sync += [self.accepted.eq(written), request_addr.eq(self.addr), request_data.eq(self.data)]
        address = Signal(addr_bits)
        m.d.comb += [ring_write.en.eq(self.accepted),
                     address.eq(row_address(self.base, request_addr, self.row_bits)),
                     ring_write.data.eq(Cat(address, request_data))]
        tail_next = self._stepped(m, tail, self.accepted)

        # the row at ``sent`` goes out: its address at the grant, then its words, lowest first, one per
        # word the arbiter takes; the last one taken moves on to the next row
        queued_row = Cat(ring_read.data[addr_bits:], Const(0, self.beats * BEAT_BITS - self.row_bits))
        word = Signal(range(self.beats))
        m.d.comb += [burst.addr.eq(ring_read.data[:addr_bits]),
                     burst.write_data.eq(queued_row.word_select(word, BEAT_BITS))]
        with m.If(burst.write_taken):
            m.d.sync += word.eq(word + 1)
            with m.If(word == self.beats - 1):
                m.d.sync += [word.eq(0), sent.eq(ring_after(sent, self.depth))]
        # ``valid``: a register, a row not yet granted in the next cycle. The arbiter grants a burst only
        # once the previous one's words are all taken, so the row granted is the one at ``sent``; and
        # ``valid`` does not wait for the words of a burst granted, only for its grant
        granted_next = self._stepped(m, granted, burst.ready)
        m.d.sync += burst.valid.eq(granted_next != tail_next)

        # a row has landed with its last answer. The cycle after the next may write when, after this one,
        # the ring has room for three more rows: the one a write now registers, the next cycle's, and its own
        head_next = self._stepped(m, head, burst.beat_last)
        m.d.comb += self.empty_next.eq((head_next == tail_next) & ~written)
        m.d.sync += self.empty.eq(self.empty_next)
        lapped = Cat(head_next[:slot_bits], ~head_next[slot_bits])       # the tail of a full ring
        second = ring_after(tail_next, self.depth)
        m.d.sync += self.waiting.eq((tail_next == lapped) | (second == lapped)
                                    | (ring_after(second, self.depth) == lapped))
        return m

    def _stepped(self, m, position, step):
        """Step the ring position ``position`` to the next slot in the cycles of ``step``; returns its next
        value (what the registers decided a cycle ahead compare)."""
        following = Signal.like(position, name=f"{position.name}_next")
        m.d.comb += following.eq(Mux(step, ring_after(position, self.depth), position))
        m.d.sync += position.eq(following)
        return following
