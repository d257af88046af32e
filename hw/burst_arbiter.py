"""Burst arbiter: the row readers' and writers' bursts on one Wishbone B4 pipelined master."""

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.external import BEAT_BITS, WORD_OFFSET_BITS

from .bus import wishbone_signature

__all__ = ["BurstArbiter", "burst_signature"]


def burst_signature(addr_bits, write=False):
    """A requester's bursts to the :class:`BurstArbiter`: ``valid`` with the byte address ``addr`` of the
    burst's first word until ``ready`` (granted); then the answers to its words in order, ``beat_last``
    with the last one's (a register, a cycle after the bus). A read burst's answers are ``beat_valid``
    with ``beat_data``; a write burst presents its next word in ``write_data``, which the arbiter takes in
    each cycle of ``write_taken`` (the first at the grant)."""
    members = {"valid": Out(1), "addr": Out(addr_bits), "ready": In(1), "beat_last": In(1)}
    if write:
        members.update({"write_data": Out(BEAT_BITS), "write_taken": In(1)})
    else:
        members.update({"beat_valid": In(1), "beat_data": In(BEAT_BITS)})
    return wiring.Signature(members)


class BurstArbiter(wiring.Component):
    """Grants the requesters' bursts one after another — the writers' first, then the readers', lowest
    index first, among those valid in the cycle before the grant (the pick is a register: a burst is
    granted in the second cycle of ``valid`` at the earliest; ``ready`` is that register ANDed with
    ``valid`` and the bus's free ``stb``) — and issues each on a Wishbone B4 pipelined bus as ``beats``
    requests for consecutive words: ``cyc`` held, one ``stb`` per word (``we`` for a writer's), the next
    in the cycle after one is taken (no ``stall``). Requests run ahead of the answers: a burst is
    granted once the previous one's requests are all taken, while its answers still come in (two bursts
    at most await answers, so that the slave's request queue does not run dry between bursts). The slave
    answers in order; each answer goes to its requester a cycle after the bus, from registers. An
    ``err`` counts as the word's answer (the requester goes on: a read's data are then undefined) and
    sets ``error`` in the next cycle. The bus's outputs are registers, loaded from the requesters'
    registers and the bus's ``stall``/``ack``/``err`` through a few gates; without ``stb``, ``adr``,
    ``we`` and ``datwr`` follow the offer.

    Ports
    -----
    writers : In(burst_signature(addr_bits, write=True)).array(len(write_beats))
        The writers' bursts (:class:`~spikeforge.hw.row_writer.RowWriter` ``burst``), ``write_beats[i]``
        words each.
    readers : In(burst_signature(addr_bits)).array(len(read_beats))
        The readers' bursts (:class:`~spikeforge.hw.row_reader.RowReader` ``burst``), ``read_beats[i]``
        words each.
    bus : Out(wishbone_signature(addr_bits - WORD_OFFSET_BITS))
        The master: word addresses of a byte address space of ``addr_bits`` bits.
    error : Out(1)
        A word was answered with ``err`` in the previous cycle.
    """

    def __init__(self, read_beats, write_beats, addr_bits):
        self.read_beats, self.write_beats = tuple(read_beats), tuple(write_beats)
        if not self.read_beats:
            raise ValueError(f"the arbiter needs a reader, not read_beats={read_beats!r}")
        if any(not isinstance(b, int) or b < 1 for b in self.read_beats + self.write_beats):
            raise ValueError(f"every burst needs at least one word, not read_beats={read_beats!r}, "
                             f"write_beats={write_beats!r}")
        super().__init__({"writers": In(burst_signature(addr_bits, write=True)).array(len(self.write_beats)),
                          "readers": In(burst_signature(addr_bits)).array(len(self.read_beats)),
                          "bus": Out(wishbone_signature(addr_bits - WORD_OFFSET_BITS, BEAT_BITS)),
                          "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        requesters, beats = [*self.writers, *self.readers], [*self.write_beats, *self.read_beats]
        writers = len(self.writers)
        words = Array(Const(count, range(max(beats) + 1)) for count in beats)
        single = Array(Const(count == 1) for count in beats)     # a burst of one word

        # the burst whose requests go out: its writer (one-hot, none for a reader's) and the words still to
        # request, whether the request out is the last (registers: they decide the next request and a
        # writer's next word, from the bus's ``stall``)
        sending = Signal(writers)
        left = Signal(range(max(beats) + 1))
        last = Signal()
        # the bursts awaiting answers (0, 1 or 2), oldest first: the oldest's requester and answers to come,
        # the following one's requester
        outstanding = Signal(range(3))
        answering, following = Signal(range(len(requesters))), Signal(range(len(requesters)))
        answers_left = Signal(range(max(beats) + 1))
        answers_last = Signal()     # answers_left == 1, a register

        # a grant, decided a cycle ahead: ``offer`` (one-hot, a register) names the requester that wins
        # among those valid in the previous cycle — the lowest index — where the bus is free for a grant in
        # this one (no request going out, fewer than two bursts awaiting answers); the grant is its ``ready``,
        # registers ANDed, if it is still valid. So no grant waits on a chain of priorities, and the
        # bus's registers load from a requester picked by registers
        offer = Signal(len(requesters))
        offer_index = Signal(range(len(requesters)))
        granted = Signal()
        for index, requester in enumerate(requesters):
            m.d.comb += requester.ready.eq(offer[index] & requester.valid & ~bus.stb)
        m.d.comb += granted.eq(Cat(requester.ready for requester in requesters).any())
        # while no request is out, the request's registers follow the offer (a grant raises ``stb`` over
        # them), so that they do not wait for the grant either
        with m.If(granted):
            m.d.sync += bus.stb.eq(1)
        with m.If(~bus.stb):
            m.d.sync += [bus.we.eq(offer_index < writers), sending.eq(offer[:writers]), left.eq(words[offer_index]),
                         last.eq(single[offer_index]),
                         bus.adr.eq(Array(r.addr[WORD_OFFSET_BITS:] for r in requesters)[offer_index])]
            for index, writer in enumerate(self.writers):
                with m.If(offer[index]):
                    m.d.sync += bus.datwr.eq(writer.write_data)
        for writer in self.writers:
            m.d.comb += writer.write_taken.eq(writer.ready)

        # requests: the next word in the cycle after one is taken; a write's next word from its writer
        with m.If(bus.stb & ~bus.stall):
            m.d.sync += [bus.adr.eq(bus.adr + 1), left.eq(left - 1), last.eq(left == 2)]
            with m.If(last):
                m.d.sync += bus.stb.eq(0)
            with m.Else():
                for index, writer in enumerate(self.writers):
                    with m.If(sending[index]):
                        m.d.comb += writer.write_taken.eq(1)
                        m.d.sync += bus.datwr.eq(writer.write_data)

        # answers, in order: the oldest burst's last one hands its place to the next burst
        answer = bus.ack | bus.err
        final = answer & answers_last
        outstanding_next = Signal.like(outstanding)
        m.d.comb += outstanding_next.eq(outstanding + granted - final)
        m.d.sync += [outstanding.eq(outstanding_next), bus.cyc.eq(outstanding_next != 0)]
        with m.If(answer):
            m.d.sync += [answers_left.eq(answers_left - 1), answers_last.eq(answers_left == 2)]
        with m.If(final & (outstanding == 2)):
            m.d.sync += [answering.eq(following), answers_left.eq(words[following]),
                         answers_last.eq(single[following])]
        with m.If(granted):
            # the grant is the oldest burst when none other awaits answers after this cycle
            with m.If(outstanding == final):
                m.d.sync += [answering.eq(offer_index), answers_left.eq(words[offer_index]),
                             answers_last.eq(single[offer_index])]
            with m.Else():
                m.d.sync += following.eq(offer_index)

        # the next offer: the lowest index among the valid wins (the last If assigned takes effect)
        first_valid, winner = Signal.like(offer_index), Signal.like(offer)
        for index in reversed(range(len(requesters))):
            with m.If(requesters[index].valid):
                m.d.comb += [first_valid.eq(index), winner.eq(1 << index)]
        # (a grant now raises ``stb`` next, which gates ``ready``: the offer need not wait for the grant)
        requesting = bus.stb & (bus.stall | ~last)
        m.d.sync += [offer.eq(Mux(~requesting & ~((outstanding == 2) & ~final), winner, 0)),
                     offer_index.eq(first_valid)]

        # each answer goes to its requester from registers, a cycle after the bus: the bus's answers end
        # in flip-flops, and every requester's strobes (the last answer's too: a row into a reader's
        # ring, a writer's row landed) start at their own
        beat_data = Signal(BEAT_BITS)
        beat_to, last_to = Signal(len(requesters)), Signal(len(requesters))   # one-hot: the answer's requester
        m.d.sync += [beat_data.eq(bus.datrd), beat_to.eq(Mux(answer, 1 << answering, 0)),
                     last_to.eq(Mux(final, 1 << answering, 0)), self.error.eq(bus.err)]
        for index, requester in enumerate(requesters):
            m.d.comb += requester.beat_last.eq(last_to[index])
            if index >= writers:
                m.d.comb += [requester.beat_data.eq(beat_data), requester.beat_valid.eq(beat_to[index])]
        return m
