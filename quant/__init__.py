"""Quantization (brevitas), BN folding, weight-table export and the integer golden model.

``load_bundle`` and ``GoldenModel`` need neither brevitas nor the float model; the quantization
side (``spikeforge.quant.export``, ``.fakequant``, ``.calibrate``) is imported on demand.
"""

from .bundle import Bundle, BundleError, encode_input, load_bundle
from .golden import GoldenModel, Trace

__all__ = ["Bundle", "BundleError", "encode_input", "load_bundle", "GoldenModel", "Trace"]
