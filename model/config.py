"""Model configurations: the presets of the Spikingformer paper and their validated overrides."""

import dataclasses
import math
from dataclasses import dataclass

__all__ = ["FAMILIES", "ARCHITECTURES", "PRESETS", "OVERRIDABLE", "LIMITS", "ModelConfig", "make_config"]

#: Tokenizer/attention families of the official code: ``cifar`` (block0..block4 tokenizer,
#: ``(Q·Kᵀ)·V``), ``imagenet`` (proj_conv + four pooling stages, ``Q·(Kᵀ·V)``) and ``dvs``
#: (the imagenet tokenizer on event frames ``[B, T, C, H, W]``, ``(Q·Kᵀ)·V``).
FAMILIES = ("cifar", "imagenet", "dvs")
ARCHITECTURES = ("spikingformer", "spikformer")

#: Largest accepted value of each numeric field: far beyond every published model, small enough
#: that a typo cannot ask for a model that exhausts memory or never finishes building.
LIMITS = {"depth": 64, "dim": 8192, "heads": 1024, "T": 1024, "img_size": 4096, "in_channels": 1024,
          "num_classes": 100_000, "mlp_ratio": 64, "tau": 1e6}

#: Total spatial downsampling of each family's tokenizer.
_DOWNSAMPLING = {"cifar": 4, "imagenet": 16, "dvs": 16}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a model; stored inside checkpoints and bundles."""

    family: str
    depth: int
    dim: int
    heads: int
    mlp_ratio: float
    T: int
    img_size: int
    in_channels: int
    num_classes: int
    tau: float
    dataset: str = "none"

    @property
    def downsampling(self):
        return _DOWNSAMPLING[self.family]

    @property
    def tokens(self):
        """Number of tokens N = (img_size / downsampling)²."""
        return (self.img_size // self.downsampling) ** 2

    @property
    def hidden_dim(self):
        return int(self.dim * self.mlp_ratio)

    def as_dict(self):
        return dataclasses.asdict(self)

    def validate(self):
        """Raise ``ValueError`` naming the first field whose value cannot build a model.

        Integer fields must be positive integers (not bools) no larger than :data:`LIMITS`; float
        fields must be finite numbers in their range (``mlp_ratio`` in (0, 64], ``tau`` in
        [1, 10⁶]), so that a typo such as ``--set mlp_ratio=inf`` is refused here, not deep inside
        the model code.
        """
        if not isinstance(self.family, str) or self.family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {self.family!r}")
        if not isinstance(self.dataset, str):
            raise ValueError(f"dataset must be a name, not {self.dataset!r}")
        for name in ("depth", "dim", "heads", "T", "img_size", "in_channels", "num_classes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
            if value > LIMITS[name]:
                raise ValueError(f"{name} must be at most {LIMITS[name]}, not {value!r}")
        for name in ("mlp_ratio", "tau"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, not {value!r}")
        if self.dim % 8:
            raise ValueError(f"dim must be divisible by 8 (the tokenizer starts at dim/8 channels), "
                             f"not {self.dim!r}")
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        if self.img_size % self.downsampling:
            raise ValueError(f"img_size must be divisible by {self.downsampling} (the {self.family} "
                             f"tokenizer's downsampling), not {self.img_size!r}")
        if not 0 < self.mlp_ratio <= LIMITS["mlp_ratio"] or self.hidden_dim < 1:
            raise ValueError(f"mlp_ratio must lie in (0, {LIMITS['mlp_ratio']}] and give at least one "
                             f"hidden channel, not {self.mlp_ratio!r}")
        if not self.tau >= 1.0:
            raise ValueError(f"tau must be at least 1.0, not {self.tau!r}")
        if self.tau > LIMITS["tau"]:
            raise ValueError(f"tau must be at most {LIMITS['tau']:g}, not {self.tau!r}")
        return self


def _preset(family, depth, dim, heads, num_classes, img_size, in_channels, T, tau, dataset):
    return ModelConfig(family=family, depth=depth, dim=dim, heads=heads, mlp_ratio=4.0, T=T,
                       img_size=img_size, in_channels=in_channels, num_classes=num_classes, tau=tau,
                       dataset=dataset)


#: Presets named ``<dataset>-<depth>-<dim>`` as in the paper (heads and T from the official configs).
PRESETS = {
    "cifar10-4-384": _preset("cifar", 4, 384, 12, 10, 32, 3, 4, 2.0, "cifar10"),
    "cifar100-4-384": _preset("cifar", 4, 384, 8, 100, 32, 3, 4, 2.0, "cifar100"),
    "imagenet-8-384": _preset("imagenet", 8, 384, 8, 1000, 224, 3, 4, 2.0, "imagenet"),
    "imagenet-8-512": _preset("imagenet", 8, 512, 8, 1000, 224, 3, 4, 2.0, "imagenet"),
    "imagenet-8-768": _preset("imagenet", 8, 768, 8, 1000, 224, 3, 4, 2.0, "imagenet"),
    "dvs128-2-256": _preset("dvs", 2, 256, 16, 11, 128, 2, 16, 1.5, "dvs128"),
    "cifar10dvs-2-256": _preset("dvs", 2, 256, 16, 10, 128, 2, 16, 1.5, "cifar10dvs"),
    # 8x8 scikit-learn digits: the embedded default data set (2x2 = 4 tokens after the tokenizer).
    "digits-tiny": _preset("cifar", 1, 64, 4, 10, 8, 1, 4, 2.0, "digits"),
}

#: Override keys accepted by ``make_config`` / ``--set`` and how their text is parsed.
OVERRIDABLE = {
    "depth": int, "dim": int, "heads": int, "mlp_ratio": float, "T": int, "img_size": int,
    "in_channels": int, "num_classes": int, "tau": float,
}


def make_config(name, **overrides):
    """The preset ``name`` with ``overrides`` applied, validated (``ValueError`` if unusable)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model {name!r}; presets: {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise ValueError(f"unknown override {unknown[0]!r}; allowed: {', '.join(OVERRIDABLE)}")
    parsed = {}
    for key, value in overrides.items():
        kind = OVERRIDABLE[key]
        try:
            parsed[key] = kind(value) if not isinstance(value, kind) else value
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"override {key} must be {kind.__name__}, not {value!r}") from None
        if kind is int and isinstance(value, float) and value != int(value):
            raise ValueError(f"override {key} must be an integer, not {value!r}")
        if kind is float and not math.isfinite(parsed[key]):
            raise ValueError(f"override {key} must be a finite number, not {value!r}")
    return dataclasses.replace(PRESETS[name], **parsed).validate()
