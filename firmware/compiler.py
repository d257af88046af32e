"""Compiler: a bundle's layer program → a program image for the accelerator.

Each operation module (:mod:`spikeforge.ops`) emits its own descriptors into a :class:`Program`;
this module places the input, collects the build parameters the operations need and packs the
memory images. A LIF is fused into the conv or attention that produces its input (the drain runs
it); the first conv reads its integer pixels as bit planes (spike channel ``ci·P + b`` holds bit
``b`` of channel ``ci``). The residual stream lives in one place and is updated in place.

Spike tensors share the spike memory by liveness: a tensor holds its groups from the descriptor that
writes it (the input: from the start, the host writes it) to the last descriptor that names it, and
its groups serve later tensors after that. The operations name a tensor in a descriptor's group field
(``in_base=tensor``); once the whole program is emitted, :func:`allocate_groups` places every tensor
first fit, in program order, and the fields take its first group. A LIF's spikes whose groups are
reused must be read before they are overwritten: the layout gives each its ``breakpoint``.

When the tensors live at the same time need more groups than the build's ``spike_groups``, some spill to
the SPILL table in external memory: the allocator evicts the tensor whose next use lies furthest ahead
(Belady's choice; never an operand of the descriptor being placed, nor a tensor still being written),
inserts a STORE of its groups (once: spikes never change after they are written) and, before the next
descriptor that names it, a LOAD into groups free then (:mod:`spikeforge.ops.spill`). SPILL rows are
shared by liveness too. A tensor spilled is checked where it was written: its first groups hold it
until their breakpoint, as any tensor's.
"""

import bisect
import functools


from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

from spikeforge.interface.bits import ceil_div, index_bits, next_power_of_two
from spikeforge.interface.descriptor import DESCRIPTOR_BITS, OPCODES, pack
from spikeforge.interface.external import SPILL, external_bytes, spill_shape
from spikeforge.interface.fpga import SIZED_TO_BUNDLE, configuration
from spikeforge.interface.layout import SpatialTiles, high_lanes, pack_lanes
from spikeforge.interface.params import AcceleratorParams
from spikeforge.ops import OPERATIONS, spill
from spikeforge.ops.bundle import Bundle, load_bundle

from .image import ProgramImage

__all__ = ["CompileError", "Program", "SpikeTensor", "TileGroup", "allocate_groups", "compile_bundle", "DEFAULT_N_PE",
           "MAX_PLANES"]

DEFAULT_N_PE = 16
#: Bit planes the first conv reads at most (8-bit pixels).
MAX_PLANES = 8
#: Parameters an override may set only to the value the bundle's LIFs use (the decay is built in).
_FIXED = ("decay_mult", "decay_shift")
#: Parameters an override may set to any valid value, which the compiler then checks against the program:
#: the board's external memory, which the tables must fit, and the spike memory, which the tensors must fit.
_CHECKED_AGAINST_PROGRAM = ("memory_address_bits", "spike_groups")
#: Build parameters that are the build's choice, not a program's need (a configuration's are taken as they are).
_BUILD_CHOICES = ("n_pe", "prefetch_rows", "spill_rows", "memory_address_bits")
#: The tables whose rows the program fills, as the build parameters that hold them.
_TABLE_ROWS = {"weight_rows": "weights", "bias_rows": "biases", "threshold_rows": "thresholds",
               "program_depth": "descriptors"}


class CompileError(ValueError):
    """The bundle's program cannot run on the accelerator; the message names the layer."""


