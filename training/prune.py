"""Prune the main path's channels after conv1, fine-tune, and export a family of variants.

conv1 and the binary branch are never touched, so the one browser bundle and block0.onnx
serve every variant. Blocks 1-5 lose the same share of their output channels (and the
next block, or the classifier, the matching inputs); block 1 still takes conv1's 32.
The channels go by a criterion of training/prune_criteria.py: every criterion is pruned
and fine-tuned alike at every ratio (or at --compare-at) and judged on the validation
split; the best mean accuracy keeps its variants, and prunes any ratio not compared.
Fine-tuning trains the pruned main path alone, distilling the unpruned main path's
logits, on conv1's outputs computed once: conv1 is frozen, so they never change and
most of each step's work is skipped.

Needs the model's export (`strata export`) in --out: each variant goes to
OUT/variants/pNN/ (block0..N ONNX files and a manifest in the model's format, with its
own test figures at the model's exit rule), and OUT/manifest.json and README.md list them.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from strata.blocks import load_blocks
from strata.blocks import run_blocks as run_numpy_blocks
from strata.bundle import sha256

from training.calibrate import curve, figures_at_exit
from training.card import model_card
from training.data import DATASET_DIR, Splits
from training.export import (
    MODELS_DIR,
    artifact_entries,
    cut_entries,
    run_chain,
    write_block_files,
    write_manifest,
)
from training.prune_criteria import CRITERIA
from training.train import DEFAULT_OUT

if TYPE_CHECKING:
    import torch
    from torch import nn

    from training.model import StrataNet

SUMMARY = "Prune the main path at several ratios, fine-tune, and export the variants to models/variants/."
DEFAULT_RATIOS = (0.25, 0.5, 0.75)
# "taylor" is left out by default: it never led in docs/pruning.md and costs a third of the run.
DEFAULT_CRITERIA = ("l1", "bn")
QUICK_SIZES = (1024, 256, 256)  # training, validation and test images in --quick mode
TAYLOR_BATCHES = 16  # training mini-batches that rank channels for the "taylor" criterion
BN_BATCHES = 32  # training mini-batches that re-estimate batch-norm statistics after pruning
TEMPERATURE, SOFT_WEIGHT = 4.0, 0.9  # distillation: logits softened by T, and their share of the loss
CHECK_IMAGES = 64
CHECK_TOLERANCE = 1e-4  # variant's ONNX blocks vs torch, and the numpy executor vs onnxruntime
BATCH = 256  # inference batch: larger ones ran slower on this 2-core machine


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_OUT / "model.pt", help="from `strata train`")
    parser.add_argument("--data", type=Path, default=DATASET_DIR, help="folder of the Fashion-MNIST IDX .gz files")
    parser.add_argument("--out", type=Path, default=MODELS_DIR,
                        help="the model's export (`strata export`); variants go to OUT/variants/")
    parser.add_argument("--ratios", type=float, nargs="+", default=list(DEFAULT_RATIOS),
                        help="shares of each block's channels to remove, one variant each")
    parser.add_argument("--criteria", nargs="+", choices=CRITERIA, default=list(DEFAULT_CRITERIA),
                        help="channel rankings to compare")
    parser.add_argument("--compare-at", type=float, nargs="+",
                        help="compare the criteria only at these of --ratios (default: all); the best mean "
                             "validation accuracy there picks the criterion for every ratio")
    parser.add_argument("--epochs", type=int, default=6, help="fine-tuning epochs per pruned model")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--batch-size", type=int, default=128, help="images per fine-tuning step (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the fine-tuning (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true",
                        help=f"tiny run ({QUICK_SIZES[0]} training images, 1 epoch) into --out: for tests")


def run(args: argparse.Namespace) -> int:
    import torch

    from training.data import load_splits
    from training.model import StrataNet

    torch.set_num_threads(args.threads)
    args.compare_at = args.compare_at or args.ratios
    problem = argument_problem(args)
    if problem:
        print(f"error: {problem}")
        return 2
    splits = load_splits(args.data)  # DatasetMissing: `strata` says what to install
    if args.quick:
        n_train, n_val, n_test = QUICK_SIZES
        splits = Splits(splits.train_x[:n_train], splits.train_y[:n_train], splits.val_x[:n_val],
                        splits.val_y[:n_val], splits.test_x[:n_test], splits.test_y[:n_test])
        args.epochs = 1
    start = time.perf_counter()
    checkpoint = torch.load(args.checkpoint, weights_only=False)
    model = StrataNet()
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    if not same_conv1(model, args.out):
        print(f"error: {args.checkpoint} is not the model exported in {args.out} (block0.onnx differs): "
              "run `strata export` from this checkpoint first")
        return 2
    data = cache(model, splits, checkpoint["report"]["mean"], checkpoint["report"]["std"])
    print(f"conv1 outputs and unpruned logits cached ({time.perf_counter() - start:.0f} s); "
          f"unpruned validation main {accuracy(data.val_teacher, data.val_y):.4f}", flush=True)
    base = json.loads((args.out / "manifest.json").read_text())
    entries = [export_variant(model, variant, data, base, args.out) for variant in prune_all(model, data, args)]
    record_variants(args.out, base, entries)
    for entry in entries:
        print(f"{entry['name']}: test main {entry['main_accuracy']:.4f}, system {entry['system_accuracy']:.4f}, "
              f"{entry['macs']:,} MACs -> {args.out / entry['dir']}")
    print(f"wrote {len(entries)} variants and updated {args.out / 'manifest.json'} "
          f"in {(time.perf_counter() - start) / 60:.1f} min")
    return 0


def argument_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the inputs, checked before any long work starts."""
    if not args.checkpoint.is_file():
        return f"no checkpoint at {args.checkpoint}: run `strata train` first"
    if not (args.out / "manifest.json").is_file() or not (args.out / "block0.onnx").is_file():
        return (f"no exported model in {args.out}: run `strata export` first "
                "(the variants share its block0.onnx and browser bundle)")
    if not all(0 < ratio < 1 for ratio in args.ratios):
        return f"--ratios must lie strictly between 0 and 1, got {args.ratios}"
    if not set(args.compare_at) <= set(args.ratios):
        return f"--compare-at {args.compare_at} must be among --ratios {args.ratios}"
    return None


