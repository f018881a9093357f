"""A Triton Inference Server model repository for a Strata model folder.

Triton (or KServe with the Triton runtime) can take the place of `strata cloud`: the
edge asks it for the same models, by the same names, over the same protocol.

    REPO/<model>-from-<k>/config.pbtxt        one model per cut point k, named as the edge asks
    REPO/<model>-from-<k>/1/model.onnx        blocks [k, N) as one graph: input "input", output "output"
    REPO/<model>-from-<k>/1/model.py          --backend python only: runs model.onnx in onnxruntime
    REPO/<model>-<variant>-from-<k>/...       the same for each pruned variant the manifest lists

Two backends:
- `onnxruntime`: `platform: "onnxruntime_onnx"`, which Triton's release containers run;
- `python`: `backend: "python"` with a model.py that calls the onnxruntime package
  (edge_server/cloud/triton_model.py), for a Triton without the ONNX Runtime backend such
  as the one inside the `nvidia-pytriton` wheel, which the tests run (testing/triton.py).

Every config states batch-first shapes (`max_batch_size`) and `dynamic_batching`, unless
the model's answers depend on their batchmates (manifest `batch_independent: false`,
dynamic quantization: see edge_server/split/prepare.py): then Triton runs each request
alone, as the edge does.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx

from edge_server.blocks.graphs import INPUT, OUTPUT
from edge_server.blocks.main_path import MainPath
from edge_server.blocks.variants import Variants
from edge_server.cloud import protocol
from edge_server.cloud.triton_cli import BACKENDS, MAX_BATCH, QUEUE_DELAY_US
from edge_server.edge.cloud_client import suffix_model_name

PYTHON_MODEL = Path(__file__).with_name("triton_model.py")


def _tensor(name: str, dtype: str, shape: tuple[int, ...]) -> str:
    datatype = "TYPE_" + protocol.datatype_of(np.empty(0, dtype))  # FP32 -> TYPE_FP32, UINT8 -> TYPE_UINT8...
    return f'  {{ name: "{name}" data_type: {datatype} dims: [ {", ".join(map(str, shape))} ] }}'


def model_config(name: str, path: MainPath, start: int, backend: str, max_batch: int, queue_delay_us: int) -> str:
    """config.pbtxt (protobuf text format) of the model serving blocks [start, N) of `path`."""
    lines = [f'name: "{name}"',
             'platform: "onnxruntime_onnx"' if backend == "onnxruntime" else 'backend: "python"',
             f"max_batch_size: {max_batch}",
             "input [", _tensor(INPUT, path.cut_dtypes[start], path.cut_shapes[start]), "]",
             "output [", _tensor(OUTPUT, path.cut_dtypes[-1], path.cut_shapes[-1]), "]"]
    if path.manifest.get("batch_independent", True):
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}")
    return "\n".join(lines) + "\n"


def write_repository(models_dir: Path, out: Path, backend: str = "onnxruntime", max_batch: int = MAX_BATCH,
                     queue_delay_us: int = QUEUE_DELAY_US) -> tuple[list[str], dict[str, str]]:
    """Write one Triton model per cut point of the model in `models_dir` (ours, or one
    `strata split` made) and of each of its variants into `out`. A model folder already
    there under the same name is replaced; anything else in `out` is left alone.

    Returns the names written and the variants refused (name -> why), which are left out.
    Raises ModelError (edge_server.blocks.main_path) if the model's files fail verification,
    ValueError for an unknown backend or a max_batch below 1."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if max_batch < 1 or queue_delay_us < 0:
        raise ValueError(f"max_batch must be at least 1 and queue_delay_us at least 0, not {max_batch}, {queue_delay_us}")
    base = MainPath(models_dir)
    variants = Variants(base, max_bytes=0)  # verifies each variant, as the servers do
    names = []
    for variant in variants.names:
        path = variants.get(variant)
        for k in range(len(path)):
            name = suffix_model_name(base.name, k, variant)
            folder = out / name
            shutil.rmtree(folder, ignore_errors=True)
            (folder / "1").mkdir(parents=True)
            (folder / "config.pbtxt").write_text(model_config(name, path, k, backend, max_batch, queue_delay_us))
            onnx.save(path.suffix(k), folder / "1" / "model.onnx")
            if backend == "python":
                shutil.copyfile(PYTHON_MODEL, folder / "1" / "model.py")
            names.append(name)
    return names, dict(variants.refused)
