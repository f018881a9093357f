"""Two edge processes behind a real nginx, with the config docs/scaling.md shows.

Clients (strata.client, as `strata classify` and the page run it) connect through the
proxy; their WebSockets spread over both edges; when one edge dies, its clients answer
on the device with a clear fallback, reconnect through the proxy to the other edge, and
go on getting the model's answers from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import time

import numpy as np
import psutil
import pytest
from strata import wire
from strata.client import connect
from strata.exits import softmax
from strata.plan import Plan
from strata.preprocess import prepare
from websockets.asyncio.client import connect as websocket

from edge_server.blocks.main_path import MainPath
from edge_server.config import REPO, Settings
from testing.proxy import TEMPLATE, nginx_binary, nginx_process, render
from testing.servers import cloud_process, edge_process

MODELS = Settings().models_dir
MAIN_PATH = MainPath(MODELS)
N = len(MAIN_PATH)
MANIFEST = json.loads((MODELS / "manifest.json").read_text())
with np.load(MODELS / "samples.npz") as shipped:
    IMAGES = shipped["images"][:8]
CLIENTS = 8
PLAN = Plan(1, N, "f32", False)  # conv1 here, the rest at the edge: a dead edge leaves the branch to answer

needs_nginx = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed: `make test` installs it")


def test_the_docs_show_the_template_the_tests_run() -> None:
    doc = (REPO / "docs" / "scaling.md").read_text()
    blocks = re.findall(r"```nginx\n(.*?)```", doc, re.S)
    assert blocks == [TEMPLATE.read_text()], "docs/scaling.md must show deploy/nginx.conf.template as it is"


def test_rendering_fills_every_name_and_names_any_missing() -> None:
    rendered = render({"STRATA_RUN_DIR": "/run/x", "STRATA_LISTEN": "127.0.0.1:1", "STRATA_EDGES": "server a:1;"})
    assert "${STRATA_" not in rendered and "pid /run/x/nginx.pid;" in rendered
    assert "$http_upgrade" in rendered  # nginx's own variables are left alone
    with pytest.raises(KeyError, match="STRATA_EDGES"):
        render({"STRATA_RUN_DIR": "/run/x", "STRATA_LISTEN": "127.0.0.1:1"})


def _reference(image: np.ndarray) -> int:
    return int(softmax(MAIN_PATH.run(prepare(image[None], MANIFEST["input"]["mean"], MANIFEST["input"]["std"]),
                                     0, N))[0].argmax())


def _sockets(edge: subprocess.Popen, url: str) -> int:
    """Open TCP connections to the edge's port: the proxy's WebSockets to it, and for a
    moment any plain HTTP request it passes on (each closes after its answer)."""
    port = int(url.rsplit(":", 1)[1])
    return sum(1 for c in psutil.Process(edge.pid).net_connections("tcp")
               if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)


async def _until(condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


@needs_nginx
def test_connections_spread_over_two_edges_and_survive_one_dying() -> None:
    with cloud_process() as (cloud, _), edge_process("--cloud-url", cloud) as (first, first_process), \
            edge_process("--cloud-url", cloud) as (second, second_process), \
            nginx_process([first, second]) as (proxy, _):
        answers, spread, after = asyncio.run(_clients_through(proxy.replace("http://", "ws://") + "/ws",
                                                              first, first_process, second, second_process))
    assert spread[0] > 0 and spread[1] > 0 and sum(spread) == CLIENTS, f"WebSockets per edge: {spread}"
    assert after == CLIENTS, f"after the first edge died, the second holds {after} of {CLIENTS} WebSockets"
    expected = [_reference(image) for image in IMAGES]
    for client, mine in enumerate(answers):
        phases = [fallback is None for _, _, fallback, _ in mine]
        assert phases[0] and phases[-1], f"client {client} must answer from the edge before and after: {mine}"
        for i, label, fallback, tier in mine:
            assert fallback is None or fallback.startswith("edge-unreachable"), fallback
            if fallback is None:
                assert tier == "edge" and label == expected[i]
            else:
                assert tier == "browser"  # the device's own exit answered, and said why
    moved = sum(1 for mine in answers if any(f is not None for _, _, f, _ in mine))
    assert moved <= spread[0], "only the clients of the edge that died may fall back"


async def _clients_through(url: str, first: str, first_process: subprocess.Popen, second: str,
                           second_process: subprocess.Popen) -> tuple[list[list[tuple]], tuple[int, int], int]:
    """CLIENTS clients classify in a loop through the proxy; the first edge is killed
    midway. Returns each client's answers (image, label, fallback, tier), the WebSockets
    per edge before the kill, and those on the second edge after it."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(url)) for _ in range(CLIENTS)]
        for client in clients:
            client.set_plan(PLAN)
        answers: list[list[tuple]] = [[] for _ in clients]
        killed = asyncio.Event()
        recovered = [0] * CLIENTS  # answers from the edge since the kill

        async def loop(c: int) -> None:
            i = c
            while recovered[c] < 3:
                answer = (await clients[c].classify(IMAGES[i % len(IMAGES)])).answer
                answers[c].append((i % len(IMAGES), answer.label, answer.fallback, answer.tier))
                if killed.is_set() and answer.fallback is None:
                    recovered[c] += 1
                i += 1
                await asyncio.sleep(0.02)

        tasks = [asyncio.create_task(loop(c)) for c in range(CLIENTS)]
        await _until(lambda: all(len(a) >= 3 for a in answers), 20)
        counts = lambda: (_sockets(first_process, first), _sockets(second_process, second))  # noqa: E731
        await _until(lambda: sum(counts()) == CLIENTS, 5)
        spread = counts()
        first_process.kill()
        first_process.wait()
        killed.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        await _until(lambda: _sockets(second_process, second) == CLIENTS, 5)
        return answers, spread, _sockets(second_process, second)


@needs_nginx
def test_a_page_origin_passes_the_edge_check_through_the_proxy() -> None:
    """nginx forwards the Host header, so the page's own origin (the proxy's address) is accepted."""
    async def hello(url: str, origin: str) -> wire.Frame:
        async with websocket(url, origin=origin) as ws:
            return wire.decode(await ws.recv())

    with edge_process("--no-cloud") as (edge, _), nginx_process([edge]) as (proxy, _):
        frame = asyncio.run(hello(proxy.replace("http://", "ws://") + "/ws", proxy))
    assert frame.type is wire.MessageType.HELLO and frame.header["model"] == MANIFEST["name"]
