"""The browser executor on the committed model, against torch's outputs saved at export."""

import json
from pathlib import Path

import numpy as np
import pytest

from strata.executor import load_browser_model
from strata.exits import should_exit
from strata.preprocess import InputError

MODELS = Path(__file__).resolve().parents[2] / "models"
SAMPLES = 50  # keeps this file to a few seconds inside Pyodide
LOGIT_TOLERANCE = 0.05  # float16 classifier vs torch float32; see models/README.md


def load():
    manifest = json.loads((MODELS / "manifest.json").read_text())
    name = manifest["browser_bundle"]["file"]
    model = load_browser_model(manifest, {name: (MODELS / name).read_bytes()})
    with np.load(MODELS / "samples.npz") as samples:
        shipped = {key: samples[key][:SAMPLES] for key in samples.files}
    return manifest, model, shipped


def test_branch_agrees_with_torch_on_shipped_samples():
    _, model, shipped = load()
    result = model.run(shipped["images"])
    assert result.features.shape[0] == SAMPLES and result.features.dtype == np.float32
    agree = result.logits.argmax(1) == shipped["branch_logits"].argmax(1)
    assert agree.mean() >= 0.98, f"only {agree.mean():.2%} of predictions agree"
    close = np.abs(result.logits - shipped["branch_logits"]).max(axis=1) <= LOGIT_TOLERANCE
    assert close.mean() >= 0.98, f"only {close.mean():.2%} of samples have logits within {LOGIT_TOLERANCE}"


def test_bit_packed_branch_equals_float_reference_exactly():
    _, model, shipped = load()
    features = model.conv1(shipped["images"][:8])
    assert np.array_equal(model.branch_logits(features), model.branch_logits_float_reference(features))


def test_exit_decision_follows_the_manifest_rule():
    manifest, model, shipped = load()
    result = model.run(shipped["images"])
    rule, threshold = manifest["exit"]["rule"], manifest["exit"]["threshold"]
    assert np.array_equal(result.exits, should_exit(result.logits, rule, threshold))
    assert 0 < result.exits.sum() < SAMPLES


def test_bad_input_is_refused_with_the_expected_form():
    _, model, shipped = load()
    with pytest.raises(InputError, match=r"\(N, 28, 28\)"):
        model.run(shipped["images"][0])
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        model.run(shipped["images"].astype(np.float32))
