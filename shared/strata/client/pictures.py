"""Pictures and answers in a model's own terms: the rule that turns a photo into its
input, its inputs shown as pictures again, its class names and what a page says about it.

Each model has one rule, in strata.preprocess, and this module only picks it:

- our Fashion-MNIST model (a browser bundle; the manifest's `input.raw_size`): fit_picture,
  greyscale fitted into raw_size, a light object on a dark background, inverted when the
  picture's border is light unless the person says otherwise;
- a model made by `strata split` whose input is a picture (NCHW or NHWC, 1 or 3 channels):
  picture_to_input, by the manifest's `input.preprocess`;
- any other model takes tensors only (its samples, or a .npy file for `strata classify`).

The page's uploads and camera frames (browser/worker.py) and `strata classify` both come
here, so a photo becomes the same input wherever it is classified.
"""

from __future__ import annotations

import numpy as np

from strata.preprocess import (
    InputError,
    border_grey,
    fit_picture,
    greyscale,
    input_to_picture,
    picture_geometry,
    picture_to_input,
    resize,
)

LIGHT = 127  # a border lighter than this grey (0..255) means a dark object on a light page: invert


def class_names(manifest: dict) -> list[str]:
    """The model's class names: the manifest's `classes`, else "class 0".."class K-1" for a
    classifier's K scores, else [] (an output that is not per-class scores)."""
    if manifest.get("classes"):
        return [str(name) for name in manifest["classes"]]
    output = manifest.get("output") or {}
    if output.get("kind") in ("logits", "probabilities"):
        return [f"class {i}" for i in range(int(np.prod(output["shape"])))]
    return []


def takes_pictures(manifest: dict) -> bool:
    """Whether a photo can become this model's input."""
    if manifest["input"].get("raw_size") is not None:
        return True
    try:
        picture_geometry(manifest["input"])
    except InputError:
        return False
    return True


def picture_input(manifest: dict, pixels: np.ndarray, invert: bool | None = None,
                  contrast: bool = True) -> tuple[np.ndarray, bool | None]:
    """One photo as the model's per-sample input, by the model's rule, and whether it was
    inverted (None for a rule that never inverts).

    pixels: uint8 (H, W, 4) RGBA (a canvas's), (H, W, 3) RGB or (H, W) grey. `invert` and
    `contrast` apply to our Fashion-MNIST model only; invert None decides by the border.
    Raises InputError naming what was expected, also for a model that takes no pictures.
    """
    raw = manifest["input"].get("raw_size")
    if raw is None:
        return picture_to_input(pixels, manifest["input"]), None
    if invert is None:
        invert = border_grey(greyscale(pixels)) > LIGHT
    return fit_picture(pixels, *raw, invert=invert, contrast=contrast), invert


def as_picture(manifest: dict, sample: np.ndarray) -> np.ndarray | None:
    """One per-sample input (a shipped sample, or what picture_input made) as the picture
    the model sees: uint8 (H, W, 3) RGB; None if the model's input is not a picture."""
    if manifest["input"].get("raw_size") is not None:
        return np.repeat(np.asarray(sample, np.uint8)[..., None], 3, axis=2)
    try:
        return input_to_picture(sample, manifest["input"])
    except InputError:
        return None


def thumbnail(picture: np.ndarray, max_side: int) -> np.ndarray:
    """A uint8 (H, W, 3) picture shrunk (antialiased) so that its longer side is at most
    `max_side` pixels; as it is if already that small."""
    height, width = picture.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return picture
    size = max(1, round(height * scale)), max(1, round(width * scale))
    return np.clip(np.rint(resize(picture, *size)), 0, 255).astype(np.uint8)


def rgba(pictures: np.ndarray) -> np.ndarray:
    """uint8 (..., H, W, 3) pictures as opaque RGBA (..., H, W, 4), as a canvas takes them."""
    alpha = np.full(pictures.shape[:-1] + (1,), 255, np.uint8)
    return np.concatenate([pictures, alpha], axis=-1)


def _rule_text(model_input: dict) -> str:
    """A picture rule (the manifest's input.preprocess) in words, with its numbers."""
    height, width, channels, _ = picture_geometry(model_input)
    rule = model_input.get("preprocess") or {}
    fraction = rule.get("crop_fraction", 0.875)
    if rule.get("resize", "shorter") == "stretch":
        resized = f"scaled to {round(width / fraction)}×{round(height / fraction)} px"
    else:
        resized = f"the shorter side scaled to {round(max(height, width) / fraction)} px"
    kind = f"{'colour, ' + rule.get('channel_order', 'RGB') if channels == 3 else 'greyscale'}"
    if model_input.get("dtype") == "uint8":
        values = "pixels 0..255 as they are"
    else:
        numbers = ", ".join(f"{name} {' '.join(f'{v:g}' for v in rule.get(name, [default]))}"
                            for name, default in (("mean", 0.0), ("std", 1.0)))
        values = f"(pixels / {rule.get('scale', 255.0):g} − mean) / std with {numbers}"
    return f"{resized}, centre crop {width}×{height}, {kind}, {values}"


def describe(manifest: dict) -> dict:
    """What a page says about the model, from its manifest:

    name; input: how a photo becomes its input, in words (None: it takes no pictures);
    size: [rows, cols] of the picture it sees, or its input's shape; conversion: whether
    the invert and contrast options apply; samples: what its shipped samples are;
    truth: what a sample's label is ("true class", or the full model's own answer);
    agreement: what the share of answers equal to it measures; answers: what its output
    is; classifier: whether it answers with classes.
    """
    model_input, output = manifest["input"], manifest.get("output") or {}
    raw = model_input.get("raw_size")
    classes = class_names(manifest)
    about = {"name": manifest.get("name", "the model"), "conversion": raw is not None, "classifier": bool(classes)}
    if raw is not None:
        about.update(input=f"greyscale, fitted into {raw[1]}×{raw[0]} pixels, a light object on a dark background "
                           "as in Fashion-MNIST", size=list(raw), truth="true class", agreement="accuracy",
                     samples="Fashion-MNIST test images, each with its true class.")
    else:
        pictures = takes_pictures(manifest)
        about.update(input=_rule_text(model_input) if pictures else None,
                     size=list(picture_geometry(model_input)[:2]) if pictures else list(model_input["shape"]),
                     truth="the full model's answer" if classes else "label (none: not classes)",
                     agreement="agreement with the full model",
                     samples="The model's sample inputs" + (", each with the full model's own answer (not a ground "
                                                            "truth)." if classes else "."))
    if classes:
        shown = ", ".join(classes[:10]) + (", …" if len(classes) > 10 else "")
        about["answers"] = f"one of {len(classes)} classes ({shown})"
    else:
        about["answers"] = (f"a {'×'.join(str(d) for d in output.get('shape', []))} tensor, not classes: the page "
                            "shows its shape, range and largest values")
    return about
