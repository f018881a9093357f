"""What split knows of every tensor of a model: its dtype and its shape at batch 1 and at batch 2.

Shapes come from ONNX shape inference (with data propagation) at a concrete batch of 1
and of 2. What inference cannot know (contrib ops, shapes computed by old-opset ops,
subgraph outputs without declared shapes) is taken from onnxruntime, which runs the model
at the same two batches with those tensors added as outputs. A tensor "follows the batch"
when it is [1, *s] at batch 1 and [2, *s] at batch 2; one that does, with every other
dimension known and a dtype the tiers exchange (CUT_DTYPES), can be cut at.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, shape_inference

from edge_server.split import SplitError

# The dtypes a cut tensor may have: what the wire carries (shared/strata/codecs.py): float32
# and float16 through any codec, 8-bit integers (pixels, quantized activations) exactly.
CUT_DTYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.UINT8, TensorProto.INT8)


Known = tuple[int, list[int] | None]  # (TensorProto dtype, 0 if unknown; shape with 0 for unknown dims, or None)


def dtype_name(elem_type: int) -> str:
    """numpy's name for an ONNX dtype, e.g. 'float32', 'uint8'."""
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name


def sample_input(model: onnx.ModelProto, batch: int, seed: int = 0) -> np.ndarray:
    """A random batch for the model's (single, fully known) input: normal floats, or 8-bit
    integers over their whole range."""
    value = model.graph.input[0].type.tensor_type
    shape = [batch, *(d.dim_value for d in value.shape.dim[1:])]
    dtype, rng = helper.tensor_dtype_to_np_dtype(value.elem_type), np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.normal(size=shape).astype(dtype)


def ort_session(model: onnx.ModelProto | str):
    """An onnxruntime CPU session on a model (or a file's path), logging errors only: split's
    own runs need not warn about, e.g., the initializers a piece does not use."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _at_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    return model


def _inferred(model: onnx.ModelProto, batch: int) -> dict[str, Known]:
    try:
        graph = shape_inference.infer_shapes(_at_batch(model, batch), data_prop=True).graph
    except Exception as exc:  # onnx raises several types; all mean the same to the user
        raise SplitError(f"ONNX shape inference failed on this model: {exc}") from exc
    known = {t.name: (t.data_type, list(t.dims)) for t in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 0 for d in tensor.shape.dim] \
            if tensor.HasField("shape") else None
        known[value.name] = (tensor.elem_type, shape)
    return known


def _observed(model: onnx.ModelProto, batch: int, names: list[str]) -> tuple[dict[str, Known], str | None]:
    """dtype and shape of `names` in an onnxruntime run at `batch`, and the error if it failed."""
    model = _at_batch(model, batch)
    present = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in present)
    try:
        values = ort_session(model).run(names, {model.graph.input[0].name: sample_input(model, batch)})
    except Exception as exc:  # onnxruntime raises its own types for load and run failures
        return {}, f"{type(exc).__name__}: {str(exc).strip()[:400]}"
    return {n: (helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape)) for n, v in zip(names, values)}, None


def _complete(known: Known | None) -> bool:
    return known is not None and known[0] != 0 and known[1] is not None and all(known[1])


@dataclass
class Shapes:
    """dtype and shape of each tensor at batch 1 (`one`) and 2 (`two`); `run_error` says why
    onnxruntime could not fill in a shape inference left open, if it could not."""

    one: dict[str, Known]
    two: dict[str, Known]
    run_error: str | None = None
    from_onnxruntime: list[str] = field(default_factory=list)

    def follows_batch(self, name: str) -> bool:
        one, two = self.one.get(name), self.two.get(name)
        return (_complete(one) and _complete(two) and len(one[1]) > 0 and one[1][0] == 1 and two[1][0] == 2
                and one[1][1:] == two[1][1:])

    def servable(self) -> dict[str, list[int]]:
        """Per-sample shape of every tensor that can be cut at (see the module docstring)."""
        return {name: shape[1:] for name, (dtype, shape) in self.one.items()
                if dtype in CUT_DTYPES and self.follows_batch(name)}

    def dtype(self, name: str) -> int:
        return self.one[name][0]

    def describe(self, name: str) -> str:
        """'[1, 4] at batch 1, [1, 4] at batch 2' or 'unknown'."""
        one, two = (table.get(name, (0, None))[1] for table in (self.one, self.two))
        return "unknown" if one is None and two is None else f"{one} at batch 1, {two} at batch 2"

    def first_unknown(self, graph: onnx.GraphProto) -> onnx.NodeProto | None:
        """The first node (in graph order) one of whose outputs has no complete shape at both batches."""
        for node in graph.node:
            if any(o and not (_complete(self.one.get(o)) and _complete(self.two.get(o))) for o in node.output):
                return node
        return None

    def first_dropping_batch(self, graph: onnx.GraphProto) -> onnx.NodeProto | None:
        """The first node reading a tensor that follows the batch whose float output does not."""
        floats = (TensorProto.FLOAT, TensorProto.FLOAT16)
        for node in graph.node:
            out = node.output[0] if node.output else ""
            if (any(self.follows_batch(i) for i in node.input) and self.one.get(out, (0,))[0] in floats
                    and not self.follows_batch(out)):
                return node
        return None


def infer(model: onnx.ModelProto) -> Shapes:
    """Shapes of every top-level tensor at batch 1 and 2 (the input's other dims must be fixed):
    shape inference first, onnxruntime for the rest."""
    one, two = _inferred(model, 1), _inferred(model, 2)
    missing = [o for node in model.graph.node for o in node.output
               if o and not (_complete(one.get(o)) and _complete(two.get(o)))]
    shapes = Shapes(one, two)
    if missing:
        for table, batch in ((one, 1), (two, 2)):
            observed, error = _observed(model, batch, missing)
            table.update(observed)
            shapes.run_error = shapes.run_error or (error and f"at batch {batch}: {error}")
        shapes.from_onnxruntime = [name for name in missing if name in one]
    return shapes
