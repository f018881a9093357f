"""Small ONNX models of the kinds real exporters write (torch, tf2onnx, PaddlePaddle,
onnxruntime's quantizers), built in code for `strata split`'s tests.

Each builder stands for a kind that broke or came out wrong on real models (issue 14):
shapes that ONNX shape inference loses, dynamic dimensions, a batch computed from the
input, weights outside initializers, control flow, contrib ops, quantized graphs, inputs
and outputs other than float32 NCHW logits, trailing ops, a detector's neck. Inputs are
small (3x8x8 and the like) so that every test runs in milliseconds.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Builder:
    """Nodes and random weights for a small model, node outputs named t1, t2, ... in order."""

    def __init__(self, seed: int = 0, dtype: type = np.float32) -> None:
        self.rng, self.nodes, self.weights, self.count, self.dtype = np.random.default_rng(seed), [], [], 0, dtype

    def weight(self, *shape: int) -> str:
        name = f"w{len(self.weights)}"
        self.weights.append(numpy_helper.from_array((self.rng.normal(size=shape) * 0.3).astype(self.dtype), name))
        return name

    def const(self, values, dtype: type = np.int64) -> str:
        """An initializer holding exactly `values` (shape arithmetic: targets, pads, axes)."""
        name = f"k{len(self.weights)}"
        self.weights.append(numpy_helper.from_array(np.asarray(values, dtype), name))
        return name

    def node(self, op: str, *inputs: str, domain: str | None = None, **attributes) -> str:
        self.count += 1
        self.nodes.append(helper.make_node(op, list(inputs), [f"t{self.count}"], domain=domain, **attributes))
        return f"t{self.count}"

    def conv(self, x: str, cin: int, cout: int, stride: int = 1) -> str:
        return self.node("Conv", x, self.weight(cout, cin, 3, 3), self.weight(cout), pads=[1, 1, 1, 1],
                         strides=[stride, stride])

    def model(self, output: str, input_shape: list, output_shape: list = ("N", 5), weights_as_inputs: bool = False,
              opset: int = 17, ir_version: int = 8, input_type: int = TensorProto.FLOAT,
              output_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
        inputs = [helper.make_tensor_value_info("x", input_type, input_shape)]
        if weights_as_inputs:  # how IR < 4 exporters list weights
            inputs += [helper.make_tensor_value_info(w.name, w.data_type, w.dims) for w in self.weights]
        outputs = [helper.make_tensor_value_info(output, output_type, list(output_shape))]
        graph = helper.make_graph(self.nodes, "test", inputs, outputs, self.weights)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)

    def head(self, x: str, channels: int, classes: int = 5) -> str:
        """Global average pool, flatten, dense: [N, channels, h, w] -> [N, classes]."""
        flat = self.node("Flatten", self.node("GlobalAveragePool", x))
        return self.node("Gemm", flat, self.weight(channels, classes), self.weight(classes))


def chain_model() -> tuple[onnx.ModelProto, list[str]]:
    """conv, relu, conv, relu, flatten, dense: a cut point after every node."""
    b = Builder()
    t = b.node("Relu", b.conv("x", 3, 4))
    t = b.node("Relu", b.conv(t, 4, 4))
    t = b.node("Flatten", t)
    t = b.node("Gemm", t, b.weight(4 * 8 * 8, 5), b.weight(5))
    return b.model(t, ["N", 3, 8, 8], ["N", 5]), [f"t{i}" for i in range(1, 7)]


# ---------------------------------------------------------------- shapes inference loses

def flatten_by_shape(opset: int = 11) -> onnx.ModelProto:
    """torch's legacy `x.view(x.size(0), -1)`: Shape -> Gather -> Unsqueeze -> Concat -> Reshape.
    At opset <= 12 ONNX shape inference cannot propagate the target, so every later shape is lost."""
    b = Builder(3)
    t = b.node("Relu", b.conv(b.node("Relu", b.conv("x", 3, 4)), 4, 4))
    batch = b.node("Gather", b.node("Shape", t), b.const(0), axis=0)
    unsqueezed = b.node("Unsqueeze", batch, axes=[0]) if opset < 13 else b.node("Unsqueeze", batch, b.const([0]))
    target = b.node("Concat", unsqueezed, b.const([-1]), axis=0)
    flat = b.node("Reshape", t, target)
    out = b.node("Gemm", b.node("Relu", b.node("Gemm", flat, b.weight(4 * 8 * 8, 6), b.weight(6))), b.weight(6, 5))
    return b.model(out, ["N", 3, 8, 8], opset=opset)


def pad_from_constants() -> onnx.ModelProto:
    """torch's `F.pad` at opset 11: the pads come from ConstantOfShape, Concat, Reshape, Slice,
    Transpose, Reshape and Cast over constants only, which shape inference does not evaluate."""
    b = Builder(4)
    t = b.node("Relu", b.conv("x", 3, 4))
    zeros = b.node("ConstantOfShape", b.const([4]), value=helper.make_tensor("v", TensorProto.INT64, [1], [0]))
    pairs = b.node("Reshape", b.node("Concat", b.const([1, 1, 2, 2]), zeros, axis=0), b.const([-1, 2]))
    flipped = b.node("Slice", pairs, b.const([-1]), b.const([-(2 ** 62)]), b.const([0]), b.const([-1]))
    pads = b.node("Cast", b.node("Reshape", b.node("Transpose", flipped, perm=[1, 0]), b.const([-1])),
                  to=TensorProto.INT64)
    t = b.node("Relu", b.conv(b.node("Pad", t, pads), 4, 4))
    return b.model(b.head(t, 4), ["N", 3, 8, 8], opset=11)


# ---------------------------------------------------------------- dynamic dimensions

def dynamic_dims(batch: int | str, spatial: list[int | str]) -> onnx.ModelProto:
    """A classifier that runs at any height and width, its input declared [batch, 3, *spatial]
    as exporters write it: -1 or 0 as a value, '?' or a name as a parameter."""
    b = Builder(5)
    t = b.node("Relu", b.conv(b.node("Relu", b.conv("x", 3, 4)), 4, 4))
    model = b.model(b.head(t, 4), ["N", 3, "H", "W"])
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, [batch, 3, *spatial]):
        dim.Clear()
        if isinstance(value, int):
            dim.dim_value = value
        else:
            dim.dim_param = value
    return model


# ---------------------------------------------------------------- batch computed from the input

def batch_from_input() -> onnx.ModelProto:
    """A small ResNet exported with a fixed batch of 1 whose flatten computes its target as
    Concat(Shape(x)[0:1], [-1]) and reshapes with allowzero=1, and a constant [1, -1] target
    with allowzero=1 as well."""
    b = Builder(6)
    t = b.node("Relu", b.conv("x", 3, 4))
    for _ in range(3):
        t = b.node("Relu", b.node("Add", b.conv(b.node("Relu", b.conv(t, 4, 4)), 4, 4), t))
    pooled = b.node("GlobalAveragePool", t)
    target = b.node("Concat", b.node("Shape", pooled, start=0, end=1), b.const([-1]), axis=0)
    t = b.node("Gemm", b.node("Reshape", pooled, target, allowzero=1), b.weight(4, 6), b.weight(6))
    t = b.node("Reshape", b.node("Relu", t), b.const([1, -1]), allowzero=1)
    return b.model(b.node("Gemm", t, b.weight(6, 5), b.weight(5)), [1, 3, 8, 8], [1, 5], opset=17)


# ---------------------------------------------------------------- weights outside initializers

def tf2onnx_ir3() -> onnx.ModelProto:
    """IR 3, opset 9, NHWC input transposed inside, weights listed as graph inputs too (as in open-nsfw)."""
    b = Builder(7)
    t = b.node("Transpose", "x", perm=[0, 3, 1, 2])
    t = b.node("Relu", b.node("BatchNormalization", b.conv(t, 3, 4), *(b.weight(4) for _ in range(2)),
                              b.weight(4), b.const(np.ones(4), np.float32)))
    return b.model(b.head(b.node("Relu", b.conv(t, 4, 4)), 4), ["unk__1", 8, 8, 3], ["unk__2", 5], weights_as_inputs=True,
                   opset=9, ir_version=3)


def constant_node_weights() -> onnx.ModelProto:
    """Every weight stored in a Constant node instead of an initializer."""
    b = Builder(8)
    t = b.node("Relu", b.conv(b.node("Relu", b.conv("x", 3, 4)), 4, 4))
    model = b.model(b.head(t, 4), ["N", 3, 8, 8])
    graph = model.graph
    constants = [helper.make_node("Constant", [], [w.name], value=w) for w in graph.initializer]
    del graph.initializer[:]
    for node in reversed(constants):
        graph.node.insert(0, node)
    return model


# ---------------------------------------------------------------- control flow, contrib ops, quantized

def if_reads_outer() -> onnx.ModelProto:
    """An If whose branches read two outer tensors (torch's export of data-dependent code):
    neither may be cut between its producer and the If."""
    b = Builder(9)
    a = b.node("Relu", b.conv("x", 3, 4))
    c = b.conv(a, 4, 4)
    cond = b.node("Greater", b.node("ReduceMean", c, keepdims=0), b.const(0.0, np.float32))
    branches = {}
    for name, op in (("then_branch", "Add"), ("else_branch", "Sub")):
        out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None)
        branches[name] = helper.make_graph([helper.make_node(op, [c, a], [f"{name}_out"])], name, [], [out])
    t = b.node("Relu", b.node("If", cond, **branches))
    return b.model(b.head(t, 4), ["N", 3, 8, 8])


def loop_reads_outer() -> onnx.ModelProto:
    """A Loop of three steps whose body reads an outer tensor computed from the input."""
    b = Builder(10)
    a = b.node("Relu", b.conv("x", 3, 4))
    c = b.conv(a, 4, 4)
    half = b.const(0.5, np.float32)
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Mul", [c, half], ["scaled"]),
         helper.make_node("Add", ["scaled", "v_in"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)])
    t = b.node("Loop", b.const(3), b.const(True, np.bool_), a, body=body)
    return b.model(b.head(b.node("Relu", t), 4), ["N", 3, 8, 8])


def crnn(quantized: bool) -> onnx.ModelProto:
    """An OCR-style sequence model: conv features [N, C, H, W] read as a time-major sequence
    [W, N, C*H], an LSTM, and per-step scores [T, N, classes] (time-major, like CTC heads).
    quantized: onnxruntime's quantize_dynamic turns the LSTM into com.microsoft's
    DynamicQuantizeLSTM."""
    b = Builder(11)
    hidden = 6
    t = b.node("Relu", b.conv(b.node("Relu", b.conv("x", 3, 4)), 4, 4))
    seq = b.node("Transpose", b.node("Reshape", t, b.const([0, 32, 16])), perm=[2, 0, 1])  # [16, N, 32]
    lstm = b.node("LSTM", seq, b.weight(1, 4 * hidden, 32), b.weight(1, 4 * hidden, hidden), b.weight(1, 8 * hidden),
                  hidden_size=hidden)
    steps = b.node("Squeeze", lstm, b.const([1]))  # [16, N, hidden]
    out = b.node("Add", b.node("MatMul", steps, b.weight(hidden, 5)), b.weight(5))
    model = b.model(out, ["N", 3, 8, 16], [16, "N", 5])
    if not quantized:
        return model
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer suggests pre-processing on every call
    with tempfile.TemporaryDirectory() as folder:
        onnx.save(model, Path(folder) / "float.onnx")
        quantize_dynamic(Path(folder) / "float.onnx", Path(folder) / "quantized.onnx", weight_type=QuantType.QInt8,
                         op_types_to_quantize=["LSTM"])
        return onnx.load(Path(folder) / "quantized.onnx")


def qdq() -> onnx.ModelProto:
    """A small ResNet quantized by onnxruntime's quantize_static in the QDQ format: every
    activation and weight goes through QuantizeLinear/DequantizeLinear pairs."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    b = Builder(12)
    t = b.node("Relu", b.conv("x", 3, 4))
    t = b.node("Relu", b.node("Add", b.conv(b.node("Relu", b.conv(t, 4, 4)), 4, 4), t))
    model = b.model(b.head(b.node("Relu", b.conv(t, 4, 4)), 4), ["N", 3, 8, 8])

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter([{"x": rng.normal(size=(1, 3, 8, 8)).astype(np.float32)} for _ in range(8)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    logging.getLogger().setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as folder:
        onnx.save(model, Path(folder) / "float.onnx")
        quantize_static(Path(folder) / "float.onnx", Path(folder) / "qdq.onnx", Reader(), quant_format=QuantFormat.QDQ)
        return onnx.load(Path(folder) / "qdq.onnx")


# ---------------------------------------------------------------- inputs and outputs

def uint8_nhwc() -> onnx.ModelProto:
    """A model that takes camera pixels as they come: uint8 [N, H, W, 3], then Cast, /255,
    Transpose to NCHW, Conv."""
    b = Builder(13)
    t = b.node("Div", b.node("Cast", "x", to=TensorProto.FLOAT), b.const(255.0, np.float32))
    t = b.node("Relu", b.conv(b.node("Transpose", t, perm=[0, 3, 1, 2]), 3, 4))
    return b.model(b.head(b.node("Relu", b.conv(t, 4, 4)), 4), ["N", 8, 8, 3], input_type=TensorProto.UINT8)


def fp16() -> onnx.ModelProto:
    """A model in float16 end to end: input, weights, every activation and the output."""
    b = Builder(14, np.float16)
    t = b.node("Relu", b.conv(b.node("Relu", b.conv("x", 3, 4)), 4, 4))
    return b.model(b.head(t, 4), ["N", 3, 8, 8], input_type=TensorProto.FLOAT16, output_type=TensorProto.FLOAT16)


def classifier_ending_in(*ops: str, labels: list[str] | None = None) -> onnx.ModelProto:
    """A classifier whose scores go through `ops` at the end (e.g. Identity, Softmax), with
    labels in metadata_props if given (PaddlePaddle's `character` key, one per line)."""
    b = Builder(15)
    t = b.head(b.node("Relu", b.conv(b.node("Relu", b.conv("x", 3, 4)), 4, 4)), 4, classes=4)
    for op in ops:
        t = b.node(op, t, **({"axis": -1} if op == "Softmax" else {}))
    model = b.model(t, ["N", 3, 8, 8], ["N", 4])
    if labels:
        onnx.helper.set_model_props(model, {"character": "\n".join(labels)})
    return model


def detector_neck() -> onnx.ModelProto:
    """A detector in miniature: a strided backbone whose last three stages feed a feature
    pyramid (upsample and add), heads on two scales, concatenated: [N, anchors, 6]. Inside
    the neck several tensors are live at once, so there is no single-tensor cut there."""
    b = Builder(16)
    c1 = b.node("Relu", b.conv("x", 3, 8))
    c2 = b.node("Relu", b.conv(c1, 8, 8, stride=2))  # 4x4
    c3 = b.node("Relu", b.conv(c2, 8, 8, stride=2))  # 2x2
    p3 = b.conv(c3, 8, 8)
    up = b.node("Resize", p3, "", b.const([1, 1, 2, 2], np.float32), mode="nearest")
    p2 = b.node("Add", b.conv(c2, 8, 8), up)
    heads = [b.node("Transpose", b.node("Reshape", b.conv(p, 8, 6), b.const([0, 6, -1])), perm=[0, 2, 1])
             for p in (p2, p3)]
    return b.model(b.node("Concat", *heads, axis=1), ["N", 3, 8, 8], ["N", 20, 6])
