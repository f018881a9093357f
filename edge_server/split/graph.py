"""Reading an ONNX graph the way split needs: what each node reads (subgraphs included),
which tensors are constants, what computes a tensor, and dropping what nothing uses."""

from __future__ import annotations

import onnx


def tensors_read(node: onnx.NodeProto) -> list[str]:
    """Every tensor a node reads, including those its subgraphs (If, Loop, Scan) take from outside."""
    names = [name for name in node.input if name]
    for graph in subgraphs(node):
        local = {v.name for v in [*graph.input, *graph.initializer]} | {o for n in graph.node for o in n.output}
        names += [name for n in graph.node for name in tensors_read(n) if name not in local]
    return names


def subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The graphs a node's attributes hold (If's branches, Loop's and Scan's bodies)."""
    return [g for a in node.attribute for g in ([a.g] if a.HasField("g") else a.graphs)]


def constant_tensors(graph: onnx.GraphProto) -> set[str]:
    """Initializers and tensors computed from them alone (Constant nodes, shape arithmetic)."""
    constant = {t.name for t in graph.initializer}
    for node in graph.node:
        if all(name in constant for name in tensors_read(node)):
            constant.update(node.output)
    return constant


def ancestors(graph: onnx.GraphProto, target: str, stop: str) -> tuple[list[onnx.NodeProto], set[str]]:
    """Nodes computing target (not looking past stop), in graph order, and the tensors they read
    that no node of theirs produces."""
    indices, reads = _ancestor_indices(graph, target, stop)
    return [graph.node[i] for i in sorted(indices)], reads


def _ancestor_indices(graph: onnx.GraphProto, target: str, stop: str) -> tuple[set[int], set[str]]:
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
    return seen, reads


def prune(graph: onnx.GraphProto) -> None:
    """Drop the nodes the outputs do not need and the initializers no node reads."""
    keep: set[int] = set()
    for output in graph.output:
        keep |= _ancestor_indices(graph, output.name, stop="")[0]
    nodes = [graph.node[i] for i in sorted(keep)]
    used = {name for node in nodes for name in tensors_read(node)} | {o.name for o in graph.output}
    weights = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(weights)
