"""The cloud's Open Inference Protocol server, checked with the official tritonclient."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import tritonclient.http as triton
import uvicorn
from tritonclient.utils import InferenceServerException

from edge_server import processes
from edge_server.blocks.graphs import chain
from edge_server.blocks.main_path import MainPath, session_options
from edge_server.cloud.server import ServedModel, create_cloud_app
from edge_server.cloud.suffixes import Suffixes
from edge_server.split.write import write_split
from testing.servers import cloud_process, free_port, rss_mb
from tests.exporter_kinds import Builder
from tests.onnx_models import conv_block

TOKEN = "s3cret"
MAX_BODY_BYTES = 1 << 20
BLOCKS = [conv_block(0, 3, 4), conv_block(1, 4, 2)]


def _session(model) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def cloud() -> Iterator[str]:
    """A real uvicorn server on loopback serving two suffix models, with a bearer token."""
    models = {f"toy-from-{k}": ServedModel.of_session(f"toy-from-{k}", _session(chain(BLOCKS[k:]))) for k in range(2)}
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


def _many_blocks(folder: Path) -> tuple[Path, dict]:
    """A 20-layer dense chain (MatMul 256x256, ReLU) split at every cut: 40 blocks, 5 MB."""
    b = Builder()
    t = "x"
    for _ in range(20):
        t = b.node("Relu", b.node("MatMul", t, b.weight(256, 256)))
    onnx.save(b.model(t, ["N", 256], ["N", 256]), folder / "source.onnx")
    return folder / "source.onnx", write_split(folder / "source.onnx", folder / "split", "many", all_cuts=True)


def test_a_many_block_model_is_ready_fast_in_bounded_memory_and_every_cut_answers(tmp_path: Path) -> None:
    """Joining all 40 suffixes up front, as the cloud did, took over 300 MB and 3 s in
    onnxruntime alone; now it is ready with the blocks loaded once, and each suffix answers
    as the full model does, chained at first and joined once built."""
    source, manifest = _many_blocks(tmp_path)
    blocks = len(manifest["blocks"])
    assert blocks >= 30
    x = np.random.default_rng(0).normal(size=(2, 256)).astype(np.float32)
    session = _session(onnx.load(source))
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    path = MainPath(tmp_path / "split")
    started = time.monotonic()
    with cloud_process(models=tmp_path / "split") as (url, process):
        ready_s = time.monotonic() - started
        client = triton.InferenceServerClient(url=url.removeprefix("http://"))
        for _ in range(2):  # the first request to a cut runs it chained; a later one, joined
            for k in (0, 1, blocks // 2, blocks - 1):
                cut = path.run(x, 0, k)  # what the edge sends for b = k
                request = triton.InferInput("input", list(cut.shape), "FP32")
                request.set_data_from_numpy(cut)
                answer = client.infer(f"many-from-{k}", [request]).as_numpy("output")
                assert np.abs(answer - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
            time.sleep(0.5)
        assert client.get_model_metadata(f"many-from-{blocks - 1}")["inputs"][0]["shape"] == [-1, 256]
        peak_mb = rss_mb(process, peak=True)
    assert ready_s < 15, f"the cloud took {ready_s:.1f} s to be ready"
    assert peak_mb < 250, f"the cloud peaked at {peak_mb:.0f} MB"  # 182 MB measured, joins included


def test_suffixes_run_chained_until_joined_and_keep_joined_ones_within_the_budget(tmp_path: Path) -> None:
    _, manifest = _many_blocks(tmp_path)
    path = MainPath(tmp_path / "split")
    blocks, sizes = len(path), [block["bytes"] for block in manifest["blocks"]]
    suffixes = Suffixes({"": path}, budget_bytes=sum(sizes[blocks // 2:]) + sum(sizes[blocks - 2:]))
    x = np.random.default_rng(1).normal(size=(3, 256)).astype(np.float32)
    for start in (blocks - 2, blocks // 2, 0):
        chained = suffixes.run(x, start)
        assert np.array_equal(chained, path.run(x, start, blocks))
        deadline = time.monotonic() + 10
        while ("", start) not in suffixes.joined and start > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert np.abs(suffixes.run(x, start) - chained).max() <= 1e-5 * max(1.0, np.abs(chained).max())
    # Suffix 0 is over the budget alone: never joined; the two later ones fit together.
    assert suffixes.joined == [("", blocks - 2), ("", blocks // 2)]
    assert sum(suffixes.bytes(*key) for key in suffixes.joined) <= suffixes.budget_bytes


def test_a_helper_loading_a_model_gets_time_by_its_size_and_says_it_is_starting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`strata serve` waits for its cloud by load_timeout_s, not a fixed 120 s, and says so while it waits."""
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "block0.onnx").write_bytes(bytes(1000))
    (tmp_path / "large" / "variants").mkdir(parents=True)
    (tmp_path / "large" / "variants" / "block0.onnx").write_bytes(bytes(50_000_000))
    assert processes.START_S <= processes.load_timeout_s(tmp_path / "small") < processes.START_S + 1
    assert processes.load_timeout_s(tmp_path / "large") >= processes.START_S + 50
    monkeypatch.setattr(processes, "PROGRESS_S", 0.2)
    waited: list[float] = []
    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(TimeoutError):
            processes.wait_for_http(f"http://127.0.0.1:{free_port()}/", silent, timeout=2.0, progress=waited.append)
    finally:
        processes.stop(silent)
    assert len(waited) >= 2 and waited == sorted(waited) and waited[0] >= 0.2
