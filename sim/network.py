"""Run a compiled bundle on the whole accelerator in either simulator and check it against the golden model."""

import contextlib
import json
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from spikeforge.firmware.driver import Driver, PortsBus, overflow_names
from spikeforge.firmware.image import EXTERNAL, ProgramImage, external_image, load_image, write_image

from . import check_backend
from .memory_model import PRELOAD_PLUSARG
from .system import memory_words, system

__all__ = ["run_network", "first_difference", "network_testbench", "run_on_bus", "check_reads",
           "check_breakpoints", "OVERFLOW_SEPARATOR"]
#: Environment variable naming the job file of a Verilator run.
JOB_ENV = "SPIKEFORGE_NETWORK_JOB"
#: Joins an image's overflowing layer names in ``results["overflow"]``.
OVERFLOW_SEPARATOR = ", "


def check_reads(layout):
    """What a checking run of an image with ``layout`` reads, by the descriptor before which it stops
    (None: after the run): ``("stream", block)`` at each block's breakpoint, and ``("spikes", tensor)``
    for each LIF's spikes at theirs, before a later tensor overwrites their groups (None: never)."""
    reads = {}
    for block, pc in layout["breakpoints"].items():
        reads.setdefault(pc, []).append(("stream", block))
    for name, place in layout["spikes"].items():
        reads.setdefault(place["breakpoint"], []).append(("spikes", name))
    return reads


def check_breakpoints(layout):
    """The descriptors before which a checking run stops, in order (:func:`check_reads`)."""
    return sorted(pc for pc in check_reads(layout) if pc is not None)


async def network_testbench(ports, image, inputs, check, progress=None):
    """Load ``image``, run every input; with ``check`` also read every LIF layer and the stream after
    every block (the run stops at :func:`check_breakpoints`). Returns a dict of numpy arrays."""
    return await run_on_bus(PortsBus(ports), image, inputs, check, progress)


async def run_on_bus(bus, image, inputs, check, progress=None):
    """:func:`network_testbench` through any driver bus (:class:`~spikeforge.firmware.driver.PortsBus`
    or another Wishbone master)."""
    driver = Driver(bus)
    await driver.load(image)
    layout = image.layout
    reads, stops = (check_reads(layout), check_breakpoints(layout)) if check else ({}, [])
    results = {"logits": [], "cycles": [], "stall_cycles": [], "op_cycles": [], "overflow": [], "overflow_log": []}
    for name in layout["spikes"] if check else ():
        results[f"spikes/{layout['spikes'][name]['lif']}"] = []
    for block in layout["breakpoints"] if check else ():
        results[f"stream/{block}"] = []

    async def read(pc):
        for kind, name in reads.get(pc, ()):
            if kind == "stream":
                results[f"stream/{name}"].append(await driver.read_stream())
            else:
                results[f"spikes/{layout['spikes'][name]['lif']}"].append(await driver.read_layer(name))

    for x in inputs:
        await driver.clear_overflow()    # sticky across the image's runs (breakpoints) until cleared
        await driver.write_input(x)
        cycles, stalls, start = 0, 0, 0
        for pc in stops:
            cycles += await driver.run(start_pc=start, stop_pc=pc)
            stalls += await driver.csr("STALL_CYCLES")
            start = pc
            await read(pc)
        cycles += await driver.run(start_pc=start)
        stalls += await driver.csr("STALL_CYCLES")
        results["cycles"].append(cycles)
        results["stall_cycles"].append(stalls)
        results["logits"].append(await driver.read_logits())
        results["op_cycles"].append(await driver.read_op_cycles())
        log = await driver.read_overflow_log()
        results["overflow_log"].append(log)
        results["overflow"].append(OVERFLOW_SEPARATOR.join(overflow_names(image, log)))
        await read(None)
        if progress is not None:
            progress(len(results["cycles"]))
    return {key: np.asarray(value) for key, value in results.items()}


async def testbench_from_env(ports):
    """Verilator side: the job file names the image, the inputs and where the results go."""
    job = json.loads(Path(os.environ[JOB_ENV]).read_text())

    def progress(done):
        Path(job["progress"]).write_text(str(done))

    results = await network_testbench(ports, load_image(job["image"]), np.load(job["inputs"]), job["check"],
                                      progress)
    np.savez(job["results"], **results)
    return len(results["cycles"])


