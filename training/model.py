"""The network: a float main path and a binary branch, each a list of blocks.

Block 0 (conv1) is shared. The main path continues with float blocks 1..N-1 and a
classifier; the branch starts from conv1's output and repeats the same block shapes
with binary (sign) weights and activations, XNOR-Net style, then its own float
classifier. Cutting the main path between any two blocks is what lets tiers split it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class BlockShape:
    """One 3x3 conv block: channels in and out, and whether a 2x2 max-pool follows."""

    cin: int
    cout: int
    pool: bool


# conv1 first. Pools come early so the wide late blocks run on small maps: their many
# weights are cheap to compute, and binary weights are what shrinks the browser bundle.
ARCHITECTURE: tuple[BlockShape, ...] = (
    BlockShape(1, 32, pool=True),
    BlockShape(32, 64, pool=True),
    BlockShape(64, 96, pool=False),
    BlockShape(96, 128, pool=True),
    BlockShape(128, 192, pool=False),
    BlockShape(192, 256, pool=False),
)
NUM_CLASSES = 10
INPUT_SIZE = 32


class FloatBlock(nn.Module):
    """conv3x3 -> batch norm -> ReLU -> optional 2x2 max-pool."""

    def __init__(self, shape: BlockShape) -> None:
        super().__init__()
        self.shape = shape
        self.conv = nn.Conv2d(shape.cin, shape.cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(shape.cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        return F.max_pool2d(x, 2) if self.shape.pool else x


class BinarizeSTE(torch.autograd.Function):
    """+1 where x > 0, else -1; gradient passed straight through where |x| <= 1."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.where(x > 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def binarize(x: torch.Tensor) -> torch.Tensor:
    return BinarizeSTE.apply(x)


class BinaryBlock(nn.Module):
    """sign(input) -> binary conv3x3 (sign weights x per-channel scale) -> BN -> pool.

    Padding uses -1 rather than 0, so every operand is +-1 and the browser can compute
    the conv as XNOR-popcount on packed bits. The output stays real; the next block
    binarizes it, so at export BN and scale fold into one integer threshold per channel.
    """

    def __init__(self, shape: BlockShape) -> None:
        super().__init__()
        self.shape = shape
        self.weight = nn.Parameter(torch.empty(shape.cout, shape.cin, 3, 3))
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
        self.bn = nn.BatchNorm2d(shape.cout)

    def scale(self) -> torch.Tensor:
        """XNOR-Net's per-output-channel scale: the mean |w| of that channel's weights."""
        return self.weight.abs().mean(dim=(1, 2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.pad(binarize(x), (1, 1, 1, 1), value=-1.0)
        w = binarize(self.weight) * self.scale().view(-1, 1, 1, 1)
        x = self.bn(F.conv2d(a, w))
        return F.max_pool2d(x, 2) if self.shape.pool else x


class Classifier(nn.Module):
    """Global average pool -> linear layer (float on both paths)."""

    def __init__(self, channels: int, classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


class StrataNet(nn.Module):
    """conv1, then the main path and the binary branch side by side."""

    def __init__(self, architecture: tuple[BlockShape, ...] = ARCHITECTURE) -> None:
        super().__init__()
        first, *rest = architecture
        self.conv1 = FloatBlock(first)
        self.main = nn.ModuleList([FloatBlock(s) for s in rest] + [Classifier(rest[-1].cout)])
        self.branch = nn.ModuleList([BinaryBlock(s) for s in rest] + [Classifier(rest[-1].cout)])
        assert not rest[-1].pool, "the last block must not pool: its BN folds into the classifier"

    def main_blocks(self) -> list[nn.Module]:
        """The main path as the list of blocks that tiers split: conv1, 1..N-1, classifier."""
        return [self.conv1, *self.main]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (main logits, branch logits)."""
        features = self.conv1(x)
        return run_blocks(self.main, features), run_blocks(self.branch, features)


def run_blocks(blocks: nn.ModuleList | list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for block in blocks:
        x = block(x)
    return x


class BinaryBranch(nn.Module):
    """A binary branch on its own (`strata branch`, training/distill.py), reading a main
    path's tensor at its attach point, already average-pooled `pools` times (the pools have
    no weights: the teacher pass applies them once, with strata.layers.avgpool2, as the
    device does). Its input becomes +-1 by a fixed per-channel `threshold`, then BinaryBlocks
    and a float Classifier, as StrataNet's branch; threshold 0 and no pools is that branch."""

    def __init__(self, shapes: list[BlockShape], classes: int, threshold: torch.Tensor, pools: int = 0) -> None:
        super().__init__()
        assert not shapes[-1].pool, "the last block must not pool: its BN folds into the classifier"
        self.pools = pools
        self.register_buffer("threshold", threshold.view(1, -1, 1, 1).float())
        self.blocks = nn.ModuleList([BinaryBlock(s) for s in shapes])
        self.classifier = Classifier(shapes[-1].cout, classes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes) from the pooled attach tensor (N, C, H, W)."""
        return self.classifier(run_blocks(self.blocks, pooled - self.threshold))
