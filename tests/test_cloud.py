"""The cloud's Open Inference Protocol server, checked with the official tritonclient."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
import uvicorn
from tritonclient.utils import InferenceServerException

from edge_server.blocks.graphs import chain
from edge_server.blocks.main_path import session_options
from edge_server.cloud.server import ServedModel, create_cloud_app
from testing.servers import free_port
from tests.onnx_models import conv_block

TOKEN = "s3cret"
BLOCKS = [conv_block(0, 3, 4), conv_block(1, 4, 2)]


def _session(model) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def cloud() -> Iterator[str]:
    """A real uvicorn server on loopback serving two suffix models, with a bearer token."""
    models = {f"toy-from-{k}": ServedModel(f"toy-from-{k}", _session(chain(BLOCKS[k:]))) for k in range(2)}
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_cloud_app(models, token=TOKEN), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)


def _client(cloud: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=cloud)


def _expected(x: np.ndarray, start: int) -> np.ndarray:
    for block in BLOCKS[start:]:
        session = _session(block)
        x = session.run(None, {session.get_inputs()[0].name: x})[0]
    return x


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_infers_each_suffix(cloud: str, binary: bool) -> None:
    client = _client(cloud)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    for k, channels in [(0, 3), (1, 4)]:
        name = f"toy-from-{k}"
        assert client.is_model_ready(name, headers=headers)
        metadata = client.get_model_metadata(name, headers=headers)
        assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, channels, 8, 8]}]
        x = np.random.default_rng(k).normal(size=(2, channels, 8, 8)).astype(np.float32)
        request = triton.InferInput("input", list(x.shape), "FP32")
        request.set_data_from_numpy(x, binary_data=binary)
        result = client.infer(name, [request], outputs=[triton.InferRequestedOutput("output", binary_data=binary)],
                              headers=headers, request_id="42")
        assert result.get_response()["id"] == "42"
        assert result.get_response()["parameters"]["compute_ms"] > 0
        assert np.abs(result.as_numpy("output") - _expected(x, k)).max() <= 1e-5


def test_token_is_required(cloud: str) -> None:
    client = _client(cloud)
    with pytest.raises(InferenceServerException, match="bearer token"):
        client.get_model_metadata("toy-from-0")
    with pytest.raises(InferenceServerException, match="bearer token"):
        client.get_model_metadata("toy-from-0", headers={"Authorization": "Bearer wrong"})


def _binary(document: bytes, blob: bytes, message: str) -> list[tuple]:
    return [(document + blob, {"Inference-Header-Content-Length": str(len(document))}, message)]


@pytest.mark.parametrize("body, headers, message", [
    (b"{not json", {}, "JSON part is invalid"),
    (b'{"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": [1, 2]}]}', {}, "does not fit"),
    (b'{"inputs": [{"name": "x", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": [0]}]}', {}, "does not fit"),
    *_binary(b'{"inputs": [{"name": "input", "shape": [1, 5, 8, 8], "datatype": "FP32", '
             b'"parameters": {"binary_data_size": 1280}}]}', bytes(1280), "needs shape"),
    (b'{"inputs": [{"name": "input", "shape": [1], "datatype": "FP8", "data": [1]}]}', {}, "not one of"),
    *_binary(b'{"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32", '
             b'"parameters": {"binary_data_size": 768}}]}', bytes(10), "binary_data_size"),
])
def test_bad_requests_get_400_with_a_reason(cloud: str, body: bytes, headers: dict, message: str) -> None:
    url = f"http://{cloud}/v2/models/toy-from-0/infer"
    response = httpx.post(url, content=body, headers={"Authorization": f"Bearer {TOKEN}", **headers})
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert httpx.get(f"http://{cloud}/v2/health/live").status_code == 200


def test_unknown_model_is_404_and_names_the_available_ones(cloud: str) -> None:
    response = httpx.get(f"http://{cloud}/v2/models/nope", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404
    assert "toy-from-0" in response.json()["error"]


def test_nan_is_refused(cloud: str) -> None:
    x = np.full((1, 3, 8, 8), np.nan, np.float32)
    client = _client(cloud)
    request = triton.InferInput("input", list(x.shape), "FP32")
    request.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException, match="NaN or Inf"):
        client.infer("toy-from-0", [request], headers={"Authorization": f"Bearer {TOKEN}"})
