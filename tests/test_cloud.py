"""The cloud's Open Inference Protocol server, checked with the official tritonclient."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import tritonclient.http as triton
import uvicorn
from tritonclient.utils import InferenceServerException

from edge_server.blocks.graphs import chain
from edge_server.blocks.main_path import session_options
from edge_server.cloud.server import ServedModel, create_cloud_app
from testing.servers import free_port
from tests.onnx_models import conv_block

TOKEN = "s3cret"
MAX_BODY_BYTES = 1 << 20
BLOCKS = [conv_block(0, 3, 4), conv_block(1, 4, 2)]


def _session(model) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def cloud() -> Iterator[str]:
    """A real uvicorn server on loopback serving two suffix models, with a bearer token."""
    models = {f"toy-from-{k}": ServedModel(f"toy-from-{k}", _session(chain(BLOCKS[k:]))) for k in range(2)}
    port = free_port()
    app = create_cloud_app(models, token=TOKEN, max_body_bytes=MAX_BODY_BYTES)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
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


def _json(inputs: list, **document: object) -> bytes:
    return json.dumps({"inputs": inputs, **document}).encode()


def _input(**fields: object) -> dict:
    return {"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": [0.0] * 192, **fields}


@pytest.mark.parametrize("body, headers, message", [
    (b"{not json", {}, "JSON part is invalid"),
    (b'{"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": [1, 2]}]}', {}, "does not fit"),
    (b'{"inputs": [{"name": "x", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": [0]}]}', {}, "does not fit"),
    *_binary(b'{"inputs": [{"name": "input", "shape": [1, 5, 8, 8], "datatype": "FP32", '
             b'"parameters": {"binary_data_size": 1280}}]}', bytes(1280), "needs shape"),
    (b'{"inputs": [{"name": "input", "shape": [1], "datatype": "FP8", "data": [1]}]}', {}, "not one of"),
    *_binary(b'{"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32", '
             b'"parameters": {"binary_data_size": 768}}]}', bytes(10), "binary_data_size"),
    # Each of these got a 500 and a dropped connection before:
    (_json([_input(shape=[10**30, 3, 8, 8])]), {}, "does not fit shape [1000000000000000000000000000000"),
    *_binary(b'{"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32", '
             b'"parameters": {"binary_data_size": "768"}}]}', bytes(768), "binary_data_size '768'"),
    (_json([_input(parameters=[1])]), {}, "'parameters' must be an object"),
    (_json([_input()], parameters="binary"), {}, "'parameters' must be an object"),
    (_json([_input()], outputs="output"), {}, "'outputs' must be a list"),
    (_json([_input()], outputs=["output"]), {}, "'outputs' must be a list"),
    (_json([_input(datatype=["FP32"])]), {}, "datatype"),
    (b'{"inputs": [], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", {}, "nested too deeply"),
    # Lenient before where the spec is strict (200):
    (_json([_input(data=["0"] * 192)]), {}, "must hold 192 numbers"),
    (_json([_input(), _input()]), {}, "two entries of 'inputs' are named 'input'"),
    (_json([_input()], outputs=[{"name": "logits"}]), {}, "has no output 'logits'"),
    (_json([_input()], id=7), {}, "'id' must be a string"),
])
def test_bad_requests_get_400_with_a_reason(cloud: str, body: bytes, headers: dict, message: str) -> None:
    with httpx.Client(base_url=f"http://{cloud}", headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        response = client.post("/v2/models/toy-from-0/infer", content=body, headers=headers)
        assert response.status_code == 400, response.text
        assert message in response.json()["error"]
        after = client.get("/v2/health/live")
        assert after.status_code == 200
        assert after.extensions["network_stream"] is response.extensions["network_stream"]  # kept alive


def test_only_the_outputs_asked_for_come_back(cloud: str) -> None:
    response = httpx.post(f"http://{cloud}/v2/models/toy-from-0/infer", headers={"Authorization": f"Bearer {TOKEN}"},
                          content=_json([_input()], outputs=[{"name": "output"}]))
    assert response.status_code == 200 and [o["name"] for o in response.json()["outputs"]] == ["output"]


def test_unknown_versions_are_404_and_version_1_is_served(cloud: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for path in ["/v2/models/toy-from-0/versions/7", "/v2/models/toy-from-0/versions/7/ready"]:
        response = httpx.get(f"http://{cloud}{path}", headers=headers)
        assert response.status_code == 404 and "no version '7'" in response.json()["error"]
    response = httpx.post(f"http://{cloud}/v2/models/toy-from-0/versions/7/infer", headers=headers,
                          content=_json([_input()]))
    assert response.status_code == 404
    response = httpx.post(f"http://{cloud}/v2/models/toy-from-0/versions/1/infer", headers=headers,
                          content=_json([_input()]))
    assert response.status_code == 200 and response.json()["model_version"] == "1"


def test_the_bearer_scheme_is_case_insensitive(cloud: str) -> None:
    """RFC 7235: the scheme is case-insensitive; the token is not."""
    for scheme in ("bearer", "BEARER", "Bearer"):
        assert httpx.get(f"http://{cloud}/v2/models/toy-from-0",
                         headers={"Authorization": f"{scheme} {TOKEN}"}).status_code == 200
    assert httpx.get(f"http://{cloud}/v2/models/toy-from-0",
                     headers={"Authorization": f"Bearer {TOKEN.upper()}"}).status_code == 401


def test_bodies_past_the_limit_are_413_unread(cloud: str) -> None:
    response = httpx.post(f"http://{cloud}/v2/models/toy-from-0/infer", headers={"Authorization": f"Bearer {TOKEN}"},
                          content=bytes(MAX_BODY_BYTES + 1))
    assert response.status_code == 413 and "exceeds the limit" in response.json()["error"]


def test_unknown_routes_answer_json_errors(cloud: str) -> None:
    response = httpx.get(f"http://{cloud}/v2/nowhere")
    assert response.status_code == 404 and response.json()["error"]


@st.composite
def _documents(draw: st.DrawFn) -> bytes:
    """An infer request with one field of a valid one replaced by arbitrary JSON."""
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=5),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
        max_leaves=6)
    document = {"id": "1", "inputs": [_input()], "outputs": [{"name": "output"}], "parameters": {}}
    where = draw(st.sampled_from(["id", "inputs", "outputs", "parameters", "name", "shape", "datatype", "data",
                                  "input parameters"]))
    value = draw(json_values)
    if where in ("id", "inputs", "outputs", "parameters"):
        document[where] = value
    else:
        document["inputs"][0][where.replace("input ", "")] = value
    return json.dumps(document).encode()


def test_fuzzed_requests_get_200_or_a_json_400_never_500(cloud: str) -> None:
    with httpx.Client(base_url=f"http://{cloud}", headers={"Authorization": f"Bearer {TOKEN}"}) as client:

        @settings(max_examples=150, derandomize=True, database=None, deadline=None)
        @given(_documents())
        def post(body: bytes) -> None:
            response = client.post("/v2/models/toy-from-0/infer", content=body)
            assert response.status_code in (200, 400), (body[:300], response.text)
            if response.status_code == 400:
                assert response.json()["error"]

        post()


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
