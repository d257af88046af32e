"""Benchmark: each hardware component placed and routed on its own (out of context) on the ECP5,
with its Fmax, critical path and LUT/FF/DP16KD count, for the build parameters of a bundle.

The whole accelerator's Fmax is at most the slowest component's; a component's own critical path
shows where to pipeline long before a full place-and-route of the accelerator (tens of minutes)
would. Components run one after another; the table is printed at the end and written as JSON.

    .venv/bin/python bench/component_timing.py [BUNDLE] [--only NAME ...] [--freq MHZ] [--out DIR]

BUNDLE defaults to runs/digits-tiny-8bit (``spikeforge export`` writes it; the demo does too).
"""

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from spikeforge import flow
from spikeforge.flow.synth import synthesize
from spikeforge.hw.netlist import runtime_verilog
from spikeforge.interface.params import AcceleratorParams


def components(params):
    """``name -> component`` for every unit of the accelerator, built for ``params``."""
    from spikeforge.hw.accelerator import Accelerator
    from spikeforge.hw.accumulator_array import AccumulatorArray
    from spikeforge.hw.burst_arbiter import BurstArbiter
    from spikeforge.hw.control_slave import ControlSlave
    from spikeforge.hw.drain import Drain
    from spikeforge.hw.engine import Engine
    from spikeforge.hw.head import Head
    from spikeforge.hw.key_value_product import KeyValueProduct
    from spikeforge.hw.row_reader import RowReader
    from spikeforge.hw.row_writer import RowWriter
    from spikeforge.hw.sequencer import Sequencer
    from spikeforge.hw.spike_memory import SpikeMemory
    from spikeforge.hw.spike_pool import SpikePool
    from spikeforge.hw.spike_scanner import SpikeScanner
    from spikeforge.interface.regmap import address_layout, word_bits

    p = params
    def weight_reader():
        return RowReader(word_bits("WEIGHTS", p), p.prefetch_rows, (p.weight_rows - 1).bit_length() or 1,
                         p.memory_address_bits)

    def spill_writer():
        return RowWriter(word_bits("SPILL", p), p.prefetch_rows, (p.spill_rows - 1).bit_length() or 1,
                         p.memory_address_bits)

    return {
        "spike_scanner": lambda: SpikeScanner(p), "accumulator_array": lambda: AccumulatorArray(p),
        "drain": lambda: Drain(p), "spike_memory": lambda: SpikeMemory(p), "spike_pool": lambda: SpikePool(p),
        "key_value_product": lambda: KeyValueProduct(p), "head": lambda: Head(p),
        "sequencer": lambda: Sequencer(p.program_depth),
        "control_slave": lambda: ControlSlave(p.host_word_bits, address_layout(p)),
        "row_reader": weight_reader, "row_writer": spill_writer,
        "burst_arbiter": lambda: BurstArbiter([weight_reader().beats] * 5, [spill_writer().beats],
                                              p.memory_address_bits),
        "engine": lambda: Engine(p), "accelerator": lambda: Accelerator(p),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", default="runs/digits-tiny-8bit")
    parser.add_argument("--only", nargs="*", help="components to run (default: all but the whole accelerator)")
    parser.add_argument("--freq", type=float, default=100.0, help="nextpnr's target frequency (MHz)")
    parser.add_argument("--out", default="bench-out/component-timing", help="reports go here, one folder each")
    args = parser.parse_args()
    params = AcceleratorParams(**flow.compile(args.bundle).params)
    makers = components(params)
    unknown = sorted(set(args.only or ()) - set(makers))
    if unknown:
        parser.error(f"unknown component {unknown[0]!r}; expected one of {', '.join(makers)}")
    names = args.only or [name for name in makers if name != "accelerator"]
    out = Path(args.out)
    rows = {}
    for name in tqdm(names, desc="place and route", unit="component"):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        source = folder.parent / f"{name}.v"
        source.write_text(runtime_verilog(makers[name](), name=name))
        summary = synthesize(source, name, folder / "reports", freq_mhz=args.freq, out_of_context=True)
        path = summary["critical_path"] or {}
        rows[name] = {"fmax_mhz": summary["fmax_mhz"], "failure": summary["failure"],
                      "LUT4": summary["resources"].get("LUT4", {}).get("used"),
                      "FF": summary["resources"].get("FF", {}).get("used"),
                      "DP16KD": summary["resources"].get("DP16KD", {}).get("used"),
                      "logic_levels": path.get("logic_levels"), "delay_ns": path.get("delay_ns"),
                      "start": path.get("start"), "end": path.get("end"), "seconds": summary["seconds"]}
        tqdm.write(f"{name}: {rows[name]['fmax_mhz']} MHz, {rows[name]['logic_levels']} levels "
                   f"{rows[name]['start']} -> {rows[name]['end']}")
    (out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"{'component':<20}{'Fmax MHz':>10}{'levels':>8}{'LUT4':>8}{'FF':>8}{'DP16KD':>8}  critical path")
    for name, row in rows.items():
        print(f"{name:<20}{row['fmax_mhz'] or 0:>10.1f}{row['logic_levels'] or 0:>8}{row['LUT4'] or 0:>8}"
              f"{row['FF'] or 0:>8}{row['DP16KD'] or 0:>8}  {row['start']} -> {row['end']}"
              + (f"  ({row['failure']})" if row['failure'] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
