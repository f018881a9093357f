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
