"""Host driver: loads a program image, runs images and reads results through the register map.

The driver speaks only to a 32-bit *bus* (``await bus.write(address, value)``,
``await bus.write_all([(address, value), ...])``, ``await bus.read(address)``, ``await bus.wait_done()``); words wider than 32 bits it splits into the slots of
:mod:`spikeforge.interface.regmap`. :class:`PortsBus` is that bus over the accelerator's Wishbone
port on the simulation transports of :mod:`spikeforge.sim.transport` (the Amaranth simulator and
cocotb/Verilator); a board would supply its own. Spilled tensors the accelerator wrote to external
memory the driver reads through the host's own path to that memory, a *memory* (``await
memory.read_words(address, count)``): a board's, or the memory model's storage in simulation
(:class:`~spikeforge.sim.system.ModelMemory`).
"""

import numpy as np

from spikeforge.interface.layout import (SpatialTiles, pack_row, spike_row_layout, stream_word_layout, pack_fields,
                                         unpack_lanes, unpack_row)
from spikeforge.interface.params import AcceleratorParams
from spikeforge.firmware.image import external_shapes
from spikeforge.interface.bits import ceil_div
from spikeforge.interface.encoding import bit_planes
from spikeforge.interface.external import BEAT_BITS, SPILL, external_bytes, row_stride, table_offsets
from spikeforge.interface.regmap import (BUS_DATA_BITS, BYTE_BITS, CTRL_BITS, OVERFLOW_LOG_BITS, STATUS_BITS, TABLES,
                                         address, identity_values, register_address, slots)

__all__ = ["Driver", "PortsBus", "DriverError", "overflow_layers", "overflow_names"]

_SLOT_MASK = (1 << BUS_DATA_BITS) - 1


class DriverError(RuntimeError):
    """The accelerator reported an error, or the image does not match the hardware."""


def overflow_layers(image):
    """What each ``OVERFLOW_LOG`` bit names, in program order: ``(pc, bit, layer name)`` — bit RESULT the
    descriptor's own layer, bit MEMBRANE the LIF fused into it (the one whose spikes its layer produces; a
    layer over spatial tiles has several descriptors)."""
    ops = image.layout["ops"]
    lifs = {ops[place["producer"]]: place["lif"] for place in image.layout["spikes"].values()}
    named = []
    for pc, name in enumerate(ops[:-1]):
        named.append((pc, OVERFLOW_LOG_BITS["RESULT"], name))
        if name in lifs:
            named.append((pc, OVERFLOW_LOG_BITS["MEMBRANE"], lifs[name]))
    return named


def overflow_names(image, log):
    """Layer names of the set bits of ``log`` (one ``OVERFLOW_LOG`` word per descriptor), in program order,
    each once."""
    named = overflow_layers(image)
    flagged = {name for pc, bit, name in named if pc < len(log) and int(log[pc]) >> bit & 1}
    return [name for name in dict.fromkeys(name for _, _, name in named) if name in flagged]


