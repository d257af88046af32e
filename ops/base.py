"""What every operation module shares: the manifest-field base, the tensor facts the checker tracks,
and the state the golden model and the compiler hand to an operation.

An operation module (``ops/conv.py``, ``ops/lif.py``, …) defines

``KIND``
    The layer's ``kind`` in the bundle manifest.
``Fields``
    A :class:`LayerFields` subclass: the layer's manifest fields, types and ranges (pydantic, strict).
``check(layer, net)``
    The rules beyond types: tensors it reads exist and have the right kind and shape, tables have
    the right shape and range, declared widths hold the worst case. Records the tensor it writes.
``golden(layer, run)``
    Its integer semantics (``docs/integer-semantics.md``) on numpy int64 arrays.
``emit(layer, program)``
    Its descriptors for the accelerator (``firmware/compiler.py`` supplies ``program``).
``cycles(desc, inputs, params)``
    Its exact cycle count on the accelerator, from the descriptor and the spikes it reads.

The registry of operations is :data:`spikeforge.ops.OPERATIONS`; ``docs/adding-an-operation.md``
says how to add one.
"""

from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from spikeforge.interface.bits import signed_bits
from spikeforge.interface.descriptor import FIELDS
from spikeforge.interface.params import RANGES

__all__ = ["RuleError", "LayerFields", "Width", "Name", "Tensor", "Network", "GoldenRun", "fits", "fits_per_image",
           "wrap"]

#: A declared two's complement width.
Width = Annotated[int, Field(ge=2, le=64)]
#: A tensor or table name.
Name = Annotated[str, Field(min_length=1, max_length=200)]


class RuleError(ValueError):
    """A layer breaks a rule of the format; ``field`` is the offending field of the layer."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field


class LayerFields(BaseModel):
    """Fields every layer has; subclasses add theirs. Strict: no coercion, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: Name


@dataclass
class Tensor:
    """What the checker knows of a tensor: ``kind`` ('pixels', 'spikes' or 'integer'), its shape
    ``[T, C, H, W]`` (T = 1 for a static image), the worst-case magnitude per channel (integers),
    the layer that wrote it, and whether it is the residual stream."""

    kind: str
    shape: tuple
    bound: np.ndarray | None = None
    producer: dict | None = None
    stream: bool = False

    @property
    def channels(self):
        return self.shape[1]


@dataclass
class Network:
    """The checker's state while walking the layer program in order."""

    config: dict
    quant: dict
    encoding: dict
    tables: dict
    tensors: dict = field(default_factory=dict)
    previous: object = None      # the layer checked last (a LIF is fused into it)

    def read(self, layer, field_name, kinds):
        """The tensor named by ``layer.<field_name>``; it must exist already and be of one of ``kinds``."""
        name = getattr(layer, field_name)
        tensor = self.tensors.get(name)
        if tensor is None:
            raise RuleError(field_name, f"names no tensor written by an earlier layer ({name!r})")
        if tensor.kind not in kinds:
            raise RuleError(field_name, f"tensor {name!r} holds {tensor.kind}, expected {' or '.join(kinds)}")
        return tensor

    def write(self, layer, field_name, tensor):
        name = getattr(layer, field_name)
        if name in self.tensors:
            raise RuleError(field_name, f"tensor {name!r} is written twice")
        self.tensors[name] = tensor

    def table(self, layer, field_name, shape, bits=None, positive=False):
        """The table named by ``layer.<field_name>``, checked for shape, value range and sign."""
        name = getattr(layer, field_name)
        values = self.tables.get(name)
        if values is None:
            raise RuleError(field_name, f"names no table ({name!r})")
        if list(values.shape) != list(shape):
            raise RuleError(field_name, f"table {name!r} has shape {list(values.shape)}, expected {list(shape)}")
        if bits is not None and values.size and signed_bits(values) > bits:
            raise RuleError(field_name, f"table {name!r} holds values of {signed_bits(values)} bits, "
                                        f"more than the {bits} declared")
        if positive and values.size and values.min() <= 0:
            raise RuleError(field_name, f"table {name!r} must hold positive values, found {int(values.min())}")
        return values