@dataclass(eq=False)
class SpikeTensor:
    """A spike tensor in the spike memory: ``channels`` (``planes`` bit planes each for the input) in
    ``groups`` groups of ``n_pe``, ``T × H × W`` in spatial tiles (``tiling``, one tile unless the map is
    larger than the build's ``max_h × max_w``), written by layer ``writer`` (None: the host) in
    descriptor ``producer`` (None: before the run) and named by descriptors up to ``last_use``;
    ``group``, its first group, is allocated once the program is emitted (:func:`allocate_groups`),
    and ``breakpoint`` is the descriptor before which a later tensor overwrites it (None: never)."""

    writer: str | None
    channels: int
    groups: int
    T: int
    H: int
    W: int
    producer: int | None
    last_use: int
    tiling: SpatialTiles
    planes: int = 1
    lif: bool = False
    group: int | None = None
    breakpoint: int | None = None

    @property
    def tiled(self):
        return self.tiling.tiles_y * self.tiling.tiles_x > 1

    def at(self, ty, tx, channel_group=0):
        """A descriptor's group field naming channel group ``channel_group`` of spatial tile ``(ty, tx)``."""
        return TileGroup(self, self.tiling.group(ty, tx, channel_group))

    @property
    def first_use(self):
        """The first descriptor during which the tensor's groups are taken."""
        return 0 if self.producer is None else self.producer

    def overlaps(self, other):
        return self.group < other.group + other.groups and other.group < self.group + self.groups


class TileGroup(NamedTuple):
    """A group field's value: ``offset`` groups after the first of ``tensor`` (a spatial tile's, a channel
    group's), known once the tensor's groups are allocated."""

    tensor: SpikeTensor
    offset: int

    @property
    def group(self):
        return self.tensor.group + self.offset


def _group_value(value):
    """A descriptor field's value once groups are allocated (group fields name tensors or their tiles)."""
    if isinstance(value, SpikeTensor):
        return value.group
    if isinstance(value, TileGroup):
        return value.group
    return value


def _named_tensor(value):
    """The spike tensor a descriptor field names, or None."""
    return value.tensor if isinstance(value, TileGroup) else value if isinstance(value, SpikeTensor) else None


def _lowest_run(taken, size):
    """The first of the lowest run of ``size`` places that no span ``(start, end)`` of ``taken`` holds."""
    first = 0
    for start, end in sorted(taken):
        if start - first >= size:
            break
        first = max(first, end)
    return first


class _SpillCopy(NamedTuple):
    """SPILL rows ``first_row`` … ``first_row + rows − 1`` that hold a spilled tensor until its ``last_use``
    (a descriptor before the spill's insertions)."""

    first_row: int
    rows: int
    last_use: int


