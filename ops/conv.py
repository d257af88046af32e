"""``conv``: a convolution (stride 1, zero padding ``kernel // 2``) plus bias, optionally added to the
residual stream — on spikes an accumulation of selected weights, on the first layer's integer
pixels a bit-serial shift-and-add (``docs/integer-semantics.md`` §2)."""

from typing import Literal

import numpy as np

from spikeforge.interface.bits import ceil_div
from spikeforge.interface.descriptor import OPCODES

from . import lif
from pydantic import Field

from .base import LayerFields, Name, RuleError, Tensor, Width, require_buildable, require_width

__all__ = ["KIND", "OPCODE", "Fields", "check", "golden", "emit", "cycles", "conv_integer", "weight_rows", "tap_windows",
           "drain_cycles", "scan_pass_cycles", "ACC_READ_LATENCY", "STREAM_READ_LATENCY", "DRAIN_STAGES",
           "SPIKE_READ_LATENCY", "SCAN_ROW_QUEUE"]

KIND = "conv"
OPCODE = "CONV"


class Fields(LayerFields):
    """Manifest fields of a ``conv`` layer."""

    kind: Literal["conv"]
    input: Name = Field(description="tensor read (spikes, or 'input' pixels)")
    output: Name = Field(description='tensor written')
    kernel: Literal[1, 3] = Field(description='1 or 3 (stride 1, zero padding kernel//2)')
    input_kind: Literal["spikes", "pixels"] = Field(description="'spikes' or 'pixels'")
    in_channels: int = Field(description='input channels')
    out_channels: int = Field(description='output channels')
    weight: Name = Field(description='table [out_channels, in_channels, kernel, kernel]')
    bias: Name = Field(description='table [out_channels], output units')
    residual: Name | None = Field(description='stream tensor added to the result, or null')
    acc_bits: Width = Field(description="accumulator width (two's complement), holds the worst case")
    scale_exp: list[int] = Field(description='per output channel: one unit is 2**scale_exp in float terms')


def check(layer, net):
    source = net.read(layer, "input", (layer.input_kind,))
    T, C, H, W = source.shape
    if layer.in_channels != C:
        raise RuleError("in_channels", f"{layer.in_channels}, but tensor {layer.input!r} has {C} channels")
    cout, k = layer.out_channels, layer.kernel
    if not 1 <= cout <= 1 << 16:
        raise RuleError("out_channels", f"must lie in 1..65536, not {cout}")
    weight = net.table(layer, "weight", [cout, C, k, k], bits=net.quant["weight_bits"])
    bias = net.table(layer, "bias", [cout], bits=layer.acc_bits)
    if len(layer.scale_exp) != cout:
        raise RuleError("scale_exp", f"has {len(layer.scale_exp)} entries, expected out_channels = {cout}")
    in_max = net.encoding["max"] if layer.input_kind == "pixels" else 1
    bound = np.abs(weight).sum((1, 2, 3)) * in_max + np.abs(bias)
    T_out = net.config["T"]
    if layer.residual is not None:
        residual = net.read(layer, "residual", ("integer",))
        if residual.shape != (T_out, cout, H, W):
            raise RuleError("residual", f"tensor {layer.residual!r} has shape {list(residual.shape)}, "
                                        f"expected {[T_out, cout, H, W]}")
        if residual.producer is None or residual.producer.kind != KIND:
            raise RuleError("residual", f"tensor {layer.residual!r} is not a residual stream (written by a conv)")
        residual.stream = True
        bound = bound + residual.bound
    require_width("acc_bits", layer.acc_bits, bound)
    net.write(layer, "output", Tensor("integer", (T_out, cout, H, W), bound, producer=layer,
                                      stream=layer.residual is not None))


def conv_integer(x, weight, bias):
    """Integer conv, stride 1, 'same' padding, on ``x [B, T, Cin, H, W]``; ``weight [Cout, Cin, k, k]``.

    For spike inputs every product is a weight selected by a spike: a sum of selected weights."""
    k = weight.shape[-1]
    pad = k // 2
    padded = np.pad(x, [(0, 0)] * 3 + [(pad, pad)] * 2)
    B, T, _, H, W = x.shape
    out = np.broadcast_to(bias.reshape(1, 1, -1, 1, 1), (B, T, len(bias), H, W)).copy()
    for dy in range(k):
        for dx in range(k):
            patch = padded[..., dy:dy + H, dx:dx + W]                    # [B, T, Cin, H, W]
            out += np.moveaxis(np.tensordot(patch, weight[:, :, dy, dx], axes=([2], [1])), -1, 2)
    return out