def run_network(image, inputs, backend="verilator", check=False, build_root="build/verilator", progress=None):
    """Run integer ``inputs`` (``[B, C, H, W]`` pixels or ``[B, T, C, H, W]`` events) on the accelerator.

    Parameters
    ----------
    image : ProgramImage or path
        From :func:`spikeforge.firmware.compiler.compile_bundle` (or its written directory).
    backend : {"verilator", "amaranth"}
    check : bool
        Also read every LIF's spikes and the stream after every block (for :func:`first_difference`).
    progress : callable, optional
        Called with the number of inputs done so far (from Verilator's process through a file).

    Returns
    -------
    dict
        ``logits`` [B, classes], ``cycles`` [B], ``op_cycles`` [B, descriptors], ``overflow_log``
        [B, descriptors] (``OVERFLOW_LOG`` words), ``overflow`` [B] (the layers with a value wider
        than declared, in program order, joined by :data:`OVERFLOW_SEPARATOR`; "" for none), and with
        ``check`` ``spikes/<LIF>`` [B, T, C, H, W] and ``stream/<block>``.
    """
    check_backend(backend)
    inputs = np.asarray(inputs, dtype=np.int64)
    if backend == "amaranth":
        from .amaranth_runner import run_amaranth

        image = image if isinstance(image, ProgramImage) else load_image(image)
        dut = system(memory_words=memory_words(image), init=external_image(image), **image.params)
        return run_amaranth(dut, lambda ports: network_testbench(ports, image, inputs, check, progress))
    from .verilator_runner import run_verilator

    build_root = Path(build_root).resolve()
    build_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=build_root) as tmp:
        tmp = Path(tmp)
        if isinstance(image, ProgramImage):
            write_image(image, tmp / "image")
            image_path = tmp / "image"
        else:
            image_path = Path(image).resolve()
        loaded = load_image(image_path)
        params = dict(loaded.params, memory_words=memory_words(loaded))
        np.save(tmp / "inputs.npy", inputs)
        job = {"image": str(image_path), "inputs": str(tmp / "inputs.npy"), "check": bool(check),
               "results": str(tmp / "results.npz"), "progress": str(tmp / "progress")}
        (tmp / "job.json").write_text(json.dumps(job))
        with _watch(Path(job["progress"]), progress):
            run_verilator(system, params, "spikeforge.sim.network", "testbench_from_env", build_root,
                          extra_env={JOB_ENV: str(tmp / "job.json")},
                          plusargs=[f"+{PRELOAD_PLUSARG}={image_path / (EXTERNAL + '.hex')}"])
        with np.load(tmp / "results.npz") as data:
            return {key: data[key] for key in data.files}


@contextlib.contextmanager
def _watch(path, progress):
    """Report the count the simulator process writes to ``path`` while the block runs."""
    if progress is None:
        yield
        return
    stop = threading.Event()

    def poll():
        while not stop.wait(0.5):
            try:
                progress(int(path.read_text()))
            except (OSError, ValueError):
                pass   # not written yet, or caught mid-write

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def first_difference(results, trace):
    """The first place where the hardware differs from the golden ``trace``, as text, or None.

    Compared with ``==``: every LIF's spikes at every timestep, the stream after every block,
    the logits, and per image the layers that overflowed (``trace.overflow_per_image``, program order).
    """
    def where(hw, golden, what, axes):
        hw, golden = np.asarray(hw), np.asarray(golden)
        if hw.shape != golden.shape:
            return f"{what}: hardware shape {list(hw.shape)}, golden {list(golden.shape)}"
        diff = np.argwhere(hw != golden)
        if len(diff) == 0:
            return None
        index = tuple(int(i) for i in diff[0])
        place = ", ".join(f"{n} {i}" for n, i in zip(axes, index))
        return f"{what}: {place}: hardware {hw[index]}, golden {golden[index]}"

    tensor_axes, logit_axes = ("image", "timestep", "channel", "y", "x"), ("image", "class")
    compared = ([(f"spikes/{name}", spikes, f"LIF {name}", tensor_axes) for name, spikes in trace.spikes.items()]
                + [(f"stream/{block}", stream, f"stream after {block}", tensor_axes)
                   for block, stream in trace.stream.items()]
                + [("logits", trace.logits, "logits", logit_axes)])
    for key, golden, what, axes in compared:
        found = key in results and where(results[key], golden, what, axes)
        if found:
            return found
    hw_overflow, golden_overflow = list(results["overflow"]), trace.overflow_per_image
    if len(hw_overflow) != len(golden_overflow):
        return f"overflow: hardware {len(hw_overflow)} images, golden {len(golden_overflow)}"
    for i, (hw, golden) in enumerate(zip(hw_overflow, golden_overflow)):
        golden = OVERFLOW_SEPARATOR.join(golden)
        if str(hw) != golden:
            return f"overflow: image {i}: hardware {hw or 'none'}, golden {golden or 'none'}"
    return None