def allocate_groups(prog, capacity=None, refusal=None):
    """Place the spike tensors of ``prog`` (a :class:`Program` whose whole program is emitted) in the spike
    memory, within ``capacity`` groups (None: as many as the program needs), and give each its
    ``breakpoint``; re-emit the program with the STORE and LOAD descriptors that spilling needs. Returns
    ``(groups, loads)``: the groups the program uses, and each tensor loaded back as ``(name, copy)`` (the
    copy a :class:`SpikeTensor` whose ``producer`` is its LOAD).

    Walking the program in order, each tensor takes the lowest run of free groups (first fit) when it is
    written (the input: before the run) or loaded back, and frees them after the last descriptor that
    names it. Two tensors are live at the same time when their descriptor ranges ``first_use..last_use``
    meet, so a descriptor never writes the groups it reads. Where no run within ``capacity`` is free, the
    tensor whose next use lies furthest ahead is evicted (never an operand of the descriptor, nor a
    tensor not yet completely written); a tensor's first eviction STOREs it to SPILL rows, free then, that
    hold it until its last use, and each descriptor that names it while it is evicted is preceded by a
    LOAD. A descriptor whose own operands do not fit is the compiler's error, naming its layer (made by
    ``refusal(parameter, value, reason)``: by default, the error of a ``--set``)."""
    refusal = refusal or (lambda key, value, reason: CompileError(f"--set {key}={value}: {reason}"))
    descriptors, names = prog.descriptors, prog.names
    tensors = list(prog.spikes.values())
    name_of = {tensor: name for name, tensor in prog.spikes.items()}
    uses = {tensor: [] for tensor in tensors}      # the descriptors naming each tensor
    last_write = {}                                # the last descriptor writing each tensor (its out_base)
    for pc, fields in enumerate(descriptors):
        for key, value in fields.items():
            tensor = _named_tensor(value)
            if tensor is not None:
                if not uses[tensor] or uses[tensor][-1] != pc:
                    uses[tensor].append(pc)
                if key == "out_base":
                    last_write[tensor] = pc
    prog.descriptors, prog.names = [], []
    resident, spilled, loads, placed = {}, {}, [], []
    new_index = {}

    def next_use(tensor, pc):
        return uses[tensor][bisect.bisect_left(uses[tensor], pc)]

    def place(tensor, copy, pc, operands, moved, layer):
        """Give ``copy`` (of ``tensor``) groups free before descriptor ``pc``, evicting others; returns the
        operands of ``pc`` evicted to make room (to be loaded again elsewhere)."""
        relocated = []
        taken = [(held.group, held.group + held.groups) for held in resident.values()]
        copy.group = _lowest_run(taken, copy.groups)
        while capacity is not None and copy.group + copy.groups > capacity:
            complete = [held for held in resident if last_write.get(held, -1) < pc]
            victims = [held for held in complete if held not in operands]
            # the operands fit but not side by side: one already in place moves (stored, loaded again)
            movable = [held for held in complete if held not in moved]
            need = sum(held.groups for held in operands) + sum(held.groups for held in resident if held not in operands)
            if not victims and (need > capacity or not movable):
                what = (f"layer {layer!r} reads and writes" if layer is not None else "the input's bit planes take")
                raise refusal("spike_groups", capacity, f"{what} {need} groups at once, which do not fit; build "
                                                         f"with spike_groups={next_power_of_two(need)} or more")
            victim = max(victims or movable, key=lambda held: (next_use(held, pc), held.groups))
            if victim in operands:
                moved.add(victim)
                relocated.append(victim)
            if victim not in spilled:
                live = [(kept.first_row, kept.first_row + kept.rows) for kept in spilled.values() if kept.last_use >= pc]
                first_row = _lowest_run(live, spill.rows(victim))
                spilled[victim] = _SpillCopy(first_row, spill.rows(victim), uses[victim][-1])
                evicted = resident[victim]
                for fields in spill.emit("STORE", victim, first_row, lambda offset: TileGroup(evicted, offset)):
                    prog.emit(f"store {name_of[victim]}", fields)
            del resident[victim]
            taken = [(held.group, held.group + held.groups) for held in resident.values()]
            copy.group = _lowest_run(taken, copy.groups)
        resident[tensor] = copy
        placed.append(copy)
        return relocated

    for tensor in tensors:
        if tensor.producer is None:      # the host's input, there from the start
            place(tensor, tensor, 0, {tensor: None}, set(), None)
    for pc, fields in enumerate(descriptors):
        new_index[pc] = len(prog.descriptors)
        for tensor in [tensor for tensor in resident if uses[tensor][-1] < pc]:
            del resident[tensor]         # dead: its groups serve later tensors
        operands = {tensor: None for value in fields.values() if (tensor := _named_tensor(value)) is not None}
        layer = names[pc]
        pending, moved, written = [tensor for tensor in operands if tensor not in resident], set(), []
        while pending:
            tensor = pending.pop(0)
            if tensor not in spilled:      # written first here
                pending += place(tensor, tensor, pc, operands, moved, layer)
                written.append(tensor)
                continue
            copy = replace(tensor, group=None, breakpoint=None)
            pending += place(tensor, copy, pc, operands, moved, layer)
            copy.producer = len(prog.descriptors)
            for load in spill.emit("LOAD", tensor, spilled[tensor].first_row, lambda offset: TileGroup(copy, offset)):
                prog.emit(f"load {name_of[tensor]}", load)
            loads.append((name_of[tensor], copy))
        for tensor in written:
            tensor.producer = len(prog.descriptors)
        fields = dict(fields)
        scratch = fields.pop("_scratch")
        prog.emit(layer, {key: _resident_value(value, resident) for key, value in fields.items()}, scratch)
    prog.breakpoints = {block: new_index[pc] for block, pc in prog.breakpoints.items()}
    prog.spills = {name_of[tensor]: kept for tensor, kept in spilled.items()}
    for index, tensor in enumerate(placed):
        tensor.breakpoint = min((later.first_use for later in placed[index + 1:] if later.overlaps(tensor)),
                                default=None)
    return max(tensor.group + tensor.groups for tensor in placed), loads


