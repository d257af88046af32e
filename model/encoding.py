"""Input encoding: how float model inputs and the integer pixels of the hardware relate.

Every model input is a grid of integer *pixels*; the float model sees ``x = pixel · 2**scale_exp``.
:func:`input_encoding` gives the encoding of a configuration (each bundle stores it as
``manifest["input"]``):

* dvs family: binary events ``[T, C, H, W]``, ``scale_exp`` 0, ``max`` 1 — ``x`` is exactly 0 or 1;
* digits data set: pixels 0..16 ``[C, H, W]``, ``scale_exp`` -4 — ``x`` in 0, 1/16, …, 1;
* other images: pixels 0..255 ``[C, H, W]``, ``scale_exp`` -8 — ``x`` in 0, 1/256, …, 255/256
  (not mean/std normalised).

Conversions are strict; nothing is clamped silently. Each refusal is a ``ValueError`` with a
one-line message naming the source (a file name or input spec, ``source=``), the first offending
value with its flat index and multi-index, how many values are wrong and the allowed range:

* :func:`encode_input` (float model units → pixels) refuses NaN/±inf, negative values, values that
  round to a pixel above ``max`` (about ``x > (max + ½)·2**scale_exp``), and for event encodings
  anything that is not exactly 0 or 1. Other values are rounded to the nearest pixel (ties to even).
* :func:`check_pixels` (integer pixels as given, e.g. by ``pixels:FILE.npy``) refuses non-integer
  or non-finite values and pixels outside ``0..max`` (events: 0 or 1).
* :func:`decode_pixels` gives the float model input ``pixel · 2**scale_exp`` (exact in float32).
"""

import numpy as np
import torch

from spikeforge.interface.encoding import input_encoding

__all__ = ["input_encoding", "encode_input", "check_pixels", "decode_pixels"]

_FIELDS = ("shape", "scale_exp", "max", "events")


def _checked_encoding(encoding):
    """``(scale_exp, max, events)`` of an encoding dict (e.g. read from a manifest), checked."""
    if not isinstance(encoding, dict) or any(f not in encoding for f in _FIELDS):
        raise ValueError(f"input encoding must be a dict with fields {', '.join(_FIELDS)}, not {encoding!r}")
    scale_exp, top, events = encoding["scale_exp"], encoding["max"], encoding["events"]
    for name, value in (("scale_exp", scale_exp), ("max", top)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"input encoding field {name!r} must be an integer, not {value!r}")
    if top < 1 or (events and top != 1):
        raise ValueError(f"input encoding field 'max' must be {'1 for events' if events else 'positive'}, "
                         f"not {top!r}")
    return int(scale_exp), int(top), bool(events)


def _as_numpy(values):
    """A numpy view of a tensor or array-like (float tensors that numpy lacks become float64)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.is_floating_point() and values.dtype not in (torch.float16, torch.float32, torch.float64):
            values = values.double()
        return values.numpy()
    return np.asarray(values)


def _like(result, original):
    """``result`` on the device of ``original`` when that is a tensor."""
    return result.to(original.device) if isinstance(original, torch.Tensor) else result


def _format_value(array, index):
    value = array[index]
    return str(value.item() if isinstance(value, np.bool_) else value)


def _refuse(source, array, bad, problem, allowed):
    """Raise the one-line ``ValueError`` about the first ``True`` of the mask ``bad``."""
    count = int(np.count_nonzero(bad))
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    flat = int(np.ravel_multi_index(index, array.shape)) if array.ndim else 0
    more = f" ({count} values are wrong)" if count > 1 else ""
    raise ValueError(f"{source or 'input'}: value {_format_value(array, index)} at index "
                     f"{list(index)} (flat {flat}) is {problem}; {allowed}{more}")


def _allowed_floats(scale_exp, top, events):
    if events:
        return "event inputs must be exactly 0 or 1"
    return (f"float inputs must lie in [0, {top * 2.0 ** scale_exp:.10g}] "
            f"(pixel·2**{scale_exp} for pixels 0..{top})")


def _allowed_pixels(top, events):
    return "events must be 0 or 1" if events else f"pixels must be integers in 0..{top}"


def encode_input(x, encoding, source=None):
    """Integer pixels (int64 tensor, same shape) of float model inputs ``x``: ``round(x / 2**scale_exp)``.

    Strict (see the module docstring): a ``ValueError`` naming ``source`` (a file name or input
    spec; default ``"input"``), the first offending index and value and the allowed range for
    non-finite, negative or too large values, and for event encodings anything but 0 and 1.
    """
    scale_exp, top, events = _checked_encoding(encoding)
    array = _as_numpy(x)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_) \
            or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{source or 'input'}: inputs must be real numbers, not dtype {array.dtype}")
    values = array.astype(np.float64)
    allowed = _allowed_floats(scale_exp, top, events)
    if not np.isfinite(values).all():
        _refuse(source, array, ~np.isfinite(values), "not finite", allowed)
    if events:
        if not np.isin(values, (0.0, 1.0)).all():
            _refuse(source, array, ~np.isin(values, (0.0, 1.0)), "not an event (0 or 1)", allowed)
        return _like(torch.from_numpy(values.astype(np.int64)), x)
    if (values < 0).any():
        _refuse(source, array, values < 0, "negative", allowed)
    with np.errstate(over="ignore"):
        pixels = np.round(values * 2.0 ** -scale_exp)
    if (pixels > top).any():
        _refuse(source, array, pixels > top, "too large", allowed)
    return _like(torch.from_numpy(pixels.astype(np.int64)), x)


def check_pixels(pixels, encoding, source=None):
    """Integer pixels as given (any integer or bool dtype, or floats holding integers) → int64 tensor.

    A ``ValueError`` naming ``source``, the first offending index and value and the allowed range
    for non-integer values and pixels outside ``0..max`` (events: 0 or 1).
    """
    _, top, events = _checked_encoding(encoding)
    array = _as_numpy(pixels)
    allowed = _allowed_pixels(top, events)
    if array.dtype == np.bool_:
        return torch.from_numpy(array.astype(np.int64))
    if np.issubdtype(array.dtype, np.floating):
        integral = np.isfinite(array) & (array == np.round(array))
        if not integral.all():
            _refuse(source, array, ~integral, "not an integer", allowed)
    elif array.dtype.kind not in "iu":      # not np.issubdtype(…, np.integer): that admits timedelta64
        raise ValueError(f"{source or 'input'}: pixels must be integers, not dtype {array.dtype}")
    bad = (array < 0) | (array > top)
    if bad.any():
        _refuse(source, array, bad, "out of range", allowed)
    return torch.from_numpy(array.astype(np.int64))


def decode_pixels(pixels, encoding):
    """The float model input (float32 tensor) of integer pixels: ``pixel · 2**scale_exp`` (exact)."""
    scale_exp, _, _ = _checked_encoding(encoding)
    return torch.as_tensor(pixels).to(torch.float32) * 2.0 ** scale_exp
