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
