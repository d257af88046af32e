"""How the tables (program, weights, biases, thresholds, spilled tensors) lie in external memory:
defined here once.

The compiler's image (``firmware/image.py``), the accelerator's row readers and writer
(``hw/row_reader.py``, ``hw/row_writer.py``), the memory model's preload file and the driver's base
registers all follow it. External memory is byte-addressed and moved in 32-bit words (beats), a word
at a word address (the byte address without its :data:`WORD_OFFSET_BITS` low bits). A table's row of
``bits`` bits occupies ``⌈bits / 32⌉`` beats, lowest bits first, and rows lie :func:`row_stride`
bytes apart, so a row address is a shift and no burst crosses a 4 KiB boundary. Tables follow one
another in :data:`TABLE_ORDER`, each starting on a :data:`REGION_ALIGN` boundary: first the image's
(:data:`IMAGE_TABLES`, which the host copies into memory), then the :data:`SPILL` region, which the
accelerator writes while it runs (spilled tensors, rows of one spike-memory group word) and reads back.
The accelerator's byte addresses of external memory have ``memory_address_bits`` bits
(:class:`~spikeforge.interface.params.AcceleratorParams`): the :func:`external_bytes` of the image and its
spill region from their base must lie below ``2**memory_address_bits``. The core reads a table's row
:data:`ROW_READ_LATENCY` cycles after its request, as the row readers serve it, and the cycle model
counts with it.
"""

from .bits import ceil_div, index_bits
from .regmap import word_bits

__all__ = ["BEAT_BITS", "WORD_OFFSET_BITS", "ROW_READ_LATENCY", "REGION_ALIGN", "IMAGE_TABLES", "SPILL", "TABLE_ORDER",
           "row_stride", "spill_shape", "table_offsets", "external_bytes", "external_words"]

#: Data bits of one beat of the external memory bus.
BEAT_BITS = 32
#: Low bits of a byte address that select a byte in a beat: a word address leaves them out.
WORD_OFFSET_BITS = (BEAT_BITS // 8).bit_length() - 1
#: Cycles the core runs from a table row's request to the row in hand: the request is registered beside
#: the table's reader, whose hit logic starts from those flip-flops rather than from the requesting unit
#: across the chip; the row is loaded in the cycle after, and into the reader's output register in the
#: next, so that a miss can stall the core through two levels of registers (the reader's decision, the
#: core's enables).
ROW_READ_LATENCY = 3
#: Alignment of each table in bytes.
REGION_ALIGN = 4096
#: The tables of a program image, in the order they lie in external memory.
IMAGE_TABLES = ("PROGRAM", "WEIGHTS", "BIAS", "THRESHOLD")
#: The region after the image that the accelerator writes spilled tensors to and reads them back from.
SPILL = "SPILL"
#: Every table, in the order they lie in external memory.
TABLE_ORDER = (*IMAGE_TABLES, SPILL)


def row_stride(row_bits):
    """Bytes between consecutive rows of ``row_bits`` bits: the row's beats rounded up to a power of two."""
    return BEAT_BITS // 8 << index_bits(ceil_div(row_bits, BEAT_BITS))


def spill_shape(params):
    """``(row_bits, rows)`` of the :data:`SPILL` region of build parameters ``params``
    (:class:`~spikeforge.interface.params.AcceleratorParams`): ``spill_rows`` spike-memory group words."""
    return word_bits(SPILL, params), params.spill_rows


def table_offsets(shapes):
    """Byte offset of each table from the image's start, for ``shapes = {name: (row_bits, rows)}``."""
    offsets, end = {}, 0
    for name in TABLE_ORDER:
        if name in shapes:
            offsets[name] = end
            bits, rows = shapes[name]
            end += ceil_div(max(1, rows) * row_stride(bits), REGION_ALIGN) * REGION_ALIGN
    return offsets


def external_bytes(shapes):
    """Bytes from the image's start to the end of its last row, for ``shapes = {name: (row_bits, rows)}``:
    the external memory the tables occupy (``4 * len(external_words(...))`` for the image's tables; with
    :data:`SPILL`, the spill region's end)."""
    offsets = table_offsets(shapes)
    return max((offsets[name] + shapes[name][1] * row_stride(shapes[name][0]) for name in offsets), default=0)


def external_words(tables):
    """The image as 32-bit words from byte 0, for ``tables = {name: (row_bits, rows)}`` with ``rows`` a
    list of unsigned ints; gaps are zero."""
    offsets = table_offsets({name: (bits, len(rows)) for name, (bits, rows) in tables.items()})
    words = []
    mask = (1 << BEAT_BITS) - 1
    for name in TABLE_ORDER:
        if name not in tables:
            continue
        bits, rows = tables[name]
        stride_words = row_stride(bits) * 8 // BEAT_BITS
        words += [0] * (offsets[name] * 8 // BEAT_BITS - len(words))
        for row in rows:
            beats = [row >> (BEAT_BITS * k) & mask for k in range(ceil_div(bits, BEAT_BITS))]
            words += beats + [0] * (stride_words - len(beats))
    return words
