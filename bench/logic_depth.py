"""Benchmark: register-to-register paths of a synthesized ECP5 netlist, timed before placement.

A full place-and-route of the accelerator takes tens of minutes and reports one critical path per
clock; this reads Yosys' netlist (``synth_ecp5 -json``) in seconds and times *every* endpoint with
a rough delay model of the ECP5 (cell delays of the -6 speed grade, one routed hop per net growing
with the square root of its fanout, dedicated carry and slice-mux links free of routing). The
figures are estimates: they rank paths, they do not replace nextpnr's Fmax. Paths are grouped by the registers they start and end
at, worst first, so that one look shows every place that needs a pipeline stage.

    .venv/bin/python bench/logic_depth.py [BUNDLE] [--component NAME] [--top N] [--period NS] [--json OUT]
    .venv/bin/python bench/logic_depth.py --netlist NETLIST_JSON ...
    .venv/bin/python bench/logic_depth.py --routed NEXTPNR_REPORT_JSON ...

BUNDLE (default runs/digits-tiny-8bit) sizes the hardware; ``--component`` picks one unit of
``bench/component_timing.py`` (default: the whole accelerator), synthesized with Yosys' classic ABC
mapping (about a minute for the accelerator, seconds for a unit); its input ports count as
registers. ``--netlist`` reads a netlist already synthesized instead. ``--routed`` reads the arrivals
nextpnr timed after place and route instead (its ``--report``, written with
``--detailed-timing-report``): every failing endpoint of one build, grouped by the net into it and its
register, where nextpnr reports one path per clock.
"""

import argparse
import json
import math
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: Cell delays in ns: (input port pattern, output port) -> delay; ports not listed are endpoints.
CLOCK_TO_OUT = {"TRELLIS_FF": 0.45, "DP16KD": 4.3}
COMBINATIONAL = {
    "LUT4": 0.45, "PFUMX": 0.25, "L6MUX21": 0.25, "TRELLIS_DPR16X4": 0.6,
}
#: Carry chain: into the chain through a LUT input, along it, out through a sum.
CARRY_IN, CARRY_ALONG, CARRY_OUT = 0.45, 0.06, 0.35
#: One routed net: a base hop plus a term in the square root of its fanout (nextpnr spreads a net's
#: sinks over an area that grows with their number: the digits accelerator's stall enable, about
#: 19 000 clock enables, took 15.6 ns of routing).
ROUTE_BASE, ROUTE_PER_SQRT_FANOUT = 0.75, 0.1
SETUP = 0.1


def _dedicated(sink_type, sink_port, driver_type, driver_port):
    """Links inside a slice or carry chain that take no general routing."""
    return ((sink_port == "CIN" and driver_port == "COUT")
            or (sink_type == "PFUMX" and sink_port in ("ALUT", "BLUT") and driver_type == "LUT4")
            or (sink_type == "L6MUX21" and sink_port in ("D0", "D1") and driver_type == "PFUMX"))


def _combinational_inputs(cell_type, port):
    """For a combinational output ``port``, the inputs it depends on (None: a register output)."""
    if cell_type in ("LUT4",):
        return ("A", "B", "C", "D")
    if cell_type == "PFUMX":
        return ("ALUT", "BLUT", "C0")
    if cell_type == "L6MUX21":
        return ("D0", "D1", "SD")
    if cell_type == "TRELLIS_DPR16X4":
        return tuple(f"RAD[{i}]" for i in range(4))
    if cell_type == "CCU2C":
        return ("A0", "B0", "C0", "D0", "A1", "B1", "C1", "D1", "CIN")
    return None


