"""The page with any model `strata split` made (issue 14), in real Chromium against a real
edge and cloud: the sample pictures in the gallery with their labels, an uploaded photo
turned into the model's input in the worker by the manifest's rule and answered with the
right label, texts about this model and no other, and an output that is not per-class
scores shown as a summary. A small RGB classifier whose answer a person can predict, a
feature map, and the two real models the benchmarks use (bench/real_models.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image
from playwright.sync_api import Page
from strata.cli import main
from strata.preprocess import picture_to_input

from bench.real_models import MODELS as REAL_MODELS
from bench.real_models import photos
from bench.real_models import prepare as prepare_real
from edge_server.config import Settings
from testing.pictures import png
from testing.servers import edge_process
from tests.onnx_models import colour_classifier, feature_map

COLOURS = {"red": (220, 30, 40), "green": (30, 200, 60), "blue": (40, 50, 210)}
FOREIGN = ("Fashion-MNIST", "28×28", "greyscale", "Test image")  # wording of our own model, not of these


def _photo(colour: tuple[int, int, int], seed: int, size: tuple[int, int] = (300, 200)) -> np.ndarray:
    """A photo mostly of one colour, with noise and a grey frame: (height, width, 3) uint8."""
    rng = np.random.default_rng(seed)
    picture = np.clip(np.array(colour) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    picture[:10], picture[-10:], picture[:, :10], picture[:, -10:] = 128, 128, 128, 128
    return picture


def _split(folder: Path, model: onnx.ModelProto, pictures: dict[str, np.ndarray], *options: str) -> Path:
    onnx.save(model, folder / "model.onnx")
    for name, picture in pictures.items():
        Image.fromarray(picture).save(folder / name)
    out = folder / "split"
    assert main(["split", str(folder / "model.onnx"), "--out", str(out), "--max-blocks", "3",
                 "--samples", *(str(folder / name) for name in pictures), *options]) == 0
    return out


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`strata serve` of the colour classifier, split with --samples and --labels."""
    folder = tmp_path_factory.mktemp("colours")
    (folder / "labels.txt").write_text("\n".join(COLOURS) + "\n")
    pictures = {f"{name}.png": _photo(rgb, k) for k, (name, rgb) in enumerate(COLOURS.items())}
    out = _split(folder, colour_classifier(), pictures, "--labels", str(folder / "labels.txt"),
                 "--mean", "0.5", "--std", "0.5")
    with edge_process(models=out) as (url, _):
        yield url


def _tiles(page: Page) -> list[dict]:
    """The gallery's tiles: label, and the mean colour of the picture drawn on each."""
    return page.eval_on_selector_all("#gallery .sample", """tiles => tiles.map(t => {
        const c = t.querySelector('canvas'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const mean = [0, 1, 2].map(k => { let s = 0; for (let i = k; i < d.length; i += 4) s += d[i]; return s / (d.length / 4); });
        return {label: t.querySelector('.tile-label').textContent, name: t.getAttribute('aria-label'),
                width: c.width, height: c.height, hidden: c.hidden, mean};
    })""")


def _upload(page: Page, picture: np.ndarray, name: str = "photo.png") -> dict:
    count = int(page.get_attribute("#result", "data-count") or 0)
    page.set_input_files("#upload", files=[{"name": name, "mimeType": "image/png", "buffer": png(picture)}])
    page.wait_for_function("n => Number(document.getElementById('result').dataset.count) > n", arg=count,
                           timeout=30_000)
    return page.eval_on_selector("#result", "r => ({...r.dataset, text: r.innerText})")


def test_a_split_rgb_classifier_shows_its_samples_and_labels_an_upload(colours: str, open_page) -> None:
    watched = open_page(colours)
    page = watched.page
    tiles = _tiles(page)
    assert [tile["label"] for tile in tiles] == list(COLOURS), "each sample's label: the full model's answer"
    for tile, rgb in zip(tiles, COLOURS.values(), strict=True):
        assert not tile["hidden"] and tile["width"] == tile["height"] == 16, tile  # the model's 16x16 input
        assert np.argmax(tile["mean"]) == np.argmax(rgb), f"the thumbnail shows the sample's picture: {tile}"
    text = page.inner_text("body")
    for foreign in FOREIGN:
        assert foreign not in text, f"{foreign!r} belongs to another model"
    assert "the full model's own answer" in page.inner_text("#gallery-help")
    assert "centre crop 16×16" in page.inner_text("#input-text") and "mean 0.5" in page.inner_text("#input-text")
    assert "one of 3 classes (red, green, blue)" in page.inner_text("#input-text")
    assert page.is_hidden("#conversion"), "invert and contrast are our Fashion-MNIST model's rule only"
    assert page.inner_text("#truth-heading") == "the full model's answer"

    for name, rgb in COLOURS.items():
        answer = _upload(page, _photo(rgb, 10 + len(name), (480, 320)), f"{name}.png")
        assert int(answer["label"]) == list(COLOURS).index(name) and answer["text"].startswith(f"{name} ("), answer
        assert answer["source"] == "upload" and not answer["fallback"]
        seen = page.evaluate("""() => { const c = document.getElementById('preview');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            return [c.width, c.height, [0, 1, 2].map(k => { let s = 0; for (let i = k; i < d.length; i += 4) s += d[i];
                                                          return s / (d.length / 4); })]; }""")
        assert seen[:2] == [16, 16] and np.argmax(seen[2]) == np.argmax(rgb), f"the preview is the model's input: {seen}"
    watched.screenshot("any-model-colours")

    page.fill("#run-count", "3")
    page.click("#run")
    page.wait_for_selector("#run-summary[data-done]", timeout=60_000)
    assert "agreement with the full model 100.0 %" in page.inner_text("#run-summary")
    assert not watched.console_errors, watched.console_errors