class _HighLanes(NamedTuple):
    """The second BIAS row of a row of values wider than ``acc_bits`` (:meth:`Program.wide_row`): the bits
    of ``values`` above the build's ``acc_bits``, which is chosen after the program is emitted."""

    values: list


def _resident_value(value, resident):
    """A descriptor field's value naming the copy of its tensor in the spike memory now."""
    if isinstance(value, SpikeTensor):
        return resident[value]
    if isinstance(value, TileGroup):
        return TileGroup(resident[value.tensor], value.offset)
    return value


class Program:
    """What the operations emit into: descriptors, memory rows, spike tensors and the build
    parameters they need (``need``)."""

    def __init__(self, bundle, n_pe, tile_h, tile_w):
        self.n_pe, self.tables = n_pe, bundle.tables
        self.tile_h, self.tile_w = tile_h, tile_w      # the build's max_h × max_w: larger maps are tiled
        self.T = bundle.config["T"]
        self.events = bool(bundle.manifest["input"]["events"])
        self.descriptors, self.names = [], []
        self.weights, self.biases, self.thresholds = [], [], []   # lane lists, packed at the end
        self.spikes = {}              # tensor name -> SpikeTensor, in program order
        self.stream, self.stream_shape = None, None
        self.breakpoints = {}
        self.spills = {}              # tensor name -> its _SpillCopy, once allocated
        # scratch_rows: the attention's Kᵀ·V rows (shared by every attention)
        self.needed = {"weight_bits": bundle.manifest["quant"]["weight_bits"], "acc_bits": 2, "membrane_bits": 2,
                       "logit_bits": 2, "frac_bits": 0, "max_cin": 1, "max_tiles": 1, "max_h": 1, "max_w": 1,
                       "scratch_rows": 1, "stream_tiles": 1}
        self.needed_by = {}           # build parameter -> the first layer that needs its value in `needed`
        self.decay, self.classes = None, None
        layers = bundle.program
        self._lif_after = {layers[i - 1].name: layer for i, layer in enumerate(layers) if layer.kind == "lif"}
        outputs = bundle.manifest["outputs"]
        self._block_of_stream = {tensor: block for block, tensor in outputs["stream"].items()}
        self.stream_names = (set(outputs["stream"].values())
                             | {layer.residual for layer in layers if layer.kind == "conv" and layer.residual}
                             | {layer.input for layer in layers if layer.kind == "head"})

    def error(self, layer, message):
        return CompileError(f"layer {layer.name!r}: {message}")

    def place(self, writer, name, channels, T, H, W, planes=1, lif=False):
        """Spike tensor ``name`` (``lif``: a LIF's spikes), written by ``writer`` (a layer, or None for
        the host's input) in the descriptor emitted next; its groups are allocated at the end."""
        next_descriptor = len(self.descriptors)
        host = writer is None
        tiling = SpatialTiles(channels, H, W, self.n_pe, self.tile_h, self.tile_w)
        self.spikes[name] = SpikeTensor(None if host else writer.name, channels, tiling.groups, T, H, W,
                                        producer=None if host else next_descriptor, last_use=next_descriptor,
                                        tiling=tiling, planes=planes, lif=lif)
        self.size(H, W)
        return self.spikes[name]

    def spike_tensor(self, layer, name):
        """The spike tensor ``name`` that ``layer`` reads; a descriptor reads it by naming it in a group
        field (``in_base=tensor``)."""
        placed = self.spikes.get(name)
        if placed is None:
            raise self.error(layer, f"input {name!r} is not a spike tensor in memory")
        return placed

    def untiled(self, layer, tensor):
        """``tensor`` for an operation that reads whole maps: the compiler's error unless it is one tile."""
        if tensor.tiled:
            raise self.error(layer, f"reads a {tensor.H}×{tensor.W} map as a whole, larger than the spike memory's "
                                    f"{self.tile_h}×{self.tile_w} tiles (max_h × max_w); build with max_h ≥ "
                                    f"{tensor.H} and max_w ≥ {tensor.W}")
        return tensor

    def lif_after(self, layer):
        """The LIF layer right after ``layer`` (fused into its drain), or None."""
        return self._lif_after.get(layer.name)

    def emit(self, name, fields, scratch=False):
        """Append descriptor ``fields``; each spike tensor it names in a group field is live up to it."""
        for value in fields.values():
            tensor = _named_tensor(value)
            if tensor is not None:
                tensor.last_use = len(self.descriptors)
        self.descriptors.append(dict(fields, _scratch=scratch))
        self.names.append(name)

    def need(self, layer, decay=None, classes=None, **minimums):
        """Record build parameters ``layer`` needs (each the maximum over the program, :attr:`needed_by`
        naming the first layer that needs it)."""
        for key, value in minimums.items():
            if value > self.needed[key]:
                self.needed[key], self.needed_by[key] = value, layer.name
        if classes is not None:
            self.classes = classes
        if decay is not None:
            if self.decay not in (None, decay):
                raise self.error(layer, "every LIF must share the decay (tau)")
            if self.decay is None:
                self.needed_by["decay_mult"] = self.needed_by["decay_shift"] = layer.name
            self.decay = decay

    def size(self, H, W):
        self.needed["max_h"] = max(self.needed["max_h"], min(H, self.tile_h))
        self.needed["max_w"] = max(self.needed["max_w"], min(W, self.tile_w))

    def block_end(self, tensor):
        """After the descriptor just emitted, the stream holds ``tensor``: a block's breakpoint if it
        is a block's output."""
        if tensor in self._block_of_stream:
            self.breakpoints[self._block_of_stream[tensor]] = len(self.descriptors)

    def rows(self):
        """Rows of each table the program fills so far, as ``{build parameter: rows}`` (:data:`_TABLE_ROWS`)."""
        return {key: len(getattr(self, attribute)) for key, attribute in _TABLE_ROWS.items()}

    def pad(self, values, pad=0):
        return list(values) + [pad] * (self.n_pe - len(values))

    def wide_row(self, values):
        """The two BIAS rows of a per-lane list (up to ``n_pe`` values) wider than ``acc_bits``: its low bits,
        then the bits above (:func:`~spikeforge.interface.layout.high_lanes`), split when packed, once the
        build's ``acc_bits`` is chosen."""
        row = self.pad(values)
        return [row, _HighLanes(row)]

    def lanes(self, values, pad=0):
        """Split a per-channel list into ``n_pe``-lane rows."""
        values = list(values)
        return [self.pad(values[start:start + self.n_pe], pad) for start in range(0, len(values), self.n_pe)]


