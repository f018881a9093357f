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


def test_the_numpy_resize_matches_pil_bilinear() -> None:
    from strata.preprocess import resize

    pixels = np.random.default_rng(4).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for height, width in ((16, 20), (8, 8), (74, 90)):  # shrink, shrink a lot, grow
        pil = np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR), np.float32)
        ours = resize(pixels, height, width)
        assert np.abs(ours - pil).max() <= 1.01  # within one level: PIL rounds to 8 bits after each pass


def test_the_manifest_says_how_a_picture_becomes_the_input_and_what_the_output_is(tmp_path: Path) -> None:
    from tests.exporter_kinds import classifier_ending_in, uint8_nhwc

    onnx.save(classifier_ending_in("Identity", "Softmax", labels=["up", "left", "down", "right"]), tmp_path / "m.onnx")
    assert main(["split", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "a"), "--bgr", "--resize", "stretch",
                 "--mean", "0.5", "--std", "0.25", "--samples", str(_picture(tmp_path / "p.png", (9, 13)))]) == 0
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    rule = manifest["input"]["preprocess"]
    assert (rule["channel_order"], rule["resize"], rule["mean"], rule["std"], rule["given"]) == \
        ("BGR", "stretch", [0.5], [0.25], True)
    assert manifest["output"]["kind"] == "probabilities" and manifest["output"]["activation"] == "Softmax"
    assert manifest["classes"] == ["up", "left", "down", "right"]
    assert manifest["output"]["labels_from"] == "metadata_props['character']"

    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\n\n")
    assert main(["split", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "b"), "--labels",
                 str(tmp_path / "labels.txt")]) == 0
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["classes"] == ["a", "b", "c", "d"] and manifest["output"]["labels_from"] == "--labels"
    assert manifest["input"]["preprocess"]["given"] is False  # the defaults, assumed

    onnx.save(uint8_nhwc(), tmp_path / "pixels.onnx")
    assert main(["split", str(tmp_path / "pixels.onnx"), "--out", str(tmp_path / "c"), "--samples",
                 str(_picture(tmp_path / "q.png", (20, 10), (1, 2, 3)))]) == 0
    with np.load(tmp_path / "c" / "samples.npz") as samples:
        assert samples["images"].dtype == np.uint8 and (samples["images"] == [1, 2, 3]).all()
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["output"]["kind"] == "logits" and "classes" not in manifest


def test_probabilities_are_told_by_their_sums_too(tmp_path: Path) -> None:
    from tests.exporter_kinds import Builder

    b = Builder()
    scores = b.head(b.node("Relu", b.conv("x", 3, 4)), 4)
    exp = b.node("Exp", scores)  # a softmax written out, as some exporters do
    model = b.model(b.node("Div", exp, b.node("ReduceSum", exp, b.const([1]), keepdims=1)), ["N", 3, 8, 8])
    onnx.save(model, tmp_path / "m.onnx")
    assert main(["split", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["output"]["kind"] == "probabilities"


def test_other_outputs_get_samples_without_invented_labels(tmp_path: Path) -> None:
    from tests.exporter_kinds import detector_neck

    onnx.save(detector_neck(), tmp_path / "detector.onnx")
    assert main(["split", str(tmp_path / "detector.onnx"), "--out", str(tmp_path / "out"), "--samples",
                 str(_picture(tmp_path / "p.png", (16, 16)))]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["output"]["kind"] == "tensor" and manifest["samples"]["labels"] is None
    with np.load(tmp_path / "out" / "samples.npz") as samples:
        assert samples.files == ["images"]
    assert main(["split", str(tmp_path / "detector.onnx"), "--out", str(tmp_path / "o2"), "--labels",
                 str(tmp_path / "p.png")]) == 1


def test_a_bad_input_leaves_no_folder_and_an_earlier_split_intact(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    onnx.save(image_classifier("NCHW"), tmp_path / "model.onnx")
    out = tmp_path / "out"
    assert main(["split", str(tmp_path / "model.onnx"), "--out", str(out), "--samples",
                 str(tmp_path / "missing.jpg")]) == 1
    assert "missing.jpg" in capsys.readouterr().err and not out.exists()
    assert main(["split", str(tmp_path / "model.onnx"), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (tmp_path / "labels.txt").write_text("only\ntwo\n")
    assert main(["split", str(tmp_path / "model.onnx"), "--out", str(out), "--max-blocks", "2", "--labels",
                 str(tmp_path / "labels.txt")]) == 1
    assert "--labels gives 2 labels, but the output [5] has 5 classes" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # no staging left behind
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["split", str(tmp_path / "model.onnx"), "--out", str(tmp_path / "mine")]) == 1
    assert "is not a folder strata split wrote" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