class PortsBus:
    """Wishbone B4 pipelined master on the accelerator's port ``prefix`` of a
    :class:`~spikeforge.sim.transport.Ports` object: one request at a time, each byte address of the
    register map sent as its word address ``adr`` (the byte address >> 2)."""

    def __init__(self, ports, prefix="ctrl", done_timeout=50_000_000):
        self.ports = ports
        self.prefix = prefix
        self.done_timeout = done_timeout

    def _port(self, name):
        return f"{self.prefix}__{name}"

    async def _request(self, addr):
        """Present the request set up on the port until it is taken (a cycle without ``stall``), then wait
        for its answer; raise on ``err``."""
        port = self._port
        await self.ports.write(port("adr"), addr >> BYTE_BITS)
        await self.ports.write(port("stb"), 1)
        await self.ports.settle()
        while self.ports.read(port("stall")):
            await self.ports.tick()
        await self.ports.tick()
        # taken: a request held one more cycle would be taken again
        await self.ports.write(port("stb"), 0)
        await self.ports.settle()
        while not (self.ports.read(port("ack")) or self.ports.read(port("err"))):
            await self.ports.tick()
        if self.ports.read(port("err")):
            await self.ports.write(port("cyc"), 0)
            raise DriverError(f"the accelerator refused the access to {addr:#010x} (ERR)")

    async def write(self, addr, value):
        await self.write_all([(addr, value)])

    async def write_all(self, writes):
        """Write each 32-bit ``value`` of ``writes`` (``(address, value)`` pairs) in order, in one bus cycle."""
        port = self._port
        await self.ports.write(port("cyc"), 1)
        await self.ports.write(port("we"), 1)
        for addr, value in writes:
            await self.ports.write(port("datwr"), value)
            await self._request(addr)
        await self.ports.write(port("cyc"), 0)

    async def read(self, addr):
        port = self._port
        await self.ports.write(port("cyc"), 1)
        await self.ports.write(port("we"), 0)
        await self._request(addr)
        value = self.ports.read(port("datrd"))
        await self.ports.write(port("cyc"), 0)
        return value

    async def wait_done(self):
        await self.ports.wait("done", 1, self.done_timeout)


