"""Float models (Spikingformer, Spikformer), the LIF neuron, data sets, training and energy."""

from .config import ARCHITECTURES, FAMILIES, OVERRIDABLE, PRESETS, ModelConfig, make_config
from .neuron import MultiStepLIFNode
from .spikformer import Spikformer
from .spikingformer import Spikingformer

__all__ = ["ARCHITECTURES", "FAMILIES", "OVERRIDABLE", "PRESETS", "ModelConfig", "make_config",
           "MultiStepLIFNode", "Spikformer", "Spikingformer", "build_model", "model_from_config"]

_ARCH_CLASSES = {"spikingformer": Spikingformer, "spikformer": Spikformer}


def model_from_config(config, arch="spikingformer"):
    """A freshly initialised model of ``arch`` for a :class:`ModelConfig`."""
    if arch not in _ARCH_CLASSES:
        raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, not {arch!r}")
    return _ARCH_CLASSES[arch](config)


def build_model(name, arch="spikingformer", **overrides):
    """Build preset ``name`` (see :data:`PRESETS`) with ``overrides`` such as ``depth=2, dim=64``.

    >>> model = build_model("cifar10-4-384", depth=1, dim=64, heads=4)
    """
    return model_from_config(make_config(name, **overrides), arch)
