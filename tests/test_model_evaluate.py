"""`strata evaluate`'s system decision on the shipped samples, against torch's own outputs."""

import json

import numpy as np

from strata.exits import should_exit
from training.evaluate import MODELS_DIR, evaluate


def test_system_decision_matches_torch_outputs_on_shipped_samples():
    manifest = json.loads((MODELS_DIR / "manifest.json").read_text())
    with np.load(MODELS_DIR / "samples.npz") as samples:
        images, labels = samples["images"], samples["labels"]
        main, branch = samples["main_logits"], samples["branch_logits"]
    report = evaluate(MODELS_DIR, images, labels)
    exits = should_exit(branch, manifest["exit"]["rule"], manifest["exit"]["threshold"])
    expected = np.where(exits, branch.argmax(1), main.argmax(1))
    confusion = np.array(report["confusion"])
    assert confusion.sum() == len(labels)
    assert np.isclose(report["accuracy"], np.trace(confusion) / len(labels))
    # torch and the deployed code may differ on a sample or two near a threshold
    assert abs(report["exit_rate"] - exits.mean()) <= 2 / len(labels)
    assert abs(report["accuracy"] - (expected == labels).mean()) <= 2 / len(labels)