def same_conv1(model: StrataNet, out: Path) -> bool:
    """Whether the checkpoint's conv1 exports to the very block0.onnx of the model in `out`."""
    from training.export import write_onnx
    from training.fold import folded_block
    from training.model import INPUT_SIZE

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "block0.onnx"
        write_onnx(folded_block(model.conv1), (1, INPUT_SIZE, INPUT_SIZE), path)
        return path.read_bytes() == (out / "block0.onnx").read_bytes()


@dataclass
class Cached:
    """conv1's outputs and the unpruned model's logits, computed once for every fine-tune and figure."""

    train_x: torch.Tensor  # (2, N, 32, 16, 16) float16 (half of 3.6 GB): each image, then its mirror
    train_teacher: torch.Tensor  # (2, N, 10): the unpruned main path's logits of the same
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: np.ndarray
    val_branch: np.ndarray
    val_teacher: np.ndarray
    test_x: torch.Tensor
    test_y: np.ndarray
    test_branch: np.ndarray

    def batches(self, count: int, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The first `count` training mini-batches, unmirrored: (conv1 output, labels)."""
        for first in range(0, min(count * size, len(self.train_y)), size):
            yield self.train_x[0, first:first + size].float(), self.train_y[first:first + size]


def cache(model: StrataNet, splits: Splits, mean: float, std: float) -> Cached:
    """Run conv1, the branch and the unpruned main path once over every split."""
    import torch
    from strata.preprocess import prepare

    from training.model import run_blocks

    def batched(fn, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([fn(x[first:first + BATCH]) for first in range(0, len(x), BATCH)])

    def logits(blocks, x: torch.Tensor) -> torch.Tensor:
        return batched(lambda part: run_blocks(blocks, part.float()), x)

    def conv1(images: np.ndarray) -> torch.Tensor:
        return batched(model.conv1, torch.from_numpy(prepare(images, mean, std)))

    train = torch.from_numpy(prepare(splits.train_x, mean, std))
    train_x = torch.stack([batched(lambda part: model.conv1(part).half(), view) for view in (train, train.flip(3))])
    val_x, test_x = conv1(splits.val_x), conv1(splits.test_x)
    return Cached(train_x, torch.stack([logits(model.main, views) for views in train_x]),
                  torch.from_numpy(splits.train_y.astype(np.int64)),
                  val_x, splits.val_y, logits(model.branch, val_x).numpy(), logits(model.main, val_x).numpy(),
                  test_x, splits.test_y, logits(model.branch, test_x).numpy())


@dataclass
class Variant:
    """One pruned and fine-tuned main path, and how it got there."""

    ratio: float
    criterion: str
    main: nn.ModuleList
    fine_tune: dict
    compared: dict  # criterion -> validation figures, where the criteria were compared at this ratio

    @property
    def name(self) -> str:
        return f"p{round(100 * self.ratio)}"


def prune_all(model: StrataNet, data: Cached, args: argparse.Namespace) -> list[Variant]:
    """Compare the criteria at --compare-at, then keep or prune every ratio with the best."""
    tuned = {(criterion, ratio): prune_and_tune(model.main, criterion, ratio, data, args)
             for ratio in args.compare_at for criterion in args.criteria}
    best = max(args.criteria, key=lambda c: np.mean([tuned[c, r][1]["val_main_accuracy"] for r in args.compare_at]))
    print("criterion  ratio  validation main: pruned (BN re-estimated) -> fine-tuned")
    for (criterion, ratio), (_, record) in tuned.items():
        print(f"{criterion:>9}  {ratio:5.2f}  {record['val_main_accuracy_pruned']:.4f} -> "
              f"{record['val_main_accuracy']:.4f}{'  (kept)' if criterion == best else ''}")
    variants = []
    for ratio in args.ratios:
        if (best, ratio) not in tuned:
            tuned[best, ratio] = prune_and_tune(model.main, best, ratio, data, args)
        main, record = tuned[best, ratio]
        compared = {c: {key: tuned[c, ratio][1][key] for key in ("val_main_accuracy_pruned", "val_main_accuracy")}
                    for c in args.criteria if (c, ratio) in tuned}
        variants.append(Variant(ratio, best, main, record, compared))
    return variants


def prune_and_tune(main: nn.ModuleList, criterion: str, ratio: float, data: Cached,
                   args: argparse.Namespace) -> tuple[nn.ModuleList, dict]:
    """One cell of the comparison: rank, cut, re-estimate batch norm, fine-tune."""
    from training.prune_criteria import channel_scores

    pruned = prune_main(main, channel_scores(criterion, main, data.batches(TAYLOR_BATCHES, args.batch_size)), ratio)
    recalibrate_bn(pruned, data.batches(BN_BATCHES, args.batch_size))
    print(f"== {criterion} at {ratio:.2f}: channels {[block.shape.cout for block in pruned[:-1]]}", flush=True)
    return pruned, fine_tune(pruned, data, args, f"{criterion}@{ratio:.2f}")


def prune_main(main: nn.ModuleList, scores: list[torch.Tensor], ratio: float) -> nn.ModuleList:
    """A copy of the main path keeping each conv block's best (1 - ratio) output channels by score,
    and in the next block (or the classifier) the matching input channels."""
    from torch import nn

    from training.model import BlockShape, Classifier, FloatBlock

    *blocks, classifier = main
    kept_in = list(range(blocks[0].shape.cin))  # conv1's output stays whole
    pruned: list[nn.Module] = []
    for block, score in zip(blocks, scores):
        count = max(1, round(block.shape.cout * (1 - ratio)))
        keep = sorted(score.argsort(descending=True)[:count].tolist())
        new = FloatBlock(BlockShape(len(kept_in), count, block.shape.pool))
        state = {f"bn.{key}": value[keep] if value.ndim else value for key, value in block.bn.state_dict().items()}
        new.load_state_dict({"conv.weight": block.conv.weight.detach()[keep][:, kept_in], **state})
        pruned.append(new)
        kept_in = keep
    head = Classifier(len(kept_in))
    head.load_state_dict({"fc.weight": classifier.fc.weight.detach()[:, kept_in], "fc.bias": classifier.fc.bias})
    return nn.ModuleList([*pruned, head]).eval()


def recalibrate_bn(main: nn.ModuleList, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Re-estimate every batch norm's statistics on training images. The stored ones describe the
    unpruned inputs: with them, at 50 % every criterion scored near chance before fine-tuning."""
    import torch

    from training.model import run_blocks

    bns = [block.bn for block in main[:-1]]
    momentum = bns[0].momentum
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a plain average over the batches
    main.train()
    with torch.no_grad():
        for x, _ in batches:
            run_blocks(main, x)
    for bn in bns:
        bn.momentum = momentum
    main.eval()


def fine_tune(main: nn.ModuleList, data: Cached, args: argparse.Namespace, label: str) -> dict:
    """Train the pruned main path on the cached conv1 outputs, mirrored at random as `strata train`
    does, towards the unpruned main path's logits (distillation) and the labels."""
    import torch

    from training.model import run_blocks

    n = len(data.train_y)
    steps = -(-n // args.batch_size)
    optimizer = torch.optim.AdamW(main.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=max(1, args.epochs * steps))
    generator = torch.Generator().manual_seed(args.seed)
    val = accuracy(main_logits(main, data.val_x), data.val_y)
    record = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "train_images": n,
              "distillation": {"temperature": TEMPERATURE, "soft_weight": SOFT_WEIGHT},
              "val_main_accuracy_pruned": val}
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        main.train()
        order = torch.randperm(n, generator=generator)
        views = torch.randint(0, 2, (n,), generator=generator)  # 1: the mirrored image
        total = 0.0
        for first in range(0, n, args.batch_size):
            batch = order[first:first + args.batch_size]
            view = views[batch]
            loss = distillation_loss(run_blocks(main, data.train_x[view, batch].float()),
                                     data.train_teacher[view, batch], data.train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        val = accuracy(main_logits(main, data.val_x), data.val_y)
        print(f"  {label} epoch {epoch}/{args.epochs} loss {total / steps:.4f} validation main {val:.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    main.eval()
    return {**record, "val_main_accuracy": val, "seconds": round(time.perf_counter() - start, 1)}


def distillation_loss(logits: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Hinton et al.'s: KL divergence to the teacher's softened logits (scaled by T^2), plus cross-entropy."""
    from torch.nn import functional as F

    soft = F.kl_div(F.log_softmax(logits / TEMPERATURE, 1), F.log_softmax(teacher / TEMPERATURE, 1),
                    reduction="batchmean", log_target=True)
    return SOFT_WEIGHT * TEMPERATURE ** 2 * soft + (1 - SOFT_WEIGHT) * F.cross_entropy(logits, labels)


def main_logits(main: nn.ModuleList, x: torch.Tensor) -> np.ndarray:
    import torch

    from training.model import run_blocks

    main.eval()
    with torch.no_grad():
        return torch.cat([run_blocks(main, x[first:first + BATCH].float())
                          for first in range(0, len(x), BATCH)]).numpy()


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def export_variant(model: StrataNet, variant: Variant, data: Cached, base: dict, out: Path) -> dict:
    """Write OUT/variants/NAME/ (block files and manifest) and return the model manifest's entry for it."""
    folder = out / "variants" / variant.name
    folder.mkdir(parents=True, exist_ok=True)
    shell = copy.deepcopy(model)
    shell.main = variant.main
    blocks, shapes, _ = write_block_files(shell, folder)
    if (folder / "block0.onnx").read_bytes() != (out / "block0.onnx").read_bytes():
        raise RuntimeError(f"{folder / 'block0.onnx'} differs from {out / 'block0.onnx'}: conv1 must stay the same")
    files = [block["file"] for block in blocks]
    val = (main_logits(variant.main, data.val_x), data.val_branch)
    test = (main_logits(variant.main, data.test_x), data.test_branch)
    exit_ = base["exit"]
    manifest = {
        "format": base["format"],
        "version": base["version"],
        "name": f"{base['name']}-{variant.name}",
        "model_id": sha256(b"".join((folder / name).read_bytes() for name in files))[:16],
        "classes": base["classes"],
        "input": base["input"],
        "blocks": blocks,
        "cuts": cut_entries(shapes),
        "exit": {"rule": exit_["rule"], "threshold": exit_["threshold"], "tolerance": exit_["tolerance"],
                 "validation": figures_at_exit(val, data.val_y, exit_),
                 "curves": {rule: curve(val[1], val[0], data.val_y, rule) for rule in exit_["curves"]}},
        "test": figures_at_exit(test, data.test_y, exit_),
        "variant": {"name": variant.name, "prune_ratio": variant.ratio, "criterion": variant.criterion,
                    "base_model_id": base["model_id"],
                    "channels": [block.shape.cout for block in variant.main[:-1]],
                    "macs_pruned_blocks": sum(block["macs"] for block in blocks[1:]),
                    "macs_pruned_blocks_unpruned": sum(block["macs"] for block in base["blocks"][1:]),
                    "fine_tune": variant.fine_tune, "criteria_compared": variant.compared},
        **artifact_entries(folder, files),
    }
    x = data.val_x[:CHECK_IMAGES].float().numpy()
    manifest["variant"]["checks"] = check_blocks(folder, manifest, x, val[0][:CHECK_IMAGES])
    write_manifest(manifest, folder)
    print(f"{variant.name}: exported to {folder}; test main {manifest['test']['main_accuracy']:.4f}, "
          f"checks {manifest['variant']['checks']}", flush=True)
    return {"name": variant.name, "dir": f"variants/{variant.name}", "prune_ratio": variant.ratio,
            "main_accuracy": manifest["test"]["main_accuracy"], "system_accuracy": manifest["test"]["system_accuracy"],
            "macs": sum(block["macs"] for block in blocks),
            "manifest_sha256": sha256((folder / "manifest.json").read_bytes())}


def check_blocks(folder: Path, manifest: dict, features: np.ndarray, expected: np.ndarray) -> dict:
    """Blocks 1.. from conv1's output: ONNX chained in onnxruntime against torch, and the browser's
    numpy executor (the manifest's op lists) against onnxruntime; fails over the tolerance."""
    names = [block["file"] for block in manifest["blocks"]]
    chained = run_chain(folder, names[1:], features)
    numpy_blocks = load_blocks(manifest, {name: (folder / name).read_bytes() for name in names}, 1, len(names))
    diffs = {"onnxruntime_vs_torch": float(np.abs(chained - expected).max()),
             "numpy_vs_onnxruntime": float(np.abs(run_numpy_blocks(numpy_blocks, features) - chained).max())}
    if max(diffs.values()) > CHECK_TOLERANCE:
        raise RuntimeError(f"{folder}: blocks disagree beyond {CHECK_TOLERANCE}: {diffs}")
    return {"images": len(features), "tolerance": CHECK_TOLERANCE, **diffs}


def record_variants(out: Path, base: dict, entries: list[dict]) -> None:
    """List the variants in the model's manifest (nothing else in it changes) and its model card."""
    base["variants"] = entries
    write_manifest(base, out)
    (out / "README.md").write_text(model_card(base))
