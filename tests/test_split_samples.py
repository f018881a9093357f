"""`strata split --samples`: pictures become the model's input tensors, labelled by the full model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image
from strata.cli import main

from edge_server.blocks.main_path import MainPath
from tests.onnx_models import image_classifier


def _picture(path: Path, size: tuple[int, int], colour: tuple[int, int, int] | None = None) -> Path:
    """A solid colour, or random noise, of size (width, height)."""
    if colour is None:
        pixels = np.random.default_rng(sum(size)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
    else:
        Image.new("RGB", size, colour).save(path)
    return path


def _split(tmp_path: Path, layout: str, pictures: list[Path], *options: str) -> tuple[Path, int]:
    onnx.save(image_classifier(layout), tmp_path / "model.onnx")
    out = tmp_path / "out"
    code = main(["split", str(tmp_path / "model.onnx"), "--out", str(out), "--max-blocks", "2",
                 "--samples", *map(str, pictures), *options])
    return out, code


def test_samples_are_normalized_nchw_tensors_labelled_by_the_full_model(tmp_path: Path) -> None:
    pictures = [_picture(tmp_path / "solid.png", (20, 12), (255, 0, 51)),
                _picture(tmp_path / "noise.jpg", (9, 30))]
    out, code = _split(tmp_path, "NCHW", pictures, "--mean", "0.5", "--std", "0.25")
    assert code == 0
    with np.load(out / "samples.npz") as samples:
        images, labels = samples["images"], samples["labels"]
    assert images.shape == (2, 3, 8, 8) and images.dtype == np.float32
    assert np.allclose(images[0].mean(axis=(1, 2)), [2.0, -2.0, -1.2], atol=1e-5)  # (p / 255 - 0.5) / 0.25
    full = ort.InferenceSession(str(out / "full.onnx"), providers=["CPUExecutionProvider"])
    assert labels.tolist() == full.run(None, {"x": images})[0].argmax(axis=1).tolist()

    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["samples"]
    assert entry["count"] == 2 and entry["sources"] == ["solid.png", "noise.jpg"]
    assert manifest["input"]["layout"] == "NCHW" and manifest["input"]["preprocess"]["channel_order"] == "RGB"
    assert manifest["artifacts"]["samples.npz"] == hashlib.sha256((out / "samples.npz").read_bytes()).hexdigest()
    assert MainPath(out).manifest["samples"] == entry  # the servers verify it like every artifact


def test_bgr_mean_subtraction_for_an_nhwc_model(tmp_path: Path) -> None:
    pictures = [_picture(tmp_path / "solid.png", (16, 16), (10, 20, 30))]
    out, code = _split(tmp_path, "NHWC", pictures, "--bgr", "--scale", "1", "--mean", "104", "117", "123")
    assert code == 0
    with np.load(out / "samples.npz") as samples:
        images = samples["images"]
    assert images.shape == (1, 8, 8, 3)
    assert np.allclose(images[0].mean(axis=(0, 1)), [30 - 104, 20 - 117, 10 - 123])


@pytest.mark.parametrize("options, message", [
    (["--mean", "0.1", "0.2"], "--mean needs 1 or 3 values"),
    ([], "cannot identify image file"),
])
def test_bad_samples_say_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture, options: list[str],
                                       message: str) -> None:
    picture = _picture(tmp_path / "ok.png", (8, 8)) if options else tmp_path / "text.png"
    if not options:
        picture.write_text("not a picture")
    _, code = _split(tmp_path, "NCHW", [picture], *options)
    assert code == 1 and message in capsys.readouterr().err
