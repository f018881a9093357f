"""Small real ONNX models built in code, for tests that must not depend on training."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv_block(index: int, cin: int, cout: int, seed: int = 0) -> onnx.ModelProto:
    """conv3x3 (padding 1) + ReLU, NCHW, dynamic batch: like one block of the main path."""
    rng = np.random.default_rng(seed + index)
    weight = numpy_helper.from_array((rng.normal(size=(cout, cin, 3, 3)) / np.sqrt(cin * 9)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(size=cout).astype(np.float32) * 0.1, "b")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, f"block{index}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", cout, 8, 8])],
        [weight, bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def image_classifier(layout: str = "NCHW", size: int = 8, classes: int = 5, seed: int = 0) -> onnx.ModelProto:
    """A tiny colour-image classifier with a dynamic batch: [Transpose from NHWC], conv3x3,
    ReLU, global average pool, a dense layer; input [N, 3, size, size] or [N, size, size, 3]."""
    rng = np.random.default_rng(seed)
    weights = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
               for name, shape in (("w", (4, 3, 3, 3)), ("d", (4, classes)), ("e", (classes,)))]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2])] if layout == "NHWC" else []
    nodes += [
        helper.make_node("Conv", ["t" if layout == "NHWC" else "x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "d", "e"], ["y"]),
    ]
    shape = ["N", 3, size, size] if layout == "NCHW" else ["N", size, size, 3]
    graph = helper.make_graph(nodes, f"classifier_{layout}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def colour_classifier(size: int = 16) -> onnx.ModelProto:
    """An RGB classifier whose answer a person can predict: the picture's dominant colour,
    classes red, green, blue. Input [N, 3, size, size] normalized to [-1, 1] (mean 0.5,
    std 0.5); a 1x1 conv that keeps each channel, ReLU, a 3x3 conv that averages each
    channel, global average pool, an identity dense layer: logits are each channel's mean
    brightness above grey."""
    keep = np.zeros((3, 3, 1, 1), np.float32)
    average = np.zeros((3, 3, 3, 3), np.float32)
    for c in range(3):
        keep[c, c] = 1.0
        average[c, c] = 1 / 9
    weights = [numpy_helper.from_array(value, name) for name, value in
               (("keep", keep), ("average", average), ("dense", np.eye(3, dtype=np.float32)),
                ("bias", np.zeros(3, np.float32)))]
    nodes = [
        helper.make_node("Conv", ["x", "keep"], ["k"]),
        helper.make_node("Relu", ["k"], ["r"]),
        helper.make_node("Conv", ["r", "average"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["a"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "dense", "bias"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "colours", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def feature_map(size: int = 16) -> onnx.ModelProto:
    """A model whose output is not per-class scores, as a detector's map: input [N, 3, size,
    size], conv3x3 + ReLU, then a stride-4 conv to [N, 2, size/4, size/4]."""
    rng = np.random.default_rng(5)
    weights = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32) * 0.3, name)
               for name, shape in (("w1", (4, 3, 3, 3)), ("w2", (2, 4, 4, 4)))]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["y"], strides=[4, 4]),
    ]
    graph = helper.make_graph(nodes, "feature_map",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, size // 4, size // 4])],
                              weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
