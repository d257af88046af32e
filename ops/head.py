"""``head``: the classifier — per-channel sums of the final stream over tokens and timesteps, then a
linear layer on the sums (mean over tokens and T folds into its scale), computed bit-serially."""

from typing import Literal

import numpy as np

from spikeforge.interface.bits import ceil_div
from spikeforge.interface.descriptor import OPCODES
from spikeforge.interface.external import ROW_READ_LATENCY

from pydantic import Field

from .base import LayerFields, Name, RuleError, Width, require_buildable, require_width, wrap
from .conv import STREAM_READ_LATENCY

__all__ = ["KIND", "OPCODE", "Fields", "check", "golden", "emit", "cycles"]

KIND = "head"
OPCODE = "HEAD"


class Fields(LayerFields):
    """Manifest fields of the ``head`` layer."""

    kind: Literal["head"]
    input: Name = Field(description='final stream tensor')
    output: Name = Field(description='logits tensor')
    weight: Name = Field(description='table [classes, channels]')
    bias: Name = Field(description='table [classes]')
    sum_bits: Width = Field(description='width of the stream sums (the logits use them as held in it)')
    logit_bits: Width = Field(description='width of the logits')
    scale_exp: int = Field(description='one logit unit is 2**scale_exp')


def check(layer, net):
    source = net.read(layer, "input", ("integer",))
    if not source.stream:
        raise RuleError("input", f"tensor {layer.input!r} is not the residual stream")
    T, C, H, W = source.shape
    classes = net.config["num_classes"]
    weight = net.table(layer, "weight", [classes, C], bits=net.quant["weight_bits"])
    bias = net.table(layer, "bias", [classes], bits=layer.logit_bits)
    sums = source.bound.astype(object) * (T * H * W)
    require_width("sum_bits", layer.sum_bits, sums)
    require_width("logit_bits", layer.logit_bits, (np.abs(weight).astype(object) * sums).sum(1) + np.abs(bias))
    net.tensors[layer.output] = None   # the logits end the program; nothing may read them


def golden(layer, run):
    sums = run.values[layer.input].sum((1, 3, 4))
    run.check_width(layer.name, sums, layer.sum_bits)
    # the logits take the sums as held in sum_bits (the accelerator's bit-serial steps read those bits)
    logits = wrap(sums, layer.sum_bits) @ run.tables[layer.weight].T + run.tables[layer.bias]
    run.check_width(layer.name, logits, layer.logit_bits)
    run.logits = logits


def emit(layer, program):
    """One HEAD descriptor: one weight row per channel (lane k holds class k's weight); the bias in two rows
    (its low bits, then the bits above: :func:`~spikeforge.interface.layout.high_lanes`), since the logits
    may be wider than the bias rows' ``acc_bits``."""
    if layer.input != program.stream:
        raise program.error(layer, f"input {layer.input!r} is not the stream in memory")
    weight, bias = program.tables[layer.weight], program.tables[layer.bias]
    classes, C = weight.shape
    if classes > program.n_pe:
        raise program.error(layer, f"{classes} classes need n_pe >= {classes}, not {program.n_pe}")
    weight_base = len(program.weights)
    for c in range(C):
        program.weights.append(program.pad(weight[:, c].tolist()))
    bias_base = len(program.biases)
    program.biases += program.wide_row(bias.tolist())
    _, H, W = program.stream_shape
    tiles = ceil_div(C, program.n_pe)
    fields = dict(op=OPCODES[OPCODE], cin=C, tiles=tiles, T=program.T, H=H, W=W, weight_base=weight_base,
                  bias_base=bias_base, sum_bits=layer.sum_bits, check_bits=layer.logit_bits)
    # the sums and the logits are held in the build's logit_bits; Horner doubles a partial sum before the
    # last bit's columns are added: one spare bit
    logit_bits = max(layer.sum_bits, layer.logit_bits + 1)
    require_buildable(program, layer, fields, logit_bits=logit_bits)
    program.emit(layer.name, fields)
    program.need(layer, max_cin=C, max_tiles=tiles, logit_bits=logit_bits, classes=classes)


#: Cycles of the head's HORNER_FLUSH (``hw/head.py``), after the HORNER_SHIFT that follows the last weight
#: row's request: the rest of that row's latency (:data:`~spikeforge.interface.external.ROW_READ_LATENCY`
#: − 1), in the last of which the sums word arrives with the row and both are registered (every lane's bit
#: of the step, in parts); the channel's bit and the signed row; the term; the logits add it.
HORNER_STAGES = ROW_READ_LATENCY + 2


def cycles(fields, spikes):
    """Engine cycles (from leaving IDLE to DONE) of a HEAD descriptor: SUM ``tiles·T·H·W`` (one stream
    word per cycle), SUM_FLUSH ``STREAM_READ_LATENCY + 1`` (the last word read, registered, then
    added; :data:`~spikeforge.ops.conv.STREAM_READ_LATENCY`), then per bit of the sums
    (``sum_bits``, Horner from the sign bit down) ``cin`` HORNER cycles (one weight row each) and one
    HORNER_SHIFT, HORNER_FLUSH :data:`HORNER_STAGES` (the last term read, picked, added), HEAD_BIAS 1
    and HEAD_CHECK 1; independent of the spikes."""
    return (fields["tiles"] * fields["T"] * fields["H"] * fields["W"] + STREAM_READ_LATENCY + 1
            + fields["sum_bits"] * (fields["cin"] + 1) + HORNER_STAGES + 2)
