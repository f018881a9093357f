"""What operators expect of a real `strata serve`: metrics scraped with Prometheus' own
parser, health endpoints, one log line per request (as JSON for collectors), and a
graceful shutdown on SIGTERM with requests in flight."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families
from strata import wire
from strata.client import connect
from strata.client.prober import Prober
from strata.offload import InferRequest, infer_frame
from strata.plan import Plan
from strata.wire import MessageType
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from bench.load import conv1_outputs
from edge_server.blocks.main_path import MainPath
from edge_server.config import Settings
from edge_server.tls import check_pair, self_signed
from testing.servers import edge_process, free_port

MODELS = Settings().models_dir
MAIN_PATH = MainPath(MODELS)
N = len(MAIN_PATH)
FEATURES = conv1_outputs(MODELS, 8)  # conv1's output for real samples: the input of block 1
AT_THE_EDGE, TO_THE_CLOUD = Plan(1, N, "f16"), Plan(1, N - 2, "f16")


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of GET url/metrics, by (name, labels), read by Prometheus' own parser."""
    response = httpx.get(url + "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _ws(url: str) -> str:
    return url.replace("http://", "ws://") + "/ws"


def _infer(request_id: int, plan: Plan, x: np.ndarray) -> bytes:
    return wire.encode(infer_frame(InferRequest(request_id, plan, x[None])))


def _recv(socket) -> wire.Frame:
    return wire.decode(socket.recv(timeout=10))


def test_metrics_count_requests_by_tier_and_outcome_with_stages_batches_and_exits(edge_url: str,
                                                                                  edge_cloud_url: str) -> None:
    before, cloud_before = scrape(edge_url), scrape(edge_cloud_url)
    with ws_connect(_ws(edge_url), compression=None) as socket:
        assert _recv(socket).type is MessageType.HELLO
        assert value(scrape(edge_url), "strata_edge_connections") == 1
        replies = []
        for request_id, plan in enumerate([AT_THE_EDGE] * 3 + [TO_THE_CLOUD] * 2):  # one at a time: one per batch
            socket.send(_infer(request_id, plan, FEATURES[request_id]))
            replies.append(_recv(socket))
        socket.send(_infer(9, AT_THE_EDGE, FEATURES[0][:, :8]))  # not the shape of block 1's input
        replies.append(_recv(socket))
        socket.send(wire.encode(wire.ping(1, 0.0, exits=5)))
        replies.append(_recv(socket))
        socket.send(wire.encode(wire.ping(2, 0.0, exits=-1)))
        replies.append(_recv(socket))
    assert [r.header.get("tier") for r in replies[:5]] == ["edge"] * 3 + ["cloud"] * 2
    assert [r.header.get("code") for r in replies[5:]] == ["bad-tensor", None, "bad-request"]
    after, cloud_after = scrape(edge_url), scrape(edge_cloud_url)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("strata_edge_requests_total", tier="edge", outcome="answered") == 3
    assert grew("strata_edge_requests_total", tier="cloud", outcome="answered") == 2
    assert grew("strata_edge_requests_total", tier="none", outcome="bad-tensor") == 1
    assert grew("strata_edge_errors_total", code="bad-tensor") == 1
    assert grew("strata_edge_errors_total", code="bad-request") == 1  # the PING with exits=-1: not a request
    assert grew("strata_device_branch_exits_total") == 5
    assert grew("strata_edge_request_duration_seconds_count", tier="edge") == 3
    assert grew("strata_edge_request_duration_seconds_count", tier="cloud") == 2
    assert grew("strata_edge_stage_duration_seconds_count", stage="edge_compute") == 5
    assert grew("strata_edge_stage_duration_seconds_count", stage="cloud_round_trip") == 2
    cloud_seconds = sum(r.header["timing"][k] for r in replies[3:5]
                        for k in ("edge_to_cloud_ms", "cloud_compute_ms", "cloud_to_edge_ms")) / 1000
    assert grew("strata_edge_stage_duration_seconds_sum", stage="cloud_round_trip") == pytest.approx(cloud_seconds)
    assert grew("strata_edge_batch_size_count", hop="blocks") == 5
    assert grew("strata_edge_batch_size_sum", hop="blocks") == 5
    assert grew("strata_edge_batch_size_count", hop="cloud") == 2
    assert value(after, "strata_edge_queued_samples", hop="blocks") == 0
    assert value(after, "strata_edge_cloud_circuit_open") == 0
    assert value(after, "strata_edge_draining") == 0
    assert value(after, "strata_edge_connections") == 0
    assert value(after, "process_resident_memory_bytes") > 10e6

    suffix = f"{MAIN_PATH.name}-from-{N - 2}"
    grown = value(cloud_after, "strata_cloud_infer_requests_total", model=suffix, status="200") - \
        value(cloud_before, "strata_cloud_infer_requests_total", model=suffix, status="200")
    assert grown == 2
    assert value(cloud_after, "strata_cloud_compute_duration_seconds_count", model=suffix) >= 2


def test_workers_report_their_branch_exits_in_pings(edge_url: str) -> None:
    """The real client: each answer its branch gave is counted once at the edge."""
    with np.load(MODELS / "samples.npz") as shipped:
        images = shipped["images"][:12]
    before = value(scrape(edge_url), "strata_device_branch_exits_total")

    async def main() -> int:
        async with connect(_ws(edge_url), probe_period_s=0.2) as client:
            client.set_plan(Plan(1, N, "f16", branch=True))
            exited = sum([(await client.classify(image)).answer.exited for image in images])
            deadline = time.monotonic() + 10
            while value(scrape(edge_url), "strata_device_branch_exits_total") - before < exited \
                    and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)  # more pings: nothing counted twice
            return exited

    exited = asyncio.run(main())
    assert 0 < exited < len(images), "the samples should exit at the branch only in part"
    assert value(scrape(edge_url), "strata_device_branch_exits_total") - before == exited


