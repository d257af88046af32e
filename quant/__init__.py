"""Quantization (brevitas QAT/PTQ), BN folding, weight-table export and the integer golden model."""

__all__ = []
