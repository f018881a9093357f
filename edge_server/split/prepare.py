"""Make an ONNX model servable before it is cut: one input and one output, a symbolic batch
N that every cut tensor carries first, and every other dimension known.

In order:
1. one input and one output, of dtypes the tiers exchange (shapes.CUT_DTYPES); weights
   that IR < 4 exporters also list as inputs stay weights;
2. the input's batch becomes N, whether the model wrote 1, -1, 0, '?' or a name; its other
   dimensions must be fixed, by the model or by --input-shape;
3. constant-only subgraphs are folded and an old opset converted where shapes are lost
   (fold.py); shapes onnx cannot infer come from onnxruntime (shapes.py);
4. with a batch fixed at 1, Reshapes whose constant target hard-codes that 1 copy the
   batch instead (also with allowzero=1, where the target holds no 0);
5. an output with the batch on another axis (time-major [T, N, C]) gets a Transpose to
   batch-first, as the tiers exchange every tensor (and the edge batches along axis 0).
Each change is said once, in Prepared.notes, and so is a model whose samples must not share
a batch: dynamically quantized ops (onnxruntime's quantize_dynamic) pick one scale per
call from all the samples in it, so a sample's answer would depend on its batchmates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_server.split import SplitError
from edge_server.split.fold import DATA_PROPAGATION_OPSET, convert_opset, fold_constants
from edge_server.split.graph import prune
from edge_server.split.shapes import CUT_DTYPES, Shapes, dtype_name, infer

BATCH = "N"  # the symbolic batch dimension of every piece
EXAMPLE_SIZE = 224  # what the --input-shape suggestion puts for a dynamic dimension
BATCH_COUPLED_OPS = {"DynamicQuantizeLinear", "DynamicQuantizeLSTM", "DynamicQuantizeMatMul"}


@dataclass
class Prepared:
    """The servable model (full.onnx), what is known of its tensors, and what was changed."""

    model: onnx.ModelProto
    shapes: Shapes
    output_batch_axis: int = 0  # where the source's output keeps the batch (1: time-major)
    batch_independent: bool = True  # False: a sample's answer depends on the others in its batch
    notes: list[str] = field(default_factory=list)


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
        if elem_type not in (*CUT_DTYPES, TensorProto.UNDEFINED):
            raise SplitError(f"the {role} {value.name!r} is {TensorProto.DataType.Name(elem_type)}; Strata's tiers "
                             f"exchange {', '.join(dtype_name(t) for t in CUT_DTYPES)} tensors only (export scores, "
                             "not class indices or token ids)")


def _dim_text(dim: onnx.TensorShapeProto.Dimension) -> int | str:
    return dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "?")


def _dynamic_message(name: str, shown: list, fixed: list[int | None]) -> str:
    """Which dimensions are dynamic, and the --input-shape to give, with their names in it."""
    if not shown:
        return (f"the input {name!r} declares no shape: give its per-sample shape with --input-shape, "
                "e.g. --input-shape 3,224,224")
    dynamic = [i for i, f in enumerate(fixed) if f is None]
    names = [str(shown[i + 1]) for i in dynamic]
    if len(set(names)) == len(names) and all(n.isidentifier() for n in names):
        placeholders = dict(zip(dynamic, names))
    elif len(fixed) == 3 and dynamic in ([1, 2], [0, 1]):  # an image's height and width
        placeholders = dict(zip(dynamic, "HW"))
    else:
        placeholders = {i: f"D{i + 1}" for i in dynamic}
    pattern = ",".join(str(f) if f else placeholders[i] for i, f in enumerate(fixed))
    example = ",".join(str(f or EXAMPLE_SIZE) for f in fixed)
    return (f"the input {name!r} is {shown}: besides the batch, dimension(s) {', '.join(str(i + 1) for i in dynamic)} "
            f"({', '.join(map(repr, names))}) are dynamic, and split needs them fixed. Give the per-sample shape "
            f"to split at with --input-shape {pattern}, e.g. --input-shape {example}")


def _fix_input(value: onnx.ValueInfoProto, input_shape: tuple[int, ...] | None) -> bool:
    """Make the input [N, *per-sample shape], all of it fixed; True if the model fixed a batch of 1."""
    tensor = value.type.tensor_type
    dims = list(tensor.shape.dim)
    shown = [_dim_text(d) for d in dims]
    if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 1:
        raise SplitError(f"the input {value.name!r} is {shown}, a fixed batch of {dims[0].dim_value}; Strata batches "
                         "requests at the edge, so it needs a batch of 1 or a dynamic one: re-export the model so")
    fixed = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims[1:]]
    if input_shape is not None:
        if dims and len(input_shape) != len(fixed):
            raise SplitError(f"--input-shape gives {len(input_shape)} dimensions, but the input {value.name!r} "
                             f"{shown} has {len(fixed)} besides the batch")
        clash = [(i + 1, f) for i, (f, given) in enumerate(zip(fixed, input_shape)) if f is not None and f != given]
        if clash:
            raise SplitError(f"--input-shape {','.join(map(str, input_shape))} contradicts the input {value.name!r} "
                             f"{shown}: dimension {clash[0][0]} is fixed at {clash[0][1]}")
        sample = list(input_shape)
    elif not dims or None in fixed:
        raise SplitError(_dynamic_message(value.name, shown, fixed))
    else:
        sample = fixed
    batch_of_one = bool(dims) and dims[0].HasField("dim_value") and dims[0].dim_value == 1
    tensor.ClearField("shape")
    tensor.shape.dim.add().dim_param = BATCH
    for size in sample:
        tensor.shape.dim.add().dim_value = size
    return batch_of_one


def _free_reshape_batch(model: onnx.ModelProto, shapes: Shapes) -> int:
    """Make constant Reshape targets like [1, -1] on batch-carrying data copy the batch: [0, -1]
    (allowzero dropped: without a 0 in the target it changes nothing). Returns how many changed."""
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    changed = 0
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[1] not in weights or not shapes.follows_batch(node.input[0]):
            continue
        target = numpy_helper.to_array(weights[node.input[1]])
        allow_zero = any(a.name == "allowzero" and a.i for a in node.attribute)
        if target.ndim != 1 or not target.size or target[0] != 1 or (allow_zero and 0 in target):
            continue
        name = f"{node.input[1]}_strata_batch"
        if name not in weights:
            weights[name] = numpy_helper.from_array(np.concatenate([[0], target[1:]]).astype(target.dtype), name)
            graph.initializer.append(weights[name])
        node.input[1] = name
        kept = [a for a in node.attribute if a.name != "allowzero"]
        del node.attribute[:]
        node.attribute.extend(kept)
        changed += 1
    return changed


def _batch_axis(shapes: Shapes, name: str) -> int | None:
    """The one axis of a tensor that is 1 at batch 1 and 2 at batch 2, the others equal; else None."""
    one, two = shapes.one.get(name, (0, None))[1], shapes.two.get(name, (0, None))[1]
    if not one or not two or len(one) != len(two) or not all(one):
        return None
    differ = [i for i, (a, b) in enumerate(zip(one, two)) if a != b]
    return differ[0] if len(differ) == 1 and one[differ[0]] == 1 and two[differ[0]] == 2 else None


def _batch_first(model: onnx.ModelProto, axis: int, rank: int) -> str:
    """Append a Transpose moving the output's batch axis to the front; return the new output's name."""
    output = model.graph.output[0]
    name = f"{output.name}_batch_first"
    perm = [axis, *(i for i in range(rank) if i != axis)]
    model.graph.node.append(helper.make_node("Transpose", [output.name], [name], name="strata_batch_first", perm=perm))
    output.CopyFrom(helper.make_tensor_value_info(name, output.type.tensor_type.elem_type, None))
    return name


def _output_error(model: onnx.ModelProto, shapes: Shapes, name: str) -> SplitError:
    node = shapes.first_unknown(model.graph)
    if node is not None:
        where = (f"shape inference lost the shapes from node {node.name or node.output[0]!r} ({node.op_type}) on, "
                 "and onnxruntime could not supply them" + (f" ({shapes.run_error})" if shapes.run_error else ""))
    else:
        node = shapes.first_dropping_batch(model.graph)
        where = "" if node is None else (f"node {node.name or node.output[0]!r} ({node.op_type}) is the first whose "
                                         f"output does not follow the batch ({shapes.describe(node.output[0])})")
    return SplitError(f"the output {name!r} does not keep the batch as one of its dimensions with the others known "
                      f"({shapes.describe(name)}){': ' + where if where else ''}. If a node hard-codes the batch "
                      "(e.g. a Reshape to [1, ...] computed in the graph), re-export the model with a dynamic batch")


def prepare(model: onnx.ModelProto, input_shape: tuple[int, ...] | None = None) -> Prepared:
    """The model as Strata serves it (see the module docstring). Raises SplitError, naming the
    cause, for a model it cannot serve."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.ir_version = max(model.ir_version, 4)  # IR 4 lets initializers stay out of graph.input
    graph = model.graph
    _check_io(graph)
    inputs = real_inputs(graph)
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.value_info[:]  # stale shapes would pin the batch
    graph.output[0].type.tensor_type.ClearField("shape")
    batch_of_one = _fix_input(graph.input[0], input_shape)
    prune(graph)
    notes = []
    folded = fold_constants(model)
    if folded:
        notes.append(f"folded {folded} constant-only subgraph result(s) into constants (onnxruntime)")
    shapes = infer(model)
    if shapes.from_onnxruntime:
        converted = convert_opset(model)
        converted_shapes = None if converted is None else infer(converted)
        if converted_shapes is not None and len(converted_shapes.from_onnxruntime) < len(shapes.from_onnxruntime):
            opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
            notes.append(f"converted opset {opset} to {DATA_PROPAGATION_OPSET} (onnx's version converter) so that "
                         "shape inference follows computed shapes")
            model, shapes = converted, converted_shapes
        if shapes.from_onnxruntime:
            notes.append(f"took {len(shapes.from_onnxruntime)} shape(s) that ONNX shape inference cannot know from "
                         "onnxruntime runs at batch 1 and 2")
    while batch_of_one and (rewritten := _free_reshape_batch(model, shapes)):
        notes.append(f"{rewritten} Reshape(s) hard-coding the batch 1 now copy the batch")
        shapes = infer(model)
    output = model.graph.output[0].name
    axis = _batch_axis(shapes, output) or 0
    if axis:
        per_step = shapes.one[output][1]
        shown = ["N" if i == axis else d for i, d in enumerate(per_step)]
        output = _batch_first(model, axis, len(per_step))
        shapes = infer(model)
        notes.append(f"the output is {shown}, with the batch on axis {axis} (time-major): the blocks return it "
                     "batch-first, as the tiers exchange every tensor")
    coupled = sorted({node.op_type for node in model.graph.node if node.op_type in BATCH_COUPLED_OPS})
    if coupled:
        notes.append(f"{', '.join(coupled)} quantize(s) per call, over all the samples in it: the edge will not "
                     "batch requests for this model, so that no answer depends on another's input")
    sample = shapes.servable().get(output)
    if sample is None:
        raise _output_error(model, shapes, output)
    model.graph.output[0].type.CopyFrom(helper.make_tensor_type_proto(shapes.dtype(output), [BATCH, *sample]))
    return Prepared(model, shapes, axis, not coupled, notes)
