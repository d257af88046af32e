"""Host driver: loads a program image, runs images and reads results through the register map.

The driver speaks only to a *bus* (``await bus.write(address, value)``,
``await bus.write_block(address, words)``, ``await bus.read(address)``, ``await bus.wait_done()``);
:class:`PortsBus` is that bus over the simulation transports of
:mod:`spikeforge.sim.transport` (the Amaranth simulator and cocotb/Verilator), and a board would
supply its own.
"""

import numpy as np

from spikeforge.interface.layout import (pack_row, spike_row_layout, stream_word_layout, pack_fields,
                                         unpack_lanes, unpack_row)
from spikeforge.interface.params import AcceleratorParams
from spikeforge.interface.regmap import CTRL_BITS, STATUS_BITS, address, identity_values, register

__all__ = ["Driver", "PortsBus", "DriverError"]


class DriverError(RuntimeError):
    """The accelerator reported an error, or the image does not match the hardware."""


class PortsBus:
    """The accelerator's host bus on a :class:`~spikeforge.sim.transport.Ports` object."""

    def __init__(self, ports, done_timeout=50_000_000):
        self.ports = ports
        self.done_timeout = done_timeout

    async def write(self, addr, value):
        await self.ports.write("bus_addr", addr)
        await self.ports.write("bus_wdata", value)
        await self.ports.write("bus_we", 1)
        await self.ports.tick()
        await self.ports.write("bus_we", 0)

    async def write_block(self, addr, words):
        """Write ``words`` to consecutive addresses from ``addr``, one per cycle."""
        await self.ports.write("bus_we", 1)
        for offset, word in enumerate(words):
            await self.ports.write("bus_addr", addr + offset)
            await self.ports.write("bus_wdata", word)
            await self.ports.tick()
        await self.ports.write("bus_we", 0)

    async def read(self, addr):
        await self.ports.write("bus_addr", addr)
        await self.ports.tick()
        return self.ports.read("bus_rdata")

    async def wait_done(self):
        await self.ports.wait("done", 1, self.done_timeout)


class Driver:
    """Drive one accelerator.

    Parameters
    ----------
    bus : object
        Provides ``write``, ``write_block``, ``read`` and ``wait_done`` coroutines (see :class:`PortsBus`).
    """

    def __init__(self, bus):
        self.bus = bus
        self.image = None

    async def csr(self, name):
        return await self.bus.read(address("CSR", register(name).offset))

    async def set_csr(self, name, value):
        await self.bus.write(address("CSR", register(name).offset), value)

    async def load(self, image):
        """Check the hardware's identity against ``image.params`` and write its memories."""
        for name, value in identity_values(image.params).items():
            found = await self.csr(name)
            if found != value:
                raise DriverError(f"register {name}: the image needs {value:#x}, the hardware has {found:#x}")
        for window_name, words in image.memories.items():
            await self.bus.write_block(address(window_name), [int(word) for word in words])
        self.image = image
        params = AcceleratorParams(**image.params)
        self._spike_row, self._stream_word = spike_row_layout(params), stream_word_layout(params)

    def _spike_address(self, group, t, y):
        return address("SPIKES", pack_fields(self._spike_row, group=group, t=t, y=y))

    async def write_input(self, pixels):
        """Write integer pixels ``[C, H, W]`` (or events ``[T, C, H, W]``) as bit planes."""
        spec, n_pe = self.image.layout["input"], self.image.params["n_pe"]
        frames = np.asarray(pixels, dtype=np.int64)
        frames = frames[None] if not spec["events"] else frames
        planes = spec["planes"]
        channels = spec["channels"] * planes
        for t, frame in enumerate(frames):
            for group in range(-(-channels // n_pe)):
                for y in range(spec["H"]):
                    word = 0
                    for lane in range(n_pe):
                        channel = group * n_pe + lane
                        if channel < channels:
                            bits = (frame[channel // planes, y] >> (channel % planes)) & 1
                            word |= pack_row(bits.tolist()) << (lane * self.image.params["max_w"])
                    await self.bus.write(self._spike_address(spec["group"] + group, t, y), word)

    async def run(self, pixels=None, start_pc=0, stop_pc=0):
        """Write ``pixels`` (if given), run descriptors ``[start_pc, stop_pc)`` (0: to END); returns cycles."""
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
        return await self.csr("CYCLES")

    async def overflow(self):
        """Descriptor name of the first result wider than declared, or None."""
        if await self.csr("STATUS") >> STATUS_BITS["OVERFLOW"] & 1:
            return self.image.layout["ops"][await self.csr("OVERFLOW_PC")]
        return None

    async def read_logits(self):
        p = self.image.params
        word = await self.bus.read(address("LOGITS"))
        return unpack_lanes(word, p["n_pe"], p["acc_bits"])[:self.image.layout["classes"]]

    async def read_layer(self, name):
        """Spikes of LIF layer ``name`` as an int64 array ``[T, C, H, W]``."""
        place = self.image.layout["spikes"][name]
        p = self.image.params
        n_pe, max_w = p["n_pe"], p["max_w"]
        out = np.zeros((place["T"], place["groups"] * n_pe, place["H"], place["W"]), dtype=np.int64)
        for group in range(place["groups"]):
            for t in range(place["T"]):
                for y in range(place["H"]):
                    word = await self.bus.read(self._spike_address(place["group"] + group, t, y))
                    for lane, row in enumerate(unpack_lanes(word, n_pe, max_w, signed=False)):
                        out[t, group * n_pe + lane, y] = unpack_row(row, place["W"])
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
                        word = await self.bus.read(address("STREAM", offset))
                        out[t, tile * n_pe:(tile + 1) * n_pe, y, x] = unpack_lanes(word, n_pe, acc_bits)
        return out[:, :spec["channels"]]

    async def read_op_cycles(self):
        """Cycles of each descriptor of the last run, by descriptor name (END excluded)."""
        ops = self.image.layout["ops"]
        return {name: await self.bus.read(address("OP_CYCLES", pc)) for pc, name in enumerate(ops[:-1])}


