"""Pruned variants on the servers: verified or refused, cached by memory, and served.

The variants here are copies of the unpruned blocks under another name, so the tests
do not depend on what `strata prune` produced; tests/test_pruning.py covers that.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from strata import wire
from strata.offload import InferRequest, infer_frame, read_result
from strata.plan import Plan
from strata.wire import MessageType
from websockets.asyncio.client import connect

from edge_server.blocks.main_path import MainPath, ModelError
from edge_server.blocks.variants import Variants
from edge_server.config import Settings
from testing.servers import edge_process

MODELS = Settings().models_dir


def _models_with_variants(root: Path, names: list[str]) -> Path:
    """models/ (blocks, bundle, samples) with copies of its blocks as variants `names`."""
    manifest = json.loads((MODELS / "manifest.json").read_text())
    blocks = [block["file"] for block in manifest["blocks"]]
    out = root / "models"
    out.mkdir()
    for name in [*blocks, manifest["browser_bundle"]["file"], "samples.npz"]:
        shutil.copy(MODELS / name, out / name)
    manifest["artifacts"] = {name: manifest["artifacts"][name] for name in [*blocks, manifest["browser_bundle"]["file"],
                                                                          "samples.npz"]}
    manifest["variants"] = []
    for name in names:
        folder = out / "variants" / name
        folder.mkdir(parents=True)
        for file in blocks:
            shutil.copy(MODELS / file, folder / file)
        variant = {**manifest, "variants": [], "artifacts": {file: manifest["artifacts"][file] for file in blocks}}
        (folder / "manifest.json").write_text(json.dumps(variant))
        manifest["variants"].append({"name": name, "dir": f"variants/{name}",
                                     "manifest_sha256": hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()})
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def _block_bytes() -> int:
    return sum(block["bytes"] for block in json.loads((MODELS / "manifest.json").read_text())["blocks"])


def test_variants_load_run_and_stay_within_the_memory_budget(tmp_path: Path) -> None:
    models = _models_with_variants(tmp_path, ["p25", "p50"])
    variants = Variants(MainPath(models), max_bytes=int(_block_bytes() * 1.5))  # room for one variant
    assert variants.names == ["", "p25", "p50"] and not variants.refused
    assert variants.loaded == ["p50"] and variants.loads == 2  # p25 was dropped when p50 came
    x = np.random.default_rng(0).normal(size=(2, 32, 16, 16)).astype(np.float32)
    expected = variants.run(x, 1, 7)
    assert np.array_equal(variants.run(x, 1, 7, "p25"), expected)
    assert variants.loaded == ["p25"] and variants.loads == 3  # loaded again on demand, p50 out
    variants.run(x, 1, 7, "p25")
    assert variants.loads == 3  # a cache hit
    with pytest.raises(KeyError, match="no variant 'p90'"):
        variants.get("p90")


def test_a_corrupt_or_missing_variant_is_refused_and_the_others_still_serve(tmp_path: Path) -> None:
    models = _models_with_variants(tmp_path, ["p25", "p50", "p75"])
    (models / "variants" / "p25" / "block3.onnx").write_bytes(b"not the trained weights")
    (models / "variants" / "p50" / "block5.onnx").unlink()
    variants = Variants(MainPath(models), max_bytes=10 * _block_bytes())
    assert variants.names == ["", "p75"]
    assert "block3.onnx has sha256" in variants.refused["p25"] and "restore models/" in variants.refused["p25"]
    assert "block5.onnx is missing" in variants.refused["p50"]
    manifest = models / "variants" / "p75" / "manifest.json"
    manifest.write_text(manifest.read_text() + " ")
    assert "manifest.json has sha256" in Variants(MainPath(models), max_bytes=0).refused["p75"]


def test_a_variant_broken_after_start_up_is_refused_when_it_loads_again(tmp_path: Path) -> None:
    models = _models_with_variants(tmp_path, ["p75", "p90"])
    variants = Variants(MainPath(models), max_bytes=0)  # only the last one used stays loaded
    assert variants.loaded == ["p90"]
    (models / "variants" / "p75" / "block2.onnx").write_bytes(b"changed on disk")
    with pytest.raises(ModelError, match="variant 'p75' refused: .*block2.onnx"):
        variants.get("p75")
    assert variants.names == ["", "p90"] and "p75" in variants.refused


def test_the_edge_and_cloud_serve_variants_and_refuse_unknown_ones(tmp_path: Path) -> None:
    models = _models_with_variants(tmp_path, ["p50", "p75"])
    (models / "variants" / "p75" / "block1.onnx").write_bytes(b"corrupt")
    x = np.random.default_rng(1).normal(size=(1, 32, 16, 16)).astype(np.float32)

    async def main(url: str) -> None:
        async with connect(url.replace("http://", "ws://") + "/ws", compression=None) as socket:
            hello = wire.decode(await asyncio.wait_for(socket.recv(), 10)).header
            assert list(hello["variants"]) == ["p50"] and "p75" in hello["refused_variants"]
            for plan, expected in ((Plan(1, 3, "f32", False, "p50"), "cloud"), (Plan(1, 7, "f32", False, ""), "edge")):
                await socket.send(wire.encode(infer_frame(InferRequest(1, plan, x))))
                result = read_result(wire.decode(await asyncio.wait_for(socket.recv(), 10)))
                assert result.tier == expected and result.fallback is None
            await socket.send(wire.encode(infer_frame(InferRequest(2, Plan(1, 3, "f32", False, "p75"), x))))
            error = wire.decode(await asyncio.wait_for(socket.recv(), 10))
            assert error.type is MessageType.ERROR and error.header["code"] == "unknown-variant"
            assert "'', 'p50'" in error.header["message"]

    with edge_process(models=models) as (url, _):
        asyncio.run(main(url))
