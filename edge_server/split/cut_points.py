"""Find where any one-input, one-output ONNX model can be cut, pick the cuts, and cut it.

A cut point is a tensor t such that, when the graph is cut just after t is produced,
exactly one tensor crosses the cut: t. Everything later needs only t (and constants),
so t is on every path from input to output and the two sides can run on two tiers.
Chains have a cut point after every node; residual and branching graphs have none
inside a block whose branches have not joined yet.

Finding them is one walk over a topological order (ONNX stores nodes in one), keeping
the "live" set: tensors already produced that a later node still reads. Initializers,
Constant nodes and anything computed from constants alone are not live: each piece gets
its own copy of the ones it reads. Each tensor enters and leaves the live set once, so
the walk is O(nodes + edges). A cut point must also be servable: float32, with the
batch as its first dimension and every other dimension known.

With more valid cut points than --max-blocks allows, the blocks balance MACs: for
k = 1..B-1 we take the cut whose cumulative MACs is nearest k/B of the total (ties go to
the smaller tensor, then the later cut), each after the previous one. A model with no
Conv, Gemm or MatMul balances node counts instead.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper

from edge_server.split.prepare import (
    BATCH,
    SplitError,
    real_inputs,
    servable_shapes,
    shape_table,
    shapes_at,
    tensors_read,
)

MACS_NOTE = "Conv, Gemm and MatMul from inferred shapes; every other op counts 0"
CUT_RULE = ("cut k of B-1 is the valid cut whose cumulative MACs is nearest k/B of the total "
            "(ties: smaller tensor, then later cut)")


def _constants(graph: onnx.GraphProto) -> set[str]:
    """Initializers and tensors computed from them alone (Constant nodes, folded shapes)."""
    constant = {t.name for t in graph.initializer}
    for node in graph.node:
        if all(name in constant for name in tensors_read(node)):
            constant.update(node.output)
    return constant


def _ancestors(graph: onnx.GraphProto, target: str, stop: str) -> tuple[list[onnx.NodeProto], set[str]]:
    """Nodes computing target (not looking past stop), in graph order, and the tensors they read
    that no node of theirs produces."""
    producer = {o: i for i, node in enumerate(graph.node) for o in node.output}
    seen: set[int] = set()
    reads: set[str] = set()
    pending = [target]
    while pending:
        name = pending.pop()
        if name == stop or name not in producer:
            reads.add(name)
        elif producer[name] not in seen:
            seen.add(producer[name])
            pending.extend(tensors_read(graph.node[producer[name]]))
    return [graph.node[i] for i in sorted(seen)], reads


def _boundaries(graph: onnx.GraphProto) -> tuple[list[onnx.NodeProto], dict[str, int]]:
    """The non-constant nodes the output needs, in order, and {t: nodes before the cut} for
    every tensor t that is alone in the live set at some boundary (input and output included)."""
    source, sink = real_inputs(graph)[0].name, graph.output[0].name
    constant = _constants(graph)
    needed, reads = _ancestors(graph, sink, stop=source)
    order = [node for node in needed if not all(o in constant for o in node.output)]
    if source not in reads or not order:
        raise SplitError(f"the output {sink!r} is not computed from the input {source!r} by any node")
    last_use = {name: i for i, node in enumerate(order) for name in tensors_read(node) if name not in constant}
    last_use[sink] = len(order)  # the output stays live to the end, even if a node also reads it
    expiring: list[list[str]] = [[] for _ in order]
    for name, i in last_use.items():
        if i < len(order):
            expiring[i].append(name)
    live, single = {source}, {source: 0}
    for i, node in enumerate(order):
        live.update(o for o in node.output if o in last_use)
        live.difference_update(expiring[i])
        if len(live) == 1:
            single[next(iter(live))] = i + 1
    return order, single


def find_cut_points(model: onnx.ModelProto) -> list[str]:
    """Servable cut tensors strictly between input and output, in order (see the module docstring).

    Expects a model from prepare(). Servable: float32, carrying the batch, other dims known.
    """
    graph = model.graph
    _, single = _boundaries(graph)
    servable = servable_shapes(model)
    ends = {graph.input[0].name, graph.output[0].name}
    return [t for t in single if t not in ends and t in servable]


# ---------------------------------------------------------------- cutting

def split_model(model: onnx.ModelProto, cuts: list[str]) -> list[onnx.ModelProto]:
    """One model per piece between consecutive cuts (input and output implied): len(cuts) + 1 models.

    Each has one input and one output with the symbolic batch, and its own copy of the
    weights and constants it reads.
    """
    graph = model.graph
    servable = servable_shapes(model)
    ends = [graph.input[0].name, *cuts, graph.output[0].name]
    weights = {t.name for t in graph.initializer}
    pieces = []
    for name in ends:
        if name not in servable:
            raise SplitError(f"{name!r} cannot be a cut: it is not a float32 tensor carrying the batch "
                             "with its other dimensions known")
    for k, (first, last) in enumerate(zip(ends, ends[1:])):
        nodes, reads = _ancestors(graph, last, stop=first)
        stray = reads - weights - {first}
        if stray:
            raise SplitError(f"piece {k} ({first} -> {last}) also needs {sorted(stray)}: {first!r} is not a cut point")
        piece = helper.make_graph(
            nodes, f"{graph.name or 'model'}_block{k}",
            [helper.make_tensor_value_info(first, TensorProto.FLOAT, [BATCH, *servable[first]])],
            [helper.make_tensor_value_info(last, TensorProto.FLOAT, [BATCH, *servable[last]])],
            [t for t in graph.initializer if t.name in reads])
        pieces.append(helper.make_model(piece, opset_imports=model.opset_import, ir_version=model.ir_version,
                                        functions=model.functions, producer_name="strata split"))
        onnx.checker.check_model(pieces[-1])
    return pieces


def choose_cuts(cuts: list[str], done: list[float], sizes: list[int], max_blocks: int) -> list[str]:
    """At most max_blocks - 1 of the cuts, in order, balancing work between them (CUT_RULE).

    done[i] is the fraction of the model's work finished at cuts[i], sizes[i] its tensor's size.
    """
    blocks = min(max_blocks, len(cuts) + 1)
    chosen: list[int] = []
    for k in range(1, blocks):
        later = range(chosen[-1] + 1 if chosen else 0, len(cuts))
        if not later:
            break
        chosen.append(min(later, key=lambda i: (abs(done[i] - k / blocks), sizes[i], -i)))
    return [cuts[i] for i in chosen]


def balanced_cuts(model: onnx.ModelProto, cuts: list[str], max_blocks: int) -> list[str]:
    """choose_cuts with the work done at each cut measured in MACs (node counts if none)."""
    order, single = _boundaries(model.graph)
    shapes, servable = shape_table(shapes_at(model, 1)), servable_shapes(model)
    work = [node_macs(node, shapes) for node in order]
    if not any(work):
        work = [1] * len(order)
    done = np.cumsum([0, *work]) / sum(work)
    return choose_cuts(cuts, [float(done[single[t]]) for t in cuts],
                       [math.prod(servable[t]) for t in cuts], max_blocks)


# ---------------------------------------------------------------- costs

def node_macs(node: onnx.NodeProto, shapes: dict[str, list[int]]) -> int:
    """Multiply-accumulates of Conv, Gemm and MatMul given shapes at batch 1; 0 for other ops or unknown shapes."""
    out, weight = shapes.get(node.output[0]), shapes.get(node.input[1]) if len(node.input) > 1 else None
    if node.op_type not in ("Conv", "Gemm", "MatMul") or not out or not weight or not all([*out, *weight]):
        return 0
    if node.op_type == "Conv":
        reduce = math.prod(weight[1:])  # Cin / group * kernel
    elif node.op_type == "Gemm":
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        reduce = weight[-1] if trans_b else weight[0]
    else:
        reduce = weight[-2] if len(weight) > 1 else weight[0]
    return math.prod(out) * reduce


def params(model: onnx.ModelProto) -> int:
    """Elements of every constant tensor a piece holds: initializers and Constant nodes."""
    count = sum(math.prod(t.dims) for t in model.graph.initializer)
    return count + sum(math.prod(a.t.dims) for n in model.graph.node if n.op_type == "Constant"
                       for a in n.attribute if a.name == "value")
