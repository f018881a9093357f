"""Pruned variants: a `strata prune --quick` run against its own torch models, and the
committed variants in models/variants/ against their manifests and the issue's targets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from strata.blocks import load_blocks, run_blocks
from strata.bundle import sha256
from strata.cli import main
from strata.preprocess import prepare

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
CHECKPOINT = ROOT / "build" / "train" / "model.pt"
MANIFEST = json.loads((MODELS / "manifest.json").read_text())
UNPRUNED_CHANNELS = [block["output_shape"][0] for block in MANIFEST["blocks"][1:-1]]


def chain(folder: Path, names: list[str], x: np.ndarray) -> np.ndarray:
    for name in names:
        x = ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    return x


def samples(count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    with np.load(MODELS / "samples.npz") as shipped:
        images, labels = shipped["images"][:count], shipped["labels"][:count]
    return prepare(images, MANIFEST["input"]["mean"], MANIFEST["input"]["std"]), labels


def files_of(folder: Path, manifest: dict) -> dict[str, bytes]:
    return {block["file"]: (folder / block["file"]).read_bytes() for block in manifest["blocks"]}


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[Path, list]:
    """One --quick run into a copy of the model's manifest and block0, keeping the fine-tuned torch
    main paths it exports (the run itself keeps none)."""
    pytest.importorskip("torch", reason="pruning needs torch: pip install -e .[train]")
    from training import prune
    from training.data import DATASET_DIR

    if not (DATASET_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed: apt-get install -y dataset-fashion-mnist")
    if not CHECKPOINT.is_file():
        pytest.skip(f"no {CHECKPOINT}: run `strata train` (models/ was exported from it)")
    out = tmp_path_factory.mktemp("pruned")
    for name in ("manifest.json", "block0.onnx"):
        shutil.copy(MODELS / name, out / name)
    exported = []
    original = prune.export_variant

    def spy(model, variant, *rest):
        exported.append((model, variant))
        return original(model, variant, *rest)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prune, "export_variant", spy)
        assert main(["prune", "--quick", "--checkpoint", str(CHECKPOINT), "--out", str(out)]) == 0
    return out, exported


def test_quick_variants_chain_in_onnxruntime_to_the_pruned_torch_logits(quick):
    import torch

    from training.model import run_blocks as run_torch_blocks

    out, exported = quick
    x, _ = samples(50)
    assert [variant.ratio for _, variant in exported] == [0.25, 0.5, 0.75]
    for model, variant in exported:
        folder = out / "variants" / variant.name
        manifest = json.loads((folder / "manifest.json").read_text())
        with torch.no_grad():
            expected = run_torch_blocks([model.conv1, *variant.main], torch.from_numpy(x)).numpy()
        logits = chain(folder, [block["file"] for block in manifest["blocks"]], x)
        assert np.abs(logits - expected).max() <= 1e-4, variant.name
        numpy_blocks = load_blocks(manifest, files_of(folder, manifest), 0, len(manifest["blocks"]))
        assert np.abs(run_blocks(numpy_blocks, x[:8]) - logits[:8]).max() <= 1e-4, variant.name


def test_quick_variants_share_block0_and_shrink_channels_and_macs(quick):
    out, _ = quick
    listed = json.loads((out / "manifest.json").read_text())["variants"]
    assert [entry["name"] for entry in listed] == ["p25", "p50", "p75"]
    macs = []
    for entry in listed:
        folder = out / entry["dir"]
        manifest = json.loads((folder / "manifest.json").read_text())
        assert sha256((folder / "manifest.json").read_bytes()) == entry["manifest_sha256"]
        assert (folder / "block0.onnx").read_bytes() == (MODELS / "block0.onnx").read_bytes()
        kept = [round(c * (1 - entry["prune_ratio"])) for c in UNPRUNED_CHANNELS]
        assert [block["output_shape"][0] for block in manifest["blocks"][1:-1]] == kept
        assert manifest["blocks"][1]["input_shape"] == MANIFEST["blocks"][1]["input_shape"]  # conv1's 32 channels
        weights = onnx.load(folder / "block3.onnx").graph.initializer
        assert [list(w.dims) for w in weights if len(w.dims) == 4] == [[kept[2], kept[1], 3, 3]]
        macs.append(manifest["variant"]["macs_pruned_blocks"])
    assert macs == sorted(macs, reverse=True) and macs[0] < manifest["variant"]["macs_pruned_blocks_unpruned"]


def test_prune_without_a_checkpoint_says_to_train_first(tmp_path, capsys):
    pytest.importorskip("torch", reason="pruning needs torch: pip install -e .[train]")
    assert main(["prune", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path)]) == 2
    assert "run `strata train` first" in capsys.readouterr().out


# The committed variants


def variant(name: str) -> tuple[Path, dict]:
    entry = next(entry for entry in MANIFEST["variants"] if entry["name"] == name)
    return MODELS / entry["dir"], json.loads((MODELS / entry["dir"] / "manifest.json").read_text())


def test_committed_variants_match_their_sha256_and_share_block0_and_exit():
    assert [entry["name"] for entry in MANIFEST["variants"]] == ["p25", "p50", "p75"]
    for entry in MANIFEST["variants"]:
        folder, manifest = variant(entry["name"])
        assert sha256((folder / "manifest.json").read_bytes()) == entry["manifest_sha256"]
        for name, digest in manifest["artifacts"].items():
            assert sha256((folder / name).read_bytes()) == digest, f"{entry['name']}/{name}"
            assert (folder / name).stat().st_size == manifest["artifact_bytes"][name]
        assert (folder / "block0.onnx").read_bytes() == (MODELS / "block0.onnx").read_bytes()
        assert not (folder / "full.onnx").exists()
        assert (manifest["exit"]["rule"], manifest["exit"]["threshold"]) == (MANIFEST["exit"]["rule"],
                                                                            MANIFEST["exit"]["threshold"])
        assert manifest["test"]["main_accuracy"] == entry["main_accuracy"]


def test_committed_variant_blocks_are_opset_17_with_a_dynamic_batch():
    folder, manifest = variant("p50")
    for block in manifest["blocks"]:
        model = onnx.load(folder / block["file"])
        assert model.opset_import[0].version == 17
        graph = model.graph
        assert [graph.input[0].name, graph.output[0].name] == ["input", "output"]
        assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_p50_meets_the_issue_targets():
    _, manifest = variant("p50")
    figures = manifest["variant"]
    assert figures["macs_pruned_blocks_unpruned"] / figures["macs_pruned_blocks"] >= 1.8
    assert manifest["test"]["main_accuracy"] >= MANIFEST["test"]["main_accuracy"] - 0.010


def test_p50_blocks_classify_the_shipped_samples_in_onnxruntime_and_numpy():
    folder, manifest = variant("p50")
    x, labels = samples()
    logits = chain(folder, [block["file"] for block in manifest["blocks"]], x)
    right = (logits.argmax(1) == labels).mean()
    assert right >= 0.90 and abs(right - manifest["test"]["main_accuracy"]) <= 0.05
    numpy_blocks = load_blocks(manifest, files_of(folder, manifest), 0, len(manifest["blocks"]))
    assert np.abs(run_blocks(numpy_blocks, x[:16]) - logits[:16]).max() <= 1e-4
