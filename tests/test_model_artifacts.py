"""The committed artifacts: checksums, size ratio, ONNX block chaining, manifest figures."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from strata.bundle import sha256
from strata.preprocess import prepare

MODELS = Path(__file__).resolve().parent.parent / "models"
MANIFEST = json.loads((MODELS / "manifest.json").read_text())


def session(name):
    return ort.InferenceSession(str(MODELS / name), providers=["CPUExecutionProvider"])


def shipped_inputs(count):
    with np.load(MODELS / "samples.npz") as samples:
        return prepare(samples["images"][:count], MANIFEST["input"]["mean"], MANIFEST["input"]["std"])


def test_every_artifact_matches_its_sha256_and_size():
    for name, digest in MANIFEST["artifacts"].items():
        data = (MODELS / name).read_bytes()
        assert sha256(data) == digest, name
        assert len(data) == MANIFEST["artifact_bytes"][name], name


def test_browser_bundle_is_at_least_29x_smaller_than_the_full_graph():
    bundle = (MODELS / MANIFEST["browser_bundle"]["file"]).stat().st_size
    full = (MODELS / MANIFEST["full_graph"]["file"]).stat().st_size
    assert full / bundle >= 29, f"full graph {full} B / bundle {bundle} B = {full / bundle:.2f}"


def test_chained_blocks_equal_the_full_graph_at_any_batch_size():
    x = shipped_inputs(37)
    full = session(MANIFEST["full_graph"]["file"]).run(None, {"input": x})[0]
    chained = x
    for block in MANIFEST["blocks"]:
        chained = session(block["file"]).run(None, {"input": chained})[0]
        assert list(chained.shape[1:]) == block["output_shape"], block["name"]
    assert np.abs(full - chained).max() <= 1e-5
    single = session(MANIFEST["full_graph"]["file"]).run(None, {"input": x[:1]})[0]
    assert np.abs(single - full[:1]).max() <= 1e-5


def test_cut_bytes_follow_block_shapes():
    cuts = [cut["bytes_per_sample"] for cut in MANIFEST["cuts"]]
    assert cuts[0] == 4 * int(np.prod(MANIFEST["input"]["shape"]))
    assert cuts[1:] == [block["output_bytes_per_sample"] for block in MANIFEST["blocks"]]


def test_calibration_curve_is_complete_and_threshold_is_on_it():
    exit_ = MANIFEST["exit"]
    curve = exit_["curves"][exit_["rule"]]
    rates = [point["exit_rate"] for point in curve]
    assert rates == sorted(rates, reverse=True) and rates[-1] == 0
    assert exit_["threshold"] in [point["threshold"] for point in curve]
