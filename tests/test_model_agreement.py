"""The numpy browser executor against torch's branch predictions on the whole test set."""

import json
from pathlib import Path

import numpy as np
import pytest

from strata.executor import load_browser_model
from training.data import DATASET_DIR, DatasetMissing, load_raw

MODELS = Path(__file__).resolve().parent.parent / "models"


def test_executor_agrees_with_torch_on_at_least_999_in_1000_test_images():
    try:
        images, _ = load_raw("t10k", DATASET_DIR)
    except DatasetMissing as error:
        pytest.skip(str(error))
    manifest = json.loads((MODELS / "manifest.json").read_text())
    name = manifest["browser_bundle"]["file"]
    model = load_browser_model(manifest, {name: (MODELS / name).read_bytes()})
    with np.load(MODELS / "reference.npz") as reference:
        torch_pred = reference["branch_pred"]
    pred = np.concatenate([model.branch_logits(model.conv1(images[i:i + 1000])).argmax(1)
                           for i in range(0, len(images), 1000)])
    agreement = (pred == torch_pred).mean()
    assert agreement >= 0.999, f"executor and torch agree on only {agreement:.4%} of test images"
