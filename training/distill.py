"""A binary branch for any classifier, distilled from the model itself (`strata branch`).

    design()     the student's shape, from the main path after the attach point K
    Teacher      the full model in onnxruntime: blocks [0, K) give the attach tensor (kept,
                 average-pooled as the branch reads it), blocks [K, N) the soft outputs
    train()      the student (training.model.BinaryBranch) on the teacher's outputs at a
                 temperature (Hinton et al.'s distillation loss), with training.train.fit
    exit_rule()  the exit rule calibrated on held-out pictures (training.calibrate), where
                 "accuracy" is agreement with the teacher

The student has the main path's structure where that is reasonable, as our own branch
has: one binary 3x3 block per main-path block after K that outputs a feature map, with
that block's channels (at most WIDTH) and a 2x2 max-pool where the main path's map gets
smaller than the branch's; a float classifier at the end. Its first map is at most
MAX_SIDE wide (2x2 average pools of the attach tensor, as many as needed), and more pools
are added while the branch would cost more than BINARY_MACS. For our model attached
after conv1 this gives our own branch's shape exactly. Torch is imported inside the
functions that need it (the `train` extra).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from strata.layers import avgpool2

from training.model import BlockShape

MAX_SIDE = 16  # the branch's first map, at most (our branch reads conv1's 16x16)
MIN_SIDE = 4  # pools stop before the first map gets smaller than this
WIDTH = 256  # channels of a binary block, at most (our branch's widest)
# Binary multiply-accumulates of a branch, at most: 4x our branch's 26 M, which runs in
# 1.6 ms in Chromium's worker on this machine (docs/bench/branch.json), so a few ms.
BINARY_MACS = 100_000_000
BATCH = 32  # views per onnxruntime call in the teacher pass


@dataclass(frozen=True)
class Design:
    pools: int  # 2x2 average pools of the attach tensor before the first binary block
    shapes: list[BlockShape]
    binary_macs: int

    def to_manifest(self) -> dict:
        return {"input_pools": self.pools, "blocks": [[s.cin, s.cout, s.pool] for s in self.shapes],
                "binary_macs": self.binary_macs}


def design(manifest: dict, attach: int) -> Design:
    """The student for a branch reading block `attach`'s input (see the module docstring).
    ValueError if that tensor is not a feature map (C, H, W)."""
    blocks = manifest["blocks"]
    shape = blocks[attach]["input_shape"]
    if len(shape) != 3:
        raise ValueError(f"the tensor at the attach point ({shape}, the input of block {attach}) is not a feature "
                         "map (C, H, W): choose another --after")
    channels, height, width = shape
    stages = [b["output_shape"] for b in blocks[attach:] if len(b["output_shape"]) == 3] or [shape]

    def build(pools: int) -> Design:
        h, w = height >> pools, width >> pools
        shapes, macs, cin = [], 0, channels
        for index, (cout, stage_h, stage_w) in enumerate(stages):
            pool = index < len(stages) - 1 and min(stage_h, stage_w) < min(h, w) and min(h, w) >= 2
            shapes.append(BlockShape(cin, min(cout, WIDTH), pool))
            macs += h * w * 9 * cin * shapes[-1].cout
            cin = shapes[-1].cout
            h, w = (h // 2, w // 2) if pool else (h, w)
        return Design(pools, shapes, macs)

    pools = 0
    while min(height, width) >> pools > MAX_SIDE:
        pools += 1
    while build(pools).binary_macs > BINARY_MACS and min(height, width) >> (pools + 1) >= MIN_SIDE:
        pools += 1
    return build(pools)


def pooled(x: np.ndarray, pools: int) -> np.ndarray:
    """The attach tensor as the branch reads it: `pools` 2x2 average pools (strata.layers, as the device)."""
    for _ in range(pools):
        x = avgpool2(x)
    return np.ascontiguousarray(x, np.float32)


def teacher_logits(output: np.ndarray, kind: str) -> np.ndarray:
    """The full model's outputs (N, ...) as logits (N, classes): probabilities become log-probabilities."""
    rows = output.reshape(len(output), -1).astype(np.float32)
    return np.log(np.clip(rows, 1e-12, None)) if kind == "probabilities" else rows


@dataclass
class Taught:
    """What the teacher gave for one split's views."""

    features: np.ndarray  # (N, C, h, w) float32: the attach tensor, pooled as the branch reads it
    logits: np.ndarray  # (N, classes) float32: the teacher's
    raw: np.ndarray  # (M, C, H, W) float32: the attach tensor of the first views, to check the exported branch


