"""Split any one-input, one-output ONNX model into blocks the servers and the planner use.

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

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

BATCH = "N"  # the symbolic batch dimension of every piece
MACS_NOTE = "Conv, Gemm and MatMul from inferred shapes; every other op counts 0"
CUT_RULE = ("cut k of B-1 is the valid cut whose cumulative MACs is nearest k/B of the total "
            "(ties: smaller tensor, then later cut)")


class SplitError(ValueError):
    """A model Strata cannot split as it is; the message says why and what to do."""


# ---------------------------------------------------------------- preparing the model

def _real_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are not initializers (IR < 4 exporters list weights as inputs too)."""
    weights = {t.name for t in graph.initializer}
    return [i for i in graph.input if i.name not in weights]


def _check_io(graph: onnx.GraphProto) -> None:
    inputs, outputs = _real_inputs(graph), graph.output
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
    inputs = _real_inputs(graph)
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.value_info[:]  # stale shapes would pin the batch
    graph.output[0].type.tensor_type.ClearField("shape")
    if _symbolic_batch(graph.input[0]):
        _free_reshape_batch(model)
    used = {name for node in graph.node for name in _reads(node)}
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


def _shapes_at(model: onnx.ModelProto, batch: int) -> onnx.GraphProto:
    """The graph with shapes inferred for a given batch (concrete, so Reshape's -1 resolves)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    try:
        return shape_inference.infer_shapes(model, data_prop=True).graph
    except Exception as exc:  # onnx raises several types; all mean the same to the user
        raise SplitError(f"ONNX shape inference failed on this model: {exc}") from exc


def _shapes(graph: onnx.GraphProto) -> dict[str, list[int]]:
    """Shapes of the tensors of an inferred graph, unknown dimensions as 0."""
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.type.tensor_type.HasField("shape"):
            shapes[value.name] = [d.dim_value for d in value.type.tensor_type.shape.dim]
    return shapes


def servable_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Per-sample shape of every float32 tensor that carries the batch: [1, *s] at batch 1, [2, *s] at 2."""
    one, two = _shapes_at(model, 1), _shapes_at(model, 2)
    floats = {v.name for v in [*one.input, *one.value_info, *one.output]
              if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    at_two = _shapes(two)
    return {name: shape[1:] for name, shape in _shapes(one).items()
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


# ---------------------------------------------------------------- finding cut points

def _reads(node: onnx.NodeProto) -> list[str]:
    """Every tensor a node reads, including those its subgraphs (If, Loop, Scan) take from outside."""
    names = [name for name in node.input if name]
    for attribute in node.attribute:
        for graph in [attribute.g] if attribute.HasField("g") else attribute.graphs:
            local = {v.name for v in [*graph.input, *graph.initializer]} | {o for n in graph.node for o in n.output}
            names += [name for n in graph.node for name in _reads(n) if name not in local]
    return names


def _constants(graph: onnx.GraphProto) -> set[str]:
    """Initializers and tensors computed from them alone (Constant nodes, folded shapes)."""
    constant = {t.name for t in graph.initializer}
    for node in graph.node:
        if all(name in constant for name in _reads(node)):
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
            pending.extend(_reads(graph.node[producer[name]]))
    return [graph.node[i] for i in sorted(seen)], reads


def _boundaries(graph: onnx.GraphProto) -> tuple[list[onnx.NodeProto], dict[str, int]]:
    """The non-constant nodes the output needs, in order, and {t: nodes before the cut} for
    every tensor t that is alone in the live set at some boundary (input and output included)."""
    source, sink = _real_inputs(graph)[0].name, graph.output[0].name
    constant = _constants(graph)
    needed, reads = _ancestors(graph, sink, stop=source)
    order = [node for node in needed if not all(o in constant for o in node.output)]
    if source not in reads or not order:
        raise SplitError(f"the output {sink!r} is not computed from the input {source!r} by any node")
    last_use = {name: i for i, node in enumerate(order) for name in _reads(node) if name not in constant}
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


def _balanced_cuts(model: onnx.ModelProto, cuts: list[str], max_blocks: int) -> list[str]:
    """choose_cuts with the work done at each cut measured in MACs (node counts if none)."""
    order, single = _boundaries(model.graph)
    shapes, servable = _shapes(_shapes_at(model, 1)), servable_shapes(model)
    work = [_node_macs(node, shapes) for node in order]
    if not any(work):
        work = [1] * len(order)
    done = np.cumsum([0, *work]) / sum(work)
    return choose_cuts(cuts, [float(done[single[t]]) for t in cuts],
                       [math.prod(servable[t]) for t in cuts], max_blocks)


# ---------------------------------------------------------------- costs

def _node_macs(node: onnx.NodeProto, shapes: dict[str, list[int]]) -> int:
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


def _params(model: onnx.ModelProto) -> int:
    """Elements of every constant tensor a piece holds: initializers and Constant nodes."""
    count = sum(math.prod(t.dims) for t in model.graph.initializer)
    return count + sum(math.prod(a.t.dims) for n in model.graph.node if n.op_type == "Constant"
                       for a in n.attribute if a.name == "value")


def _layout(shape: list[int]) -> str | None:
    """Guess for an image input (per-sample shape): NHWC if it ends, and does not start, with 1, 3 or 4 channels."""
    if len(shape) != 3:
        return None
    return "NHWC" if shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4) else "NCHW"


# ---------------------------------------------------------------- checking and writing

def _run_chain(full: onnx.ModelProto, pieces: list[onnx.ModelProto], sample_shape: list[int]) -> float:
    """Max |full(x) - pieces chained(x)| on a random batch of 2, which also proves the batch is free."""
    import onnxruntime as ort

    def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {model.graph.input[0].name: x})[0]

    x = np.random.default_rng(0).normal(size=(2, *sample_shape)).astype(np.float32)
    try:
        expected, y = run(full, x), x
        for piece in pieces:
            y = run(piece, y)
    except Exception as exc:
        raise SplitError(f"onnxruntime cannot run the model or its blocks at batch 2 ({exc}); if a node hard-codes "
                         "batch 1 (e.g. a computed Reshape target), re-export the model with a dynamic batch") from exc
    if not np.allclose(y, expected, rtol=1e-4, atol=1e-5):
        raise SplitError(f"the chained blocks differ from the full model by up to {np.abs(y - expected).max():g}; "
                         "this is a bug in strata split: please report it with the model")
    return float(np.abs(expected - y).max())


