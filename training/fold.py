"""Fold batch norm and scales into what each tier runs.

Main path: every conv absorbs its batch norm (weight * k, bias m), giving plain
conv -> ReLU -> pool modules for ONNX, described also as op lists for numpy.

Binary branch (ours after conv1, or a distilled one after any attach point): a hidden block computes z = k * dot + m per channel (k = gamma * alpha /
sigma) and the next block only sees z > 0, even after a max-pool because the map
dot -> z is monotone once channels with k < 0 have their weights negated. So z > 0
becomes the integer test dot >= threshold. The last block's k and m pass through the
global average pool and fold into the float classifier.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from strata.binary import weights_to_file
from training.model import BinaryBlock, BinaryBranch, Classifier, FloatBlock, StrataNet


def bn_affine(bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """Batch norm in eval mode as y = k * x + m, per channel, in float64."""
    sigma = np.sqrt(bn.running_var.double().numpy() + bn.eps)
    gamma, beta = bn.weight.detach().double().numpy(), bn.bias.detach().double().numpy()
    k = gamma / sigma
    return k, beta - k * bn.running_mean.double().numpy()


def folded_block(block: FloatBlock | Classifier) -> nn.Module:
    """A float block with batch norm folded: conv(+bias) -> ReLU -> [pool], or the classifier."""
    if isinstance(block, Classifier):
        folded = Classifier(block.fc.in_features)
        folded.load_state_dict(block.state_dict())
        return folded.eval()
    k, m = bn_affine(block.bn)
    conv = nn.Conv2d(block.shape.cin, block.shape.cout, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(block.conv.weight.double() * torch.from_numpy(k).view(-1, 1, 1, 1))
        conv.bias.copy_(torch.from_numpy(m))
    layers = [conv, nn.ReLU()] + ([nn.MaxPool2d(2)] if block.shape.pool else [])
    return nn.Sequential(*layers).eval()


def block_ops(block: FloatBlock | Classifier, prefix: str = "") -> list[dict]:
    """The numpy op list of a folded block; tensor names match its ONNX initializers."""
    if isinstance(block, Classifier):
        return [{"op": "gap"}, {"op": "linear", "weight": f"{prefix}fc.weight", "bias": f"{prefix}fc.bias"}]
    ops = [{"op": "conv3x3", "weight": f"{prefix}0.weight", "bias": f"{prefix}0.bias"}, {"op": "relu"}]
    return ops + ([{"op": "maxpool2"}] if block.shape.pool else [])


def block_tensors(block: nn.Module, prefix: str = "") -> dict[str, np.ndarray]:
    return {f"{prefix}{name}": value.detach().numpy().astype(np.float32) for name, value in block.state_dict().items()}


def branch_bundle(model: StrataNet) -> tuple[dict, dict[str, np.ndarray]]:
    """The browser bundle's model description and tensors: conv1 float, branch in bits."""
    conv1 = folded_block(model.conv1)
    tensors = block_tensors(conv1, "conv1.")
    *blocks, classifier = model.branch
    return {"conv1": block_ops(model.conv1, "conv1."), **fold_binary(blocks, classifier, tensors)}, tensors


def distilled_bundle(branch: BinaryBranch) -> tuple[dict, dict[str, np.ndarray]]:
    """The bundle of a distilled branch (training/distill.py): no float block; its input's
    pools and per-channel thresholds (float32), then the binary blocks in bits."""
    tensors = {"input.threshold": branch.threshold.detach().view(-1).numpy().astype(np.float32)}
    description = {"input": {"threshold": "input.threshold", "pools": branch.pools}}
    return {**description, **fold_binary(list(branch.blocks), branch.classifier, tensors)}, tensors


def fold_binary(blocks: list[BinaryBlock], classifier: Classifier, tensors: dict[str, np.ndarray]) -> dict:
    """Fold binary blocks and their classifier into bits, integer thresholds and a float16
    classifier, adding the arrays to `tensors`; returns the bundle's "binary" and
    "classifier" entries (see the module docstring)."""
    description: dict = {"binary": []}
    for index, block in enumerate(blocks, 1):
        assert isinstance(block, BinaryBlock)
        k, m = bn_affine(block.bn)
        k = k * block.scale().detach().double().numpy()
        signs = torch.where(block.weight > 0, 1.0, -1.0).detach().numpy()
        name = f"binary{index}"
        last = index == len(blocks)
        if last:
            threshold = None
            w, b = classifier.fc.weight.detach().double().numpy(), classifier.fc.bias.detach().double().numpy()
            tensors["classifier.weight"] = (w * k).astype(np.float16)
            tensors["classifier.bias"] = (b + w @ m).astype(np.float16)
        else:
            signs = signs * np.where(k < 0, -1.0, 1.0)[:, None, None, None]
            tensors[f"{name}.threshold"] = integer_thresholds(np.abs(k), m, 9 * block.shape.cin)
            threshold = f"{name}.threshold"
        tensors[f"{name}.weight"] = weights_to_file(signs)
        description["binary"].append({"weight": f"{name}.weight", "threshold": threshold,
                                      "cin": block.shape.cin, "cout": block.shape.cout, "pool": block.shape.pool})
    description["classifier"] = {"weight": "classifier.weight", "bias": "classifier.bias"}
    return description


def integer_thresholds(k: np.ndarray, m: np.ndarray, fan_in: int) -> np.ndarray:
    """Smallest integer dot with k * dot + m > 0 (k >= 0), clipped to what int16 and the layer allow."""
    never, always = fan_in + 1, -fan_in - 1
    out = np.empty(len(k), dtype=np.int16)
    for c, (kc, mc) in enumerate(zip(k, m)):
        if kc == 0:
            out[c] = always if mc > 0 else never
        else:
            out[c] = min(never, max(always, math.floor(-mc / kc) + 1))
    return out
