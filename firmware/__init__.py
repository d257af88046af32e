"""Layer-program compiler, program image format, register map and host driver."""

__all__ = []