def compile_bundle(bundle, n_pe=DEFAULT_N_PE, overrides=None):
    """Compile ``bundle`` (a :class:`~spikeforge.ops.bundle.Bundle` or a path) for ``n_pe`` lanes.

    ``overrides`` (``{"acc_bits": "32", ...}``, from ``--set``) choose the build parameters. ``hardware``
    (default ``bundle``, :data:`~spikeforge.interface.fpga.SIZED_TO_BUNDLE`) sizes them to what the bundle
    needs, and the other overrides enlarge them; smaller values are refused with a ValueError naming the
    parameter. Fewer ``spike_groups`` than the program needs spill tensors to the SPILL table
    (:func:`allocate_groups`); the CompileError names the layer whose own operands do not fit, or whose
    spilled spikes do not fit ``spill_rows``. ``hardware=NAME`` takes
    configuration ``NAME``'s parameters (:data:`~spikeforge.interface.fpga.CONFIGURATIONS`; its ``n_pe``,
    not the argument), the other overrides replacing single values, and plans the program onto them: where
    the bundle needs more, a CompileError names the layer, the parameter, the value needed and the
    configuration's.

    Returns
    -------
    ProgramImage
        Build parameters, memory images (PROGRAM, WEIGHTS, BIAS, THRESHOLD) and the layout the
        driver needs: the input's group; per LIF's spikes their groups, shape, ``producer`` (the
        descriptor that writes them) and ``breakpoint`` (the descriptor before which a later tensor
        overwrites them, where the host must have read them; None: they stay until the run ends);
        the stream; the descriptor names; per block, the breakpoint after which the stream holds
        that block's output; and ``loads``, each tensor a LOAD puts back into the spike memory (its
        groups and ``producer``, the LOAD), where the descriptors after it read that tensor.
    """
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    overrides = dict(overrides or {})
    hardware = overrides.pop("hardware", SIZED_TO_BUNDLE)
    target = None if hardware == SIZED_TO_BUNDLE else AcceleratorParams.from_overrides(overrides,
                                                                                        base=configuration(hardware))
    if target is not None:
        n_pe = target.n_pe
    elif "n_pe" in overrides:
        try:
            n_pe = int(overrides.pop("n_pe"))
        except ValueError:
            raise CompileError("hardware parameter n_pe must be an integer") from None
    if n_pe not in (1, 2, 4, 8, 16, 32, 64, 128):
        raise CompileError(f"n_pe must be a power of two in 1..128, not {n_pe!r}")
    encoding = bundle.manifest["input"]
    in_channels, in_H, in_W = encoding["shape"][-3:]
    # the spike memory's rows and columns: the build's, or the largest map (the input's) unless the build is
    # given smaller ones; larger maps are tiled over them
    tile_h, tile_w = ((target.max_h, target.max_w) if target is not None else
                      (_override_int(overrides, key, next_power_of_two(size))
                       for key, size in (("max_h", in_H), ("max_w", in_W))))
    prog = Program(bundle, n_pe, tile_h, tile_w)
    planes = max(1, int(encoding["max"]).bit_length())
    if planes > MAX_PLANES:
        raise CompileError(f"input.max {encoding['max']} needs {planes} bit planes; at most {MAX_PLANES} are supported")
    prog.place(None, "input", in_channels * planes, prog.T if prog.events else 1, in_H, in_W, planes=planes)

    rows_after = []      # (layer name, the tables' rows once its descriptors are emitted), in program order
    for layer in bundle.program:
        OPERATIONS[layer.kind].emit(layer, prog)
        rows_after.append((layer.name, prog.rows()))
    prog.emit("end", dict(op=OPCODES["END"]))

    capacity = target.spike_groups if target is not None else _override_int(overrides, "spike_groups", None)
    groups, loads = allocate_groups(prog, capacity, functools.partial(_refusal, hardware, overrides))
    for fields in prog.descriptors:
        if fields.pop("_scratch"):   # the Kᵀ·V rows live on chip, from scratch row 0; every attention shares them
            fields["weight_base"] = 0
        for key, value in fields.items():
            fields[key] = _group_value(value)

    need = prog.needed
    decay = prog.decay or (1, 1)
    needed = dict(
        n_pe=n_pe, weight_bits=need["weight_bits"], acc_bits=need["acc_bits"],
        membrane_bits=max(need["membrane_bits"], need["acc_bits"] + need["frac_bits"] + 1),
        logit_bits=need["logit_bits"],
        max_T=next_power_of_two(prog.T), max_cin=next_power_of_two(need["max_cin"]),
        max_tiles=next_power_of_two(need["max_tiles"]), max_h=next_power_of_two(need["max_h"]),
        max_w=next_power_of_two(need["max_w"]), frac_bits=need["frac_bits"], decay_mult=decay[0],
        decay_shift=decay[1], spike_groups=next_power_of_two(groups),
        stream_tiles=next_power_of_two(need["stream_tiles"]),
        **{key: max(1, rows) for key, rows in prog.rows().items()}, scratch_rows=need["scratch_rows"],
        prefetch_rows=AcceleratorParams.prefetch_rows, spill_rows=AcceleratorParams.spill_rows,
        memory_address_bits=AcceleratorParams.memory_address_bits)
    if target is None:
        params = _apply_overrides(needed, overrides)
    else:
        needed_by = dict(prog.needed_by)
        for key in _TABLE_ROWS:     # the first layer whose rows reach beyond the configuration's
            needed_by[key] = next((name for name, rows in rows_after if rows[key] > getattr(target, key)), None)
        _check_capacities(needed, target, needed_by, hardware, overrides)
        params = target
    for name, kept in prog.spills.items():
        if kept.first_row + kept.rows > params.spill_rows:
            writer = prog.spikes[name].writer
            what = "the input's bit planes" if writer is None else f"the spikes of layer {writer!r}"
            end = max(other.first_row + other.rows for other in prog.spills.values())
            raise _refusal(hardware, overrides, "spill_rows", params.spill_rows,
                           f"{what} spill to SPILL rows {kept.first_row}..{kept.first_row + kept.rows - 1}; "
                           f"build with spill_rows={end} or more")
    acc_bits, membrane_bits = params.acc_bits, params.membrane_bits
    # pad lanes of partial tiles get the largest threshold, which their zero input never reaches
    thresholds = [[value if value is not None else (1 << (membrane_bits - 1)) - 1 for value in row]
                  for row in prog.thresholds]
    memories = {
        "PROGRAM": [pack(**fields) for fields in prog.descriptors],
        "WEIGHTS": [pack_lanes(row, params.weight_bits) for row in prog.weights],
        "BIAS": [pack_lanes(high_lanes(row.values, acc_bits) if isinstance(row, _HighLanes) else row, acc_bits)
                 for row in prog.biases],
        "THRESHOLD": [pack_lanes(row, membrane_bits) for row in thresholds] or [0],
    }
    word_bits = {"PROGRAM": DESCRIPTOR_BITS, "WEIGHTS": n_pe * params.weight_bits, "BIAS": n_pe * acc_bits,
                 "THRESHOLD": n_pe * membrane_bits}
    # the tables and the spill region after them must fit the external address space: a larger image widens
    # the default of a build sized to the bundle, never an override or a configuration
    size = external_bytes({**{name: (word_bits[name], len(rows)) for name, rows in memories.items()},
                           SPILL: spill_shape(params)})
    if size > 1 << params.memory_address_bits:
        if target is not None or "memory_address_bits" in overrides:
            raise _refusal(hardware, overrides, "memory_address_bits", params.memory_address_bits,
                           f"the tables and the spill region take {size} bytes of external memory, which needs "
                           f"memory_address_bits={index_bits(size)}")
        params = replace(params, memory_address_bits=index_bits(size))
    manifest = bundle.manifest
    layout = {
        "bundle": {"preset": manifest["model"].get("preset"), "config": bundle.config,
                   "digest": manifest["digest"]},
        "classes": prog.classes,
        "input": {"channels": in_channels, "planes": planes, "events": prog.events,
                  "max": int(encoding["max"]), "H": in_H, "W": in_W, "group": prog.spikes["input"].group},
        "spikes": {name: dict(group=tensor.group, groups=tensor.groups, channels=tensor.channels, T=tensor.T,
                              H=tensor.H, W=tensor.W, lif=tensor.writer, producer=tensor.producer,
                              breakpoint=tensor.breakpoint)
                   for name, tensor in prog.spikes.items() if tensor.lif},
        "pooled": {layer.output: dict(group=prog.spikes[layer.output].group, groups=prog.spikes[layer.output].groups,
                                      producer=prog.spikes[layer.output].producer, source=layer.input)
                   for layer in bundle.program if layer.kind == "pool"},
        "stream": {"channels": prog.stream_shape[0], "H": prog.stream_shape[1], "W": prog.stream_shape[2],
                   "T": prog.T},
        "loads": [dict(tensor=name, group=copy.group, groups=copy.groups, producer=copy.producer)
                  for name, copy in loads],
        "ops": prog.names,
        "breakpoints": prog.breakpoints,
    }
    return ProgramImage(params=asdict(params), memories=memories, word_bits=word_bits, layout=layout)


