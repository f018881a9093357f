"""Main-path blocks run by numpy from the committed ONNX files reproduce torch's main path."""

import json
from pathlib import Path

import numpy as np
import pytest

from strata.blocks import load_blocks, run_blocks
from strata.bundle import BundleError
from strata.onnx_weights import read_initializers
from strata.preprocess import prepare

MODELS = Path(__file__).resolve().parents[2] / "models"
SAMPLES = 10


def manifest_and_files():
    manifest = json.loads((MODELS / "manifest.json").read_text())
    return manifest, {block["file"]: (MODELS / block["file"]).read_bytes() for block in manifest["blocks"]}


def test_initializers_are_read_with_their_names_and_shapes():
    manifest, files = manifest_and_files()
    first = manifest["blocks"][1]
    weights = read_initializers(files[first["file"]])
    conv = first["ops"][0]
    cout, cin = first["output_shape"][0], first["input_shape"][0]
    assert weights[conv["weight"]].shape == (cout, cin, 3, 3) and weights[conv["bias"]].shape == (cout,)
    with pytest.raises(ValueError, match="ONNX"):
        read_initializers(b"\x0f\x00garbage")


def test_numpy_main_path_matches_torch_logits():
    manifest, files = manifest_and_files()
    with np.load(MODELS / "samples.npz") as samples:
        images, torch_logits = samples["images"][:SAMPLES], samples["main_logits"][:SAMPLES]
    x = prepare(images, manifest["input"]["mean"], manifest["input"]["std"])
    logits = run_blocks(load_blocks(manifest, files, 0, len(manifest["blocks"])), x)
    assert np.abs(logits - torch_logits).max() <= 1e-3
    assert np.array_equal(logits.argmax(1), torch_logits.argmax(1))


def test_a_block_file_that_does_not_match_the_manifest_is_refused():
    manifest, files = manifest_and_files()
    name = manifest["blocks"][2]["file"]
    files[name] = files[name][:-1] + b"\0"
    with pytest.raises(BundleError, match=f"{name} has sha256"):
        load_blocks(manifest, files, 1, 3)