def test_a_ping_without_its_pong_hands_its_exits_to_the_next() -> None:
    sent = []

    class Link:  # the first PING is lost with its connection; the next gets its PONG
        async def exchange(self, key: tuple[str, int], frame: wire.Frame) -> tuple[wire.Frame, int, int]:
            sent.append(frame.header.get("exits"))
            if len(sent) == 1:
                raise ConnectionError("the edge closed the connection")
            return wire.Frame(MessageType.PONG, {"seq": key[1]}), 0, 0

    prober = Prober(SimpleNamespace(transport=SimpleNamespace(clock=time.perf_counter), link=Link()))
    prober.exits = 4
    with pytest.raises(ConnectionError):
        asyncio.run(prober.ping())
    prober.exits += 1  # one more exit meanwhile
    asyncio.run(prober.ping())
    asyncio.run(prober.ping())
    assert sent == [4, 5, None] and prober.exits == 0


def test_a_self_signed_certificate_covers_the_names_and_is_kept_while_they_stay(tmp_path: Path) -> None:
    cert, key = self_signed(["127.0.0.1", "localhost", "[::1]", "phone.lan"], tmp_path)
    names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"localhost", "phone.lan"}
    assert set(names.get_values_for_type(x509.IPAddress)) == {ipaddress.ip_address("127.0.0.1"),
                                                              ipaddress.ip_address("::1")}
    assert os.stat(key).st_mode & 0o777 == 0o600
    made = check_pair(cert, key)
    assert self_signed(["localhost", "phone.lan"], tmp_path) == (cert, key) and check_pair(cert, key) == made
    self_signed(["localhost", "other.lan"], tmp_path)
    assert check_pair(cert, key) != made  # a name it did not cover: made anew
    with pytest.raises(ValueError, match="cannot use"):
        check_pair(cert, tmp_path / "missing.key")