def analyse(netlist, top=None):
    modules = netlist["modules"]
    top = top or next(name for name, m in modules.items() if m.get("attributes", {}).get("top"))
    module = modules[top]
    cells = module["cells"]
    names = {}
    for name, net in module["netnames"].items():
        for i, bit in enumerate(net["bits"]):
            label = name if len(net["bits"]) == 1 else f"{name}[{i}]"
            if isinstance(bit, int) and (bit not in names or _nicer(label, names[bit])):
                names[bit] = label

    driver = {}        # bit -> (cell name, port)
    sinks = defaultdict(list)
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            direction = cell["port_directions"].get(port)
            for i, bit in enumerate(bits):
                if not isinstance(bit, int):
                    continue
                full = port if len(bits) == 1 else f"{port}[{i}]"
                if direction == "output":
                    driver[bit] = (name, full)
                else:
                    sinks[bit].append((name, full))
    inputs_of = defaultdict(dict)   # cell -> port -> bit
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) == "input":
                for i, bit in enumerate(bits):
                    inputs_of[name][port if len(bits) == 1 else f"{port}[{i}]"] = bit

    arrival = {}   # bit -> (ns, previous bit or None, levels)

    def route(bit, sink_cell, sink_port):
        if bit not in driver:
            return 0.0
        d_cell, d_port = driver[bit]
        if _dedicated(cells[sink_cell]["type"], sink_port, cells[d_cell]["type"], d_port):
            return 0.0
        fanout = max(1, len(sinks[bit]))
        return ROUTE_BASE + ROUTE_PER_SQRT_FANOUT * math.sqrt(fanout)

    def at(bit):
        """Arrival at the output ``bit`` (iterative depth-first, the netlist is deep)."""
        stack = [bit]
        while stack:
            b = stack[-1]
            if b in arrival:
                stack.pop()
                continue
            if b not in driver:
                arrival[b] = (0.0, None, 0)
                stack.pop()
                continue
            cell_name, port = driver[b]
            cell = cells[cell_name]
            kind = cell["type"]
            if kind in CLOCK_TO_OUT:
                arrival[b] = (CLOCK_TO_OUT[kind], None, 0)
                stack.pop()
                continue
            deps = _combinational_inputs(kind, port)
            if kind == "CCU2C":
                # the half of the carry cell that ``port`` belongs to, and the carry in
                half = "1" if port in ("S1", "COUT") else "0"
                deps = tuple(p + h for p in "ABCD" for h in ("0", "1") if h <= half or port == "COUT") + ("CIN",)
            pins = [(p, inputs_of[cell_name].get(p)) for p in deps or ()]
            pending = [bit_in for _, bit_in in pins if isinstance(bit_in, int) and bit_in not in arrival
                       and bit_in in driver]
            if pending:
                stack.extend(pending)
                continue
            best = (0.0, None, 0)
            for pin, bit_in in pins:
                if not isinstance(bit_in, int):
                    continue
                t, _, levels = arrival.get(bit_in, (0.0, None, 0))
                t += route(bit_in, cell_name, pin)
                if kind == "CCU2C":
                    t += CARRY_ALONG if pin == "CIN" else CARRY_IN
                if t > best[0] or best[1] is None:
                    best = (t, bit_in, levels + (0 if kind == "CCU2C" and pin == "CIN" else 1))
            delay = CARRY_OUT if kind == "CCU2C" and port.startswith("S") else (0.0 if kind == "CCU2C"
                                                                                 else COMBINATIONAL[kind])
            arrival[b] = (best[0] + delay, best[1], best[2])
            stack.pop()
        return arrival[bit]

    endpoints = []
    for name, cell in cells.items():
        kind = cell["type"]
        if kind not in ("TRELLIS_FF", "DP16KD", "TRELLIS_DPR16X4"):
            continue
        for port, bit in inputs_of[name].items():
            if port.startswith(("CLK", "WCK")) or (kind == "TRELLIS_DPR16X4" and port.startswith("RAD")):
                continue
            if not isinstance(bit, int) or bit not in driver:
                continue
            t, _, levels = at(bit)
            endpoints.append((t + route(bit, name, port) + SETUP, levels, name, port, bit))
    endpoints.sort(reverse=True)

    def path(bit):
        chain = []
        while bit is not None:
            chain.append(names.get(bit, f"${bit}"))
            bit = arrival[bit][1] if bit in arrival else None   # a top-level input has none
        return chain[::-1]

    return endpoints, path


def routed(report):
    """Every endpoint's arrival after place and route, worst first, as ``(ns, cell, port, net)``, from
    nextpnr's report written with ``--detailed-timing-report``: its ``detailed_net_timings`` list the
    nets into timing endpoints (register and block-RAM inputs), each endpoint with its arrival (clock to
    out, logic and routing on the worst path into it; two corners, of which the slower counts). Only paths
    launched by the endpoint's own clock count, as for Fmax (not those from the top's inputs, ``<async>``).
    Where the path starts, the report does not say: the net into the endpoint names it."""
    endpoints = []
    for net in report.get("detailed_net_timings", []):
        for sink in net.get("endpoints", []):
            if sink.get("event") != net.get("event"):
                continue
            delay = sink["delay"]
            endpoints.append((max(delay) if isinstance(delay, list) else delay, sink["cell"].lstrip("\\"),
                              sink["port"], net["net"].lstrip("\\")))
    return sorted(endpoints, reverse=True)


