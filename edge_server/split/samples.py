"""Sample inputs for a model made by `strata split`: pictures in, samples.npz out.

The worker runs a split model on the input tensors in samples.npz, and the benchmarks
feed the same tensors to every strategy. Each picture becomes the model's input by the
rule the manifest records, through strata.preprocess.picture_to_input: the function the
page uses for uploads too. A classifier's samples are labelled with the full model's own
answer (the argmax of full.onnx): "accuracy" then means agreement with the full model,
which is what offloading, cutting and lossy codecs can break. Other outputs (a detection
map, a sequence) get no labels: an argmax over them would mean nothing.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from strata.preprocess import InputError, picture_to_input

from edge_server.split import SplitError

SAMPLES_FILE = "samples.npz"
LABELS_NOTE = "argmax of full.onnx (agreement with the full model, not ground truth)"


def read_pictures(paths: list[Path]) -> list[np.ndarray]:
    """Every picture decoded to uint8 (H, W, 3) RGB; SplitError naming the first that cannot be."""
    from PIL import Image, UnidentifiedImageError

    pictures = []
    for path in paths:
        try:
            with Image.open(path) as opened:
                pictures.append(np.asarray(opened.convert("RGB"), np.uint8))
        except (OSError, UnidentifiedImageError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise SplitError(f"--samples: {path}: {reason}") from None
    return pictures


def sample_inputs(pictures: list[np.ndarray], model_input: dict) -> np.ndarray:
    """The pictures as a batch of the model's input (manifest `input` entry), batch first."""
    try:
        return np.stack([picture_to_input(picture, model_input) for picture in pictures])
    except InputError as exc:
        raise SplitError(f"--samples: {exc}") from None


def samples_file(inputs: np.ndarray, labels: np.ndarray | None) -> bytes:
    """samples.npz: `images` (the input tensors) and, for a classifier, `labels` (int64)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=inputs, **({} if labels is None else {"labels": labels}))
    return buffer.getvalue()


def samples_entry(paths: list[Path], data: bytes, labelled: bool) -> dict:
    """The manifest's `samples`; the rule that made them is the manifest's input.preprocess."""
    return {"file": SAMPLES_FILE, "count": len(paths), "bytes": len(data), "sources": [Path(p).name for p in paths],
            "labels": LABELS_NOTE if labelled else None}
