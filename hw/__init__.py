"""Amaranth components of the spike accumulator accelerator."""

__all__ = []