def require_width(field_name, declared, bound):
    """A declared width must hold the worst case ``bound`` (a magnitude)."""
    needed = signed_bits(np.max(bound) if np.size(bound) else 0)
    if declared < needed:
        raise RuleError(field_name, f"{declared} bits cannot hold the worst case {int(np.max(bound))} "
                                    f"(needs {needed})")


@dataclass
class GoldenRun:
    """The golden model's state: tensors by name (numpy int64, ``[B, T, C, H, W]``), tables, config,
    and the trace being recorded (spikes and membranes per LIF, overflowing layers, logits).

    ``overflow`` lists the layers with a value wider than declared (in any image) in the order they
    were checked — program order, as the layers run in it; ``overflow_images`` holds, per such layer,
    which images (``[B]`` bools)."""

    values: dict
    tables: dict
    T: int
    record_membranes: bool = False
    spikes: dict = field(default_factory=dict)
    membranes: dict = field(default_factory=dict)
    overflow: list = field(default_factory=list)
    overflow_images: dict = field(default_factory=dict)
    logits: np.ndarray | None = None

    def check_width(self, name, values, bits):
        """Record layer ``name`` as overflowing in each image (axis 0 of ``values``) where a value needs
        more than ``bits`` bits of two's complement (``docs/integer-semantics.md`` §7)."""
        values = np.asarray(values)
        flags = ~fits_per_image(values, bits)
        if flags.any():
            if name not in self.overflow:
                self.overflow.append(name)
            self.overflow_images[name] = self.overflow_images.get(name, False) | flags

    def overflow_per_image(self, images):
        """Per image, the names of its overflowing layers in program order."""
        return [[name for name in self.overflow if self.overflow_images[name][i]] for i in range(images)]


def fits(values, bits):
    """Every value is representable in ``bits`` bits of two's complement."""
    limit = 1 << (bits - 1)
    values = np.asarray(values)
    return bool(((values >= -limit) & (values < limit)).all())


def fits_per_image(values, bits):
    """Per image (axis 0 of ``values``): every value is representable in ``bits`` bits of two's complement."""
    values = np.asarray(values)
    if bits >= 64:                   # int64 values always fit
        return np.ones(len(values), dtype=bool)
    limit = 1 << (bits - 1)
    return ((values >= -limit) & (values < limit)).reshape(len(values), -1).all(1)


def wrap(values, bits):
    """``values`` as held in ``bits`` bits of two's complement (the bits above dropped)."""
    values = np.asarray(values, dtype=np.int64)
    if bits >= 64:
        return values
    limit = 1 << (bits - 1)
    return ((values + limit) & ((limit << 1) - 1)) - limit


_DESCRIPTOR_BITS = {f.name: f.bits for f in FIELDS}


def require_buildable(program, layer, fields, **widths):
    """The compiler's error (naming ``layer``) unless the accelerator can run ``layer``'s descriptor
    ``fields``: each of ``widths`` (a width build parameter, ``acc_bits=`` or ``logit_bits=``, and the
    value the layer needs) within the widest the accelerator can be built with (``interface.params.RANGES``),
    and every field within its bits (``interface.descriptor.FIELDS``: a fused LIF's ``frac_bits`` ≤ 15,
    ``T`` ≤ 31, …). The group fields still hold spike tensors here (their groups are allocated once the
    program is emitted)."""
    for name, bits in widths.items():
        widest = RANGES[name][1]
        if bits > widest:
            raise program.error(layer, f"needs {name}={bits}; the accelerator is built with {name} of at most "
                                       f"{widest}")
    for name, value in fields.items():
        bits = _DESCRIPTOR_BITS.get(name)
        if bits is not None and isinstance(value, int) and not 0 <= value < 1 << bits:
            raise program.error(layer, f"descriptor field {name} = {value} does not fit its {bits} bits")


__all__ += ["require_width", "require_buildable"]
