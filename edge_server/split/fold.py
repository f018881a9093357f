"""Help ONNX shape inference see what exporters hide from it, before split reads shapes.

Two kinds of model lose shapes in inference although onnxruntime runs them fine:

- Constant-only subgraphs. torch's `F.pad` computes its pads with ConstantOfShape, Concat,
  Reshape, Slice, Transpose and Cast over constants; inference does not evaluate them, so
  the padded tensor's shape, and every later one, is unknown. fold_constants evaluates such
  subgraphs once with onnxruntime and stores their small results as initializers.
- Old opsets. A flatten computed as Shape -> Gather -> Unsqueeze -> Concat -> Reshape
  propagates through inference only from opset 14: Unsqueeze and Concat pass shape data on
  from opset 13, and Reshape reads it from 14 (measured with onnx 1.23's inference).
  convert_opset moves such a model to opset 14 with onnx's version converter, and keeps
  the result only if onnxruntime gives the same output.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper, version_converter

from edge_server.split.graph import prune, subgraphs, tensors_read
from edge_server.split.shapes import ort_session, sample_input

# Larger constant results are weights (e.g. a transposed kernel): inference knows their shapes
# already, and folding them would only grow the blocks.
FOLD_MAX_ELEMENTS = 4096
# Never folded: random ops differ per run; a DequantizeLinear of weights belongs to the
# quantized node that reads it (onnxruntime fuses them), and so does everything after it.
KEEP = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli",
        "DequantizeLinear"}
DATA_PROPAGATION_OPSET = 14


def fold_constants(model: onnx.ModelProto) -> int:
    """Replace the small results of constant-only subgraphs by initializers, in place; return
    how many tensors were folded (0 if onnxruntime cannot evaluate them: nothing changes)."""
    graph = model.graph
    constant = {t.name for t in graph.initializer}
    foldable: set[int] = set()
    for i, node in enumerate(graph.node):
        reads = tensors_read(node)
        if node.op_type == "Constant":
            constant.update(node.output)
        elif (reads and all(r in constant for r in reads) and not subgraphs(node) and node.op_type not in KEEP
              and node.domain in ("", "ai.onnx")):
            foldable.add(i)
            constant.update(node.output)
    produced = {o for i in foldable for o in graph.node[i].output}
    read_later = {r for i, node in enumerate(graph.node) if i not in foldable for r in tensors_read(node)}
    wanted = sorted(produced & (read_later | {o.name for o in graph.output}))
    if not wanted:
        return 0
    nodes = [n for i, n in enumerate(graph.node) if n.op_type == "Constant" or i in foldable]
    reads = {r for node in nodes for r in tensors_read(node)}
    evaluator = onnx.helper.make_graph(nodes, "fold", [], [onnx.ValueInfoProto(name=name) for name in wanted],
                                       [t for t in graph.initializer if t.name in reads])
    try:
        values = ort_session(onnx.helper.make_model(evaluator, opset_imports=model.opset_import,
                                                 ir_version=max(model.ir_version, 4))).run(wanted, {})
    except Exception:  # onnxruntime cannot evaluate them: leave the graph as it is
        return 0
    folded = {name: value for name, value in zip(wanted, values) if value.size <= FOLD_MAX_ELEMENTS}
    for node in graph.node:
        node.output[:] = [f"{o}_strata_unfolded" if o in folded else o for o in node.output]
    graph.initializer.extend(numpy_helper.from_array(np.asarray(v), name) for name, v in folded.items())
    prune(graph)
    return len(folded)


def convert_opset(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """The model at DATA_PROPAGATION_OPSET if it is older and the converter's result computes
    the same output in onnxruntime (on a random batch of 1); None otherwise."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), DATA_PROPAGATION_OPSET)
    if opset >= DATA_PROPAGATION_OPSET:
        return None
    try:
        converted = version_converter.convert_version(model, DATA_PROPAGATION_OPSET)
        del converted.graph.value_info[:]  # the converter's own inference, which may pin the batch
        x = sample_input(model, 1)
        name = model.graph.input[0].name
        before, after = (ort_session(m).run(None, {name: x})[0] for m in (model, converted))
    except Exception:  # the converter refuses some ops and domains; onnxruntime may refuse its output
        return None
    return converted if before.shape == after.shape and np.allclose(before, after, rtol=1e-5, atol=1e-6) else None
