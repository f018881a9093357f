"""Sample inputs for a model made by `strata split`: photos in, samples.npz out.

The worker runs a split model on the input tensors in samples.npz (it has no browser
bundle to preprocess pictures), and the benchmarks feed the same tensors to every
strategy. Such a model comes without labels, so each sample's label is the full
model's own answer (the argmax of full.onnx): "accuracy" then means agreement with the
full model, which is what offloading, cutting and lossy codecs can break.

Each image is converted to RGB (or greyscale for a 1-channel input), its shorter side
resized to input_size / CROP_FRACTION with Lanczos, centre-cropped to the input size
(the ImageNet evaluation convention), optionally flipped to BGR, then normalized as
(pixels / scale - mean) / std per channel, in the model's channel order, and laid out
as the manifest's input layout says (NCHW or NHWC).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CROP_FRACTION = 0.875  # 224 of 256, as ImageNet models are evaluated
SAMPLES_FILE = "samples.npz"


@dataclass(frozen=True)
class Normalization:
    """x = (pixels / scale - mean) / std, per channel in the model's order (after bgr)."""

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    scale: float = 255.0
    bgr: bool = False


def _geometry(manifest: dict) -> tuple[int, int, int, str]:
    """(height, width, channels, layout) of the model's per-sample input."""
    shape, layout = manifest["input"]["shape"], manifest["input"].get("layout")
    if len(shape) != 3 or layout not in ("NCHW", "NHWC"):
        raise ValueError(f"the model's input {shape} (layout {layout}) is not an image; "
                         "--samples needs an NCHW or NHWC input with 1 or 3 channels")
    channels, height, width = shape if layout == "NCHW" else (shape[2], shape[0], shape[1])
    if channels not in (1, 3):
        raise ValueError(f"the model's input has {channels} channels; --samples handles 1 (grey) or 3 (colour)")
    return height, width, channels, layout


def _per_channel(values: tuple[float, ...], channels: int, name: str) -> np.ndarray:
    if len(values) not in (1, channels):
        raise ValueError(f"--{name} needs 1 or {channels} values, got {len(values)}")
    return np.broadcast_to(np.asarray(values, np.float32), (channels,))


def load_image(path: Path, height: int, width: int, channels: int, norm: Normalization) -> np.ndarray:
    """One picture as a normalized (height, width, channels) float32 array."""
    from PIL import Image

    with Image.open(path) as opened:
        image = opened.convert("L" if channels == 1 else "RGB")
    side = max(height, width) / CROP_FRACTION
    ratio = side / min(image.size)
    image = image.resize((max(width, round(image.width * ratio)), max(height, round(image.height * ratio))),
                         Image.Resampling.LANCZOS)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    pixels = np.asarray(image.crop((left, top, left + width, top + height)), np.float32).reshape(height, width, -1)
    if norm.bgr:
        pixels = pixels[..., ::-1]
    mean, std = _per_channel(norm.mean, channels, "mean"), _per_channel(norm.std, channels, "std")
    return ((pixels / norm.scale - mean) / std).astype(np.float32)


def full_model_labels(full_onnx: Path, images: np.ndarray) -> np.ndarray:
    """The full model's argmax per sample: the reference the tiers must agree with."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(full_onnx), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: images})[0]
    return logits.reshape(len(images), -1).argmax(axis=1).astype(np.int64)


def write_samples(out_dir: Path, images: list[Path], norm: Normalization) -> dict:
    """Write samples.npz next to a split's manifest and record it there; return the manifest."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    height, width, channels, layout = _geometry(manifest)
    batch = np.stack([load_image(Path(p), height, width, channels, norm) for p in images])
    if layout == "NCHW":
        batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
    labels = full_model_labels(out_dir / manifest["full_graph"]["file"], batch)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=batch, labels=labels)
    data = buffer.getvalue()
    (out_dir / SAMPLES_FILE).write_bytes(data)
    manifest["samples"] = {"file": SAMPLES_FILE, "count": len(images), "bytes": len(data),
                           "sources": [Path(p).name for p in images],
                           "labels": "argmax of full.onnx (agreement with the full model, not ground truth)",
                           "preprocessing": {**asdict(norm), "crop_fraction": CROP_FRACTION, "layout": layout,
                                             "rule": "shorter side to size / crop_fraction (Lanczos), centre "
                                                     "crop, optional RGB->BGR, (pixels / scale - mean) / std"}}
    manifest["artifacts"][SAMPLES_FILE] = hashlib.sha256(data).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
