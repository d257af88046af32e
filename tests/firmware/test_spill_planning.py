"""The compiler's spill planning on a chain of spike tensors that outlive the spike memory: nothing spills
where the groups suffice; where they do not, the tensor used furthest ahead is STOREd and LOADed back before
the next descriptor that reads it, SPILL rows are reused once a spilled tensor is dead, and replaying the
descriptors' reads and writes group by group (not the allocator's bookkeeping) finds every operand where
its descriptor reads it."""

from types import SimpleNamespace

import pytest

from spikeforge.firmware.compiler import CompileError, Program, TileGroup, allocate_groups
from spikeforge.interface.descriptor import OPCODES
from spikeforge.ops import spill

N_PE, TILE = 4, 4
#: (layer, tensors read, tensor written): each tensor is 16 channels (4 groups of 4 lanes) on a 4 × 4 map.
CHAIN = [("l0", [], "a"), ("l1", ["a"], "b"), ("l2", ["b"], "c"), ("l3", ["c"], "d"), ("l4", ["a", "d"], "e"),
         ("l5", ["b", "e"], "f"), ("l6", ["f"], "g"), ("l7", ["g"], "h"), ("l8", ["h"], "i"), ("l9", ["f", "i"], "j"),
         ("l10", ["g", "j"], "k")]
READS = ("in_base", "k_base", "v_base")


def _program():
    """The chain emitted into a :class:`Program`, as the operations emit theirs."""
    bundle = SimpleNamespace(tables={}, config={"T": 2}, program=[],
                             manifest={"input": {"events": False}, "quant": {"weight_bits": 8},
                                       "outputs": {"stream": {}}})
    prog = Program(bundle, N_PE, TILE, TILE)
    for layer, reads, written in CHAIN:
        tensors = [prog.spikes[name] for name in reads]
        out = prog.place(SimpleNamespace(name=layer), written, 4 * N_PE, 2, TILE, TILE, lif=True)
        prog.emit(layer, dict(op=OPCODES["CONV"], out_base=out, **dict(zip(READS, tensors))))
    prog.emit("end", dict(op=OPCODES["END"]))
    return prog


def _replay(prog, capacity):
    """Which tensor each group holds, descriptor by descriptor: every read (a layer's or a STORE's) must find
    its tensor in all its groups, within ``capacity``. Returns the STOREs and LOADs as ``(descriptor, op,
    tensor, first SPILL row)`` and, per tensor, the descriptors that read it."""
    holder, moves, reads = {}, [], {}

    def groups(value):
        first = value.group
        tensor = value.tensor if isinstance(value, TileGroup) else value
        assert first + tensor.groups <= capacity
        return range(first, first + tensor.groups), tensor.writer

    for pc, fields in enumerate(prog.descriptors):
        if fields["op"] in spill.OPCODES_MOVED.values():
            op = "STORE" if fields["op"] == OPCODES["STORE"] else "LOAD"
            span, name = groups(fields["in_base" if op == "STORE" else "out_base"])
            moves.append((pc, op, name, fields["weight_base"]))
            if op == "LOAD":
                holder.update({group: name for group in span})
                continue
        for key in READS:
            if key in fields:
                span, name = groups(fields[key])
                assert all(holder.get(group) == name for group in span), f"descriptor {pc} reads {name} elsewhere"
                reads.setdefault(name, []).append(pc)
        if "out_base" in fields and fields["op"] == OPCODES["CONV"]:
            span, name = groups(fields["out_base"])
            holder.update({group: name for group in span})
    return moves, reads


def test_nothing_spills_where_the_groups_suffice():
    prog = _program()
    groups, loads = allocate_groups(prog, capacity=16)
    assert (groups, loads) == (16, [])
    assert [name for name in prog.names] == [layer for layer, _, _ in CHAIN] + ["end"]
    _replay(prog, 16)


def test_the_tensor_used_furthest_ahead_spills_and_is_loaded_before_it_is_read():
    prog = _program()
    groups, loads = allocate_groups(prog, capacity=12)
    assert groups <= 12
    moves, reads = _replay(prog, 12)
    # before l3 writes d, a (read by l4) and b (read by l5) are live besides l3's own c: b, the one used
    # furthest ahead, is stored, and loaded back before l5. Before l8 writes i, f (read by l9) and g (read
    # by l10) wait besides h: g is stored, into the rows b held (b is dead after l5)
    at = {name: prog.names.index(name) for name, _, _ in CHAIN}
    assert [(op, writer, row) for _, op, writer, row in moves] == [("STORE", "l1", 0), ("LOAD", "l1", 0),
                                                                   ("STORE", "l6", 0), ("LOAD", "l6", 0)]
    (store_b, *_), (load_b, *_), (store_g, *_), (load_g, *_) = moves
    assert at["l2"] < store_b < at["l3"] and at["l4"] < load_b < at["l5"]
    assert at["l7"] < store_g < at["l8"] and at["l9"] < load_g < at["l10"]
    assert [name for name, _ in loads] == ["b", "g"] and [copy.producer for _, copy in loads] == [load_b, load_g]
    assert {name: (kept.first_row, kept.rows) for name, kept in prog.spills.items()} == {
        "b": (0, spill.rows(prog.spikes["b"])), "g": (0, 4 * 2 * TILE)}
    # the spilled tensors are read by their LOADed copies, and no descriptor reads a tensor evicted for it
    assert reads["l1"] == [at["l2"], store_b, at["l5"]] and reads["l6"] == [at["l7"], store_g, at["l10"]]


def test_a_descriptor_whose_own_operands_do_not_fit_is_refused_naming_its_layer():
    prog = _program()
    with pytest.raises(CompileError, match=r"^--set spike_groups=8: layer 'l4' reads and writes 12 groups at once, "
                                           r"which do not fit; build with spike_groups=16 or more$"):
        allocate_groups(prog, capacity=8)
