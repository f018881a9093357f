"""Make an ONNX model servable before it is cut: one input and one output, a symbolic
batch N that every cut tensor carries, and every other dimension known.

A fixed batch of 1 becomes N so the edge can batch requests; shapes come from ONNX
shape inference at batch 1 and at batch 2, and a tensor is servable (a possible cut)
when it is float32 and its first dimension follows the batch while the others stay put.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

BATCH = "N"  # the symbolic batch dimension of every piece


class SplitError(ValueError):
    """A model Strata cannot split as it is; the message says why and what to do."""


def tensors_read(node: onnx.NodeProto) -> list[str]:
    """Every tensor a node reads, including those its subgraphs (If, Loop, Scan) take from outside."""
    names = [name for name in node.input if name]
    for attribute in node.attribute:
        for graph in [attribute.g] if attribute.HasField("g") else attribute.graphs:
            local = {v.name for v in [*graph.input, *graph.initializer]} | {o for n in graph.node for o in n.output}
            names += [name for n in graph.node for name in tensors_read(n) if name not in local]
    return names


def real_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are not initializers (IR < 4 exporters list weights as inputs too)."""
    weights = {t.name for t in graph.initializer}
    return [i for i in graph.input if i.name not in weights]


def _check_io(graph: onnx.GraphProto) -> None:
    inputs, outputs = real_inputs(graph), graph.output
    if len(inputs) != 1 or len(outputs) != 1:
        raise SplitError(
            f"the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}) and {len(outputs)} outputs "
            f"({', '.join(o.name for o in outputs)}); strata split supports exactly one of each, because each "
            "tier hands the next one tensor per sample (the wire format, the block files and the cloud's "
            "suffix models all carry one tensor). Export the model with a single input and output.")
    for role, value in (("input", inputs[0]), ("output", outputs[0])):
        elem_type = value.type.tensor_type.elem_type
        if elem_type != TensorProto.FLOAT:
            raise SplitError(f"the {role} {value.name!r} is {TensorProto.DataType.Name(elem_type)}; "
                             "Strata's tiers exchange float32 tensors only")


def prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model as Strata serves it: a symbolic batch N, no unused weights, none in graph.input.

    A fixed batch of 1 becomes N so the edge can batch requests; a Reshape whose constant
    target hard-codes that 1 is changed to copy the batch instead.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.ir_version = max(model.ir_version, 4)  # IR 4 lets initializers stay out of graph.input
    graph = model.graph
    _check_io(graph)
    inputs = real_inputs(graph)
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.value_info[:]  # stale shapes would pin the batch
    graph.output[0].type.tensor_type.ClearField("shape")
    if _symbolic_batch(graph.input[0]):
        _free_reshape_batch(model)
    used = {name for node in graph.node for name in tensors_read(node)}
    weights = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(weights)
    output = graph.output[0]
    sample = servable_shapes(model).get(output.name)
    if sample is None:
        raise SplitError(f"the output {output.name!r} does not keep the batch as its first dimension with the "
                         "other dimensions known (per ONNX shape inference at batch 1 and 2)")
    output.type.CopyFrom(helper.make_tensor_type_proto(TensorProto.FLOAT, [BATCH, *sample]))
    return model


def _symbolic_batch(value: onnx.ValueInfoProto) -> bool:
    """Make the input's first dimension the symbol N; True if it was a fixed 1."""
    dims = value.type.tensor_type.shape.dim
    shape = [d.dim_value or d.dim_param or "?" for d in dims]
    if not dims or (dims[0].HasField("dim_value") and dims[0].dim_value != 1):
        raise SplitError(f"the input shape {shape} does not start with a batch dimension (1 or symbolic); "
                         "Strata needs [batch, ...] to batch requests at the edge")
    if any(not d.HasField("dim_value") for d in dims[1:]):
        raise SplitError(f"the input shape {shape} has symbolic dimensions besides the batch; fix them first, e.g. "
                         "python -m onnxruntime.tools.make_dynamic_shape_fixed --dim_param H --dim_value 224 IN OUT")
    was_fixed = dims[0].HasField("dim_value")
    dims[0].dim_param = BATCH
    return was_fixed


def shapes_at(model: onnx.ModelProto, batch: int) -> onnx.GraphProto:
    """The graph with shapes inferred for a given batch (concrete, so Reshape's -1 resolves)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    try:
        return shape_inference.infer_shapes(model, data_prop=True).graph
    except Exception as exc:  # onnx raises several types; all mean the same to the user
        raise SplitError(f"ONNX shape inference failed on this model: {exc}") from exc


def shape_table(graph: onnx.GraphProto) -> dict[str, list[int]]:
    """Shapes of the tensors of an inferred graph, unknown dimensions as 0."""
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.type.tensor_type.HasField("shape"):
            shapes[value.name] = [d.dim_value for d in value.type.tensor_type.shape.dim]
    return shapes


def servable_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Per-sample shape of every float32 tensor that carries the batch: [1, *s] at batch 1, [2, *s] at 2."""
    one, two = shapes_at(model, 1), shapes_at(model, 2)
    floats = {v.name for v in [*one.input, *one.value_info, *one.output]
              if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    at_two = shape_table(two)
    return {name: shape[1:] for name, shape in shape_table(one).items()
            if name in floats and shape and shape[0] == 1 and all(shape[1:])
            and at_two.get(name) == [2, *shape[1:]]}


def _free_reshape_batch(model: onnx.ModelProto) -> None:
    """Make constant Reshape targets like [1, -1] on batch-carrying data copy the batch: [0, -1]."""
    graph = model.graph
    carries_batch, weights = servable_shapes(model), {t.name: t for t in graph.initializer}
    for node in graph.node:
        allow_zero = any(a.name == "allowzero" and a.i for a in node.attribute)
        if node.op_type != "Reshape" or allow_zero or node.input[1] not in weights:
            continue
        target = numpy_helper.to_array(weights[node.input[1]])
        if node.input[0] in carries_batch and target.ndim == 1 and target.size and target[0] == 1:
            name = f"{node.input[1]}_strata_batch"
            if name not in weights:
                weights[name] = numpy_helper.from_array(np.concatenate([[0], target[1:]]).astype(target.dtype), name)
                graph.initializer.append(weights[name])
            node.input[1] = name