def test_health_live_and_ready(edge_url: str) -> None:
    assert httpx.get(edge_url + "/health/live").json() == {"live": True}
    ready = httpx.get(edge_url + "/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True, "reason": None, "cloud": "up"}


def test_ready_waits_until_an_unreachable_cloud_is_marked_down() -> None:
    """Before its cloud answered or was marked down, the edge does not know which tier
    will finish requests: a proxy should not send it any yet."""
    with edge_process("--cloud-url", f"http://127.0.0.1:{free_port()}") as (url, _):
        first = httpx.get(url + "/health/ready")
        deadline = time.monotonic() + 15
        while (ready := httpx.get(url + "/health/ready")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
    assert first.status_code == 503 and first.json()["cloud"] == "unknown"
    assert ready.status_code == 200 and ready.json()["cloud"] == "down"


def test_one_json_line_per_request_at_debug_and_per_fault_at_warning(tmp_path: Path) -> None:
    log = tmp_path / "edge.log"
    with edge_process("--no-cloud", "--log-level", "debug", "--log-format", "json", log=log) as (url, _):
        with ws_connect(_ws(url), compression=None) as socket:
            _recv(socket)
            for request_id in (41, 42):
                socket.send(_infer(request_id, AT_THE_EDGE, FEATURES[0]))
                assert _recv(socket).type is MessageType.RESULT
            socket.send(_infer(43, Plan(1, N + 5, "f16"), FEATURES[0]))
            assert _recv(socket).header["code"] == "bad-plan"
        httpx.get(url + "/health/live")
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert records and len(records) == len(log.read_text().splitlines()) - 1, "all but the start-up line are JSON"
    requests = [r for r in records if r["logger"] == "strata.edge" and r.get("request_id") in (41, 42, 43)]
    assert [(r["request_id"], r["level"]) for r in requests] == [(41, "DEBUG"), (42, "DEBUG"), (43, "WARNING")]
    assert all(r["connection"] == requests[0]["connection"] for r in requests)
    assert requests[0]["tier"] == "edge" and requests[0]["edge_total_ms"] > 0
    assert requests[2]["code"] == "bad-plan" and "INFER 43: ERROR bad-plan" in requests[2]["message"]
    assert any(r["logger"] == "uvicorn.access" and "/health/live" in r["message"] for r in records)


def test_sigterm_answers_what_is_in_flight_refuses_the_rest_then_exits(tmp_path: Path) -> None:
    """Requests held by the batcher (--max-wait-ms) when SIGTERM comes still get their
    RESULT, one bound for the cloud too; a frame sent after it gets ERROR shutting-down;
    no new connection is accepted; the process exits once the connection is closed."""
    hold_s = 1.5
    log = tmp_path / "edge.log"
    with edge_process("--max-wait-ms", str(hold_s * 1000), "--log-level", "info", log=log) as (url, process), \
            httpx.Client() as health:
        assert health.get(url + "/health/ready").status_code == 200
        with ws_connect(_ws(url), compression=None) as socket:
            _recv(socket)
            for request_id, plan in enumerate([AT_THE_EDGE, AT_THE_EDGE, TO_THE_CLOUD]):
                socket.send(_infer(request_id, plan, FEATURES[request_id]))
            time.sleep(0.3)
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            socket.send(_infer(7, AT_THE_EDGE, FEATURES[3]))
            refused = _recv(socket)
            not_ready = health.get(url + "/health/ready")  # on the connection kept alive: new ones are refused
            with pytest.raises(OSError):
                ws_connect(_ws(url), open_timeout=2)
            answers = {reply.header["id"]: reply for reply in (_recv(socket) for _ in range(3))}
            answered = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                socket.recv(timeout=5)
        code = process.wait(timeout=10)
        exited = time.monotonic()
    assert refused.type is MessageType.ERROR and refused.header["code"] == "shutting-down" and refused.header["id"] == 7
    assert not_ready.status_code == 503 and not_ready.json()["reason"] == "shutting down"
    assert {i: a.header["tier"] for i, a in answers.items()} == {0: "edge", 1: "edge", 2: "cloud"}
    assert all(a.header["fallback"] is None for a in answers.values())
    assert answered - signalled > hold_s - 0.5, "the answers must have waited for their batch, not been cut short"
    assert closed.value.rcvd.code == 1012  # service restart: clients reconnect
    assert code == -signal.SIGTERM and exited - answered < 5, log.read_text()[-2000:]
    assert "every frame answered" in log.read_text()
