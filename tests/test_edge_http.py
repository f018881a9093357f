"""The edge server's HTTP side, checked with real clients against a running `strata serve`."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import time
from urllib.parse import urlsplit

import brotli
import httpx
import numpy as np
import onnxruntime as ort
import pytest

from edge_server.blocks.main_path import MainPath
from edge_server.config import REPO
from edge_server.edge.demo_link import OFFLINE_GRACE_S, OFFLINE_S
from edge_server.edge.joined import DIGESTS_HEADER
from edge_server.edge.static import accepts
from edge_server.provision.browser_runtime import cold_start_files
from testing.servers import edge_process

WASM = "/pyodide/0.27.7/pyodide.asm.wasm"


def test_every_response_is_cross_origin_isolated(edge_url: str) -> None:
    for path in ["/", "/worker.js", WASM, "/assets.json", "/no-such-file"]:
        headers = httpx.get(edge_url + path).headers
        assert headers["cross-origin-opener-policy"] == "same-origin", path
        assert headers["cross-origin-embedder-policy"] == "require-corp", path


@pytest.mark.parametrize("path, media_type", [
    (WASM, "application/wasm"),
    ("/pyodide/0.27.7/pyodide.mjs", "text/javascript"),
    ("/worker.js", "text/javascript"),
    ("/", "text/html"),
    ("/assets.json", "application/json"),
])
def test_media_types(edge_url: str, path: str, media_type: str) -> None:
    assert httpx.get(edge_url + path).headers["content-type"].startswith(media_type)


def test_wasm_is_gzipped_for_clients_that_accept_it(edge_url: str) -> None:
    raw = httpx.get(edge_url + WASM, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers
    with httpx.stream("GET", edge_url + WASM, headers={"Accept-Encoding": "gzip"}) as zipped:
        body = b"".join(zipped.iter_raw())
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.headers["vary"] == "Accept-Encoding"
    assert len(body) * 2.5 < len(raw.content), "the wasm should shrink about 3x"
    assert gzip.decompress(body) == raw.content
    assert raw.content[:4] == b"\0asm"


def test_brotli_is_preferred_when_the_client_accepts_it(edge_url: str) -> None:
    raw = httpx.get(edge_url + WASM, headers={"Accept-Encoding": "identity"}).content
    with httpx.stream("GET", edge_url + WASM, headers={"Accept-Encoding": "gzip, deflate, br, zstd"}) as response:
        body = b"".join(response.iter_raw())
        assert response.headers["content-encoding"] == "br"
    assert brotli.decompress(body) == raw
    with httpx.stream("GET", edge_url + WASM, headers={"Accept-Encoding": "gzip, br;q=0"}) as response:
        assert response.headers["content-encoding"] == "gzip"


def test_versioned_runtime_is_immutable_and_page_revalidates(edge_url: str) -> None:
    assert "immutable" in httpx.get(edge_url + WASM).headers["cache-control"]
    page = httpx.get(edge_url + "/")
    assert page.headers["cache-control"] == "no-cache"
    again = httpx.get(edge_url + "/", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304


def test_assets_list_only_local_files_with_their_sizes_and_sha256(edge_url: str) -> None:
    assets = httpx.get(edge_url + "/assets.json").json()
    entries = [*cold_start_files(assets), assets["python"]["snapshot"], *assets["ort"]["files"]]
    assert len({entry["url"] for entry in entries}) == len(entries) > 10
    for asset in entries:
        assert asset["url"].startswith("/")
        response = httpx.get(edge_url + asset["url"], headers={"Accept-Encoding": "identity"})
        assert response.status_code == 200, asset["url"]
        assert len(response.content) == asset["bytes"], asset["url"]
        assert hashlib.sha256(response.content).hexdigest() == asset["sha256"], asset["url"]


@pytest.mark.parametrize("path", [
    "/../pyproject.toml",
    "/%2e%2e/pyproject.toml",
    "/pyodide/../../pyproject.toml",
    "/pyodide/..%2f..%2fpyproject.toml",
    "/runtime/%2e%2e/%2e%2e/edge_server/config.py",
    "/..%5c..%5cpyproject.toml",
])
def test_paths_outside_the_served_folders_are_404(edge_url: str, path: str) -> None:
    # http.client sends the path exactly as written, unlike clients that normalize "..".
    netloc = urlsplit(edge_url).netloc
    connection = http.client.HTTPConnection(netloc, timeout=5)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    assert response.status == 404, (path, body[:200])
    assert b"[project]" not in body


def test_accept_encoding_parsing() -> None:
    assert accepts("gzip, deflate, br", "gzip") and accepts("gzip, deflate, br", "br")
    assert accepts("br;q=1.0, gzip;q=0.5", "gzip")
    assert accepts("*", "br") and not accepts("*, br;q=0", "br")
    assert not accepts("gzip;q=0", "gzip")
    assert not accepts("gzip;q=x", "gzip")
    assert not accepts("identity", "gzip")
    assert not accepts("", "br")


def test_assets_json_names_the_worker_python_and_its_snapshot(edge_url: str) -> None:
    python = json.loads(httpx.get(edge_url + "/assets.json").content)["python"]
    assert python["main"] == "worker.py"
    assert all(entry["url"].startswith("/runtime/") for entry in [*python["libraries"], python["snapshot"]])
    assert set(python["snapshot"]["inputs"]) == {python["main"], *python["modules"]}
    for name, digest in python["snapshot"]["inputs"].items():
        served = hashlib.sha256(httpx.get(f"{edge_url}/{name}").content).hexdigest()
        assert served == digest, f"{name} changed since the snapshot was made: run `strata provision`"


def test_demo_link_control_is_off_unless_emulating(edge_url: str) -> None:
    assert httpx.get(edge_url + "/demo/link").json()["enabled"] is False
    refused = httpx.put(edge_url + "/demo/link/3g")
    assert refused.status_code == 404 and "--emulate" in refused.json()["error"]


def test_joined_blocks_match_the_chain_and_name_their_block_files(edge_url: str) -> None:
    main_path = MainPath(REPO / "models")
    response = httpx.get(edge_url + "/joined/1-7.onnx")
    assert response.status_code == 200, response.text
    files = [block["file"] for block in main_path.blocks[1:7]]
    assert response.headers[DIGESTS_HEADER].split(",") == [main_path.manifest["artifacts"][f] for f in files]
    x = np.random.default_rng(0).standard_normal((2, *main_path.cut_shapes[1])).astype(np.float32)
    session = ort.InferenceSession(response.content, providers=["CPUExecutionProvider"])
    joined = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(joined, main_path.run(x, 1, 7), atol=1e-5)
    again = httpx.get(edge_url + "/joined/1-7.onnx", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.headers[DIGESTS_HEADER] == response.headers[DIGESTS_HEADER]
    for bad, expected in [("/joined/3-3.onnx", "not a range"), ("/joined/0-99.onnx", "not a range"),
                          ("/joined/1-7.onnx?variant=nope", "nope")]:
        refused = httpx.get(edge_url + bad)
        assert refused.status_code == 404 and expected in refused.text, bad


def test_the_pages_chart_library_is_served_immutable(edge_url: str) -> None:
    assets = httpx.get(edge_url + "/assets.json").json()
    response = httpx.get(edge_url + assets["uplot"]["module"], headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200 and "export { uPlot as default }" in response.text
    assert "immutable" in response.headers["cache-control"]
    assert response.headers["cross-origin-embedder-policy"] == "require-corp"


def test_going_offline_answers_first_then_cuts_the_link() -> None:
    """The reply to the page's PUT must cross the link before the link goes down."""
    with edge_process("--emulate", "wifi") as (url, _):
        control = f"http://127.0.0.1:{int(url.rsplit(':', 1)[1]) + 3}"
        reply = httpx.put(url + "/demo/link/offline", timeout=5)
        assert reply.status_code == 200 and reply.json() == {"name": "offline", "in_s": OFFLINE_GRACE_S,
                                                             "back_to": "wifi", "after_s": OFFLINE_S}
        assert httpx.get(f"{control}/profile").json()["name"] == "wifi"
        time.sleep(OFFLINE_GRACE_S + 0.5)
        assert httpx.get(f"{control}/profile").json()["name"] == "offline"
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/demo/link", timeout=2)
        assert httpx.put(f"{control}/profile/3g").json()["name"] == "3g"  # someone else switches it back
        assert httpx.get(url + "/demo/link", timeout=5).json() == {**httpx.get(f"{control}/profile").json(),
                                                                   "enabled": True}
