"""Build parameters of the accelerator, validated once and shared by the hardware, compiler and driver."""

import json
from dataclasses import asdict, dataclass, fields

from .bits import index_bits, is_power_of_two
from .regmap import MAX_ADDRESS_BITS, address_layout, host_word_bits

__all__ = ["RANGES", "MEMORY_ADDRESS_RANGE", "EngineParams", "AcceleratorParams"]

#: Inclusive ranges of the width parameters the hardware can be built with.
RANGES = {"weight_bits": (2, 16), "acc_bits": (4, 48), "membrane_bits": (4, 64), "logit_bits": (4, 63),
          "frac_bits": (0, 15), "decay_shift": (0, 16)}
#: Inclusive range of ``memory_address_bits``: from one 4 KiB table region to 32-bit byte addresses.
MEMORY_ADDRESS_RANGE = (12, 32)


@dataclass(frozen=True)
class EngineParams:
    """Widths and capacities of the layer engine.

    ``n_pe`` lanes (output channels per tile); weights of ``weight_bits``; accumulators (and the residual
    stream, the bias rows) of ``acc_bits``; membranes of ``membrane_bits``; the head's stream sums and
    logits of ``logit_bits`` (default ``acc_bits``; from ``acc_bits`` to ``2·acc_bits``: a head's bias
    takes two bias rows, :func:`~spikeforge.interface.layout.high_lanes`); capacities as powers of two:
    ``max_T`` timesteps, ``max_cin`` input channels, ``max_tiles`` output tiles, images up to ``max_h`` ×
    ``max_w`` (one spike-bitmap word holds one image row of ``max_w`` bits); LIF fixed point: the largest
    ``frac_bits`` F (each layer names its own, up to this) and decay ``decay_mult / 2**decay_shift`` (docs/integer-semantics.md §3).
    """

    n_pe: int = 16
    weight_bits: int = 8
    acc_bits: int = 24
    membrane_bits: int = 32
    #: None: as wide as the accumulators
    logit_bits: int | None = None
    max_T: int = 4
    max_cin: int = 64
    max_tiles: int = 8
    max_h: int = 16
    max_w: int = 16
    frac_bits: int = 4
    decay_mult: int = 1
    decay_shift: int = 1

    def __post_init__(self):
        if self.logit_bits is None:
            object.__setattr__(self, "logit_bits", self.acc_bits)
        for name in ("n_pe", "max_T", "max_cin", "max_tiles", "max_h", "max_w"):
            value = getattr(self, name)
            if not is_power_of_two(value):
                raise ValueError(f"{name} must be a power of two, not {value!r}")
        for name, (lo, hi) in RANGES.items():
            value = getattr(self, name)
            if not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
        if not 0 < self.decay_mult <= 1 << self.decay_shift:
            raise ValueError(f"decay_mult must be in 1..2**decay_shift, not {self.decay_mult!r}")
        if self.membrane_bits < self.acc_bits + self.frac_bits + 1:
            raise ValueError(f"membrane_bits must be at least acc_bits + frac_bits + 1 "
                             f"({self.acc_bits + self.frac_bits + 1}), not {self.membrane_bits!r}")
        if not self.acc_bits <= self.logit_bits <= 2 * self.acc_bits:
            raise ValueError(f"logit_bits must be in acc_bits..2·acc_bits ({self.acc_bits}..{2 * self.acc_bits}), "
                             f"not {self.logit_bits!r}")

    @classmethod
    def from_overrides(cls, overrides, base=None):
        """Parameters from ``{"n_pe": "16", ...}`` (values as text, e.g. from ``--set``); the others those of
        ``base`` (parameters of this class), or the defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown hardware parameter {unknown[0]!r}; allowed: {', '.join(sorted(known))}")
        parsed = {}
        for key, value in overrides.items():
            try:
                parsed[key] = int(value)
            except (TypeError, ValueError):
                raise ValueError(f"hardware parameter {key} must be an integer, not {value!r}") from None
        return cls(**{**(asdict(base) if base is not None else {}), **parsed})

    @property
    def t_bits(self):
        return index_bits(self.max_T)

    @property
    def c_bits(self):
        return index_bits(self.max_cin)

    @property
    def h_bits(self):
        return index_bits(self.max_h)

    @property
    def w_bits(self):
        return index_bits(self.max_w)

    @property
    def tile_bits(self):
        return index_bits(self.max_tiles)

    @property
    def weight_depth(self):
        """Weight rows: one per (tile, input channel, tap)."""
        return self.max_tiles * self.max_cin * 9

    def as_json(self):
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"


@dataclass(frozen=True)
class AcceleratorParams(EngineParams):
    """Build parameters of the whole accelerator (``hw/accelerator.py``).

    Adds to :class:`EngineParams` the on-chip memories — ``spike_groups`` groups of ``n_pe`` spike
    channels (each ``max_T × max_h`` bitmap rows), ``stream_tiles`` tiles of the residual stream,
    ``scratch_rows`` rows of the attention's Kᵀ·V, ``prefetch_rows`` rows fetched ahead per table —
    and the sizes of the tables in external memory: ``weight_rows``, ``bias_rows``, ``threshold_rows``,
    ``program_depth`` descriptors and ``spill_rows`` rows of spilled tensors (one spike-memory group word
    each). ``max_cin`` and ``max_tiles`` bound the attention's channels and the head's channel tiles.
    ``memory_address_bits`` is the width of a byte address of external memory (the ``*_BASE``
    registers; the ``mem`` port's word address ``adr`` has two bits fewer): 25 bits, the 32 MB SDRAM of
    a ULX3S-85F, unless the board has more or less. The control bus's address width follows from the rest
    (:func:`~spikeforge.interface.regmap.address_layout`).
    """

    spike_groups: int = 64
    stream_tiles: int = 8
    weight_rows: int = 4096
    bias_rows: int = 64
    threshold_rows: int = 64
    program_depth: int = 64
    scratch_rows: int = 64
    prefetch_rows: int = 4
    spill_rows: int = 1024
    memory_address_bits: int = 25

    def __post_init__(self):
        super().__post_init__()
        for name in ("spike_groups", "stream_tiles"):
            value = getattr(self, name)
            if not is_power_of_two(value):
                raise ValueError(f"{name} must be a power of two, not {value!r}")
        for name in ("weight_rows", "bias_rows", "threshold_rows", "program_depth", "scratch_rows", "spill_rows"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(self.prefetch_rows, int) or self.prefetch_rows < 3:
            raise ValueError(f"prefetch_rows must be an integer of at least 3, not {self.prefetch_rows!r}")
        lo, hi = MEMORY_ADDRESS_RANGE
        if not isinstance(self.memory_address_bits, int) or not lo <= self.memory_address_bits <= hi:
            raise ValueError(f"memory_address_bits must be an integer in {lo}..{hi}, not {self.memory_address_bits!r}")
        layout = address_layout(self)
        if layout.address_bits > MAX_ADDRESS_BITS:
            raise ValueError(f"these parameters need {layout.address_bits} control address bits ({layout.window_bits} "
                             f"window, {layout.slot_bits} slot, {layout.offset_bits} offset, 2 byte); the control "
                             f"bus has at most {MAX_ADDRESS_BITS}")

    @property
    def host_word_bits(self):
        """Width of the widest word behind the control bus (:func:`~spikeforge.interface.regmap.host_word_bits`)."""
        return host_word_bits(self)

    @property
    def group_bits(self):
        return index_bits(self.spike_groups)

    @property
    def stream_tile_bits(self):
        return index_bits(self.stream_tiles)

    @property
    def lane_bits(self):
        return index_bits(self.n_pe)

    @property
    def weight_depth(self):
        return self.weight_rows