class Teacher:
    """The full model, batched in onnxruntime: blocks [0, K) and [K, N) each joined into one graph."""

    def __init__(self, head: bytes, tail: bytes, kind: str, pools: int, threads: int = 2) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.head, self.tail = (ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
                                for graph in (head, tail))
        self.kind, self.pools = kind, pools

    def __call__(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(attach tensor, logits) of a batch of model inputs."""
        features = self.head.run(None, {self.head.get_inputs()[0].name: inputs})[0]
        output = self.tail.run(None, {self.tail.get_inputs()[0].name: features})[0]
        return features.astype(np.float32), teacher_logits(output, self.kind)

    def teach(self, batches: Iterator[np.ndarray], total: int, label: str, keep_raw: int = 0) -> Taught:
        """Run every batch, with a progress bar on stderr; keep the first `keep_raw` attach tensors unpooled."""
        from tqdm import tqdm

        features, logits, raw = [], [], []
        with tqdm(total=total, desc=f"teacher, {label}", unit="view", leave=False) as bar:
            for inputs in batches:
                f, y = self(inputs)
                if sum(len(r) for r in raw) < keep_raw:
                    raw.append(f[:keep_raw - sum(len(r) for r in raw)])
                features.append(pooled(f, self.pools))
                logits.append(y)
                bar.update(len(inputs))
        return Taught(np.concatenate(features), np.concatenate(logits),
                      np.concatenate(raw) if raw else np.zeros((0, *features[0].shape[1:]), np.float32))


def batched(pictures: list, count: int, to_input: Callable[[np.ndarray], np.ndarray],
            make_views: Callable, seed: int) -> Iterator[np.ndarray]:
    """Batches of BATCH model inputs: `count` views of each picture, in order, seeded."""
    rng = np.random.default_rng(seed)
    pending: list[np.ndarray] = []
    for picture in pictures:
        pending += [to_input(view) for view in make_views(picture, count, rng)]
        while len(pending) >= BATCH:
            yield np.stack(pending[:BATCH])
            pending = pending[BATCH:]
    if pending:
        yield np.stack(pending)


def distillation_loss(student, teacher, temperature: float):
    """Hinton et al. (2015): KL divergence of the softened distributions, times T^2 (torch tensors)."""
    from torch.nn import functional as F

    return F.kl_div(F.log_softmax(student / temperature, 1), F.log_softmax(teacher / temperature, 1),
                    log_target=True, reduction="batchmean") * temperature ** 2


def thresholds(features: np.ndarray) -> np.ndarray:
    """Per-channel medians of the pooled attach tensor (N, C, h, w): each input bit is +1 half the time."""
    return np.median(features.transpose(1, 0, 2, 3).reshape(features.shape[1], -1), axis=1).astype(np.float32)


def train(plan: Design, taught: Taught, classes: int, args) -> tuple[object, float]:
    """The student trained on the teacher's soft outputs; (BinaryBranch in eval mode, seconds).
    args: epochs, lr, temperature, batch_size, seed (training.train.fit's)."""
    import torch

    from training.model import BinaryBranch
    from training.train import fit

    torch.manual_seed(args.seed)
    student = BinaryBranch(plan.shapes, classes, torch.from_numpy(thresholds(taught.features)), plan.pools)
    data = torch.from_numpy(taught.features), torch.from_numpy(taught.logits)
    begin = time.perf_counter()
    fit(student, [student], lambda x, t: distillation_loss(student(x), t, args.temperature), student.parameters(),
        data, args, "distill", args.epochs, args.lr, flip=False)
    return student.eval(), time.perf_counter() - begin


def student_logits(student, features: np.ndarray, batch: int = 512) -> np.ndarray:
    """The trained student's logits (N, classes) float32 on pooled attach tensors."""
    import torch

    with torch.no_grad():
        return np.concatenate([student(torch.from_numpy(features[i:i + batch])).numpy()
                               for i in range(0, len(features), batch)]) if len(features) else np.zeros((0, 0))


def exit_rule(student: np.ndarray, teacher: np.ndarray, max_loss_points: float) -> dict:
    """The calibrated exit rule (training.calibrate) with the teacher's argmax as the labels:
    the system agrees with the full model within `max_loss_points` on these views. ValueError
    if no threshold does."""
    from training.calibrate import calibrate

    return calibrate(student, teacher, teacher.argmax(1), tolerance=max_loss_points / 100)