def test_the_same_photo_gives_the_same_input_in_the_page_and_in_python(colours: str, open_page) -> None:
    """One rule, two callers: the worker's input for a photo is split's picture_to_input's."""
    watched = open_page(colours)
    page = watched.page
    manifest = json.loads(page.evaluate("fetch('/models/manifest.json').then(r => r.text())"))
    picture = _photo(COLOURS["blue"], 99, (211, 157))
    answer = _upload(page, picture)
    session = ort.InferenceSession(colour_classifier().SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": picture_to_input(picture, manifest["input"])[None]})[0][0]
    assert int(answer["label"]) == int(expected.argmax())
    confidence = page.evaluate("window.strata.callWorker('classify_sample', 2)")["confidence"]
    assert 0 < confidence <= 1


def test_a_model_that_answers_with_a_tensor_gets_a_summary_and_never_crashes(tmp_path: Path, open_page) -> None:
    pictures = {f"{name}.png": _photo(rgb, k) for k, (name, rgb) in enumerate(COLOURS.items())}
    out = _split(tmp_path, feature_map(), pictures)
    assert json.loads((out / "manifest.json").read_text())["output"]["kind"] == "tensor"
    with edge_process(models=out) as (url, _):
        watched = open_page(url)
        page = watched.page
        tiles = _tiles(page)
        assert [tile["label"] for tile in tiles] == list(pictures), "no labels: the samples' names"
        assert "2×4×4 tensor, not classes" in page.inner_text("#input-text")
        first = page.eval_on_selector("#result", "r => ({...r.dataset, text: r.innerText})")
        assert first["label"] == "-1" and first["text"].startswith("A 2×4×4 tensor from "), first
        answer = _upload(page, _photo((200, 200, 200), 3))
        assert answer["label"] == "-1" and "largest" in answer["text"] and not answer["uncertain"], answer
        summary = page.evaluate("window.strata.callWorker('classify_sample', 0)")["summary"]
        assert summary["shape"] == [2, 4, 4] and summary["min"] <= summary["top"][0]["value"] == summary["max"]
        page.fill("#run-count", "3")
        page.click("#run")
        page.wait_for_selector("#run-summary[data-done]", timeout=60_000)
        assert "agreement" not in page.inner_text("#run-summary")
        watched.screenshot("any-model-tensor")
        assert not watched.console_errors, watched.console_errors


@pytest.mark.parametrize("real", REAL_MODELS, ids=[model.name for model in REAL_MODELS])
def test_the_real_models_show_their_photos_and_label_an_upload(real, open_page) -> None:
    folder = prepare_real(real)
    manifest = json.loads((folder / "manifest.json").read_text())
    photo = next(path for path in photos(Settings().cache_dir) if path.name == "chelsea.png")  # 451 x 300: sent whole
    picture = np.asarray(Image.open(photo).convert("RGB"))
    full = ort.InferenceSession(str(folder / "full.onnx"), providers=["CPUExecutionProvider"])
    expected = full.run(None, {full.get_inputs()[0].name: picture_to_input(picture, manifest["input"])[None]})[0][0]
    with edge_process(models=folder) as (url, _):
        watched = open_page(url)
        page = watched.page
        tiles = _tiles(page)
        with np.load(folder / "samples.npz") as samples:
            labels = samples["labels"].tolist()
        classes = manifest.get("classes") or [f"class {i}" for i in range(len(expected))]
        assert [tile["label"] for tile in tiles] == [classes[label] for label in labels]
        assert all(tile["width"] == tile["height"] == 96 for tile in tiles), "thumbnails of the 224 px inputs"
        assert len({tuple(np.round(tile["mean"])) for tile in tiles}) == len(tiles), "each shows its own photo"
        assert [tile["name"].split(":")[0] for tile in tiles] == manifest["samples"]["sources"]
        text = page.inner_text("body")
        assert not [foreign for foreign in FOREIGN if foreign in text]
        assert real.name in page.inner_text("#runtime-info")

        answer = _upload(page, picture, photo.name)
        label = int(answer["label"])
        assert label == int(expected.argmax()), (answer, expected)
        assert answer["text"].startswith(f"{classes[label]} ("), answer["text"]
        watched.screenshot(f"any-model-{real.name}")
        assert not watched.console_errors, watched.console_errors
