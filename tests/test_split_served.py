"""Split models of the kinds beyond float32 NCHW logits, served by a real `strata serve` (the
edge and its cloud): uint8 camera pixels in, float16 end to end, quantized (8-bit) cuts, a
time-major output, dynamically quantized contrib ops. Every plan's answer matches the user's
own file, and the cloud answers for its blocks itself (no fallback), in the model's own
datatype."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from strata import wire
from strata.offload import InferRequest, infer_frame, read_result
from strata.plan import Plan
from websockets.asyncio.client import connect

from edge_server.cloud import protocol
from edge_server.split.source import SourceRunner
from edge_server.split.write import tolerance, write_split
from testing.servers import edge_process, free_port
from tests.exporter_kinds import crnn, fp16, qdq, uint8_nhwc

KINDS = {"uint8-nhwc": uint8_nhwc, "fp16": fp16, "qdq": qdq, "time-major": lambda: crnn(quantized=False),
         "dynamic-quantization": lambda: crnn(quantized=True)}


@pytest.fixture(scope="module", params=list(KINDS))
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """(edge URL, cloud URL, split folder, manifest, the source model's path) for one kind."""
    folder = tmp_path_factory.mktemp(request.param)
    model = KINDS[request.param]()
    onnx.save(model, folder / "source.onnx")
    manifest = write_split(folder / "source.onnx", folder / "split", request.param, max_blocks=4)
    cloud_port = free_port()
    with edge_process("--cloud-port", str(cloud_port), models=folder / "split") as (url, _):
        yield url, f"http://127.0.0.1:{cloud_port}", folder / "split", manifest, folder / "source.onnx"


def _input(manifest: dict, batch: int = 2) -> np.ndarray:
    shape, dtype = [batch, *manifest["input"]["shape"]], np.dtype(manifest["input"]["dtype"])
    rng = np.random.default_rng(3)
    if dtype == np.uint8:
        return rng.integers(0, 256, shape).astype(np.uint8)
    return rng.normal(size=shape).astype(dtype)


def _device(folder: Path, manifest: dict, x: np.ndarray, a: int) -> np.ndarray:
    """What the device sends for plan.a: blocks [0, a) run here, as the worker would."""
    for block in manifest["blocks"][:a]:
        session = ort.InferenceSession(str(folder / block["file"]), providers=["CPUExecutionProvider"])
        x = session.run(None, {session.get_inputs()[0].name: x})[0]
    return x


async def _answers(edge: str, requests: list[InferRequest], together: bool = False) -> tuple[dict, list]:
    """HELLO and the results of the requests, sent one by one, or all at once (`together`)."""
    async with connect(edge.replace("http://", "ws://") + "/ws", compression=None) as socket:
        hello = wire.decode(await asyncio.wait_for(socket.recv(), timeout=10)).header
        results = []
        for request in requests:
            await socket.send(wire.encode(infer_frame(request)))
            if not together:
                results.append(read_result(wire.decode(await asyncio.wait_for(socket.recv(), timeout=30))))
        while len(results) < len(requests):
            results.append(read_result(wire.decode(await asyncio.wait_for(socket.recv(), timeout=30))))
        return hello, sorted(results, key=lambda result: result.request_id)


def test_edge_and_cloud_serve_every_plan_in_the_models_dtype(served: tuple) -> None:
    edge, _, folder, manifest, source = served
    blocks = len(manifest["blocks"])
    dtypes = [b["input_dtype"] for b in manifest["blocks"]] + [manifest["blocks"][-1]["output_dtype"]]
    x = _input(manifest)
    expected = SourceRunner(source, onnx.load(source), manifest["output"]["batch_axis_in_source"]).run(x)
    plans = [Plan(a, b, codec, branch=False) for a, b in {(0, 0), (0, 1), (1, 1), (1, blocks - 1), (0, blocks)}
             for codec in ("f32", "f16+z")]
    hello, results = asyncio.run(_answers(edge, [
        InferRequest(i, plan, _device(folder, manifest, x, plan.a)) for i, plan in enumerate(plans)]))
    assert hello["cut_dtypes"] == dtypes
    rtol, atol = tolerance(dtypes, manifest["batch_independent"])
    for plan, result in zip(plans, results):
        assert result.fallback is None, (plan, result.fallback)
        assert result.tier == ("cloud" if plan.b < blocks else "edge")
        exact = plan.codec == "f32" or dtypes[plan.a] in ("uint8", "int8", "float16")
        bound = (rtol, atol) if exact else (5e-2, 5e-2)  # f16 of a float32 cut: about 1e-3 relative
        assert np.allclose(result.logits, expected, *bound), (plan, np.abs(result.logits - expected).max())


def test_the_cloud_describes_and_checks_its_datatypes(served: tuple) -> None:
    _, cloud, folder, manifest, _ = served
    name, dtype = f"{manifest['name']}-from-0", np.dtype(manifest["input"]["dtype"])
    metadata = httpx.get(f"{cloud}/v2/models/{name}").json()
    assert metadata["inputs"][0]["datatype"] == protocol.datatype_of(np.empty(0, dtype))
    x = _input(manifest, batch=1)
    for tensor, status in ((x, 200), (x.astype(np.float64), 400)):
        body, headers = protocol.build_body({}, "inputs", {metadata["inputs"][0]["name"]: tensor}, binary=True)
        reply = httpx.post(f"{cloud}/v2/models/{name}/infer", content=body, headers=headers)
        assert reply.status_code == status, reply.text


def test_answers_never_depend_on_batchmates(served: tuple) -> None:
    """Requests arriving together share a batch, unless the model's answers would depend on it."""
    edge, _, folder, manifest, source = served
    x = _input(manifest, batch=8)
    requests = [InferRequest(i, Plan(0, len(manifest["blocks"]), "f32", branch=False), x[i:i + 1]) for i in range(8)]
    _, results = asyncio.run(_answers(edge, requests, together=True))
    runner = SourceRunner(source, onnx.load(source), manifest["output"]["batch_axis_in_source"])
    rtol, atol = tolerance([b["input_dtype"] for b in manifest["blocks"]], manifest["batch_independent"])
    for i, result in enumerate(results):
        assert np.allclose(result.logits, runner.run(x[i:i + 1]), rtol, atol), i
    if not manifest["batch_independent"]:
        assert {result.timing["batch"] for result in results} == {1}
