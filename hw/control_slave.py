"""Control slave: the 32-bit AXI4-Lite port in front of the accelerator's registers and memory windows."""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.bits import ceil_div
from spikeforge.interface.regmap import BUS_DATA_BITS, AddressLayout

from .bus import RESP_OKAY, RESP_SLVERR, axi4_lite_signature

__all__ = ["ControlSlave", "bus_address"]


def bus_address(layout):
    """The layout of a control-bus byte address with the field widths of ``layout``
    (:class:`~spikeforge.interface.regmap.AddressLayout`)."""
    return data.StructLayout(layout.field_bits())


class ControlSlave(wiring.Component):
    """Turns AXI4-Lite transfers into word accesses ``{window, offset}`` of up to ``word_bits`` bits.

    A write to slot ``s`` replaces those 32 bits of a staging word and stores the whole staged word
    (the bus has no ``WSTRB``: every write carries a full slot). A read presents ``{window, offset}`` from
    its address handshake on and returns slot ``s`` of the word the core answers with ``read_latency``
    cycles later. One transfer at a time: a read waits for a pending write, a write for a pending
    read. The write address and data are taken into registers independently
    (``AWREADY``/``WREADY``/``ARREADY`` depend on the slave's registers only, never combinationally
    on the master's signals); the write is presented to the core the second cycle after both are in,
    from registers, as the read's address is.

    Addresses have the fields of ``layout`` (:func:`~spikeforge.interface.regmap.address_layout` of the
    build parameters).

    Ports
    -----
    bus : In(axi4_lite_signature(layout.address_bits))
        The AXI4-Lite slave. ``BRESP`` is ``SLVERR`` when the core refused the write (``reject``).
    we : Out(1)
        A word write this cycle, to ``window``/``offset`` with ``wdata`` (registers, as are
        ``window``, ``offset`` and ``wdata``; ``we`` is a register gated by ``reject``).
    window : Out(layout.window_bits)
    offset : Out(layout.offset_bits)
        The word addressed this cycle (a write's, else the read's).
    wdata : Out(word_bits)
    reject : In(1)
        The core refuses the write presented this cycle (answered with ``SLVERR``).
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
        super().__init__({"bus": In(axi4_lite_signature(layout.address_bits, BUS_DATA_BITS)),
                          "we": Out(1), "window": Out(layout.window_bits), "offset": Out(layout.offset_bits),
                          "wdata": Out(word_bits), "reject": In(1), "rdata": In(word_bits)})

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        n_slots = ceil_div(self.word_bits, BUS_DATA_BITS)
        slot_layout = data.ArrayLayout(BUS_DATA_BITS, n_slots)
        staged = Signal(slot_layout)
        address_layout = bus_address(self.layout)
        write_address, write_data = Signal(address_layout), Signal(BUS_DATA_BITS)
        address_in, data_in = Signal(), Signal()     # the write's address, data taken
        read_address = Signal(address_layout)

        read_busy = Signal()      # from the read address handshake to the read data handshake
        read_wait = Signal(range(self.read_latency + 1))   # cycles until the core's word is there, then 0
        # the core sees a transfer through registers: the word, its window and offset and the write
        # strobe leave the slave from flip-flops (the core's address decoders start at them)
        issue_write, written = Signal(), Signal()   # the write goes to the registers / is presented now
        window, offset = Signal.like(self.window), Signal.like(self.offset)
        m.d.comb += [issue_write.eq(address_in & data_in & ~read_busy & ~written & ~bus.bvalid),
                     bus.awready.eq(~address_in), bus.wready.eq(~data_in),
                     bus.arready.eq(~read_busy & ~address_in & ~data_in & ~written & ~bus.bvalid),
                     self.window.eq(window), self.offset.eq(offset), self.we.eq(written & ~self.reject)]
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [write_address.eq(bus.awaddr), address_in.eq(1)]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [write_data.eq(bus.wdata), data_in.eq(1)]
        merged = Signal(slot_layout)
        m.d.comb += merged.eq(staged)
        for slot in range(n_slots):
            with m.If(write_address.slot == slot):
                m.d.comb += merged[slot].eq(write_data)
        m.d.sync += written.eq(issue_write)
        with m.If(issue_write):
            m.d.sync += [staged.eq(merged), self.wdata.eq(merged), window.eq(write_address.window),
                         offset.eq(write_address.offset), address_in.eq(0), data_in.eq(0)]
        with m.If(written):
            m.d.sync += [bus.bvalid.eq(1), bus.bresp.eq(Mux(self.reject, RESP_SLVERR, RESP_OKAY))]
        with m.Elif(bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        with m.If(bus.arvalid & bus.arready):
            read_fields = data.View(address_layout, bus.araddr)
            m.d.sync += [read_address.eq(bus.araddr), window.eq(read_fields.window), offset.eq(read_fields.offset),
                         read_busy.eq(1), read_wait.eq(self.read_latency)]
        with m.If(read_wait == 1):
            m.d.sync += [read_wait.eq(0), bus.rvalid.eq(1)]
        with m.Elif(read_wait != 0):
            m.d.sync += read_wait.eq(read_wait - 1)
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += [bus.rvalid.eq(0), read_busy.eq(0)]
        # the core's word follows its address by read_latency cycles and holds while the address does
        padded = Signal(n_slots * BUS_DATA_BITS)
        m.d.comb += padded.eq(self.rdata)
        words = data.View(slot_layout, padded)
        with m.Switch(read_address.slot):
            for slot in range(n_slots):
                with m.Case(slot):
                    m.d.comb += bus.rdata.eq(words[slot])
        m.d.comb += bus.rresp.eq(RESP_OKAY)
        return m
