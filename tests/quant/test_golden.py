"""The golden model: integer-only, independent of the float model, equal to the fake-quant model."""

import subprocess
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from spikeforge.model import make_config
from spikeforge.model.neuron import MultiStepLIFNode
from spikeforge.quant import GoldenModel, load_bundle
from spikeforge.model.encoding import input_encoding
from spikeforge.quant.calibrate import ACTIVITY_RANGE, random_network
from spikeforge.quant.export import export_bundle, quantize
from spikeforge.quant.fakequant import QuantLIF
from spikeforge.ops.lif import lif_integer

SMALL_NETWORKS = [
    ("digits-tiny", dict(depth=2, dim=32, heads=2)),
    ("cifar10-4-384", dict(depth=1, dim=32, heads=4, img_size=16, T=2)),
    ("imagenet-8-384", dict(depth=2, dim=16, heads=1, img_size=32, T=3)),
    ("dvs128-2-256", dict(depth=1, dim=32, heads=2, img_size=32, T=3)),
]


def _random_bundle(tmp_path, name, overrides, seed=0, bits=8):
    config = make_config(name, **overrides)

    encoding = input_encoding(config.as_dict())
    g = torch.Generator().manual_seed(seed)
    shape = encoding["shape"]
    pixels = torch.randint(0, encoding["max"] + 1, (12, *shape), generator=g)
    model = random_network(config, seed, pixels.float() * 2.0 ** encoding["scale_exp"])
    qmodel = quantize(model, bits)
    export_bundle(tmp_path / name, qmodel, {"arch": "spikingformer", "preset": name}, {"method": "ptq"})
    return load_bundle(tmp_path / name), qmodel, pixels


@pytest.mark.parametrize("name,overrides", SMALL_NETWORKS, ids=[n for n, _ in SMALL_NETWORKS])
def test_random_networks_fire_and_golden_equals_fake_quant(tmp_path, name, overrides):
    bundle, qmodel, pixels = _random_bundle(tmp_path, name, overrides)
    trace = GoldenModel(bundle).run(pixels)
    record = {}
    with torch.no_grad():
        qmodel(pixels.float(), record)
    lo, hi = ACTIVITY_RANGE
    for lif, spikes in trace.spikes.items():
        assert lo <= spikes.double().mean() <= hi, (lif, spikes.double().mean().item())
        assert torch.equal(record[lif].transpose(0, 1).long(), spikes), lif
    for block, stream in trace.stream.items():
        assert torch.equal(record[block].transpose(0, 1).round().long(), stream)
    assert torch.equal(record["logits"].round().long(), trace.logits)
    assert trace.overflow == []


class _DtypeRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.float_ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.float_ops.append(str(func))
        return out


def test_golden_model_holds_no_floating_point_tensor(tmp_path):
    bundle, _, pixels = _random_bundle(tmp_path, "digits-tiny", dict(depth=1, dim=32, heads=2))
    with _DtypeRecorder() as recorder:
        trace = GoldenModel(load_bundle(bundle.path)).run(pixels, record_membranes=True)
    assert recorder.float_ops == []
    tensors = [*trace.spikes.values(), *trace.stream.values(), *trace.membranes.values(), trace.logits]
    assert all(t.dtype == torch.int64 for t in tensors)
    with pytest.raises(ValueError, match="int64 pixels"):
        GoldenModel(bundle).run(pixels.float())


