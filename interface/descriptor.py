"""Layer descriptor: one word of program memory per operation, defined here once.

The sequencer (``hw/sequencer.py``) and the engine decode it through :data:`DESCRIPTOR_LAYOUT`
(their loop counters take their widths from its fields), the operations (``ops/``) pack it with
:func:`pack`, and ``docs/firmware.md`` lists
:data:`FIELDS`. Field meanings per opcode are in the docs.
"""

from typing import NamedTuple

from amaranth.lib import data

from .layout import pack_fields, unpack_fields

__all__ = ["Field", "FIELDS", "OPCODES", "DESCRIPTOR_LAYOUT", "DESCRIPTOR_BITS", "DESCRIPTOR_SETTLE_CYCLES", "pack",
           "unpack"]


class Field(NamedTuple):
    name: str
    bits: int
    doc: str


#: Operation codes.
OPCODES = {"END": 0, "CONV": 1, "POOL": 2, "ATTENTION": 3, "HEAD": 4, "STORE": 5, "LOAD": 6}

FIELDS = (
    Field("op", 4, "operation (OPCODES)"),
    Field("lif", 1, "CONV/ATTENTION: run the LIF on the result and write its spikes at out_base"),
    Field("stream_write", 1, "CONV: write the result to the residual-stream memory"),
    Field("residual", 1, "CONV: add the residual stream to the result (read in step with the drain)"),
    Field("static", 1, "CONV: input is one static frame (t = 0), the result repeats over T"),
    Field("kernel3", 1, "CONV: 3×3 kernel (else 1×1)"),
    Field("accumulate_only", 1, "CONV (tiles = 1): accumulate and end without a drain; the accumulators keep the "
                                "sums, to which the next descriptors add the rest (more input channels, a "
                                "neighbouring input tile) until one drains them"),
    Field("tile_dy", 2, "CONV with kernel3: the input is the spatial tile −1, 0 or +1 (two's complement) tiles of "
                        "max_h rows below the output tile; off 0, only its edge row next to the output tile is "
                        "scanned, with the kernel row that reaches across; POOL: 0b11, input row −1 is the last "
                        "row of the tile row above (in_base − k_base), else padding"),
    Field("tile_dx", 2, "CONV with kernel3: as tile_dy, in tiles of max_w columns to the right; POOL: 0b11, input "
                        "column −1 is the last column of the tile column to the left (in_base − v_base)"),
    Field("cin", 16, "CONV: input channels (weight columns); ATTENTION/HEAD: channels C"),
    Field("planes", 4, "CONV: spike channels per input channel (bit planes of integer pixels; 1 for spikes)"),
    Field("tiles", 8, "output tiles of n_pe channels (POOL: channel groups; STORE/LOAD: spike groups copied)"),
    Field("T", 5, "timesteps (STORE/LOAD: rows t = 0..T−1 of each group copied)"),
    Field("H", 8, "image height (POOL: input rows from the origin of input tile A at in_base, up to 2·max_h; "
                     "STORE/LOAD: rows y = 0..H−1 of each timestep copied)"),
    Field("W", 8, "image width (POOL: input columns from A's origin, up to 2·max_w)"),
    Field("in_base", 16, "spike group of the input (ATTENTION: of Q; STORE: the first group copied to SPILL rows)"),
    Field("k_base", 16, "ATTENTION: spike group of K; POOL: groups from one tile row to the next"),
    Field("v_base", 16, "ATTENTION: spike group of V; POOL: groups from one tile column to the next"),
    Field("out_base", 16, "spike group of the output spikes (LOAD: the first group copied back from SPILL rows)"),
    Field("weight_base", 20, "first weight row (ATTENTION: scratch rows for Kᵀ·V; STORE/LOAD: first SPILL row, "
                               "one per spike-memory row copied, in the order group, t, y, y innermost)"),
    Field("bias_base", 16, "bias row of tile 0 (HEAD: two rows, the low acc_bits bits of each class's bias, then "
                           "the bits above, up to logit_bits)"),
    Field("threshold_base", 16, "threshold row of tile 0"),
    Field("frac_bits", 4, "CONV/ATTENTION: fractional bits F of the fused LIF's membrane (F = T for τ = 2)"),
    Field("head_dim", 8, "ATTENTION: channels per head d"),
    Field("sum_bits", 6, "HEAD: declared width of the per-channel stream sums (bit-serial steps: the logits use "
                         "the sums wrapped to it); a wider sum raises OVERFLOW (OVERFLOW_LOG bit RESULT)"),
    Field("check_bits", 6, "declared width of the result (CONV acc_bits; ATTENTION count_bits, also of its Kᵀ·V "
                           "counts; HEAD logit_bits); a wider value raises OVERFLOW (OVERFLOW_LOG bit RESULT)"),
    Field("membrane_bits", 7, "CONV/ATTENTION with lif: declared width of the fused LIF's membrane H (the LIF's "
                              "membrane_bits); a wider H raises OVERFLOW (OVERFLOW_LOG bit MEMBRANE)"),
)

DESCRIPTOR_LAYOUT = data.StructLayout({f.name: f.bits for f in FIELDS})
DESCRIPTOR_BITS = DESCRIPTOR_LAYOUT.size

#: Cycles the sequencer holds a new descriptor before it starts the engine: each of the engine's units
#: copies the fields it uses into its own registers (no descriptor-wide fanout on its paths) and
#: derives from them, in a further stage, what it compares against (last loop indices, range-check
#: masks, table rows), all valid at ``start``.
DESCRIPTOR_SETTLE_CYCLES = 2


def pack(**values):
    """One descriptor word from field values (missing fields are 0)."""
    try:
        return pack_fields(DESCRIPTOR_LAYOUT, **values)
    except ValueError as e:
        raise ValueError(f"descriptor {e}") from None


def unpack(word):
    """Field values of one descriptor word."""
    return unpack_fields(DESCRIPTOR_LAYOUT, word)
