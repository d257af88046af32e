"""How the tables (program, weights, biases, thresholds) lie in external memory: defined here once.

The compiler's image (``firmware/image.py``), the accelerator's row readers (``hw/row_reader.py``), the
memory model's preload file and the driver's base registers all follow it. External memory is
byte-addressed and read in 32-bit beats. A table's row of ``bits`` bits occupies ``⌈bits / 32⌉`` beats,
lowest bits first, and rows lie :func:`row_stride` bytes apart, so a row address is a shift and no
burst crosses a 4 KiB boundary. Tables follow one another in :data:`TABLE_ORDER`, each starting on a
:data:`REGION_ALIGN` boundary. The accelerator's byte addresses of external memory have
``memory_address_bits`` bits (:class:`~spikeforge.interface.params.AcceleratorParams`): an image's
:func:`external_bytes` from its base must lie below ``2**memory_address_bits``.
"""

from .bits import ceil_div, index_bits

__all__ = ["BEAT_BITS", "REGION_ALIGN", "TABLE_ORDER", "row_stride", "table_offsets", "external_bytes",
           "external_words"]

#: Data bits of one beat of the external memory bus.
BEAT_BITS = 32
#: Alignment of each table in bytes.
REGION_ALIGN = 4096
#: The tables, in the order they lie in external memory.
TABLE_ORDER = ("PROGRAM", "WEIGHTS", "BIAS", "THRESHOLD")


def row_stride(row_bits):
    """Bytes between consecutive rows of ``row_bits`` bits: the row's beats rounded up to a power of two."""
    return BEAT_BITS // 8 << index_bits(ceil_div(row_bits, BEAT_BITS))


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
    the external memory the image occupies (``4 * len(external_words(...))``)."""
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