class Driver:
    """Drive one accelerator.

    Parameters
    ----------
    bus : object
        Provides ``write``, ``write_all``, ``read`` and ``wait_done`` coroutines (see :class:`PortsBus`).
    memory : object, optional
        The host's own access to external memory: ``await memory.read_words(address, count)`` returns
        ``count`` 32-bit words from byte ``address`` on (needed only by :meth:`read_spill`).
    """

    def __init__(self, bus, memory=None):
        self.bus = bus
        self.memory = memory
        self.image = None
        #: The build parameters of the loaded image (:class:`AcceleratorParams`): the addresses follow them.
        self.params = None

    async def csr(self, name):
        """Register ``name`` (its address is the same in every build: usable before :meth:`load`)."""
        return await self.bus.read(register_address(name))

    async def set_csr(self, name, value):
        await self.bus.write(register_address(name), value)

    def _params(self, window_name):
        if self.params is None:
            raise DriverError(f"no image loaded: the {window_name} window's addresses follow the image's parameters")
        return self.params

    def _address(self, window_name, offset, slot=0):
        return address(self._params(window_name), window_name, offset, slot)

    def _slot_writes(self, window_name, offset, word):
        for slot in range(slots(window_name, self._params(window_name))):
            yield self._address(window_name, offset, slot), word >> (slot * BUS_DATA_BITS) & _SLOT_MASK

    async def write_words(self, window_name, offset, words):
        """Write ``words`` to window ``window_name`` from word ``offset`` on, slot by slot."""
        await self.bus.write_all([write for index, word in enumerate(words)
                                  for write in self._slot_writes(window_name, offset + index, int(word))])

    async def read_word(self, window_name, offset):
        """Word ``offset`` of window ``window_name``, assembled from its slots."""
        word = 0
        for slot in range(slots(window_name, self._params(window_name))):
            word |= await self.bus.read(self._address(window_name, offset, slot)) << (slot * BUS_DATA_BITS)
        return word

    async def load(self, image, memory_base=0):
        """Check the hardware's identity (its ``ADDRESS`` register included) against ``image.params`` and
        point the table base registers at the image's tables, which the host placed in external memory
        from byte ``memory_base`` on (the image's ``EXTERNAL`` files, :mod:`spikeforge.interface.external`),
        and ``SPILL_BASE`` at the spill region after them; together they must end within the accelerator's
        ``2**memory_address_bits`` bytes."""
        params = AcceleratorParams(**image.params)
        shapes = external_shapes(image)
        end, limit = memory_base + external_bytes(shapes), 1 << params.memory_address_bits
        if memory_base < 0 or end > limit:
            raise DriverError(f"the image's tables and spill region occupy external memory bytes {memory_base:#x}.."
                              f"{end:#x}; the accelerator addresses {limit:#x} bytes (memory_address_bits = "
                              f"{params.memory_address_bits})")
        for name, value in identity_values(params).items():
            found = await self.csr(name)
            if found != value:
                raise DriverError(f"register {name}: the image needs {value:#x}, the hardware has {found:#x}")
        self.image, self.params = image, params
        self._bases = {name: memory_base + offset for name, offset in table_offsets(shapes).items()}
        for name, base in self._bases.items():
            await self.set_csr(TABLES[name], base)
        self._spike_row, self._stream_word = spike_row_layout(params), stream_word_layout(params)

    def _spike_offset(self, group, t, y):
        return pack_fields(self._spike_row, group=group, t=t, y=y)

    def _tile_rows(self, group, channels, T, H, W):
        """Per spike-memory word of a tensor at ``group`` (``channels`` on a ``T × H × W`` map, in spatial
        tiles): its offset, channel group, timestep, map row and columns ``x0:x1``."""
        tiling = SpatialTiles.of(channels, H, W, self.image.params)
        for ty, tx in tiling.tiles():
            y0, y1, x0, x1 = tiling.window(ty, tx)
            for channel_group in range(tiling.channel_groups):
                for t in range(T):
                    for y in range(y0, y1):
                        offset = self._spike_offset(group + tiling.group(ty, tx, channel_group), t, y - y0)
                        yield offset, channel_group, t, y, x0, x1

    async def write_input(self, pixels):
        """Write integer pixels ``[C, H, W]`` (or events ``[T, C, H, W]``) as bit planes."""
        spec, p = self.image.layout["input"], self.image.params
        n_pe, planes = p["n_pe"], spec["planes"]
        channels = spec["channels"] * planes
        spikes = bit_planes(pixels, planes)
        spikes = np.pad(spikes, [(0, 0), (0, -channels % n_pe), (0, 0), (0, 0)])   # lanes past the channels: 0
        for offset, group, t, y, x0, x1 in self._tile_rows(spec["group"], channels, len(spikes), spec["H"], spec["W"]):
            word = 0
            for lane in range(n_pe):
                word |= pack_row(spikes[t, group * n_pe + lane, y, x0:x1].tolist()) << (lane * p["max_w"])
            await self.write_words("SPIKES", offset, [word])

    async def run(self, pixels=None, start_pc=0, stop_pc=0):
        """Write ``pixels`` (if given), run descriptors ``[start_pc, stop_pc)`` (0: to END); returns cycles
        (waits for external memory included: ``STALL_CYCLES`` of them). The overflow flags are kept from
        earlier runs: :meth:`clear_overflow` before an image's first run."""
        if pixels is not None:
            await self.write_input(pixels)
        await self.set_csr("START_PC", start_pc)
        await self.set_csr("STOP_PC", stop_pc)
        await self.set_csr("CTRL", 1 << CTRL_BITS["START"])
        await self.bus.wait_done()
        status = await self.csr("STATUS")
        if status >> STATUS_BITS["ERROR"] & 1:
            pc = await self.csr("ERROR_PC")
            raise DriverError(f"the accelerator stopped with ERROR at descriptor {pc}")
        if status >> STATUS_BITS["MEMORY_ERROR"] & 1:
            raise DriverError("external memory answered a request of the run with an error (STATUS.MEMORY_ERROR): "
                              "the results are not valid")
        return await self.csr("CYCLES")

    async def clear_overflow(self):
        """Clear ``OVERFLOW_LOG`` and with it ``STATUS.OVERFLOW`` (they are sticky across runs)."""
        await self.set_csr("CTRL", 1 << CTRL_BITS["CLEAR_OVERFLOW"])

    async def read_overflow_log(self):
        """The ``OVERFLOW_LOG`` word of each descriptor (END excluded): bits :data:`OVERFLOW_LOG_BITS`
        set since the last :meth:`clear_overflow`; all 0 without reading when ``STATUS.OVERFLOW`` is clear."""
        ops = self.image.layout["ops"][:-1]
        if not await self.csr("STATUS") >> STATUS_BITS["OVERFLOW"] & 1:
            return [0] * len(ops)
        return [await self.bus.read(self._address("OVERFLOW_LOG", pc)) for pc in range(len(ops))]

    async def overflow(self):
        """Names of the layers with a value wider than declared since the last :meth:`clear_overflow`,
        in program order (a descriptor's own layer, then its fused LIF): the golden model's
        ``Trace.overflow_per_image`` of the image run."""
        return overflow_names(self.image, await self.read_overflow_log())

    async def read_logits(self):
        p = self.image.params
        word = await self.read_word("LOGITS", 0)
        return unpack_lanes(word, p["n_pe"], p["logit_bits"])[:self.image.layout["classes"]]

    async def read_layer(self, name):
        """Spikes of LIF layer ``name`` as an int64 array ``[T, C, H, W]``."""
        place = self.image.layout["spikes"][name]
        p = self.image.params
        n_pe, max_w = p["n_pe"], p["max_w"]
        out = np.zeros((place["T"], -(-place["channels"] // n_pe) * n_pe, place["H"], place["W"]), dtype=np.int64)
        for offset, group, t, y, x0, x1 in self._tile_rows(place["group"], place["channels"], place["T"], place["H"],
                                                           place["W"]):
            word = await self.read_word("SPIKES", offset)
            for lane, row in enumerate(unpack_lanes(word, n_pe, max_w, signed=False)):
                out[t, group * n_pe + lane, y, x0:x1] = unpack_row(row, x1 - x0)
        return out[:, :place["channels"]]

    async def read_stream(self):
        """The residual stream ``[T, C, H, W]`` (int64) as it is in memory now."""
        spec, p = self.image.layout["stream"], self.image.params
        n_pe, acc_bits = p["n_pe"], p["acc_bits"]
        tiles = -(-spec["channels"] // n_pe)
        out = np.zeros((spec["T"], tiles * n_pe, spec["H"], spec["W"]), dtype=np.int64)
        for tile in range(tiles):
            for t in range(spec["T"]):
                for y in range(spec["H"]):
                    for x in range(spec["W"]):
                        offset = pack_fields(self._stream_word, tile=tile, t=t, y=y, x=x)
                        word = await self.read_word("STREAM", offset)
                        out[t, tile * n_pe:(tile + 1) * n_pe, y, x] = unpack_lanes(word, n_pe, acc_bits)
        return out[:, :spec["channels"]]

    async def read_spill(self, first, count=1):
        """Rows ``first``, ``first + 1``, … (``count`` of them) of the spill region as unsigned ints (one
        spike-memory group word each), read from external memory through the driver's ``memory``."""
        if self.memory is None:
            raise DriverError("the spill region is read from external memory: give the driver a memory")
        bits, rows = external_shapes(self.image)[SPILL]
        if not 0 <= first <= first + count <= rows:
            raise DriverError(f"spill rows {first}..{first + count - 1} lie outside the region's {rows} rows")
        stride, beats = row_stride(bits), ceil_div(bits, BEAT_BITS)
        out = []
        for row in range(first, first + count):
            words = await self.memory.read_words(self._bases[SPILL] + row * stride, beats)
            out.append(sum(word << (BEAT_BITS * k) for k, word in enumerate(words)) & ((1 << bits) - 1))
        return out

    async def read_op_cycles(self):
        """Cycles of each descriptor of the last run, in program order (END excluded; the layer of each is
        ``image.layout["ops"][pc]``, a layer over spatial tiles has several)."""
        return [await self.bus.read(self._address("OP_CYCLES", pc)) for pc in range(len(self.image.layout["ops"]) - 1)]


