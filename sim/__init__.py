"""Simulation runners: Amaranth simulator and Verilator through cocotb."""

__all__ = []
