"""Single-layer test cases for the layer engine: random quantized layers, their golden results,
and the one testbench every simulator runs.

A case holds integer weights ``[Cout, Cin, k, k]``, bias, thresholds and input spikes
``[T, Cin, H, W]``; :func:`expected` computes the golden model's spikes and membranes with the
operations' integer semantics (``spikeforge.ops.conv``, ``spikeforge.ops.lif``), and :func:`layer_testbench` loads
the case through the engine's ports, runs it and collects what the hardware streams out.
"""

from dataclasses import dataclass

import torch

from spikeforge.interface.layout import pack_fields, pack_lanes, pack_row, spike_row_layout, unpack_lanes
from spikeforge.ops.conv import conv_integer, weight_rows
from spikeforge.ops.lif import lif_integer

from .cycles import layer_cycles

__all__ = ["LayerCase", "random_case", "expected", "layer_testbench", "compare", "check_fits", "pack_lanes", "KINDS"]

KINDS = ("linear", "conv1x1", "conv3x3")


@dataclass
class LayerCase:
    kind: str
    weight: torch.Tensor       # [Cout, Cin, k, k] int64
    bias: torch.Tensor         # [Cout]
    threshold: torch.Tensor    # [Cout]
    spikes: torch.Tensor       # [T, Cin, H, W] in {0, 1}
    frac_bits: int
    decay_mult: int
    decay_shift: int

    @property
    def shape(self):
        T, cin, H, W = self.spikes.shape
        return T, cin, self.weight.shape[0], H, W

    @property
    def taps(self):
        return self.weight.shape[-1] ** 2