def _nicer(a, b):
    """Prefer public names (no ``$``), then shorter ones."""
    return (a.startswith("$"), len(a)) < (b.startswith("$"), len(b))


def _group(label):
    """A register's group: its name without bit index, cell suffixes and numbers (copies, banks)."""
    label = re.sub(r"_(TRELLIS|DI|DO|LUT4|PFUMX|L6MUX21|CCU2C).*$|\[\d+\]", "", label)
    return re.sub(r"\.?\d+", "", label)


def _route_summary(chain):
    """The units a path crosses, in order: its nets' hierarchical prefixes, repeats merged."""
    units = []
    for net in chain:
        unit = ".".join(part for part in net.split(".")[:-1] if not part.isdigit()) or net.split("[")[0]
        unit = re.sub(r"_(TRELLIS|LUT4|PFUMX|L6MUX21|CCU2C|DI|DO).*$|\d+$", "", unit)
        if not units or units[-1] != unit:
            units.append(unit)
    return " > ".join(units)


def _synthesize(bundle, name):
    """Synthesize unit ``name`` of the accelerator built for ``bundle``; the netlist's path."""
    from component_timing import components

    from spikeforge import flow
    from spikeforge.flow.synth import _yosys
    from spikeforge.hw.netlist import runtime_verilog
    from spikeforge.interface.params import AcceleratorParams

    makers = components(AcceleratorParams(**flow.compile(bundle).params))
    if name not in makers:
        raise SystemExit(f"unknown component {name!r}; expected one of {', '.join(makers)}")
    top = "spikeforge_accelerator" if name == "accelerator" else name
    folder = Path(tempfile.mkdtemp(prefix=f"logic-depth-{name}-"))
    (folder / f"{top}.v").write_text(runtime_verilog(makers[name](), name=top))
    summary = {"seconds": {}, "warnings": []}
    if not _yosys(folder, f"{top}.v", top, "abc", summary, None):
        raise SystemExit(summary["failure"])
    print(f"netlist: {folder / 'netlist.json'}", file=sys.stderr)
    return folder / "netlist.json"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", default="runs/digits-tiny-8bit")
    parser.add_argument("--component", default="accelerator", help="unit of bench/component_timing.py")
    parser.add_argument("--netlist", type=Path, help="a synthesized netlist (synth_ecp5 -json) to read instead")
    parser.add_argument("--routed", type=Path, help="nextpnr's --report written with --detailed-timing-report: "
                        "every path after place and route instead of estimates (no synthesis)")
    parser.add_argument("--top", type=int, default=25, help="path groups to print")
    parser.add_argument("--period", type=float, default=10.0, help="clock period in ns (100 MHz)")
    parser.add_argument("--json", type=Path, help="write every failing group as JSON here")
    args = parser.parse_args()
    if args.routed:      # levels unknown (0); the path is the net into the endpoint
        endpoints = [(t, 0, cell, port, net) for t, cell, port, net in routed(json.loads(args.routed.read_text()))]

        def path(net):
            return [net]
    else:
        netlist = args.netlist or _synthesize(args.bundle, args.component)
        endpoints, path = analyse(json.loads(netlist.read_text()))
    failing = [e for e in endpoints if e[0] > args.period]
    groups = {}
    for t, levels, cell, port, bit in failing:
        chain = path(bit)
        key = (_group(chain[0]), _group(cell))
        if key not in groups:
            groups[key] = {"ns": round(t, 2), "levels": levels, "endpoints": 0, "start": chain[0],
                           "end": f"{cell}.{port}", "via": _route_summary(chain), "path": chain}
        groups[key]["endpoints"] += 1
    print(f"{len(endpoints)} endpoints; {len(failing)} over {args.period} ns "
          f"({'routed' if args.routed else 'estimated'} worst {endpoints[0][0]:.1f} ns, "
          f"{1000 / endpoints[0][0]:.1f} MHz)")
    print(f"{'ns':>6} {'levels':>6} {'ends':>5}  from -> to")
    for (start, end), g in sorted(groups.items(), key=lambda kv: -kv[1]["ns"])[:args.top]:
        print(f"{g['ns']:6.1f} {g['levels']:6d} {g['endpoints']:5d}  {start} -> {end}\n{'':21}via {g['via']}")
    if args.json:
        args.json.write_text(json.dumps(sorted(groups.values(), key=lambda g: -g["ns"]), indent=1))


if __name__ == "__main__":
    main()