def weight_rows(weight, n_pe, tile_dy=0, tile_dx=0):
    """The weight rows of ``weight [Cout, Cin, k, k]`` in the order the engine fetches them: per output
    tile, per input channel, per tap ``(dy, dx)``, the ``n_pe`` weights of the tile's channels (lane
    ``j`` is output channel ``tile·n_pe + j``; missing channels of a partial tile are 0). From a
    neighbouring input tile (``tile_dy``/``tile_dx`` off 0) only the taps that reach across."""
    cout, cin, k, _ = weight.shape
    dys, dxs = ([tap for tap, _, _ in _tap_range(shift, 0, 0)] if k == 3 else [0] for shift in (tile_dy, tile_dx))
    return [[int(w) for w in weight[tile * n_pe:(tile + 1) * n_pe, ci, dy, dx]]
            + [0] * (n_pe - len(weight[tile * n_pe:(tile + 1) * n_pe]))
            for tile in range(ceil_div(cout, n_pe)) for ci in range(cin) for dy in dys for dx in dxs]


def golden(layer, run):
    out = conv_integer(run.values[layer.input], run.tables[layer.weight], run.tables[layer.bias])
    if out.shape[1] != run.T:                     # static first conv: the same result every step
        out = np.broadcast_to(out, (out.shape[0], run.T, *out.shape[2:]))
    if layer.residual is not None:
        out = out + run.values[layer.residual]
    run.check_width(layer.name, out, layer.acc_bits)
    run.values[layer.output] = out


def emit(layer, program):
    """One CONV descriptor: weight rows in (tile, input channel, tap) order, one bias row per tile;
    the LIF that reads the result is fused into the drain. Over a map in spatial tiles
    (:func:`_emit_tiled`), descriptors per output tile."""
    source = program.spike_tensor(layer, layer.input)
    H, W = source.H, source.W
    weight, bias = program.tables[layer.weight], program.tables[layer.bias]
    cout, cin, k, _ = weight.shape
    n_pe = program.n_pe
    tiles = ceil_div(cout, n_pe)
    bias_base = len(program.biases)
    program.biases += program.lanes(bias.tolist())
    T = program.T
    fields = dict(op=OPCODES[OPCODE], kernel3=int(k == 3), cin=cin, planes=source.planes,
                  static=int(layer.input_kind == "pixels" and not program.events), tiles=tiles, T=T, H=H, W=W,
                  in_base=source, weight_base=len(program.weights), bias_base=bias_base,
                  check_bits=layer.acc_bits)
    program.need(layer, max_cin=cin, acc_bits=layer.acc_bits)
    if layer.residual is not None:
        if layer.residual != program.stream:
            raise program.error(layer, f"residual {layer.residual!r} is not the stream in memory "
                                       f"({program.stream!r})")
        fields["residual"] = 1
    if layer.output in program.stream_names:
        fields["stream_write"] = 1
        program.stream, program.stream_shape = layer.output, (cout, H, W)
        program.need(layer, stream_tiles=tiles)
    if source.tiled and (fields.get("residual") or fields.get("stream_write")):
        program.untiled(layer, source)    # the stream holds whole maps
    lif.fuse(program.lif_after(layer), program, fields, cout, T, H, W)
    require_buildable(program, layer, fields, acc_bits=layer.acc_bits)
    if source.tiled:
        _emit_tiled(layer, program, source, fields, weight)
    else:
        program.weights += weight_rows(weight, n_pe)
        program.emit(layer.name, fields)
    program.size(H, W)
    program.block_end(layer.output)


def _emit_tiled(layer, program, source, fields, weight):
    """The CONV ``fields`` over a map in spatial tiles: per output channel tile and spatial tile, one
    descriptor per input tile that reaches it — for a 3×3 kernel its neighbours (``tile_dy``/``tile_dx``,
    with weight rows of the taps that reach across) — each but the last ``accumulate_only``, the last
    (the tile itself) draining into the tile's output groups."""
    n_pe, k = program.n_pe, weight.shape[-1]
    tiling = source.tiling
    out = fields.get("out_base")
    tiles = fields["tiles"]
    rows = {}     # (tile_dy, tile_dx) -> the first weight row of its taps and their rows per channel tile
    for dy in (-1, 0, 1) if k == 3 else (0,):
        for dx in (-1, 0, 1) if k == 3 else (0,):
            block = weight_rows(weight, n_pe, tile_dy=dy, tile_dx=dx)
            rows[dy, dx] = len(program.weights), len(block) // tiles
            program.weights += block
    for tile in range(tiles):
        for ty, tx in tiling.tiles():
            y0, y1, x0, x1 = tiling.window(ty, tx)
            reaching = [(dy, dx) for dy, dx in rows
                        if (dy, dx) != (0, 0) and 0 <= ty + dy < tiling.tiles_y and 0 <= tx + dx < tiling.tiles_x]
            for dy, dx in reaching + [(0, 0)]:
                first_row, per_tile = rows[dy, dx]
                part = dict(fields, tiles=1, H=y1 - y0, W=x1 - x0, in_base=source.at(ty + dy, tx + dx),
                            tile_dy=dy & 0b11, tile_dx=dx & 0b11, accumulate_only=int((dy, dx) != (0, 0)),
                            weight_base=first_row + tile * per_tile, bias_base=fields["bias_base"] + tile)
                if out is not None:
                    part.update(out_base=out.at(ty, tx, tile), threshold_base=fields["threshold_base"] + tile)
                program.emit(layer.name, part)