def random_case(kind, cin, cout, size=(4, 4), T=4, rate=0.5, bits=8, seed=0, params=None):
    """A random quantized layer with spikes at firing ``rate`` and thresholds that make the
    outputs fire for some positions and not for others."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must lie in [0, 1], not {rate!r}")
    g = torch.Generator().manual_seed(seed)
    H, W = (1, size[0] * size[1]) if kind == "linear" else size
    k = 3 if kind == "conv3x3" else 1
    limit = (1 << (bits - 1)) - 1
    weight = torch.randint(-limit, limit + 1, (cout, cin, k, k), generator=g)
    bias = torch.randint(-limit, limit + 1, (cout,), generator=g)
    spikes = (torch.rand((T, cin, H, W), generator=g) < rate).long()
    F = params.frac_bits if params else T
    decay = (params.decay_mult, params.decay_shift) if params else (1, 1)
    typical = max(1.0, limit * (cin * k * k * max(rate, 0.05)) ** 0.5 / 2)
    threshold = (torch.rand((cout,), generator=g) * typical + 1).long() << F
    return LayerCase(kind, weight, bias, threshold, spikes, F, *decay)


def expected(case):
    """Golden ``(spikes [T, Cout, H, W], membranes [T, Cout, H, W])`` of a case."""
    acc = conv_integer(case.spikes.unsqueeze(0).numpy(), case.weight.numpy(), case.bias.numpy())
    spikes, membranes = lif_integer(acc, case.threshold.numpy(), case.frac_bits, case.decay_mult, case.decay_shift)
    return torch.from_numpy(spikes[0]), torch.from_numpy(membranes[0])


def check_fits(case, params):
    """Raise ``ValueError`` naming the first dimension of ``case`` beyond the hardware's capacity."""
    T, cin, cout, H, W = case.shape
    tiles = -(-cout // params.n_pe)
    for name, value, field in (("T", T, "max_T"), ("cin", cin, "max_cin"), ("tiles", tiles, "max_tiles"),
                               ("H", H, "max_h"), ("W", W, "max_w")):
        if value > getattr(params, field):
            raise ValueError(f"layer {name}={value} exceeds the hardware's {field}={getattr(params, field)} "
                             f"(raise it with --set {field}=...)")


async def layer_testbench(ports, case, params):
    """Load ``case`` through the engine's ports, run it, and return the streamed results:
    ``{"spikes", "membranes"}`` as nested lists ``[T][Cout][H][W]``, plus ``cycles`` and ``events``."""
    from spikeforge.hw.layer_engine import LOAD_BIAS, LOAD_SPIKES, LOAD_THRESHOLD, LOAD_WEIGHTS, layer_params

    T, cin, cout, H, W = case.shape
    n = params.n_pe
    tiles = -(-cout // n)
    k = case.weight.shape[-1]
    check_fits(case, params)

    def lanes(tensor, tile):
        chunk = tensor[tile * n:(tile + 1) * n].tolist()
        return chunk + [0] * (n - len(chunk))

    async def load(target, addr, value):
        await ports.write("load_target", target)
        await ports.write("load_addr", addr)
        await ports.write("load_data", value)
        await ports.write("load_valid", 1)
        await ports.tick()

    spike_rows = spike_row_layout(layer_params(params))
    for row, values in enumerate(weight_rows(case.weight.numpy(), n)):
        await load(LOAD_WEIGHTS, row, pack_lanes(values, params.weight_bits))
    for tile in range(tiles):
        await load(LOAD_BIAS, tile, pack_lanes(lanes(case.bias, tile), params.acc_bits))
        await load(LOAD_THRESHOLD, tile, pack_lanes(lanes(case.threshold, tile), params.membrane_bits))
    for t in range(T):   # spike words: n_pe channels of one image row
        for group in range(-(-cin // n)):
            for y in range(H):
                word = 0
                for lane, ci in enumerate(range(group * n, min(cin, (group + 1) * n))):
                    word |= pack_row(case.spikes[t, ci, y].tolist()) << (lane * params.max_w)
                await load(LOAD_SPIKES, pack_fields(spike_rows, group=group, t=t, y=y), word)
    await ports.write("load_valid", 0)
    for name, value in (("cin", cin), ("tiles", tiles), ("T", T), ("H", H), ("W", W), ("kernel3", int(k == 3))):
        await ports.write(name, value)
    await ports.write("start", 1)
    await ports.tick()
    await ports.write("start", 0)
    spikes = [[[[None] * W for _ in range(H)] for _ in range(cout)] for _ in range(T)]
    membranes = [[[[None] * W for _ in range(H)] for _ in range(cout)] for _ in range(T)]
    budget = 4 * layer_cycles(case, params) + 100
    for _ in range(budget):
        await ports.tick()
        if ports.read("out_valid"):
            tile, t, y, x = (ports.read(f"out_{f}") for f in ("tile", "t", "y", "x"))
            bits = ports.read("out_spikes")
            values = unpack_lanes(ports.read("out_membrane"), n, params.membrane_bits)
            for lane in range(n):
                channel = tile * n + lane
                if channel < cout:
                    spikes[t][channel][y][x] = bits >> lane & 1
                    membranes[t][channel][y][x] = values[lane]
        if ports.read("done"):
            break
    else:
        raise RuntimeError(f"layer engine not done after {budget} cycles")
    return {"spikes": spikes, "membranes": membranes, "cycles": ports.read("cycles"),
            "events": ports.read("events")}


def compare(case, result):
    """First difference between hardware ``result`` and the golden model as
    ``(what, t, channel, y, x, golden, hardware)``, or None when every value is equal."""
    spikes, membranes = expected(case)
    for what, golden, got in (("spike", spikes, result["spikes"]), ("membrane", membranes, result["membranes"])):
        got = torch.tensor([[[[(-1 << 62) if v is None else v for v in row] for row in ch] for ch in t]
                            for t in got])
        diff = (got != golden).nonzero()
        if len(diff):
            t, c, y, x = diff[0].tolist()
            return what, t, c, y, x, int(golden[t, c, y, x]), int(got[t, c, y, x])
    return None
