"""A real Triton Inference Server as Strata's cloud, from `strata export-triton`'s repository.

The repository has one model per cut, named as the edge asks; the edge forwards to
Triton over the Open Inference Protocol; the answers equal onnxruntime's over the block
files; and the edge times a cloud that, like Triton, does not report its compute time.
Models `strata split` cut (float16 and uint8 tensors, dynamically quantized) export too.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from strata import device
from strata.client import connect
from strata.codecs import decode_tensor, encode_tensor
from strata.exits import softmax
from strata.executor import load_browser_model
from strata.plan import Plan

from edge_server.blocks.main_path import MainPath
from edge_server.blocks.variants import Variants
from edge_server.cloud.triton import write_repository
from edge_server.config import REPO, Settings
from edge_server.edge.cloud_client import CloudClient, suffix_model_name
from edge_server.split.write import tolerance, write_split
from testing.triton import TritonUnavailable, install, triton_process
from tests.exporter_kinds import crnn, fp16, uint8_nhwc

MODELS = Settings().models_dir
MAIN_PATH = MainPath(MODELS)
N = len(MAIN_PATH)
MANIFEST = json.loads((MODELS / "manifest.json").read_text())
with np.load(MODELS / "samples.npz") as shipped:
    IMAGES = shipped["images"][:6]
TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8", "int8": "TYPE_INT8"}


def _tensor_config(config: str, name: str) -> tuple[str, list[int]]:
    """(data_type, dims) of the input or output named `name` in a config.pbtxt."""
    match = re.search(rf'name: "{name}" data_type: (\w+) dims: \[ ([\d, ]+) \]', config)
    assert match, config
    return match.group(1), [int(d) for d in match.group(2).split(",")]


def _check_repository(repository: Path, models: Path, backend: str) -> None:
    """One model per cut of the model and of each variant, named as the edge asks, with
    the cut's datatypes and shapes, and a graph that computes what the block files do."""
    base = MainPath(models)
    variants = Variants(base, max_bytes=0)
    expected = {suffix_model_name(base.name, k, v) for v in variants.names for k in range(len(base))}
    assert {p.name for p in repository.iterdir()} == expected
    rng = np.random.default_rng(0)
    for variant in variants.names:
        path = variants.get(variant)
        for k in range(len(path)):
            folder = repository / suffix_model_name(base.name, k, variant)
            config = (folder / "config.pbtxt").read_text()
            platform = 'platform: "onnxruntime_onnx"' if backend == "onnxruntime" else 'backend: "python"'
            assert platform in config and "max_batch_size: 64" in config
            batching = "dynamic_batching { max_queue_delay_microseconds: 500 }" in config
            assert batching == base.manifest.get("batch_independent", True), config
            assert _tensor_config(config, "input") == (TYPES[path.cut_dtypes[k]], list(path.cut_shapes[k]))
            assert _tensor_config(config, "output") == (TYPES[path.cut_dtypes[-1]], list(path.cut_shapes[-1]))
            assert (folder / "1" / "model.py").is_file() == (backend == "python")
            x = rng.normal(size=(3, *path.cut_shapes[k])).astype(path.cut_dtypes[k])
            session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
            rtol, atol = tolerance(path.cut_dtypes, base.manifest.get("batch_independent", True))
            np.testing.assert_allclose(session.run(["output"], {"input": x})[0].astype(np.float32),
                                       path.run(x, k, len(path)).astype(np.float32), rtol=rtol, atol=atol)


@pytest.mark.parametrize("backend", ["onnxruntime", "python"])
def test_strata_export_triton_writes_one_model_per_cut(tmp_path: Path, backend: str) -> None:
    done = subprocess.run([sys.executable, "-m", "strata.cli", "export-triton", str(tmp_path / "repo"),
                           "--backend", backend], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"wrote {N * (1 + len(MANIFEST['variants']))} models ({backend} backend)" in done.stdout
    _check_repository(tmp_path / "repo", MODELS, backend)
    if backend == "onnxruntime":  # docs/scaling.md shows one config as the command writes it
        shown = re.search(r"reads like this one:\n\n```\n(.*?)```", (REPO / "docs" / "scaling.md").read_text(), re.S)
        name = re.search(r'name: "(.*)"', shown.group(1)).group(1)
        assert shown.group(1) == (tmp_path / "repo" / name / "config.pbtxt").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--models", "/no/such/folder"], "manifest.json is missing"),
    (["--max-batch", "0"], "max_batch must be at least 1"),
])
def test_strata_export_triton_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "strata.cli", "export-triton", str(tmp_path / "repo"), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


SPLIT_KINDS = {"fp16": fp16, "uint8-nhwc": uint8_nhwc, "dynamic-quantization": lambda: crnn(quantized=True)}