def _holder(hardware, key, overrides):
    """Who set build parameter ``key`` of configuration ``hardware``: the configuration, or a ``--set``."""
    return f"the configuration {hardware}" + (f" with --set {key}" if key in overrides else "")


def _refusal(hardware, overrides, key, value, reason):
    """The compiler's error: build parameter ``key`` = ``value`` (an override of a build sized to the bundle,
    or configuration ``hardware``'s) cannot hold what ``reason`` says the program takes."""
    if hardware == SIZED_TO_BUNDLE:
        return CompileError(f"--set {key}={value}: {reason}")
    return CompileError(f"{reason}; {_holder(hardware, key, overrides)} holds {value}")


def _check_capacities(needed, target, needed_by, hardware, overrides):
    """The compiler's error unless configuration ``hardware``'s build parameters ``target`` hold what the
    program needs (``needed``, each named by the layer in ``needed_by`` that needs it, where one does):
    every capacity and width at least as large, the LIF decay the same. The spike groups and the external
    memory are checked once the tensors are placed and the tables packed."""
    for key, value in needed.items():
        if key in _BUILD_CHOICES or key == "spike_groups":
            continue
        built = getattr(target, key)
        if value > built or (key in _FIXED and value != built):
            layer = needed_by.get(key)
            where = f"layer {layer!r}: needs" if layer is not None else "the bundle needs"
            raise CompileError(f"{where} {key}={value}; {_holder(hardware, key, overrides)} holds {built}")


