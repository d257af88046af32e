"""Benchmark: integer golden model vs float model, images per second on the 360 digits test images.

Both run in this process, side by side, on the same images; the ratio is what matters (the golden
model uses int64 tensor ops, which PyTorch runs without BLAS). Trains digits-tiny first unless a
checkpoint is given.

    .venv/bin/python bench/golden_speed.py [CHECKPOINT]
"""

import sys
import tempfile
import time
from pathlib import Path

import torch

from spikeforge.model.data import digits_split
from spikeforge.model.train import load_checkpoint, predict, save_checkpoint, train
from spikeforge.model import make_config
from spikeforge.model.encoding import encode_input
from spikeforge.quant import GoldenModel, load_bundle
from spikeforge.quant.export import export_bundle, quantize


def best_of(repeats, fn):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        if len(sys.argv) > 1:
            model, _ = load_checkpoint(sys.argv[1])
        else:
            config = make_config("digits-tiny")
            model, _ = train(config, digits_split("train"), progress=False)
            save_checkpoint(Path(tmp) / "m.pt", model, "spikingformer")
        export_bundle(Path(tmp) / "bundle", quantize(model, 8), {"arch": "spikingformer"}, {"method": "ptq"})
        golden = GoldenModel(load_bundle(Path(tmp) / "bundle"))
        test = digits_split("test")
        pixels = encode_input(test.x, golden.input)
        n = len(test)
        with torch.no_grad():
            float_s = best_of(3, lambda: predict(model, test.x))
        golden_s = best_of(3, lambda: golden.run(pixels))
    print(f"images: {n} digits test images, torch threads: {torch.get_num_threads()}")
    print(f"float model : {n / float_s:9.1f} images/s")
    print(f"golden model: {n / golden_s:9.1f} images/s")
    print(f"ratio golden/float: {float_s / golden_s:.3f}")


if __name__ == "__main__":
    main()
