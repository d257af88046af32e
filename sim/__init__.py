"""Simulation runners: Amaranth simulator and Verilator through cocotb."""

__all__ = ["BACKENDS", "check_backend"]

#: Simulators that run the generated hardware cycle-accurately (the first is the default).
BACKENDS = ("verilator", "amaranth")


def check_backend(backend):
    """Raise ValueError unless ``backend`` is one of :data:`BACKENDS`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
