"""Control slave: the 32-bit Wishbone B4 pipelined port in front of the accelerator's registers and memory windows."""

from amaranth import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.bits import ceil_div
from spikeforge.interface.regmap import BUS_DATA_BITS, AddressLayout

from .bus import wishbone_signature
from .logic import registered_select

__all__ = ["ControlSlave", "bus_address", "READ_ANSWER_CYCLES"]

#: Cycles from a read's being taken to its answer, beyond the core's ``read_latency``: its window and offset
#: registered, the slot picked in two register stages, and the answer registered once more. The bus's
#: pins lie all around the chip, so ``datrd`` is a plain copy of the picked slot (no reset, no enable) that
#: the placer can put beside each pin.
READ_ANSWER_CYCLES = 4


def bus_address(layout):
    """The layout of a control-bus word address (Wishbone ``adr``: the byte address without its byte field)
    with the field widths of ``layout`` (:class:`~spikeforge.interface.regmap.AddressLayout`)."""
    return data.StructLayout({field: bits for field, bits in layout.field_bits().items() if field != "byte"})


class ControlSlave(wiring.Component):
    """Turns Wishbone requests into word accesses ``{window, offset}`` of up to ``word_bits`` bits.

    A write to slot ``s`` replaces those 32 bits of a staging word and stores the whole staged word
    (the bus has no ``sel``: every write carries a full slot). A read presents ``{window, offset}`` to
    the core and answers with slot ``s`` of the word the core returns ``read_latency`` cycles later, picked
    through two register stages (:func:`~spikeforge.hw.logic.registered_select`: a word of tens of slots is
    too wide a multiplexer for one cycle) and registered again (:data:`READ_ANSWER_CYCLES`).

    One request at a time: ``stall`` is high from the cycle after a request is taken until the cycle of
    its answer, in which the next request may be taken. A request taken in cycle ``r`` is presented to the
    core from registers — its window and offset from cycle ``r + 1`` on; a write's word and strobe in cycle
    ``r + 2``, the slot merged into the staged word in between — and answered with ``ack`` (``datrd`` for
    a read) or, for a write the core refuses, ``err``: a write in cycle ``r + 3``, after the core took
    it, a read in cycle ``r + READ_ANSWER_CYCLES + read_latency``. ``stall``, ``ack``, ``err`` and ``datrd`` are
    flip-flops (``datrd`` holds the read's slot in the cycle of its ``ack``). A master that drops ``cyc``
    before the answer abandons its request: the request is carried out (a write still reaches the core),
    the answer withheld.

    Addresses have the fields of ``layout`` (:func:`~spikeforge.interface.regmap.address_layout` of the
    build parameters) without the byte field (:func:`bus_address`).

    Ports
    -----
    bus : In(wishbone_signature(layout.word_address_bits))
        The Wishbone B4 pipelined slave. ``err`` answers a write the core refused (``reject``).
    we : Out(1)
        A word write this cycle, to ``window``/``offset`` with ``wdata`` (registers, as are
        ``window``, ``offset`` and ``wdata``; ``we`` is a register gated by ``reject``).
    window : Out(layout.window_bits)
    offset : Out(layout.offset_bits)
        The word of the request last taken.
    wdata : Out(word_bits)
    reject : In(1)
        The core refuses the write presented this cycle (answered with ``err``).
    rdata : In(word_bits)
        The word at the ``window``/``offset`` of ``read_latency`` cycles earlier.
    """

    def __init__(self, word_bits, layout, read_latency=1):
        if not isinstance(layout, AddressLayout):
            raise TypeError(f"layout must be an AddressLayout, not {layout!r}")
        if not 1 <= word_bits <= BUS_DATA_BITS << layout.slot_bits:
            raise ValueError(f"word_bits must be in 1..{BUS_DATA_BITS << layout.slot_bits} ({layout.slot_bits} "
                             f"slot bits), not {word_bits!r}")
        if not isinstance(read_latency, int) or read_latency < 1:
            raise ValueError(f"read_latency must be a positive number of cycles, not {read_latency!r}")
        self.word_bits, self.layout, self.read_latency = word_bits, layout, read_latency
        super().__init__({"bus": In(wishbone_signature(layout.word_address_bits, BUS_DATA_BITS)),
                          "we": Out(1), "window": Out(layout.window_bits), "offset": Out(layout.offset_bits),
                          "wdata": Out(word_bits), "reject": In(1), "rdata": In(word_bits)})

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        n_slots = ceil_div(self.word_bits, BUS_DATA_BITS)
        slot_layout = data.ArrayLayout(BUS_DATA_BITS, n_slots)
        staged = Signal(slot_layout)
        request = data.View(bus_address(self.layout), bus.adr)
        # of the request taken
        slot = Signal.like(request.slot, name="slot")
        write_data = Signal(BUS_DATA_BITS)
        merging, written = Signal(), Signal()     # a write's cycle into the staging word, its cycle at the core
        reading = Signal()
        # cycles until the core's word is there, then one for each stage of the slot's select but the last
        read_wait = Signal(range(self.read_latency + READ_ANSWER_CYCLES - 1))
        abandoned = Signal()      # cyc has dropped since the request was taken: no answer
        answer = Signal()
        m.d.comb += [answer.eq(bus.cyc & ~abandoned), self.we.eq(written & ~self.reject)]
        m.d.sync += [bus.ack.eq(0), bus.err.eq(0)]

        with m.If(bus.cyc & bus.stb & ~bus.stall):
            m.d.sync += [bus.stall.eq(1), abandoned.eq(0), self.window.eq(request.window),
                         self.offset.eq(request.offset), slot.eq(request.slot), write_data.eq(bus.datwr),
                         merging.eq(bus.we), reading.eq(~bus.we),
                         read_wait.eq(self.read_latency + READ_ANSWER_CYCLES - 2)]
        with m.Elif(~bus.cyc):
            m.d.sync += abandoned.eq(1)

        merged = Signal(slot_layout)
        m.d.comb += merged.eq(staged)
        for index in range(n_slots):
            with m.If(slot == index):
                m.d.comb += merged[index].eq(write_data)
        with m.If(merging):
            m.d.sync += [staged.eq(merged), self.wdata.eq(merged), merging.eq(0), written.eq(1)]
        with m.If(written):
            m.d.sync += [written.eq(0), bus.stall.eq(0), bus.ack.eq(answer & ~self.reject),
                         bus.err.eq(answer & self.reject)]

        # the core's word follows its address by read_latency cycles and holds while the address does, as
        # does the slot: the select's two stages see both settled from then on (a slot beyond the word: 0)
        padded = Signal(n_slots * BUS_DATA_BITS)
        m.d.comb += padded.eq(self.rdata)
        words = data.View(slot_layout, padded)
        m.d.sync += bus.datrd.eq(registered_select(m, {index: words[index] for index in range(n_slots)}, slot,
                                                   "read_data", BUS_DATA_BITS))
        with m.If(reading):
            with m.If(read_wait == 0):
                m.d.sync += [reading.eq(0), bus.stall.eq(0), bus.ack.eq(answer)]
            with m.Else():
                m.d.sync += read_wait.eq(read_wait - 1)
        return m
