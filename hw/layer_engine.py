"""Layer engine: one spike-input layer (conv 1×1 / linear or conv 3×3) over all T timesteps, on the
accelerator's :class:`~spikeforge.hw.engine.Engine` with a fixed CONV descriptor."""

from dataclasses import asdict

from amaranth import Module, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.interface.descriptor import OPCODES
from spikeforge.interface.bits import index_bits
from spikeforge.interface.regmap import address_layout, window

from .engine import Engine, host_data_bits
from .logic import table_read
from spikeforge.interface.params import AcceleratorParams

__all__ = ["LayerEngine", "LOAD_WEIGHTS", "LOAD_BIAS", "LOAD_THRESHOLD", "LOAD_SPIKES", "layer_params"]

#: ``load_target`` values: which memory a host write goes to.
LOAD_WEIGHTS, LOAD_BIAS, LOAD_THRESHOLD, LOAD_SPIKES = 0, 1, 2, 3


def layer_params(params):
    """Accelerator parameters holding one layer of ``params`` (EngineParams): input spikes in the
    first groups, output spikes after them."""
    input_groups = -(-params.max_cin // params.n_pe)
    groups = 1 << (input_groups + params.max_tiles - 1).bit_length()
    return AcceleratorParams(**asdict(params), spike_groups=groups, stream_tiles=1,
                             weight_rows=params.max_tiles * params.max_cin * 9, bias_rows=params.max_tiles,
                             threshold_rows=params.max_tiles, program_depth=1)


class LayerEngine(wiring.Component):
    """Event-driven layer engine: the accelerator's engine running one CONV descriptor with its LIF.

    Dataflow (``docs/hardware.md``): for each output tile (``n_pe`` channels), for each input channel,
    for each tap, the weight row is fetched once and reused for every spike of that channel at every
    timestep; only occupied bitmap rows are visited. Then the drain adds the bias, runs the LIF and
    streams spikes and membranes out, position by position, timestep by timestep.

    Ports
    -----
    load_valid, load_target, load_addr, load_data : In
        Host writes into the weight (rows in (tile, ci, tap) order), bias (per tile), threshold
        (per tile) or spike memory (address ``{group, t, y}``, ``n_pe`` image rows of ``max_w`` bits
        per word, channel ``group·n_pe + lane``); lanes are packed lane 0 first, two's complement.
        ``load_addr`` is as wide as the deepest of these memories.
    cin, tiles, T, H, W, kernel3 : In
        Layer shape: input channels, output tiles, timesteps, image size, 3×3 (1) or 1×1 (0).
    start : In(1)
        Pulse to run the layer.
    busy, done : Out(1)
        Running; finished (held until the next start).
    cycles, events : Out(32)
        Cycles of the last run; spike events processed (events × taps × tiles).
    out_valid, out_tile, out_t, out_y, out_x : Out
        One LIF result per cycle during the drain.
    out_spikes : Out(n_pe)
    out_membrane : Out(ArrayLayout(signed(membrane_bits), n_pe))
        Membrane H before reset.
    """

    def __init__(self, params):
        self.params = params
        p = layer_params(params)
        super().__init__({
            "load_valid": In(1), "load_target": In(2),
            "load_addr": In(max(index_bits(p.weight_rows), address_layout(p).offset_bits)),
            "load_data": In(host_data_bits(p)),
            "cin": In(p.c_bits + 1), "tiles": In(p.tile_bits + 1), "T": In(p.t_bits + 1),
            "H": In(p.h_bits + 1), "W": In(p.w_bits + 1), "kernel3": In(1),
            "start": In(1), "busy": Out(1), "done": Out(1), "cycles": Out(32), "events": Out(32),
            "out_valid": Out(1), "out_tile": Out(max(1, p.tile_bits)), "out_t": Out(max(1, p.t_bits)),
            "out_y": Out(max(1, p.h_bits)), "out_x": Out(max(1, p.w_bits)), "out_spikes": Out(p.n_pe),
            "out_membrane": Out(data.ArrayLayout(signed(p.membrane_bits), p.n_pe)),
        })

    def elaborate(self, platform):
        m = Module()
        p = layer_params(self.params)
        m.submodules.engine = engine = Engine(p)
        desc = engine.desc
        input_groups = -(-self.params.max_cin // self.params.n_pe)
        # the layer's tables on chip, loaded through the load port, answering as the accelerator's readers
        # of external memory do
        tables = {LOAD_WEIGHTS: ("weight", engine.row, p.weight_rows), LOAD_BIAS: ("bias", engine.acc_word, p.bias_rows),
                  LOAD_THRESHOLD: ("threshold", engine.membrane_word, p.threshold_rows)}
        for target, (name, shape, depth) in tables.items():
            m.submodules[name] = table = memory.Memory(shape=shape, depth=depth, init=[])
            write, read = table.write_port(), table.read_port()
            m.d.comb += [write.en.eq(self.load_valid & (self.load_target == target)), write.addr.eq(self.load_addr),
                         write.data.eq(self.load_data),
                         getattr(engine, f"{name}_data").eq(table_read(m, read, getattr(engine, f"{name}_en"),
                                                                       getattr(engine, f"{name}_addr"),
                                                                       f"{name}_request"))]
        m.d.comb += [
            engine.host_we.eq(self.load_valid & (self.load_target == LOAD_SPIKES)),
            engine.host_window.eq(window("SPIKES").index),
            engine.host_offset.eq(self.load_addr), engine.host_wdata.eq(self.load_data),
            desc.op.eq(OPCODES["CONV"]), desc.lif.eq(1), desc.kernel3.eq(self.kernel3), desc.cin.eq(self.cin),
            desc.planes.eq(1), desc.tiles.eq(self.tiles), desc.T.eq(self.T), desc.H.eq(self.H),
            desc.W.eq(self.W), desc.out_base.eq(input_groups), desc.check_bits.eq(self.params.acc_bits),
            desc.frac_bits.eq(self.params.frac_bits),
            engine.start.eq(self.start), self.busy.eq(engine.busy), self.events.eq(engine.events),
            self.out_valid.eq(engine.drain_valid), self.out_tile.eq(engine.drain_tile),
            self.out_t.eq(engine.drain_t), self.out_y.eq(engine.drain_y), self.out_x.eq(engine.drain_x),
            self.out_spikes.eq(engine.drain_spikes), self.out_membrane.eq(engine.drain_membrane),
        ]
        with m.If(self.start):
            m.d.sync += [self.done.eq(0), self.cycles.eq(0)]
        with m.If(engine.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(engine.done):
            m.d.sync += self.done.eq(1)
        return m