def test_golden_path_never_imports_the_float_model_or_brevitas(tmp_path):
    bundle, _, pixels = _random_bundle(tmp_path, "digits-tiny", dict(depth=1, dim=32, heads=2))
    torch.save(pixels, tmp_path / "pixels.pt")
    script = f"""
import sys, torch
from spikeforge.quant import GoldenModel, load_bundle
trace = GoldenModel(load_bundle({str(bundle.path)!r})).run(torch.load({str(tmp_path / 'pixels.pt')!r}))
loaded = [m for m in sys.modules if m.startswith(("spikeforge.model", "brevitas", "spikeforge.quant.fakequant"))]
assert loaded == [], loaded
print(trace.predictions.tolist())
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("tau", [2.0, 1.5])
def test_integer_lif_matches_quant_lif_and_float_lif(tau):
    g = torch.Generator().manual_seed(1)
    T, F = 4, 4
    x = torch.randint(-20, 40, (3, T, 8), generator=g)            # [B, T, C] integers, units 1/16
    scale = torch.full((8,), 1 / 16)
    quant = QuantLIF("lif", 1.0, tau, F).eval()
    theta = quant.threshold(scale).long()
    spikes, _ = lif_integer(x.numpy(), theta.numpy(), F, quant.decay_mult, quant.decay_shift)
    spikes = torch.from_numpy(spikes)
    fake = quant(x.transpose(0, 1).float() * 1 / 16, scale)
    assert torch.equal(fake.transpose(0, 1).long(), spikes)
    if tau == 2.0:  # the fixed-point decay of τ = 2 is exact: equal to the float LIF itself
        float_spikes = MultiStepLIFNode(tau=2.0)(x.transpose(0, 1).float() / 16)
        assert torch.equal(float_spikes.transpose(0, 1).long(), spikes)
    assert 0 < spikes.double().mean() < 1


def test_export_is_deterministic(tmp_path):
    from spikeforge.tests.helpers import run_cli

    outs = []
    for i in range(2):
        out = tmp_path / f"b{i}"
        result = run_cli("export", "--model", "digits-tiny", "--set", "dim=32", "--set", "heads=2",
                         "--seed", "5", "--out", out)
        assert result.code == 0, result.stderr
        outs.append({p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()})
    assert outs[0] == outs[1]
    assert any(str(name).endswith(".onnx") for name in outs[0])


def _needed_bits(values):
    """Per image (axis 0): the fewest bits of two's complement holding every value."""
    values = values.reshape(len(values), -1)
    return [max(int(v.max()).bit_length(), int(-v.min() - 1).bit_length()) + 1 for v in values]


def test_overflow_is_listed_per_image_in_program_order(tmp_path):
    """Layers declared narrower than their values (past the bundle checker, on a copy) are listed per
    image where they overflow, in program order; the head's logits take the sums as held in sum_bits."""
    import dataclasses

    import numpy as np

    from spikeforge.ops.base import wrap

    bundle, _, pixels = _random_bundle(tmp_path, "digits-tiny", dict(depth=1, dim=16, heads=1))
    trace = GoldenModel(bundle).run(pixels, record_membranes=True)
    assert trace.overflow == [] and trace.overflow_per_image == [[]] * len(pixels)
    layers = {layer.name: layer for layer in bundle.program}
    block, stream = next(iter(trace.stream.items()))
    tensor = bundle.manifest["outputs"]["stream"][block]
    conv = next(layer for layer in bundle.program if layer.kind == "conv" and layer.output == tensor)
    head = bundle.program[-1]
    needs = {name: _needed_bits(membranes.numpy()) for name, membranes in trace.membranes.items()}
    lif = next(name for name, need in needs.items() if len(set(need)) > 1)    # varies over the images
    needs = {lif: needs[lif], conv.name: _needed_bits(stream.numpy()),
             head.name: _needed_bits(trace.stream[list(trace.stream)[-1]].numpy().sum((1, 3, 4)))}
    fields = {lif: "membrane_bits", conv.name: "acc_bits", head.name: "sum_bits"}
    # the fewest bits any image needs: the others overflow (all of them where every image needs as many)
    widths = {name: min(need) - (len(set(need)) == 1) for name, need in needs.items()}
    narrowed = dataclasses.replace(bundle, program=tuple(
        layer.model_copy(update={fields[layer.name]: widths[layer.name]}) if layer.name in widths else layer
        for layer in bundle.program))
    result = GoldenModel(narrowed).run(pixels)
    order = [name for name in layers if name in widths]
    expected = [[name for name in order if needs[name][i] > widths[name]] for i in range(len(pixels))]
    assert result.overflow_per_image == expected
    assert result.overflow == order
    assert 0 < sum(lif in names for names in expected) < len(pixels)     # some images only
    sums = trace.stream[list(trace.stream)[-1]].numpy().sum((1, 3, 4))
    held = wrap(sums, widths[head.name])
    assert not np.array_equal(held, sums)
    assert np.array_equal(result.logits.numpy(), held @ bundle.tables[head.weight].T + bundle.tables[head.bias])