@pytest.fixture(scope="module")
def split_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders `strata split` wrote for models whose tensors are not all float32, or
    whose answers depend on their batchmates."""
    folders = {}
    for kind, build in SPLIT_KINDS.items():
        root = tmp_path_factory.mktemp(kind)
        onnx.save(build(), root / "source.onnx")
        write_split(root / "source.onnx", root / "split", kind, max_blocks=3)
        folders[kind] = root / "split"
    return folders


@pytest.mark.parametrize("kind", list(SPLIT_KINDS))
def test_split_models_export_with_their_datatypes_and_batching_rule(split_models: dict[str, Path], kind: str,
                                                                     tmp_path: Path) -> None:
    write_repository(split_models[kind], tmp_path, backend="onnxruntime")
    _check_repository(tmp_path, split_models[kind], "onnxruntime")


def test_triton_serves_split_models_in_their_own_datatypes(split_models: dict[str, Path], tmp_path: Path) -> None:
    """The wheel's Triton loads the float16 and uint8 models and answers as onnxruntime does."""
    try:
        install()
    except TritonUnavailable as exc:
        pytest.skip(f"Triton Inference Server cannot be installed here: {exc}")
    paths = {kind: MainPath(split_models[kind]) for kind in ("fp16", "uint8-nhwc")}
    for folder in split_models.values():
        write_repository(folder, tmp_path, backend="python")
    names = [suffix_model_name(path.name, k) for path in paths.values() for k in range(len(path))]

    async def answers(url: str) -> list[tuple[np.ndarray, np.ndarray, tuple[float, float]]]:
        rng, compared = np.random.default_rng(1), []
        for path in paths.values():
            cloud = CloudClient(url, path.name)
            for k in range(len(path)):
                x = rng.normal(size=(2, *path.cut_shapes[k])) * 50 + 100
                x = x.astype(path.cut_dtypes[k])
                reply = await cloud.infer(x, k)
                assert reply.compute_ms is None and reply.in_flight is None  # Triton does not say
                compared.append((reply.output, path.run(x, k, len(path)).astype(np.float32),
                                 tolerance(path.cut_dtypes, True)))
            await cloud.aclose()
        return compared

    with triton_process(tmp_path, names) as (url, _):
        for got, expected, (rtol, atol) in asyncio.run(answers(url)):
            np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


# -- the edge with Triton as its cloud ---------------------------------------------------

def _reference(image: np.ndarray, plan: Plan) -> tuple[int, float]:
    """The label and confidence the plan must give: the device's share in the shared code,
    the tensor through the plan's codec, then onnxruntime over the block files."""
    bundle = MANIFEST["browser_bundle"]["file"]
    model = load_browser_model(MANIFEST, {bundle: (MODELS / bundle).read_bytes()})
    pending = device.start(model, image, plan, 0, N)
    if pending.blocks is not None:  # blocks before plan.a that the device runs in onnxruntime
        pending = device.after_blocks(pending, MAIN_PATH.run(pending.block_input, *pending.blocks), plan, 0, N)
    x = decode_tensor(*encode_tensor(pending.request.tensor, plan.codec))
    probs = softmax(MAIN_PATH.run(x, plan.a, N).astype(np.float64))[0]
    return int(probs.argmax()), float(probs.max())


PLANS = [Plan(0, 2, "f32", False), Plan(1, 3, "f16", False), Plan(1, 1, "f32", False), Plan(4, 5, "i8", False)]


@pytest.fixture(scope="module")
def triton_ws(triton_edge: str) -> Iterator[str]:
    yield triton_edge.replace("http://", "ws://") + "/ws"


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: f"{p.a}-{p.b}-{p.codec}")
def test_offloads_finish_in_triton_and_answer_as_the_block_files(triton_ws: str, plan: Plan) -> None:
    async def main() -> list[dict]:
        async with connect(triton_ws) as client:
            client.set_plan(plan)
            return [(await client.classify(image)).to_dict() for image in IMAGES]

    for image, answer in zip(IMAGES, asyncio.run(main()), strict=True):
        label, confidence = _reference(image, plan)
        assert answer["tier"] == "cloud" and answer["fallback"] is None, answer
        assert answer["label"] == label and abs(answer["confidence"] - confidence) < 1e-4
        timing = answer["timing"]
        # Triton reports no compute time: the edge reports the round trip, not a split it cannot make.
        assert "cloud_compute_ms" not in timing and "cloud_in_flight" not in timing
        assert 0 < timing["cloud_round_trip_ms"] <= timing["edge_total_ms"] and timing["cloud_batch"] >= 1
        assert timing["edge_overhead_ms"] >= 0


def test_strata_classify_through_triton(triton_ws: str) -> None:
    done = subprocess.run([sys.executable, "-m", "strata.cli", "classify", "--edge", triton_ws, "--sample", "0",
                           "--sample", "3", "--plan", "1,2,f32", "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    plan = Plan(1, 2, "f32", False)
    assert [line["label"] for line in lines] == [_reference(IMAGES[i], plan)[0] for i in (0, 3)]
    assert all(line["tier"] == "cloud" and line["fallback"] is None for line in lines), lines
