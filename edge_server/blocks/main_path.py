"""The main path as the servers hold it: one onnxruntime session per block, verified.

Sessions are created once at start-up and reused for every request. Any range of blocks
[start, stop) runs by chaining them (each extra call costs about 20 us); the cloud's
suffix models are the same block files joined into one graph (edge_server/blocks/graphs.py).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edge_server.blocks.graphs import chain


ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
              "tensor(int8)": "int8"}


class ModelError(RuntimeError):
    """Artifacts that are missing, corrupt or inconsistent with their manifest."""


def session_options(threads: int = 1) -> ort.SessionOptions:
    """Few intra-op threads per session: concurrency comes from the worker pool instead."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return options


def load_manifest(models_dir: Path) -> dict:
    """Read manifest.json and check every artifact it lists against its sha256."""
    path = models_dir / "manifest.json"
    if not path.is_file():
        raise ModelError(f"{path} is missing: run `strata export` (or check out models/ from the repo)")
    manifest = json.loads(path.read_text())
    for name, expected in manifest["artifacts"].items():
        file = models_dir / name
        if not file.is_file():
            raise ModelError(f"{file} is missing but listed in {path}; restore models/ from the repo or re-export")
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        if digest != expected:
            raise ModelError(f"{file} has sha256 {digest}, but {path} expects {expected}; "
                             "the file is corrupt or stale: restore models/ from the repo or re-export")
    return manifest


class MainPath:
    def __init__(self, models_dir: Path, threads: int = 1) -> None:
        self.dir = models_dir
        self.manifest = load_manifest(models_dir)
        self.name: str = self.manifest["name"]
        self.blocks: list[dict] = self.manifest["blocks"]
        self.sessions = [ort.InferenceSession(str(models_dir / block["file"]), session_options(threads),
                                              providers=["CPUExecutionProvider"]) for block in self.blocks]
        self.input_names = [s.get_inputs()[0].name for s in self.sessions]
        # cut_shapes[k]: the per-sample input of block k; the last entry is the logits' shape.
        self.cut_shapes = [tuple(block["input_shape"]) for block in self.blocks]
        self.cut_shapes.append(tuple(self.blocks[-1]["output_shape"]))
        # cut_dtypes[k]: the dtype of block k's input (numpy's name), then the output's, as the
        # block files declare them: float32, or float16, uint8, int8 for models `strata split` cut.
        args = [s.get_inputs()[0] for s in self.sessions] + [self.sessions[-1].get_outputs()[0]]
        unknown = [arg.type for arg in args if arg.type not in ORT_DTYPES]
        if unknown:
            raise ModelError(f"{models_dir} has blocks exchanging {unknown[0]}; the tiers exchange "
                             f"{', '.join(ORT_DTYPES.values())} tensors only")
        self.cut_dtypes = [ORT_DTYPES[arg.type] for arg in args]

    def __len__(self) -> int:
        return len(self.blocks)

    def run(self, x: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Blocks [start, stop) on a batch; start == stop returns x unchanged."""
        for k in range(start, stop):
            x = self.sessions[k].run(None, {self.input_names[k]: x})[0]
        return x

    def suffix(self, start: int) -> onnx.ModelProto:
        """Blocks [start, N) as one graph with input "input" and output "output"."""
        return chain([onnx.load(self.dir / block["file"]) for block in self.blocks[start:]])

    def profile(self, repeats: int = 5) -> list[float]:
        """Median ms of each block at batch 1 on this machine, for the planner."""
        times = []
        for k, shape in enumerate(self.cut_shapes[:-1]):
            x = np.zeros((1, *shape), self.cut_dtypes[k])
            self.run(x, k, k + 1)  # warm-up
            samples = []
            for _ in range(repeats):
                begin = time.perf_counter()
                self.run(x, k, k + 1)
                samples.append((time.perf_counter() - begin) * 1000)
            times.append(statistics.median(samples))
        return times
