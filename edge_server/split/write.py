"""Check the blocks against the full model and write them: block{k}.onnx, full.onnx and
manifest.json, the folder `strata serve` and `strata cloud` serve (STRATA_MODELS_DIR).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import onnx

from edge_server.split.cut_points import (
    CUT_RULE,
    MACS_NOTE,
    balanced_cuts,
    find_cut_points,
    node_macs,
    params,
    split_model,
)
from edge_server.split.prepare import (
    SplitError,
    prepare,
    servable_shapes,
    shape_table,
    shapes_at,
)


def _layout(shape: list[int]) -> str | None:
    """Guess for an image input (per-sample shape): NHWC if it ends, and does not start, with 1, 3 or 4 channels."""
    if len(shape) != 3:
        return None
    return "NHWC" if shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4) else "NCHW"


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
    chosen = valid if all_cuts else balanced_cuts(full, valid, max_blocks)
    pieces = split_model(full, chosen)
    graph, sample = full.graph, servable_shapes(full)
    ends = [graph.input[0].name, *chosen, graph.output[0].name]
    diff = _run_chain(full, pieces, sample[ends[0]])

    out_dir.mkdir(parents=True, exist_ok=True)
    files = {f"block{k}.onnx": piece.SerializeToString() for k, piece in enumerate(pieces)}
    files["full.onnx"] = full.SerializeToString()
    for file, data in files.items():
        (out_dir / file).write_bytes(data)
    shapes = shape_table(shapes_at(full, 1))
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
            "macs": sum(node_macs(node, shapes) for node in piece.graph.node),
            "params": params(piece),
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
