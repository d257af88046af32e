"""QONNX export of the fake-quantized Spikingformer, for QONNX/FINN tools.

``export_qonnx(qmodel, path, example_pixels)`` writes ``qmodel`` (a
:class:`~spikeforge.quant.fakequant.QuantSpikingformer`) as a QONNX model through brevitas: every
convolution's weight quantizer becomes a QONNX ``Quant`` node (power-of-two per-channel scale, zero
point 0, ``bits`` bits, signed, narrow range) in front of a standard ``Conv``; the LIF recurrences
appear unrolled over T as plain ONNX arithmetic (``Floor``, ``GreaterOrEqual``, ...). The graph input
is ``pixels`` (integer-valued float32, the shape of ``example_pixels``, batch size included: QONNX
tools work on static shapes) and the output ``logits`` (integer-valued float32, ``[B, classes]``),
exactly what ``qmodel(pixels)`` returns.

After brevitas, the graph is made static (:func:`fold_static`): every node that depends on no
pixel value (the bias roundings, thresholds, ``Shape``/``Slice``/``Concat`` chains that the tracer
writes for ``reshape``/``flatten``/``repeat``) is evaluated once and replaced by an initializer, the
``Quant`` nodes excepted, and the shapes of all tensors are stored. Without this, ONNX shape
inference cannot see through ``repeat``'s ``ConstantOfShape``/``Expand``, so QONNX tools meet tensors
of unknown shape, and qonnx's ``cleanup`` (which folds one node per shape-inference pass) runs for
over ten minutes on digits-tiny's ~800 nodes (about 20 s on the folded graph).

The export uses brevitas' TorchScript path (``dynamo=False``). The dynamo path (torch.export)
fails on this model: there ``self.conv.quant_weight()`` in ``QuantConv.scale`` yields a plain
tensor, which has no ``.scale``.
"""

import os
import uuid
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, shape_inference
from onnx.reference import ReferenceEvaluator

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "QONNX_DOMAIN", "export_qonnx", "fold_static"]

INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"
#: ONNX domain of the QONNX ``Quant``/``BipolarQuant``/``Trunc`` nodes brevitas writes.
QONNX_DOMAIN = "qonnx.custom_op.general"


def export_qonnx(qmodel, path, example_pixels):
    """Write the QONNX model of ``qmodel`` (eval mode) to ``path`` atomically; returns ``path``.

    ``example_pixels`` (integer-valued, float dtype) fixes the graph's input shape. The model is
    left as it was (mode and parameters).
    """
    from brevitas.export import export_qonnx as brevitas_export_qonnx

    path = Path(path)
    example = torch.as_tensor(example_pixels).float()
    was_training = qmodel.training
    qmodel.eval()
    # a fresh name beside the target (not mkstemp: its 0600 mode would stick to the file)
    tmp = str(path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # tracing warns about python floats taken from tensors (the head's power-of-two scale,
            # constant once the weights are fixed) and about the unrolled loop over T
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            brevitas_export_qonnx(qmodel, args=example, export_path=tmp, dynamo=False,
                                  input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
        onnx.save(fold_static(onnx.load(tmp)), tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        qmodel.train(was_training)
    return path


def _known_shape(value_info):
    """The static shape of a ``ValueInfoProto``, or ``None`` if any dimension is unknown."""
    t = value_info.type.tensor_type
    if not t.HasField("shape") or not all(d.HasField("dim_value") for d in t.shape.dim):
        return None
    return [d.dim_value for d in t.shape.dim]


def _infer(model):
    """``model`` with ``value_info`` for every tensor whose shape is known. ONNX shape inference
    knows no QONNX op, so each QONNX node's output is given its first input's shape (``Quant``,
    ``BipolarQuant`` and ``Trunc`` are elementwise in that input)."""
    del model.graph.value_info[:]
    known = {t.name: (t.data_type, list(t.dims)) for t in model.graph.initializer}
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    for _ in range(len(model.graph.node)):
        known.update({v.name: (v.type.tensor_type.elem_type, _known_shape(v))
                      for v in list(inferred.graph.value_info) + list(inferred.graph.input)
                      if _known_shape(v) is not None})
        added = False
        for node in model.graph.node:
            if node.domain == QONNX_DOMAIN and node.input[0] in known and node.output[0] not in known:
                model.graph.value_info.append(helper.make_tensor_value_info(
                    node.output[0], *known[node.input[0]]))
                known[node.output[0]] = known[node.input[0]]
                added = True
        if not added:
            return inferred
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    return inferred


def fold_static(model):
    """``model`` with every standard-domain node that depends on no graph-input value (all its
    inputs constant, or a ``Shape`` of a tensor of known shape) evaluated and replaced by an
    initializer; QONNX nodes stay. Initializers are dropped from the graph inputs, unused ones
    removed, and the inferred shapes of all tensors stored in ``value_info``."""
    opsets = {o.domain: o.version for o in model.opset_import if o.domain in ("", "ai.onnx")}
    graph = model.graph
    constant_names = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in constant_names]
    del graph.input[:]
    graph.input.extend(inputs)
    while True:
        model = _infer(model)
        graph = model.graph
        shapes = {v.name: v for v in list(graph.value_info) + list(graph.input)}
        values = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        keep, folded = [], False
        for node in graph.node:
            standard = node.domain in ("", "ai.onnx")
            if standard and all(not i or i in values for i in node.input):
                feeds = {i: values[i] for i in node.input if i}
            elif (standard and node.op_type == "Shape" and node.input[0] in shapes
                  and _known_shape(shapes[node.input[0]]) is not None):
                v = shapes[node.input[0]]
                feeds = {node.input[0]: np.zeros(_known_shape(v), helper.tensor_dtype_to_np_dtype(
                    v.type.tensor_type.elem_type))}
            else:
                keep.append(node)
                continue
            outputs = ReferenceEvaluator(node, opsets=opsets).run(None, feeds)
            for name, value in zip(node.output, outputs):
                value = np.asarray(value)
                values[name] = value
                graph.initializer.append(onnx.numpy_helper.from_array(value, name))
            folded = True
        del graph.node[:]
        graph.node.extend(keep)
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        unused = [t for t in graph.initializer if t.name not in used]
        for t in unused:
            graph.initializer.remove(t)
        if not folded:
            return model
