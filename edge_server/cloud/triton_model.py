"""A Triton Python-backend model: one suffix graph (model.onnx, beside this file) in onnxruntime.

`strata export-triton --backend python` copies this file as model.py into every model of
the repository it writes (edge_server/cloud/triton.py). It runs inside Triton's Python
backend stub, not in Strata: it imports only numpy, onnxruntime and the module the stub
provides, triton_python_backend_utils. The requests Triton's dynamic batcher hands over
together run as one onnxruntime call, and each gets its own rows of the output back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

INPUT, OUTPUT = "input", "output"  # the suffix graphs' names (edge_server/blocks/graphs.py)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        """Load model.onnx; one intra-op thread, as `strata cloud` runs its models: Triton's
        model instances, not threads inside one call, give the concurrency."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        graph = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    def execute(self, requests: list) -> list:
        """One response per request, in order; a failed run answers each request with its error."""
        inputs = [pb_utils.get_input_tensor_by_name(request, INPUT).as_numpy() for request in requests]
        try:
            output = self.session.run([OUTPUT], {INPUT: np.concatenate(inputs)})[0]
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types; Triton reports the text
            error = pb_utils.TritonError(f"onnxruntime failed: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        responses, row = [], 0
        for x in inputs:
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(OUTPUT, output[row:row + len(x)])]))
            row += len(x)
        return responses
