"""The browser's share of the network from its bundle: the binary branch, and conv1 (float)
when the bundle holds it.

The branch reads the main path's tensor at its attach point K, the input of block K
(strata.bundle.attach_point). Our model's bundle holds conv1 (block 0, run as im2col +
matmul) and attaches at 1; a branch `strata branch` distilled for any classifier holds no
float block: the device runs blocks [0, K) from the main path's files first. The
branch's input is made bits by a per-channel threshold (0 for ours, whose conv1 ends in
ReLU), after `pools` 2x2 average pools of the attach tensor for a distilled branch that
reads a large map. From then on it runs entirely on packed bits: every binary layer is
XOR + popcount, followed by an integer threshold (scale and batch norm folded in at
export) that yields the next layer's bits. The last binary layer's integer outputs go,
averaged over the map, into a small float classifier, which absorbed that layer's
scale and batch norm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from strata.binary import (binary_conv3x3, binary_conv3x3_float_reference, or_pool2, pack_channels,
                           signs_from_words, weights_from_file)
from strata.bundle import Bundle, attach_point, load_bundle
from strata.exits import exit_score, should_exit
from strata.layers import avgpool2, linear, run_ops
from strata.preprocess import prepare


@dataclass
class BranchResult:
    """What the browser knows about a batch after its own share of the work."""

    features: np.ndarray  # the branch's input, conv1's output (N, C, H, W) float32: what is offloaded
    logits: np.ndarray  # branch logits (N, classes)
    score: np.ndarray  # exit score, higher = more confident
    exits: np.ndarray  # True where the branch answer is final


@dataclass
class BinaryLayer:
    weights: np.ndarray  # (9 * words, cout) packed, as binary_conv3x3 takes them
    cin: int
    threshold: np.ndarray | None  # int32 per channel: bit = dot >= threshold; None on the last layer
    pool: bool

    @cached_property
    def signs(self) -> np.ndarray:
        """Float +-1 weights, made once, only if the float reference is used."""
        return signs_from_words(self.weights, self.cin)


class BrowserModel:
    """[conv1 +] binary branch + exit rule, built from a verified bundle and the manifest."""

    def __init__(self, bundle: Bundle, manifest: dict) -> None:
        model, tensors = bundle.model, bundle.tensors
        self.attach = attach_point(manifest)  # the branch reads block attach's input
        self.conv1_ops = model.get("conv1")  # None: the device runs blocks [0, attach) from the main path's files
        self.float_tensors = {name: tensors[name].astype(np.float32)
                              for op in self.conv1_ops or () for key, name in op.items() if key in ("weight", "bias")}
        stem = model.get("input") or {}
        self.input_pools = int(stem.get("pools", 0))  # 2x2 average pools before the threshold
        self.input_threshold = tensors[stem["threshold"]].astype(np.float32) if stem else np.float32(0)
        self.layers = [
            BinaryLayer(weights_from_file(tensors[layer["weight"]], layer["cout"], layer["cin"]), layer["cin"],
                        None if layer["threshold"] is None else tensors[layer["threshold"]].astype(np.int32),
                        layer["pool"])
            for layer in model["binary"]
        ]
        head = model["classifier"]
        self.classifier = tensors[head["weight"]].astype(np.float32), tensors[head["bias"]].astype(np.float32)
        self.input = manifest["input"]
        self.rule, self.threshold = manifest["exit"]["rule"], manifest["exit"]["threshold"]

    @property
    def holds_conv1(self) -> bool:
        """Whether the bundle runs block 0 itself (our model's), rather than the main path's file."""
        return self.conv1_ops is not None

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Block 0's input for a batch of what the shipped samples hold: our model's
        pictures (its manifest gives raw_size) padded and normalized; a split model's
        samples are its input tensors already."""
        if "raw_size" in self.input:
            return prepare(images, self.input["mean"], self.input["std"])
        return np.asarray(images, np.float32)

    def conv1(self, images: np.ndarray) -> np.ndarray:
        """Validate and normalize images, then run block 0 from the bundle; the result is what is offloaded."""
        return run_ops(self.conv1_ops, self.float_tensors, self.prepare(images))

    def branch_logits(self, features: np.ndarray) -> np.ndarray:
        """The binary branch on block attach's input (N, C, H, W) float32, by XOR-popcount on packed bits."""
        return self._branch(features, lambda bits, layer: binary_conv3x3(pack_channels(bits), layer.weights, layer.cin))

    def branch_logits_float_reference(self, features: np.ndarray) -> np.ndarray:
        """The same branch with float +-1 matmuls instead of bits: for tests and the benchmark only."""
        return self._branch(features, lambda bits, layer: binary_conv3x3_float_reference(bits, layer.signs))

    def _branch(self, features: np.ndarray, conv: Callable[[np.ndarray, BinaryLayer], np.ndarray]) -> np.ndarray:
        for _ in range(self.input_pools):
            features = avgpool2(features)
        bits = features.transpose(0, 2, 3, 1) > self.input_threshold  # +1 above the channel's threshold
        *hidden, last = self.layers
        for layer in hidden:
            bits = conv(bits, layer) >= layer.threshold
            bits = or_pool2(bits) if layer.pool else bits
        dots = conv(bits, last)
        return linear(dots.mean(axis=(1, 2), dtype=np.float64).astype(np.float32), *self.classifier)

    def run(self, images: np.ndarray) -> BranchResult:
        """Everything the browser does for a batch with a bundle that holds conv1: conv1, branch, exit decision."""
        features = self.conv1(images)
        logits = self.branch_logits(features)
        return BranchResult(features, logits, exit_score(logits, self.rule),
                            should_exit(logits, self.rule, self.threshold))


def load_browser_model(manifest: dict, files: dict[str, bytes]) -> BrowserModel:
    """Verify and load the bundle named by the manifest from fetched bytes."""
    return BrowserModel(load_bundle(manifest, files), manifest)
