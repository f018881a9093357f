"""Join per-block ONNX graphs into one graph, e.g. the suffix a cloud model serves.

Each block file has one input and one output. Chaining prefixes every name with the
block's index (so names never clash), wires each output to the next input, and adds
Identity nodes so the result's input and output have stable names: "input" and
"output". A Triton or KServe deployment can load the result as it is.
"""

from __future__ import annotations

import onnx
from onnx import compose, helper

INPUT, OUTPUT = "input", "output"


def chain(models: list[onnx.ModelProto]) -> onnx.ModelProto:
    """One model computing models[-1](...models[0](x)); each model has one input and one output."""
    if not models:
        raise ValueError("chain needs at least one model")
    for i, model in enumerate(models):
        if len(model.graph.input) != 1 or len(model.graph.output) != 1:
            raise ValueError(f"model {i} has {len(model.graph.input)} inputs and {len(model.graph.output)} "
                             "outputs; chain needs exactly one of each")
    joined = compose.add_prefix(models[0], "b0_")
    for i, model in enumerate(models[1:], start=1):
        model = compose.add_prefix(model, f"b{i}_")
        joined = compose.merge_models(joined, model, io_map=[(joined.graph.output[0].name, model.graph.input[0].name)])
    graph = joined.graph
    first, last = graph.input[0], graph.output[0]
    graph.node.insert(0, helper.make_node("Identity", [INPUT], [first.name], name="strata_input"))
    graph.node.append(helper.make_node("Identity", [last.name], [OUTPUT], name="strata_output"))
    new_input = onnx.ValueInfoProto()
    new_input.CopyFrom(first)
    new_input.name = INPUT
    new_output = onnx.ValueInfoProto()
    new_output.CopyFrom(last)
    new_output.name = OUTPUT
    graph.input.pop()
    graph.input.append(new_input)
    graph.output.pop()
    graph.output.append(new_output)
    onnx.checker.check_model(joined)
    return joined
