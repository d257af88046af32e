"""QONNX export: qonnx's own executor reproduces the fake-quantized model's logits bit for bit."""

import warnings

import numpy as np
import onnx
import pytest
import torch

from spikeforge.model.config import make_config
from spikeforge.model.data import parse_input
from spikeforge.model.encoding import encode_input, input_encoding
from spikeforge.quant.calibrate import random_network
from spikeforge.quant.export import quantize
from spikeforge.quant.qonnx_export import INPUT_NAME, OUTPUT_NAME, QONNX_DOMAIN, export_qonnx


def _pixels(spec, config):
    return encode_input(parse_input(spec, config).x, input_encoding(config.as_dict())).float()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``(qmodel, path of its QONNX file, config)`` for a seeded random digits-tiny whose every LIF
    fires (a silent network would give the same logits for any input and prove nothing)."""
    config = make_config("digits-tiny")
    calib = _pixels("random:16:0", config)
    model = random_network(config, 0, calib * 2.0 ** input_encoding(config.as_dict())["scale_exp"])
    qmodel = quantize(model, 8)
    path = tmp_path_factory.mktemp("qonnx") / "model.qonnx.onnx"
    # traced on random pixels; executed below on other pixels (digits), so nothing input-specific
    # may be baked into the graph
    assert export_qonnx(qmodel, path, _pixels("random:2:1", config)) == path
    return qmodel, path, config


def test_file_has_weight_quant_nodes(exported):
    qmodel, path, _ = exported
    model = onnx.load(path)
    quants = [n for n in model.graph.node if n.op_type == "Quant"]
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == len(qmodel.tokenizer) + 6 * len(qmodel.blocks)
    assert len(quants) == len(convs)
    assert all(n.domain == QONNX_DOMAIN for n in quants)
    weights = {n.input[1] for n in convs}
    assert {n.output[0] for n in quants} == weights
    initializers = {t.name: t for t in model.graph.initializer}
    for n in quants:
        bit_width = onnx.numpy_helper.to_array(initializers[n.input[3]])
        assert bit_width == qmodel.bits, (n.name, bit_width)
    assert [i.name for i in model.graph.input] == [INPUT_NAME]
    assert [o.name for o in model.graph.output] == [OUTPUT_NAME]
    # static: every tensor's shape is stored, and nothing is left to fold but the weight Quants
    shaped = {v.name for v in list(model.graph.value_info) + list(model.graph.output)
              if all(d.HasField("dim_value") for d in v.type.tensor_type.shape.dim)}
    assert {o for n in model.graph.node for o in n.output} <= shaped
    constant = {t.name for t in model.graph.initializer}
    assert all(n.domain == QONNX_DOMAIN for n in model.graph.node if set(n.input) <= constant)
    assert not list(path.parent.glob(".*.tmp")), "temporary file left behind"


def test_qonnx_executor_reproduces_logits_exactly(exported):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    qmodel, path, config = exported
    pixels = _pixels("digits:2", config)           # two different digits, integer-valued float32
    with torch.no_grad():
        expected = qmodel(pixels).numpy()
    assert not np.array_equal(expected[0], expected[1]), "logits do not depend on the input"
    # the file is static and fully shaped, so qonnx needs no cleanup; its executor checks each
    # node's output against the stored shape and warns on a mismatch
    model = ModelWrapper(str(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = execute_onnx(model, {INPUT_NAME: pixels.numpy()})[OUTPUT_NAME]
    assert not [str(w.message) for w in caught if "shapes disagree" in str(w.message)]
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.array_equal(got, expected), np.abs(got - expected).max()
