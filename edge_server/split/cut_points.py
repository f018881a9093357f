"""Find where any one-input, one-output ONNX model can be cut, pick the cuts, and cut it.

A cut point is a tensor t such that, when the graph is cut just after t is produced,
exactly one tensor crosses the cut: t. Everything later needs only t (and constants),
so t is on every path from input to output and the two sides can run on two tiers.
Chains have a cut point after every node; residual and branching graphs have none
inside a block whose branches have not joined yet.

Finding them is one walk over a topological order (ONNX stores nodes in one), keeping
the "live" set: tensors already produced that a later node still reads. Initializers,
Constant nodes and anything computed from constants alone are not live: each piece gets
its own copy of the ones it reads (a quantized graph's scales and zero points travel
with the nodes that read them). An If, Loop or Scan reads the outer tensors its
subgraphs use, so they stay live up to it, and no cut falls inside it. Each tensor
enters and leaves the live set once, so the walk is O(nodes + edges).

A cut point must also be servable (shapes.py: a dtype the tiers exchange, the batch
first, every other dimension known), and not inside a quantized group: a tensor that a
DequantizeLinear produces or a QuantizeLinear reads sits between the two, where
onnxruntime fuses DequantizeLinear -> op -> QuantizeLinear into one integer op; cutting
there would run that op in float on one side and change the result. The quantized
tensor itself (QuantizeLinear's output) is the cut.

With more valid cut points than --max-blocks allows, the blocks balance MACs: for
k = 1..B-1 we take the cut whose cumulative MACs is nearest k/B of the total (ties go to
the smaller tensor, then the later cut), each after the previous one, and never one that
leaves a block computing nothing (a trailing Identity or Sigmoid joins the block before).
A model with no Conv, Gemm or MatMul balances node counts instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from edge_server.split import SplitError
from edge_server.split.graph import ancestors, constant_tensors, tensors_read
from edge_server.split.prepare import BATCH, Prepared

MACS_NOTE = "Conv, Gemm and MatMul from inferred shapes; every other op counts 0"
CUT_RULE = ("cut k of B-1 is the valid cut whose cumulative MACs is nearest k/B of the total "
            "(ties: smaller tensor, then later cut), leaving no block without work")


@dataclass(frozen=True)
class Walk:
    """The live-set walk: the non-constant nodes the output needs, in order; {t: nodes before
    the cut} for every tensor alone in the live set at some boundary (input and output
    included); and the live set's size after each node."""

    order: list[onnx.NodeProto]
    single: dict[str, int]
    live_sizes: list[int]


def walk(graph: onnx.GraphProto) -> Walk:
    """Walk a prepared graph's nodes in order, keeping the live set (see the module docstring)."""
    source, sink = graph.input[0].name, graph.output[0].name
    constant = constant_tensors(graph)
    needed, reads = ancestors(graph, sink, stop=source)
    order = [node for node in needed if not all(o in constant for o in node.output)]
    if source not in reads or not order:
        raise SplitError(f"the output {sink!r} is not computed from the input {source!r} by any node")
    last_use = {name: i for i, node in enumerate(order) for name in tensors_read(node) if name not in constant}
    last_use[sink] = len(order)  # the output stays live to the end, even if a node also reads it
    expiring: list[list[str]] = [[] for _ in order]
    for name, i in last_use.items():
        if i < len(order):
            expiring[i].append(name)
    live, single, sizes = {source}, {source: 0}, []
    for i, node in enumerate(order):
        live.update(o for o in node.output if o in last_use)
        live.difference_update(expiring[i])
        sizes.append(len(live))
        if len(live) == 1:
            single[next(iter(live))] = i + 1
    return Walk(order, single, sizes)