def _tap_range(shift, size, last):
    """Kernel rows (columns) in fetch order and, per one, the input rows (columns) ``(first, last)`` that reach
    an output position: within an image (tile) of ``size``, or (``shift`` −1 / +1) as the edge row
    ``last`` / 0 of the tile before / after it, next to the output tile."""
    if shift == -1:
        return [(0, last, last)]
    if shift == 1:
        return [(2, 0, 0)]
    return [(tap, 1 if tap == 2 else 0, size - 2 if tap == 0 else size - 1) for tap in range(3)]


def tap_windows(kernel, H, W, tile_dy=0, tile_dx=0, edge_y=None, edge_x=None):
    """Per tap ``(dy, dx)`` in fetch order, the input rows ``y0..y1`` and columns ``x0..x1`` that reach an
    output position (input ``y`` feeds output ``y − dy + 1``); empty when ``y1 < y0``. For a
    neighbouring input tile (``tile_dy``, ``tile_dx`` −1 or +1, ``kernel`` 3) only the taps that reach
    across, on its edge next to the output tile (the tile before: its last row ``edge_y`` / column ``edge_x``)."""
    if kernel == 1:
        return [(0, H - 1, 0, W - 1)]
    return [(y0, y1, x0, x1) for _, y0, y1 in _tap_range(tile_dy, H, edge_y)
            for _, x0, x1 in _tap_range(tile_dx, W, edge_x)]


def cycles(fields, spikes):
    """Engine cycles (from leaving IDLE to DONE) of a CONV descriptor.

    ``spikes``: the spike channels at ``in_base`` as stored, ``[T_s, C_s, H_s, W_s]`` with ``C_s ≥
    cin·planes`` (extra timesteps, channels, rows and columns are allowed: the hardware does not scan
    them; the first conv's pixels as bit planes, channel ``c·P + b`` bit ``b`` of channel ``c``).

    Per output tile (``tiles``):

    * the scanner's pass, :func:`scan_pass_cycles` (its setup and FETCH cycles included): per slot (input
      channel, tap ``(dy, dx)`` — 9 for ``kernel3``, else the centre —, bit plane), the occupied rows
      ``{t, y}`` the tap reaches (``t < scan_T``, 1 for ``static`` else ``T``; ``y`` in ``[1 if dy = 2
      else 0, H−2 if dy = 0 else H−1]``) with ``k`` a row's spikes in the tap's columns ``[1 if dx = 2
      else 0, W−2 if dx = 0 else W−1]``: a row is occupied when its stored word holds any spike, so a
      row whose spikes all lie outside the tap's columns still costs its empty scan; for a neighbouring
      input tile (``tile_dy``/``tile_dx`` off 0; ``spikes`` is that tile as stored, ``max_h × max_w``) only
      the taps that reach across and its edge row or column (:func:`tap_windows`);
    * the drain pass, :func:`drain_cycles` (every position, also for ``static``), unless
      ``accumulate_only`` (one tile: the scan pass alone).
    """
    cin, planes, T, H, W = fields["cin"], fields["planes"], fields["T"], fields["H"], fields["W"]
    x = np.asarray(spikes, dtype=np.int64)
    scan_T = 1 if fields["static"] else T
    x = x[:scan_T, :cin * planes] != 0
    per_tap = []                          # per tap, per spike channel: max(1, k) of each row visited
    shifts = {axis: _signed_shift(fields.get(f"tile_{axis}", 0)) for axis in ("dy", "dx")}
    for y0, y1, x0, x1 in tap_windows(3 if fields["kernel3"] else 1, H, W, shifts["dy"], shifts["dx"],
                                      x.shape[2] - 1, x.shape[3] - 1):
        rows = np.moveaxis(x[:, :, y0:max(y0, y1 + 1)], 1, 0)   # [channel, t, reached rows, stored columns]
        occupied = rows.any(-1).reshape(len(rows), -1)          # rows in scan order {t, y}
        reached = np.maximum(rows[..., x0:x1 + 1].sum(-1), 1).reshape(len(rows), -1)
        per_tap.append([reached[c][occupied[c]] for c in range(len(rows))])
    slots = [per_tap[tap][ci * planes + plane]
             for ci in range(cin) for tap in range(len(per_tap)) for plane in range(planes)]
    if fields.get("accumulate_only"):
        return scan_pass_cycles(slots)
    return fields["tiles"] * (scan_pass_cycles(slots) + drain_cycles(T, H, W))


