"""Run the whole system decision over the test set, the way the tiers run it.

The browser's code (strata.executor: conv1, binary branch, exit rule) decides which
samples exit; the rest go through main-path blocks 1..N as chained ONNX files in
onnxruntime, starting from conv1's output, as the edge receives it. A branch that
`strata branch` distilled holds no conv1: the blocks before its attach point K run in
onnxruntime too, and the rest from K. No torch involved. Reports accuracy, exit rate and
the confusion matrix.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from strata.cli import CommandError

from training.data import CLASSES, DATASET_DIR, DatasetMissing, load_raw

SUMMARY = "Evaluate the browser's exit and the main path on the test set (numpy and onnxruntime)."
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
BATCH = 500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=Path, default=MODELS_DIR, help="folder with manifest.json and artifacts")
    parser.add_argument("--data", type=Path, default=DATASET_DIR, help="folder of the Fashion-MNIST IDX .gz files")
    parser.add_argument("--samples", action="store_true",
                        help="use the shipped samples (models/samples.npz) instead of the 10k test set")
    parser.add_argument("--json", type=Path, help="also write the report here")


def run(args: argparse.Namespace) -> int:
    for name in ["manifest.json", *(["samples.npz"] if args.samples else [])]:
        if not (args.models / name).is_file():
            raise CommandError(f"{args.models / name} is missing: pass --models with a folder that "
                               f"`strata export` wrote (default: {MODELS_DIR})")
    if args.samples:
        with np.load(args.models / "samples.npz") as shipped:
            images, labels = shipped["images"], shipped["labels"]
    else:
        try:
            images, labels = load_raw("t10k", args.data)
        except DatasetMissing as error:
            raise DatasetMissing(f"{error} Or pass --samples to use the shipped samples.") from None
    start = time.perf_counter()
    report = evaluate(args.models, images, labels)
    report["seconds"] = round(time.perf_counter() - start, 1)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


def evaluate(models: Path, images: np.ndarray, labels: np.ndarray) -> dict:
    """System accuracy, exit rate and confusion matrix of browser exit + main path."""
    import onnxruntime as ort

    from strata.exits import should_exit
    from strata.executor import load_browser_model

    manifest = json.loads((models / "manifest.json").read_text())
    bundle_name = manifest["browser_bundle"]["file"]
    browser = load_browser_model(manifest, {bundle_name: (models / bundle_name).read_bytes()})
    sessions = [ort.InferenceSession(str(models / block["file"]), providers=["CPUExecutionProvider"])
                for block in manifest["blocks"]]
    head, tail = sessions[:browser.attach], sessions[browser.attach:]
    predictions, exits = np.empty(len(labels), np.int64), np.empty(len(labels), bool)
    for first in range(0, len(labels), BATCH):
        part = slice(first, first + BATCH)
        features = browser.conv1(images[part]) if browser.holds_conv1 else run_sessions(head, browser.prepare(images[part]))
        logits = browser.branch_logits(features)
        exited = should_exit(logits, browser.rule, browser.threshold)
        answer = logits.argmax(1)
        if (~exited).any():
            answer[~exited] = run_sessions(tail, features[~exited]).argmax(1)
        predictions[part], exits[part] = answer, exited
        print(f"  {min(first + BATCH, len(labels))}/{len(labels)} images", flush=True)
    confusion = np.zeros((len(CLASSES), len(CLASSES)), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    right = predictions == labels
    return {"images": len(labels), "accuracy": float(right.mean()), "exit_rate": float(exits.mean()),
            "exited_accuracy": float(right[exits].mean()) if exits.any() else None,
            "offloaded_accuracy": float(right[~exits].mean()) if (~exits).any() else None,
            "rule": manifest["exit"]["rule"], "threshold": manifest["exit"]["threshold"],
            "confusion": confusion.tolist()}


def run_sessions(sessions: list, x: np.ndarray) -> np.ndarray:
    """Block files chained in onnxruntime, as the edge runs them."""
    for session in sessions:
        x = session.run(None, {session.get_inputs()[0].name: x})[0]
    return x


def print_report(report: dict) -> None:
    def share(x):
        return "n/a" if x is None else f"{x:.4f}"

    print(f"{report['images']} images: system accuracy {share(report['accuracy'])}, "
          f"exit rate {share(report['exit_rate'])} ({report['rule']} threshold {report['threshold']:.4f}), "
          f"accuracy of exited {share(report['exited_accuracy'])}, of offloaded {share(report['offloaded_accuracy'])}")
    print("confusion matrix (rows: true class, columns: predicted)")
    width = max(len(c) for c in CLASSES)
    for name, row in zip(CLASSES, report["confusion"]):
        print(f"  {name:>{width}} " + " ".join(f"{n:5d}" for n in row))
