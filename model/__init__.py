"""Float models (Spikingformer, Spikformer), the LIF neuron, data sets, training and energy.

Attributes load lazily, so ``spikeforge.model.data`` (inputs for the golden model) can be used
without importing the float networks.
"""

import importlib

__all__ = ["ARCHITECTURES", "FAMILIES", "OVERRIDABLE", "PRESETS", "ModelConfig", "make_config",
           "MultiStepLIFNode", "Spikformer", "Spikingformer", "build_model", "model_from_config"]

_HOMES = {"ARCHITECTURES": "config", "FAMILIES": "config", "OVERRIDABLE": "config", "PRESETS": "config",
          "ModelConfig": "config", "make_config": "config", "MultiStepLIFNode": "neuron",
          "Spikformer": "spikformer", "Spikingformer": "spikingformer"}


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def model_from_config(config, arch="spikingformer"):
    """A freshly initialised model of ``arch`` for a :class:`ModelConfig`."""
    from .config import ARCHITECTURES
    from .spikformer import Spikformer
    from .spikingformer import Spikingformer

    classes = {"spikingformer": Spikingformer, "spikformer": Spikformer}
    if arch not in classes:
        raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, not {arch!r}")
    return classes[arch](config)


def build_model(name, arch="spikingformer", **overrides):
    """Build preset ``name`` (see ``PRESETS``) with ``overrides`` such as ``depth=2, dim=64``.

    >>> model = build_model("cifar10-4-384", depth=1, dim=64, heads=4)
    """
    from .config import make_config

    return model_from_config(make_config(name, **overrides), arch)
