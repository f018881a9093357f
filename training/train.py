"""Train the main path and the binary branch, both ways, and keep the better.

Strategy "joint" trains conv1, main path and branch together on the sum of both losses.
Strategy "two-stage" trains conv1 and the main path first, then the branch alone on top
of the frozen conv1. Both get the same epochs per network and the same seed; the one
with the higher mean of main-path and branch validation accuracy is kept. Its branch
then trains alone a few more epochs on the frozen conv1 (the branch is the weaker of the
two and this leaves the main path untouched), and the result is saved, with the figures
of every phase, for `strata export`. `--resume` redoes only that last phase.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from strata.preprocess import prepare, to_unit_images
from training.data import DATASET_DIR, Splits, load_splits

SUMMARY = "Train the main path and the binary branch (needs the train extra: torch)."
STRATEGIES = ("joint", "two-stage")
DEFAULT_OUT = Path("build/train")
COMPARED = "compared.pt"  # the kept model before the branch fine-tune, for --resume
QUICK_SIZES = (1024, 256)  # train and validation images in --quick mode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=DATASET_DIR, help="folder of the Fashion-MNIST IDX .gz files")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the checkpoint and report go")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per network (main path, branch)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per training step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--strategy", choices=(*STRATEGIES, "both"), default="both",
                        help="train the branch jointly with the main path, in two stages, or both and keep the "
                             "better (default: %(default)s)")
    parser.add_argument("--finetune-epochs", type=int, default=8,
                        help="then train the kept model's branch alone this many epochs on frozen conv1 (0: skip)")
    parser.add_argument("--finetune-lr", type=float, default=1e-3,
                        help="peak learning rate of the branch's fine-tuning (default: %(default)s)")
    parser.add_argument("--resume", type=Path,
                        help=f"skip the strategy comparison: load this checkpoint (OUT/{COMPARED} of an earlier "
                             "run) and only fine-tune its branch")
    parser.add_argument("--seed", type=int, default=0, help="random seed: data order and initial weights (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true",
                        help=f"tiny run on {QUICK_SIZES[0]} training images, 1 epoch: for tests")


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    splits = load_splits(args.data)  # DatasetMissing: `strata` says what to install
    if args.quick:
        n_train, n_val = QUICK_SIZES
        splits = Splits(splits.train_x[:n_train], splits.train_y[:n_train],
                        splits.val_x[:n_val], splits.val_y[:n_val], splits.test_x, splits.test_y)
        args.epochs = args.finetune_epochs = 1
    unit = to_unit_images(splits.train_x)
    mean, std = float(unit.mean()), float(unit.std())
    data = {name: (torch.from_numpy(prepare(x, mean, std)), torch.from_numpy(y.astype(np.int64)))
            for name, x, y in (("train", splits.train_x, splits.train_y), ("val", splits.val_x, splits.val_y))}
    args.out.mkdir(parents=True, exist_ok=True)
    if args.resume:
        checkpoint = torch.load(args.resume, weights_only=False)
        model, report = new_model(args.seed), checkpoint["report"]
        if "finetune" in report:
            print(f"error: {args.resume} is already fine-tuned; resume from {COMPARED} instead")
            return 2
        model.load_state_dict(checkpoint["state_dict"])
        print(f"resumed the {report['chosen']} model from {args.resume}", flush=True)
    else:
        model, report = compare_strategies(data, args)
        report.update(mean=mean, std=std, quick=args.quick, threads=args.threads,
                      machine=f"{platform.machine()}, {args.threads} torch threads, torch {torch.__version__}")
        torch.save({"state_dict": model.state_dict(), "report": report}, args.out / COMPARED)
    if args.finetune_epochs:
        start = time.perf_counter()
        train_branch_alone(model, data["train"], args, args.finetune_epochs, args.finetune_lr, "finetune/branch")
        main_acc, branch_acc = accuracies(model, *data["val"])
        report["finetune"] = {"epochs": args.finetune_epochs, "lr": args.finetune_lr,
                              "seconds": round(time.perf_counter() - start, 1),
                              "val_main_accuracy": main_acc, "val_branch_accuracy": branch_acc}
        print(f"== branch fine-tune: validation main {main_acc:.4f}, branch {branch_acc:.4f}", flush=True)
    report["total_seconds"] = round(sum(r["seconds"] for r in report["strategies"].values())
                                    + report.get("finetune", {}).get("seconds", 0), 1)
    torch.save({"state_dict": model.state_dict(), "report": report}, args.out / "model.pt")
    (args.out / "train_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out / 'model.pt'} and {args.out / 'train_report.json'}")
    return 0


def compare_strategies(data: dict, args: argparse.Namespace) -> tuple:
    """Train with each strategy; return the model with the higher mean validation accuracy, and a report."""
    strategies = STRATEGIES if args.strategy == "both" else (args.strategy,)
    results, models = {}, {}
    for strategy in strategies:
        print(f"== strategy {strategy}: {args.epochs} epoch(s) per network, {len(data['train'][1])} images", flush=True)
        start = time.perf_counter()
        models[strategy] = TRAINERS[strategy](data["train"], args)
        main_acc, branch_acc = accuracies(models[strategy], *data["val"])
        results[strategy] = {"seconds": round(time.perf_counter() - start, 1),
                             "val_main_accuracy": main_acc, "val_branch_accuracy": branch_acc}
        print(f"== {strategy}: validation main {main_acc:.4f}, branch {branch_acc:.4f}, "
              f"{results[strategy]['seconds']:.0f} s", flush=True)
    best = max(results, key=lambda s: results[s]["val_main_accuracy"] + results[s]["val_branch_accuracy"])
    print(f"== kept {best}", flush=True)
    return models[best], {"chosen": best, "strategies": results, "epochs": args.epochs,
                          "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                          "train_images": len(data["train"][1]), "validation_images": len(data["val"][1])}


def train_joint(train: tuple, args: argparse.Namespace):
    """conv1, main path and branch on the sum of the two cross-entropy losses."""
    from torch.nn import functional as F

    model = new_model(args.seed)

    def loss(x, y):
        main, branch = model(x)
        return F.cross_entropy(main, y) + F.cross_entropy(branch, y)

    fit(model, [model], loss, model.parameters(), train, args, "joint", args.epochs, args.lr)
    return model


def train_two_stage(train: tuple, args: argparse.Namespace):
    """Main path first; then the branch on conv1 frozen (weights and BN statistics)."""
    from torch.nn import functional as F

    from training.model import run_blocks

    model = new_model(args.seed)
    main_params = [*model.conv1.parameters(), *model.main.parameters()]
    fit(model, [model.conv1, model.main], lambda x, y: F.cross_entropy(run_blocks(model.main_blocks(), x), y),
        main_params, train, args, "two-stage/main", args.epochs, args.lr)
    train_branch_alone(model, train, args, args.epochs, args.lr, "two-stage/branch")
    return model


def train_branch_alone(model, train: tuple, args: argparse.Namespace, epochs: int, lr: float, label: str) -> None:
    """Train only the branch, on conv1 frozen (weights and BN statistics): the main path is untouched."""
    import torch
    from torch.nn import functional as F

    from training.model import run_blocks

    model.conv1.requires_grad_(False)

    def branch_loss(x, y):
        with torch.no_grad():
            features = model.conv1(x)
        return F.cross_entropy(run_blocks(model.branch, features), y)

    fit(model, [model.branch], branch_loss, model.branch.parameters(), train, args, label, epochs, lr)


TRAINERS: dict[str, Callable] = {"joint": train_joint, "two-stage": train_two_stage}


def new_model(seed: int):
    import torch

    from training.model import StrataNet

    torch.manual_seed(seed)
    return StrataNet()


def fit(model, trained: list, loss_fn: Callable, params: Iterable, train: tuple,
        args: argparse.Namespace, label: str, epochs: int, lr: float, flip: bool = True) -> None:
    """AdamW with a one-cycle schedule; only the `trained` modules are in train mode.
    train: (inputs, targets) tensors; `flip` mirrors half of each batch's inputs."""
    import torch

    x, y = train
    steps_per_epoch = -(-len(y) // args.batch_size)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(args.seed)
    model.eval()
    for module in trained:
        module.train()
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(y), generator=generator)
        total = 0.0
        for step, first in enumerate(range(0, len(y), args.batch_size), 1):
            batch = order[first:first + args.batch_size]
            images = x[batch]
            if flip:
                mirrored = torch.rand(len(batch), generator=generator) < 0.5  # mirror half the images
                images = torch.where(mirrored.view(-1, 1, 1, 1), images.flip(3), images)
            loss = loss_fn(images, y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
            if step % 100 == 0 or step == steps_per_epoch:
                print(f"  {label} epoch {epoch}/{epochs} batch {step}/{steps_per_epoch} "
                      f"loss {total / step:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    model.eval()


def accuracies(model, x, y, batch_size: int = 1000) -> tuple[float, float]:
    """Validation accuracy of the main path and of the branch."""
    main, branch = predict(model, x, batch_size)
    return float((main.argmax(1) == y.numpy()).mean()), float((branch.argmax(1) == y.numpy()).mean())


def predict(model, x, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Main and branch logits as float32 numpy arrays, in eval mode."""
    import torch

    model.eval()
    outputs = []
    with torch.no_grad():
        for first in range(0, len(x), batch_size):
            outputs.append([t.numpy() for t in model(x[first:first + batch_size])])
    return tuple(np.concatenate(parts) for parts in zip(*outputs))
