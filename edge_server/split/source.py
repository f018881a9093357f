"""The user's model file as given: loaded with its external weights, and run as it is, the
reference the chained blocks must match (not only the rewritten full.onnx)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper

from edge_server.split import SplitError
from edge_server.split.shapes import ort_session


def load(path: Path) -> tuple[onnx.ModelProto, bytes]:
    """The model with its external data loaded (looked for next to the file, wherever split
    runs from), and the file's bytes. Raises SplitError naming a missing or unreadable file."""
    path = Path(path).absolute()
    if not path.is_file():
        raise SplitError(f"{path} does not exist")
    data = path.read_bytes()
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError and others
        raise SplitError(f"{path} is not an ONNX model ({type(exc).__name__}: {exc})") from exc
    if not model.graph.node:
        raise SplitError(f"{path} is not an ONNX model, or its graph has no nodes")
    tensors = [*model.graph.initializer, *(a.t for n in model.graph.node for a in n.attribute if a.HasField("t"))]
    for tensor in tensors:
        if external_data_helper.uses_external_data(tensor):
            location = external_data_helper.ExternalDataInfo(tensor).location
            if not (path.parent / location).is_file():
                raise SplitError(f"the weights file {location} next to the model is missing: {path.name} keeps "
                                 f"its weights in {path.parent / location}; copy that file next to it")
    try:
        external_data_helper.load_external_data_for_model(model, str(path.parent))
    except Exception as exc:  # a truncated or foreign data file
        raise SplitError(f"the weights next to {path.name} cannot be read ({type(exc).__name__}: {exc}); "
                         "re-export the model or copy its data file again") from exc
    return model, data


class SourceRunner:
    """onnxruntime on the user's model. A source with a fixed batch of 1 runs one sample at a
    time; its output's batch axis (`batch_axis`, 1 for time-major outputs) moves to the front.

    It runs the file itself, unless the input declares a dimension as -1 or 0, which
    onnxruntime takes literally: then the loaded model, with only those dims made symbolic."""

    def __init__(self, path: Path, model: onnx.ModelProto, batch_axis: int = 0) -> None:
        dims = model.graph.input[0].type.tensor_type.shape.dim
        if any(d.HasField("dim_value") and d.dim_value <= 0 for d in dims):
            model = onnx.ModelProto.FromString(model.SerializeToString())
            for i, dim in enumerate(model.graph.input[0].type.tensor_type.shape.dim):
                if dim.HasField("dim_value") and dim.dim_value <= 0:
                    dim.dim_param = f"strata_dim{i}"
            self.session = ort_session(model)
        else:
            self.session = ort_session(str(Path(path).absolute()))
        self.input = self.session.get_inputs()[0]
        self.batch_axis = batch_axis

    def run(self, x: np.ndarray) -> np.ndarray:
        one_at_a_time = self.input.shape and self.input.shape[0] == 1
        parts = [self.session.run(None, {self.input.name: part})[0]
                 for part in (np.split(x, len(x)) if one_at_a_time else [x])]
        return np.moveaxis(np.concatenate(parts, axis=self.batch_axis), self.batch_axis, 0)
