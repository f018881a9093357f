"""A model's pictures on the client (strata.client.pictures): the one rule each model has,
its inputs shown as pictures, its class names and what a page says about it."""

import json
from pathlib import Path

import numpy as np
import pytest

from strata.client.pictures import (
    as_picture,
    class_names,
    describe,
    picture_input,
    rgba,
    takes_pictures,
    thumbnail,
)
from strata.preprocess import InputError, PictureRule, fit_picture, picture_to_input

OURS = json.loads((Path(__file__).resolve().parents[2] / "models" / "manifest.json").read_text())


def _split_manifest(output, classes=None, shape=(3, 16, 16), layout="NCHW"):
    manifest = {"name": "mine", "input": {"shape": list(shape), "layout": layout, "dtype": "float32",
                                          "preprocess": PictureRule(mean=(0.5,), std=(0.5,)).to_manifest()},
                "output": output, "samples": {"count": 2, "labels": "argmax of full.onnx"}}
    if classes:
        manifest["classes"] = classes
    return manifest


SCORES = _split_manifest({"shape": [3], "kind": "logits"}, ["red", "green", "blue"])
UNNAMED = _split_manifest({"shape": [2], "kind": "probabilities"})
MAP = _split_manifest({"shape": [2, 4, 4], "kind": "tensor"})
TENSORS = _split_manifest({"shape": [3], "kind": "logits"}, shape=(16, 5), layout=None)


def _photo(height=30, width=50):
    picture = np.full((height, width, 4), 255, np.uint8)
    picture[..., :3] = np.random.default_rng(0).integers(0, 256, (height, width, 3))
    return picture


def test_class_names_come_from_the_manifest_or_the_scores():
    assert class_names(OURS) == OURS["classes"] and class_names(SCORES) == ["red", "green", "blue"]
    assert class_names(UNNAMED) == ["class 0", "class 1"]
    assert class_names(MAP) == []


def test_each_model_has_its_one_rule():
    photo = _photo()
    x, inverted = picture_input(SCORES, photo)
    assert inverted is None and np.array_equal(x, picture_to_input(photo, SCORES["input"]))
    light = np.full((60, 40, 4), 255, np.uint8)
    light[20:40, 10:30, :3] = 10
    x, inverted = picture_input(OURS, light)
    assert inverted is True and np.array_equal(x, fit_picture(light, 28, 28, invert=True))
    x, inverted = picture_input(OURS, light, invert=False, contrast=False)
    assert inverted is False and np.array_equal(x, fit_picture(light, 28, 28, invert=False, contrast=False))
    assert takes_pictures(OURS) and takes_pictures(SCORES) and not takes_pictures(TENSORS)
    with pytest.raises(InputError, match="not a picture"):
        picture_input(TENSORS, photo)


def test_inputs_show_as_pictures_and_thumbnails_shrink():
    grey = np.arange(28 * 28, dtype=np.uint32).reshape(28, 28).astype(np.uint8)
    shown = as_picture(OURS, grey)
    assert shown.shape == (28, 28, 3) and (shown[..., 2] == grey).all()
    solid = np.broadcast_to(np.array([200, 30, 90], np.uint8), (20, 24, 3))  # resized and cropped, still itself
    assert np.abs(as_picture(SCORES, picture_to_input(solid, SCORES["input"])).astype(int) - solid[:16, :16]).max() <= 1
    assert as_picture(TENSORS, np.zeros((16, 5), np.float32)) is None
    big = np.zeros((224, 112, 3), np.uint8)
    assert thumbnail(big, 96).shape == (96, 48, 3) and thumbnail(shown, 96) is shown
    assert rgba(shown).shape == (28, 28, 4) and (rgba(shown)[..., 3] == 255).all()


def test_what_a_page_says_follows_the_model():
    ours = describe(OURS)
    assert "Fashion-MNIST" in ours["samples"] and ours["size"] == [28, 28] and ours["conversion"]
    assert ours["truth"] == "true class" and ours["agreement"] == "accuracy"
    mine = describe(SCORES)
    for text in (mine["input"], mine["samples"], mine["answers"]):
        assert "Fashion-MNIST" not in text and "28×28" not in text
    assert mine["input"].startswith("the shorter side scaled to 18 px, centre crop 16×16, colour, RGB")
    assert "mean 0.5, std 0.5" in mine["input"] and mine["size"] == [16, 16] and not mine["conversion"]
    assert mine["answers"] == "one of 3 classes (red, green, blue)" and mine["truth"] == "the full model's answer"
    assert "full model's own answer" in mine["samples"]
    feature_map = describe(MAP)
    assert not feature_map["classifier"] and feature_map["answers"].startswith("a 2×4×4 tensor, not classes")
    assert "own answer" not in feature_map["samples"]
    tensors = describe(TENSORS)
    assert tensors["input"] is None and tensors["size"] == [16, 5]