def _inside_quantized_groups(graph: onnx.GraphProto) -> set[str]:
    """Tensors a DequantizeLinear produces or a QuantizeLinear reads (see the module docstring)."""
    return ({o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
            | {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"})


def find_cut_points(prepared: Prepared) -> list[str]:
    """Servable cut tensors strictly between input and output, in order (see the module docstring)."""
    graph = prepared.model.graph
    servable = prepared.shapes.servable()
    excluded = {graph.input[0].name, graph.output[0].name} | _inside_quantized_groups(graph)
    return [t for t in walk(graph).single if t not in excluded and t in servable]


# ---------------------------------------------------------------- cutting

def split_model(prepared: Prepared, cuts: list[str]) -> list[onnx.ModelProto]:
    """One model per piece between consecutive cuts (input and output implied): len(cuts) + 1 models.

    Each has one input and one output with the symbolic batch and the tensor's own dtype,
    and its own copy of the weights and constants it reads.
    """
    model, shapes = prepared.model, prepared.shapes
    graph, servable = model.graph, shapes.servable()
    ends = [graph.input[0].name, *cuts, graph.output[0].name]
    weights = {t.name for t in graph.initializer}
    for name in ends:
        if name not in servable:
            raise SplitError(f"{name!r} cannot be a cut: it is not a tensor the tiers exchange, carrying the batch "
                             "with its other dimensions known")
    pieces = []
    for k, (first, last) in enumerate(zip(ends, ends[1:])):
        nodes, reads = ancestors(graph, last, stop=first)
        stray = reads - weights - {first}
        if stray:
            raise SplitError(f"piece {k} ({first} -> {last}) also needs {sorted(stray)}: {first!r} is not a cut point")
        piece = helper.make_graph(
            nodes, f"{graph.name or 'model'}_block{k}",
            [helper.make_tensor_value_info(first, shapes.dtype(first), [BATCH, *servable[first]])],
            [helper.make_tensor_value_info(last, shapes.dtype(last), [BATCH, *servable[last]])],
            [t for t in graph.initializer if t.name in reads])
        pieces.append(helper.make_model(piece, opset_imports=model.opset_import, ir_version=model.ir_version,
                                        functions=model.functions, producer_name="strata split"))
        onnx.checker.check_model(pieces[-1])
    return pieces


def choose_cuts(cuts: list[str], done: list[float], sizes: list[int], max_blocks: int) -> list[str]:
    """At most max_blocks - 1 of the cuts, in order, balancing work between them (CUT_RULE).

    done[i] is the fraction of the model's work finished at cuts[i], sizes[i] its tensor's
    size. A cut is only taken if the block it closes and the rest both hold some work.
    """
    blocks = min(max_blocks, len(cuts) + 1)
    chosen: list[int] = []
    for k in range(1, blocks):
        before = done[chosen[-1]] if chosen else 0.0
        later = [i for i in range(chosen[-1] + 1 if chosen else 0, len(cuts)) if before < done[i] < 1]
        if not later:
            break
        chosen.append(min(later, key=lambda i: (abs(done[i] - k / blocks), sizes[i], -i)))
    return [cuts[i] for i in chosen]


def _work_done(prepared: Prepared, steps: Walk) -> np.ndarray:
    """Fraction of the work finished after each prefix of steps.order: MACs, or node counts if none."""
    shapes = {name: shape for name, (_, shape) in prepared.shapes.one.items() if shape is not None}
    work = [node_macs(node, shapes) for node in steps.order]
    if not any(work):
        work = [1] * len(steps.order)
    return np.cumsum([0, *work]) / sum(work)


def balanced_cuts(prepared: Prepared, cuts: list[str], max_blocks: int) -> list[str]:
    """choose_cuts with the work done at each cut measured in MACs (node counts if none)."""
    steps = walk(prepared.model.graph)
    done, servable = _work_done(prepared, steps), prepared.shapes.servable()
    return choose_cuts(cuts, [float(done[steps.single[t]]) for t in cuts],
                       [math.prod(servable[t]) for t in cuts], max_blocks)


def few_blocks_reason(prepared: Prepared, cuts: list[str]) -> str:
    """One line on why the valid cuts are few: the stretch between two of them (or an end) that
    holds the most work, and how many tensors are live at once inside it."""
    graph = prepared.model.graph
    steps = walk(graph)
    done = _work_done(prepared, steps)
    ends = [graph.input[0].name, *cuts, graph.output[0].name]
    spans = [(steps.single[a], steps.single[b], a, b) for a, b in zip(ends, ends[1:])]
    start, stop, a, b = max(spans, key=lambda s: done[s[1]] - done[s[0]])
    live = max(steps.live_sizes[start:stop], default=1)
    share = f"{done[stop] - done[start]:.0%} of the work"
    if live > 1:
        return (f"{share} lies between {a!r} and {b!r}, where up to {live} tensors are live at once (branches that "
                "join later, as in a detector's multi-scale neck): no single tensor can be cut there")
    if stop - start == 1:
        return f"{share} is one node ({steps.order[start].op_type}), between {a!r} and {b!r}"
    return f"{share} lies between {a!r} and {b!r}, with no tensor the tiers exchange to cut at in between"


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
