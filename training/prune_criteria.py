"""How much each output channel of a main-path block matters: the rankings pruning compares.

- "l1": the L1 norm of the channel's filter (Li et al., 2017). Needs no data, but ignores
  the batch norm that rescales the filter's output right after.
- "bn": |gamma| of the channel's batch norm (network slimming, Liu et al., 2017): the
  scale the trained network itself gives the channel.
- "taylor": first-order Taylor estimate of the loss change when the channel is removed,
  taken through its batch norm, (gamma * dL/dgamma + beta * dL/dbeta)^2 per mini-batch
  and summed (Molchanov et al., 2019). Data-driven: it needs labelled images and gradients.

Channels are ranked within each block; every block keeps the same share of its channels.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads only when a criterion runs: `strata --help` lists the choices without it
    import torch
    from torch import nn

    from training.model import FloatBlock

CRITERIA = ("l1", "bn", "taylor")


def channel_scores(criterion: str, main: nn.ModuleList,
                   batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """One score per output channel of every conv block of `main` (higher: keep); `batches`
    of (conv1 output, label) are only read by the data-driven criterion."""
    blocks: list[FloatBlock] = list(main[:-1])
    if criterion == "l1":
        return [block.conv.weight.detach().abs().sum(dim=(1, 2, 3)) for block in blocks]
    if criterion == "bn":
        return [block.bn.weight.detach().abs() for block in blocks]
    if criterion == "taylor":
        return taylor_scores(main, blocks, batches)
    raise ValueError(f"unknown pruning criterion {criterion!r}: expected one of {CRITERIA}")


def taylor_scores(main: nn.ModuleList, blocks: list[FloatBlock],
                  batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """Taylor importance through the BN parameters, in eval mode (BN as it will be folded)."""
    import torch
    from torch.nn import functional as F

    from training.model import run_blocks

    scores = [torch.zeros(block.shape.cout) for block in blocks]
    main.eval()
    for x, y in batches:
        main.zero_grad()
        F.cross_entropy(run_blocks(main, x), y).backward()
        for score, block in zip(scores, blocks):
            bn = block.bn
            score += (bn.weight * bn.weight.grad + bn.bias * bn.bias.grad).detach() ** 2
    main.zero_grad(set_to_none=True)
    return scores