def _load(model_path: Path) -> tuple[bytes, onnx.ModelProto]:
    if not model_path.is_file():
        raise SplitError(f"{model_path} does not exist")
    try:
        model = onnx.load(str(model_path))
    except Exception as exc:
        raise SplitError(f"{model_path} is not an ONNX model ({type(exc).__name__}: {exc})") from exc
    if not model.graph.node:
        raise SplitError(f"{model_path} is not an ONNX model, or its graph has no nodes")
    return model_path.read_bytes(), model


def write_split(model_path: Path, out_dir: Path, name: str | None = None, max_blocks: int = 12,
                all_cuts: bool = False) -> dict:
    """Split the model at balanced (or all) cut points; write block{k}.onnx, full.onnx and manifest.json.

    Returns the manifest. Raises SplitError, with what to do, for models it cannot split.
    """
    model_path, out_dir = Path(model_path), Path(out_dir)
    if max_blocks < 1:
        raise SplitError(f"--max-blocks must be at least 1, not {max_blocks}")
    source, model = _load(model_path)
    full = prepare(model)
    valid = find_cut_points(full)
    chosen = valid if all_cuts else _balanced_cuts(full, valid, max_blocks)
    pieces = split_model(full, chosen)
    graph, sample = full.graph, servable_shapes(full)
    ends = [graph.input[0].name, *chosen, graph.output[0].name]
    diff = _run_chain(full, pieces, sample[ends[0]])

    out_dir.mkdir(parents=True, exist_ok=True)
    files = {f"block{k}.onnx": piece.SerializeToString() for k, piece in enumerate(pieces)}
    files["full.onnx"] = full.SerializeToString()
    for file, data in files.items():
        (out_dir / file).write_bytes(data)
    shapes = _shapes(_shapes_at(full, 1))
    manifest = {
        "format": "strata-model-manifest",
        "version": 1,
        "name": name or model_path.stem,
        "model_id": hashlib.sha256(source).hexdigest()[:16],
        "source": {"file": model_path.name, "bytes": len(source), "valid_cut_points": len(valid),
                   "rule": "every valid cut point" if all_cuts else CUT_RULE},
        "input": {"name": ends[0], "shape": sample[ends[0]], "layout": _layout(sample[ends[0]]),
                  "dtype": "float32"},
        "blocks": [{
            "index": k,
            "name": ends[k + 1],
            "file": f"block{k}.onnx",
            "bytes": len(files[f"block{k}.onnx"]),
            "input_shape": sample[ends[k]],
            "output_shape": sample[ends[k + 1]],
            "output_bytes_per_sample": 4 * math.prod(sample[ends[k + 1]]),
            "macs": sum(_node_macs(node, shapes) for node in piece.graph.node),
            "params": _params(piece),
            "ops": None,
            "onnx_ops": sorted({node.op_type for node in piece.graph.node}),
        } for k, piece in enumerate(pieces)],
        "macs_note": MACS_NOTE,
        "cuts": [{"before_block": k, "tensor": t, "bytes_per_sample": 4 * math.prod(sample[t])}
                 for k, t in enumerate(ends)],
        "full_graph": {"file": "full.onnx", "bytes": len(files["full.onnx"]), "input": ends[0], "output": ends[-1],
                       "chain_max_abs_diff": diff},
        "artifacts": {file: hashlib.sha256(data).hexdigest() for file, data in files.items()},
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
