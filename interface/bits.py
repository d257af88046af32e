"""Integer helpers shared by every layer: powers of two, two's complement widths, ``$readmemh`` words."""

__all__ = ["is_power_of_two", "next_power_of_two", "index_bits", "ceil_div", "signed_bits", "fits_signed",
           "readmemh_lines"]


def is_power_of_two(value):
    """``value`` is an int 1, 2, 4, … (``bool`` excluded)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1 and value & (value - 1) == 0


def next_power_of_two(n):
    """Smallest power of two ``>= n`` (1 for ``n <= 1``)."""
    return 1 << max(0, (int(n) - 1).bit_length())


def index_bits(depth):
    """Address bits of ``depth`` entries (0 for a single entry)."""
    return (int(depth) - 1).bit_length()


def ceil_div(a, b):
    return -(-a // b)


def signed_bits(values):
    """Smallest two's complement width holding every value of an integer array or sequence (at least 2)."""
    values = [int(v) for v in _flat(values)]
    if not values:
        return 2
    hi = max(max(values), -min(values) - 1, 1)
    return hi.bit_length() + 1


def fits_signed(value, bits):
    """``value`` (an int) is representable in ``bits`` bits of two's complement."""
    return -(1 << (bits - 1)) <= value < 1 << (bits - 1)


def readmemh_lines(words, bits):
    """``$readmemh`` lines of integer ``words``: two's complement on ``bits`` bits, lower-case hex,
    ``ceil(bits / 4)`` digits. Works on Python ints (numpy arrays go through ``tolist`` first, so
    64-bit values keep every bit)."""
    digits = (bits + 3) // 4
    mask = (1 << bits) - 1
    return [f"{int(w) & mask:0{digits}x}" for w in _flat(words)]


def _flat(values):
    """The values of an int, a (nested) sequence or an array, as Python ints, in C order."""
    ravel = getattr(values, "ravel", None)
    if ravel is not None:                      # numpy arrays and torch tensors: one C-level pass
        return ravel().tolist()
    if isinstance(values, (list, tuple)):
        return [v for item in values for v in _flat(item)]
    return [values]
