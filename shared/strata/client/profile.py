"""How fast this device is: the numbers the planner starts from, and the branch benchmark.

All times are wall-clock milliseconds on the device the client runs on (a Web Worker in
Pyodide, or CPython), medians after a warm-up run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from strata.executor import BrowserModel


@dataclass(frozen=True)
class DeviceProfile:
    """This device's speed at start-up: the planner's first device figures."""

    conv1_ms: float | None  # the browser bundle's conv1 (None: no bundle, or one without conv1)
    branch_ms: float | None  # its binary branch (None: no bundle)
    macs_per_ms: float  # float32 matmul speed, for blocks not timed yet

    @classmethod
    def measure(cls, model: BrowserModel | None, images: np.ndarray, attach_shape: list[int] | None = None
                ) -> DeviceProfile:
        """`attach_shape`: the branch's per-sample input shape, for a bundle without conv1."""
        if model is None:
            return cls(None, None, matmul_speed())
        if model.holds_conv1:
            return cls(*profile_bundle(model, images), matmul_speed())
        return cls(None, time_branch(model, attach_shape), matmul_speed())


def median_ms(work: Callable[[], object], repeats: int = 3) -> float:
    """Median wall time of `work()` over `repeats` runs after one warm-up run, in ms."""
    work()
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        work()
        times.append((time.perf_counter() - begin) * 1000)
    return float(np.median(times))


def matmul_speed() -> float:
    """Multiply-accumulates per ms of a conv-sized float32 matmul (256x576 @ 576x64):
    how block times are estimated before the blocks are downloaded and timed."""
    a = np.ones((256, 576), np.float32)
    b = np.ones((576, 64), np.float32)
    return a.shape[0] * a.shape[1] * b.shape[1] / median_ms(lambda: a @ b)


def time_bundle(model: BrowserModel, image: np.ndarray) -> tuple[float, float]:
    """(conv1 ms, branch ms) of the browser bundle on one image (uint8, rows x cols)."""
    begin = time.perf_counter()
    features = model.conv1(image[None])
    middle = time.perf_counter()
    model.branch_logits(features)
    return (middle - begin) * 1000, (time.perf_counter() - middle) * 1000


def time_branch(model: BrowserModel, attach_shape: list[int]) -> float:
    """Median ms of a bundle's branch alone on one sample: its input is the main path's
    tensor at the attach point (per-sample `attach_shape`), which a bundle without conv1
    does not compute; XOR-popcount takes the same time whatever the bits."""
    features = np.zeros((1, *attach_shape), np.float32)
    return median_ms(lambda: model.branch_logits(features))


def profile_bundle(model: BrowserModel, images: np.ndarray, repeats: int = 5) -> tuple[float, float]:
    """Median (conv1 ms, branch ms) over the first images; the first run only warms up."""
    times = [time_bundle(model, image) for image in images[:repeats + 1]]
    conv1, branch = zip(*times[1:], strict=True)
    return float(np.median(conv1)), float(np.median(branch))


def bench_branch(model: BrowserModel, images: np.ndarray, count: int, repeats: int) -> dict:
    """Per-sample ms here: conv1, the bit-packed branch, and the same branch by float
    +-1 matmuls (a reference kept for exactly this comparison), medians over `count`
    images of `repeats` runs each; `agree` says both branches pick the same labels."""
    images = images[:count]
    features = [model.conv1(image[None]) for image in images]

    def per_sample(work: Callable[[int], object]) -> float:
        return float(np.median([median_ms(lambda i=i: work(i), repeats) for i in range(len(images))]))

    return {"conv1_ms": per_sample(lambda i: model.conv1(images[i][None])),
            "branch_ms": per_sample(lambda i: model.branch_logits(features[i])),
            "branch_float_ms": per_sample(lambda i: model.branch_logits_float_reference(features[i])),
            "agree": all(int(model.branch_logits(f).argmax()) == int(model.branch_logits_float_reference(f).argmax())
                         for f in features)}
