"""Address layouts of the accelerator's memories and the packing of multi-lane words.

Defined once here; the hardware (as Amaranth values), the driver and the tests (as integers)
derive their addresses from these layouts. Fields are listed lowest bits first.

* Spike memory, window ``SPIKES``: word ``{group, t, y}`` holds ``n_pe`` image rows of ``max_w`` bits,
  row ``lane`` belonging to channel ``group·n_pe + lane``, bit ``x`` to column ``x``. A map larger than
  ``max_h × max_w`` is stored in spatial tiles (:class:`SpatialTiles`): tile ``(ty, tx)`` holds rows
  ``ty·max_h…`` and columns ``tx·max_w…``, its channel groups after those of the tiles before it in
  row-major order.
* Stream memory, window ``STREAM``: word ``{tile, t, y, x}`` holds ``n_pe`` signed values of ``acc_bits``
  (channel ``tile·n_pe + lane``).
* Multi-lane words (weight, bias, threshold rows, logits): lane 0 lowest, two's complement.
* Values wider than a lane of ``bits`` (a head's bias, up to ``2·bits``: the build's ``logit_bits``
  against its bias rows' ``acc_bits``) take two words: :func:`pack_lanes` of the values (the low ``bits``
  bits of each, read as unsigned), then of :func:`high_lanes` (the bits above, two's complement).
"""

from typing import NamedTuple

from amaranth import Cat, Value
from amaranth.lib import data

from .bits import ceil_div

__all__ = ["SpatialTiles", "spike_row_layout", "stream_word_layout", "pack_fields", "unpack_fields", "cat_fields",
           "pack_lanes", "unpack_lanes", "high_lanes", "pack_row", "unpack_row"]


class SpatialTiles(NamedTuple):
    """How a spike tensor of ``channels`` channels on an ``H × W`` map lies in the spike memory's groups
    (``n_pe`` channels each) when its tiles are ``tile_h × tile_w`` (the build's ``max_h × max_w``)."""

    channels: int
    H: int
    W: int
    n_pe: int
    tile_h: int
    tile_w: int

    @classmethod
    def of(cls, channels, H, W, params):
        """The tiling of a tensor in the spike memory of build ``params`` (attributes or a dict)."""
        get = params.get if isinstance(params, dict) else lambda name: getattr(params, name)
        return cls(channels, H, W, get("n_pe"), get("max_h"), get("max_w"))

    @property
    def channel_groups(self):
        return ceil_div(self.channels, self.n_pe)

    @property
    def tiles_y(self):
        return ceil_div(self.H, self.tile_h)

    @property
    def tiles_x(self):
        return ceil_div(self.W, self.tile_w)

    @property
    def groups(self):
        """Groups the tensor takes."""
        return self.tiles_y * self.tiles_x * self.channel_groups

    def group(self, ty, tx, channel_group=0):
        """The group holding channel group ``channel_group`` of tile ``(ty, tx)``, from the tensor's first."""
        return (ty * self.tiles_x + tx) * self.channel_groups + channel_group

    def window(self, ty, tx):
        """Rows ``y0, y0 + h`` and columns ``x0, x0 + w`` of the map that tile ``(ty, tx)`` holds."""
        y0, x0 = ty * self.tile_h, tx * self.tile_w
        return y0, min(self.H, y0 + self.tile_h), x0, min(self.W, x0 + self.tile_w)

    def tiles(self):
        """Every tile ``(ty, tx)``, in the order of their groups."""
        return [(ty, tx) for ty in range(self.tiles_y) for tx in range(self.tiles_x)]


def spike_row_layout(params):
    """Address of one spike-memory word: ``y``, ``t``, ``group`` (widths from ``params``)."""
    return data.StructLayout({"y": params.h_bits, "t": params.t_bits, "group": params.group_bits})


def stream_word_layout(params):
    """Address of one stream-memory word: ``x``, ``y``, ``t``, ``tile``."""
    return data.StructLayout({"x": params.w_bits, "y": params.h_bits, "t": params.t_bits,
                              "tile": params.stream_tile_bits})


def pack_fields(layout, **values):
    """The integer word of ``layout`` with the given field values (missing fields are 0); a value
    that does not fit its field raises ValueError naming it."""
    unknown = set(values) - {name for name, _ in layout}
    if unknown:
        raise ValueError(f"unknown field {sorted(unknown)[0]!r}")
    word = 0
    for name, field in layout:
        value = values.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << field.width:
            raise ValueError(f"field {name!r} must fit {field.width} bits, not {value!r}")
        word |= value << field.offset
    return word


def unpack_fields(layout, word):
    """Field values of an integer word of ``layout``."""
    return {name: word >> field.offset & ((1 << field.width) - 1) for name, field in layout}


def cat_fields(layout, **values):
    """The Amaranth value of ``layout`` from field values (each truncated to its field's width)."""
    return Cat(*(Value.cast(values[name])[:field.width] for name, field in layout if field.width))


def pack_lanes(values, bits):
    """One multi-lane word: ``values`` (lane 0 lowest), each two's complement on ``bits`` bits."""
    word = 0
    for lane, value in enumerate(values):
        word |= (int(value) & ((1 << bits) - 1)) << (lane * bits)
    return word


def unpack_lanes(word, lanes, bits, signed=True):
    """The ``lanes`` values of a multi-lane word (two's complement when ``signed``)."""
    mask = (1 << bits) - 1
    values = [(word >> (lane * bits)) & mask for lane in range(lanes)]
    return [v - (1 << bits) if signed and v >> (bits - 1) else v for v in values]


def high_lanes(values, bits):
    """The lanes of the second word of values wider than ``bits`` (see the module's docstring): each
    value's bits above its low ``bits``, as a signed value."""
    return [int(value) >> bits for value in values]


def pack_row(bits):
    """An image row of spikes as an integer: ``bits[x]`` at bit ``x``."""
    row = 0
    for x, bit in enumerate(bits):
        row |= (int(bit) & 1) << x
    return row


def unpack_row(row, width):
    """The ``width`` spikes of an image row (bit ``x`` is column ``x``)."""
    return [row >> x & 1 for x in range(width)]
