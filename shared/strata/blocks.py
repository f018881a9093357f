"""Main-path float blocks run by numpy, straight from the ONNX files the edge runs.

The planner may move blocks 1.. onto the device. Rather than shipping their weights a
second time in another format, the device reads them out of the block's ONNX file and
follows the op list the manifest gives for that block.
"""

from __future__ import annotations

import numpy as np

from strata.bundle import check_artifact
from strata.layers import run_ops
from strata.onnx_weights import read_initializers


class FloatBlock:
    """One main-path block: its manifest op list and the weights from its ONNX file."""

    def __init__(self, entry: dict, onnx_bytes: bytes) -> None:
        self.name, self.ops = entry["name"], entry["ops"]
        self.tensors = read_initializers(onnx_bytes)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return run_ops(self.ops, self.tensors, x)


def load_blocks(manifest: dict, files: dict[str, bytes], first: int, stop: int) -> list[FloatBlock]:
    """Blocks [first, stop) of the main path, each file checked against the manifest's sha256."""
    entries = manifest["blocks"][first:stop]
    return [FloatBlock(entry, check_artifact(manifest, entry["file"], files)) for entry in entries]


def run_blocks(blocks: list[FloatBlock], x: np.ndarray) -> np.ndarray:
    for block in blocks:
        x = block(x)
    return x