def _signed_shift(field):
    """A ``tile_dy``/``tile_dx`` field (2-bit two's complement) as −1, 0 or +1."""
    return field - 4 if field & 2 else field


#: Cycles from a spike-memory read to its word (``hw/spike_memory.py``): the registered address, the
#: block RAM's output, each bank's registered word and the bank multiplexer each end in a register.
SPIKE_READ_LATENCY = 4
#: Row reads in flight or queued in the spike scanner at most (``hw/spike_scanner.py`` ROW_QUEUE): the
#: read latency, the queue's cycle and the row taken a cycle ahead keep the events fed.
SCAN_ROW_QUEUE = SPIKE_READ_LATENCY + 2


def scan_pass_cycles(slots):
    """Cycles of one spike-scanner pass (``hw/spike_scanner.py``), from the cycle after its ``start`` to
    ``done`` included; ``slots``: per slot (input channel, tap, plane) in order, ``max(1, k)`` of each
    row it visits in scan order ``{t, y}``, ``k`` the row's spikes in the tap's columns.

    The reads run ahead of the events, and each slot's fetch runs ahead of the reads. The first slot's
    weight row and occupancy word are fetched in cycle 2 (cycle 1 registers the first slot's fetch
    address); a slot's occupancy word is loaded into the row search (cycle ``l``) once it has arrived
    and been registered, L + 1 cycles after its fetch (L = :data:`SPIKE_READ_LATENCY`), and once the
    previous slot's rows are all read, and the next slot is fetched in that same cycle. From ``l + 1``
    on, the slot's occupied rows are read one per cycle while a credit of the row queue
    (:data:`SCAN_ROW_QUEUE`) is free; the cycle after its last read (``l + 1`` when it has none) the
    next slot can be loaded, so a slot costs ``max(L + 1, 1 + its reads' cycles)``. The pass's reads
    end that cycle after the last slot's. A row's word can be taken from the queue L + 1 cycles after
    its read, once the row before it has started, and its events start the cycle after, when the row
    before has ended: ``max(1, k)`` cycles, one event each. Taking a row returns its credit. An event
    leaves through a register a cycle later; ``done`` comes once the reads have ended and the last
    event has left its search (it is on the event ports then)."""
    load, end = 3 + SPIKE_READ_LATENCY, 0
    pops, starts = [], []
    for rows in slots:
        ready = load + 1                     # the slot's first row search
        for k in rows:
            j = len(starts)
            read = ready if j < SCAN_ROW_QUEUE else max(ready, pops[j - SCAN_ROW_QUEUE] + 1)
            arrived = read + SPIKE_READ_LATENCY + 1
            pop = arrived if j == 0 else max(arrived, starts[-1])
            start = max(pop, end) + 1
            pops.append(pop)
            starts.append(start)
            end = start + int(k) - 1
            ready = read + 1
        reads_end, load = ready, max(ready, load + SPIKE_READ_LATENCY + 1)
    return max(reads_end, end + 1)


#: Cycles from an accumulator read to its word (``hw/accumulator_array.py``): the request registered,
#: the block RAM's read, its word registered.
ACC_READ_LATENCY = 3
#: Cycles from a stream read to its word (``hw/engine.py``): the address registered (the stream's block
#: RAMs, some forty of them, lie across the chip), the block RAM's read.
STREAM_READ_LATENCY = 2
#: Pipeline stages of the drain after its reads (``hw/drain.py``): the accumulator read's further cycles
#: (:data:`ACC_READ_LATENCY` − 1: its word arrives in the sum's cycle; the stream's word,
#: :data:`STREAM_READ_LATENCY`, registered meanwhile), the sum, the check and scaling, the LIF, the outputs,
#: the spike-row write.
DRAIN_STAGES = ACC_READ_LATENCY + 4


def drain_cycles(T, H, W):
    """Cycles of one tile's drain pass (CONV and ATTENTION): DRAIN_START 1 (the bias and threshold rows,
    requested with ``start``, on their way), DRAIN ``T·H·W`` (one position each), and the flush of its
    :data:`DRAIN_STAGES` stages."""
    return 1 + T * H * W + DRAIN_STAGES