def _override_int(overrides, key, default):
    """``--set key=`` as an integer (``default`` when absent or not an integer, which
    :func:`_apply_overrides` refuses with its message)."""
    try:
        return int(overrides.get(key, default))
    except (TypeError, ValueError):
        return default


def _apply_overrides(needed, overrides):
    """``needed`` build parameters with ``--set`` overrides: widths and depths may grow, never shrink
    below what the bundle needs; the LIF constants must stay; the external memory's address bits and
    the spike groups may take any valid value (the caller checks that the tables and the tensors fit). The
    widths not overridden widen to hold the others: ``acc_bits`` at least half ``logit_bits``, ``logit_bits``
    at least ``acc_bits``, ``membrane_bits`` at least ``acc_bits + frac_bits + 1``."""
    overrides = overrides or {}
    params = dict(needed)
    for key, text in overrides.items():
        if key not in params:
            raise ValueError(f"unknown hardware parameter {key!r}; allowed: {', '.join(sorted(params))}")
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise ValueError(f"hardware parameter {key} must be an integer, not {text!r}") from None
        if key in _FIXED and value != params[key]:
            raise ValueError(f"--set {key}={value}: the bundle's LIFs need {key}={params[key]}")
        if key not in _CHECKED_AGAINST_PROGRAM and value < params[key]:
            raise ValueError(f"--set {key}={value}: the bundle needs at least {key}={params[key]}")
        params[key] = value
    # the bias rows (acc_bits) hold a head's bias in two (logit_bits <= 2·acc_bits), and the head's sums (logit_bits)
    # the stream's words (acc_bits)
    if "acc_bits" not in overrides:
        params["acc_bits"] = max(params["acc_bits"], ceil_div(params["logit_bits"], 2))
    if "logit_bits" not in overrides:
        params["logit_bits"] = max(params["logit_bits"], params["acc_bits"])
    if "membrane_bits" not in overrides:   # a wider accumulator or more fraction bits widen it
        params["membrane_bits"] = max(params["membrane_bits"], params["acc_bits"] + params["frac_bits"] + 1)
    return AcceleratorParams(**params)
