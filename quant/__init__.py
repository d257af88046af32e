"""Quantization (brevitas), BN folding, export of the layer program and the integer golden model.

The bundle format itself is :mod:`spikeforge.ops.bundle` (torch-free); ``GoldenModel`` needs
neither brevitas nor the float model; the quantization side (``spikeforge.quant.export``,
``.fakequant``, ``.calibrate``) is imported on demand.
"""

from spikeforge.ops.bundle import Bundle, BundleError, load_bundle

from .golden import GoldenModel, Trace

__all__ = ["Bundle", "BundleError", "load_bundle", "GoldenModel", "Trace"]
