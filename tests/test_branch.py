"""`strata branch` on a small split classifier and tiny pictures (one epoch, two views):
the folder it writes (re-split at the first convolution, the bundle verified and recorded),
the CPython client using the branch, and every bad input refused in one line, leaving the
folder as it was."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

import strata.client
from edge_server.blocks.main_path import MainPath
from edge_server.split.write import write_split
from strata.cli import main
from strata.executor import load_browser_model
from strata.plan import Plan
from testing.servers import edge_process
from tests.exporter_kinds import Builder

QUICK = ["--views", "2", "--epochs", "1", "--max-loss", "100"]


def classifier() -> onnx.ModelProto:
    """Three convolutions (the first with stride 2), ReLUs, global average pool, dense, Softmax."""
    b = Builder(3)
    t = b.node("Relu", b.conv("x", 3, 8, stride=2))
    t = b.node("Relu", b.conv(t, 8, 16))
    t = b.node("Relu", b.conv(t, 16, 16, stride=2))
    return b.model(b.node("Softmax", b.head(t, 16, classes=4), axis=-1), ["N", 3, 32, 32], ["N", 4])


def pictures(folder: Path, sources: int = 6, per_source: int = 2, size: int = 40) -> Path:
    """Stripes at a random angle per source, a picture per small shift: sub-folders, one per source."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    for source in range(sources):
        angle = rng.uniform(0, np.pi)
        (folder / f"s{source}").mkdir(parents=True)
        for k in range(per_source):
            wave = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) / 3 + k)
            pixels = np.stack([wave, wave.T, -wave], axis=-1) * 100 + 128
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"s{source}" / f"{k}.png")
    return folder


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    """A split folder of the classifier: two blocks, so the first convolution's cut is inside one."""
    root = tmp_path_factory.mktemp("branch")
    onnx.save(classifier(), root / "model.onnx")
    photos = sorted(pictures(root / "photos", sources=2, per_source=2).rglob("*.png"))
    write_split(root / "model.onnx", root / "split", "tiny", max_blocks=2, pictures=photos)
    return root / "split"


@pytest.fixture(scope="module")
def branched(split: Path, tmp_path_factory) -> Path:
    """The split folder given a branch by the command."""
    root = tmp_path_factory.mktemp("branched")
    folder = root / "model"
    folder.mkdir()
    for file in split.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    assert main(["branch", str(folder), "--images", str(pictures(root / "pictures")), *QUICK]) == 0
    return folder


def test_the_branch_attaches_after_the_first_convolution_and_is_recorded_and_verified(split: Path,
                                                                                      branched: Path) -> None:
    before = json.loads((split / "manifest.json").read_text())
    manifest = MainPath(branched).manifest  # every artifact checked against its sha256
    assert len(manifest["blocks"]) == len(before["blocks"]) + 1, "the first convolution's cut became a block boundary"
    assert manifest["cuts"][1]["tensor"] == "t2" and manifest["blocks"][1]["input_shape"] == [8, 16, 16]
    entry = manifest["browser_bundle"]
    assert entry["attach"] == 1 and entry["contains_block"] is None
    assert entry["bytes"] == (branched / entry["file"]).stat().st_size
    assert manifest["branch"]["design"]["blocks"] == [[8, 16, False]]  # one block per feature map after it
    assert manifest["branch"]["executor_agreement"]["prediction_agreement"] >= 0.98
    assert set(manifest["branch"]["pictures"]) == {"train", "calibration", "test"}
    assert 0 <= manifest["test"]["exit_rate"] <= 1 and manifest["exit"]["tolerance"] == 1.0
    model = load_browser_model(manifest, {entry["file"]: (branched / entry["file"]).read_bytes()})
    assert model.branch_logits(np.zeros((2, 8, 16, 16), np.float32)).shape == (2, 4)
    with np.load(branched / "samples.npz") as samples, np.load(split / "samples.npz") as original:
        assert np.array_equal(samples["images"], original["images"])


def test_the_client_runs_the_branch_counts_exits_and_falls_back_to_it(branched: Path) -> None:
    async def scenario(url: str, process: subprocess.Popen) -> list[dict]:
        async with strata.client.connect(url.replace("http", "ws") + "/ws", probe_period_s=60) as client:
            assert client.model is not None and client.attach == 1
            blocks = client.blocks
            client.model.rule, client.model.threshold = "max_prob", 0.0  # every sample is confident enough
            answers = []
            for plan in (Plan(1, blocks, "f16", True), Plan(2, blocks, "f16", True), Plan(1, blocks, "f16", False)):
                client.set_plan(plan)
                answers.append((await client.classify(client.images[0])).to_dict())
            client.set_plan(Plan(1, blocks, "f16", True))
            client.model.threshold = 2.0  # nothing is confident enough: every sample goes on
            answers.append((await client.classify(client.images[0])).to_dict())
            process.terminate()
            process.wait(10)
            answers.append((await client.classify(client.images[0])).to_dict())
            return answers

    with edge_process(models=branched) as (url, process):
        exited, deeper, plain, offloaded, fallback = asyncio.run(scenario(url, process))
    assert exited["tier"] == "browser" and exited["exited"] and "branch_ms" in exited["timing"]
    assert deeper["exited"] and exited["label"] == deeper["label"]
    assert plain["tier"] in ("edge", "cloud") and not plain["exited"]
    assert offloaded["tier"] in ("edge", "cloud") and not offloaded["exited"]
    assert fallback["tier"] == "browser" and fallback["fallback"] and fallback["label"] == exited["label"]


def _refused(args: list[str], folder: Path, capsys) -> str:
    before = snapshot(folder)
    assert main(["branch", str(folder), *args]) == 2
    assert snapshot(folder) == before, "nothing may be written to MODEL_DIR"
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error
    return error


def test_no_pictures_is_refused(split: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert "holds no pictures" in _refused(["--images", str(tmp_path / "empty"), *QUICK], split, capsys)


def test_an_unreadable_picture_is_refused(split: Path, tmp_path: Path, capsys) -> None:
    folder = pictures(tmp_path / "pictures")
    (folder / "s0" / "broken.png").write_bytes(b"not a picture")
    assert "broken.png is not a picture" in _refused(["--images", str(folder), *QUICK], split, capsys)


def test_too_few_sources_are_refused(split: Path, tmp_path: Path, capsys) -> None:
    folder = pictures(tmp_path / "pictures", sources=2)
    assert "at least 3" in _refused(["--images", str(folder), *QUICK], split, capsys)


def test_a_model_whose_output_is_not_a_class_vector_is_refused(tmp_path: Path, capsys) -> None:
    b = Builder(4)
    model = b.model(b.node("Relu", b.conv(b.node("Relu", b.conv("x", 3, 4)), 4, 4)), ["N", 3, 8, 8], ["N", 4, 8, 8])
    onnx.save(model, tmp_path / "map.onnx")
    write_split(tmp_path / "map.onnx", tmp_path / "split", max_blocks=2)
    error = _refused(["--images", str(pictures(tmp_path / "pictures")), *QUICK], tmp_path / "split", capsys)
    assert "not a class vector" in error


def test_without_torch_it_says_what_to_install(split: Path, tmp_path: Path) -> None:
    before = snapshot(split)
    code = ("import sys; sys.modules['torch'] = None; from strata.cli import main; "
            f"sys.exit(main(['branch', {str(split)!r}, '--images', {str(pictures(tmp_path / 'p'))!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and snapshot(split) == before
    assert done.stderr.strip().startswith("error: strata branch trains with torch") and "pip install" in done.stderr
