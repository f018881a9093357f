"""The client runtime in CPython (strata.client over websockets), against real servers.

The same Client runs in the page's worker; here it runs without a browser, as
`strata classify`, the load benchmark and a native device run it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from strata.client import connect
from strata.client.websockets_transport import WebSocketsTransport
from strata.exits import softmax
from strata.plan import Plan, PlanError
from strata.planner import Goal
from strata.preprocess import prepare

from edge_server.blocks.main_path import MainPath
from edge_server.config import Settings
from testing.servers import cloud_process, edge_process

MODELS = Settings().models_dir
MAIN_PATH = MainPath(MODELS)
N = len(MAIN_PATH)
with np.load(MODELS / "samples.npz") as shipped:
    IMAGES = shipped["images"][:6]
MANIFEST = json.loads((MODELS / "manifest.json").read_text())
MEAN, STD = MANIFEST["input"]["mean"], MANIFEST["input"]["std"]


@pytest.fixture(scope="module")
def edge() -> Iterator[str]:
    """A cloud process and an edge process that forwards to it; yields the edge's ws URL."""
    with cloud_process() as (cloud, _), edge_process("--cloud-url", cloud) as (url, _):
        yield url.replace("http://", "ws://") + "/ws"


def _reference(image: np.ndarray) -> tuple[int, float]:
    """The full main path's label and confidence for one image, in onnxruntime."""
    probs = softmax(MAIN_PATH.run(prepare(image[None], MEAN, STD), 0, N).astype(np.float64))[0]
    return int(probs.argmax()), float(probs.max())


@pytest.mark.parametrize(("plan", "tier"), [
    (Plan(0, N, "f32", False), "edge"),  # the raw input uploaded
    (Plan(1, 3, "f32", False), "cloud"),
    (Plan(3, N, "f32", False), "edge"),  # blocks 1, 2 on this device
    (Plan(N, N, "f32", False), "browser"),  # everything here (tier "browser" means the device)
])
def test_every_plan_answers_as_the_full_model(edge: str, plan: Plan, tier: str) -> None:
    async def main() -> list[dict]:
        async with connect(edge) as client:
            client.set_plan(plan)
            return [(await client.classify(image)).to_dict() for image in IMAGES]

    for image, answer in zip(IMAGES, asyncio.run(main()), strict=True):
        label, confidence = _reference(image)
        assert answer["tier"] == tier and answer["fallback"] is None and answer["plan"] == plan.to_header()
        assert answer["label"] == label and abs(answer["confidence"] - confidence) < 1e-4


def test_the_planner_plans_from_probes_and_the_answers_carry_its_forecast(edge: str) -> None:
    async def main() -> tuple[dict, list[dict]]:
        async with connect(edge) as client:
            answers = [(await client.classify(image)).to_dict() for image in IMAGES]
            return client.explain(), answers

    explained, answers = asyncio.run(main())
    assert explained["ready"] and explained["edge_link"]["rtt_ms"] > 0
    assert explained["choice"]["plan"] is not None
    assert all(a["predicted_ms"] is not None and a["predicted_ms"] > 0 for a in answers)
    assert all(a["tier"] in ("browser", "edge", "cloud") and a["fallback"] is None for a in answers)


def test_when_the_edge_dies_the_branch_answers_and_says_why() -> None:
    async def main(url: str, process: subprocess.Popen) -> tuple[dict, dict]:
        async with connect(url) as client:
            client.set_plan(Plan(1, N, "f16", True))
            before = (await client.classify(IMAGES[0])).to_dict()
            process.kill()
            process.wait()
            await asyncio.wait_for(_until(lambda: not client.link.up), 10)
            return before, (await client.classify(IMAGES[0])).to_dict()

    with edge_process("--no-cloud") as (url, process):
        before, after = asyncio.run(main(url.replace("http://", "ws://") + "/ws", process))
    assert before["fallback"] is None
    assert after["tier"] == "browser" and after["fallback"].startswith("edge-unreachable")


async def _until(condition, period_s: float = 0.02) -> None:
    while not condition():
        await asyncio.sleep(period_s)


def test_privacy_refuses_raw_uploads_clamps_a_fixed_plan_and_marks_the_session(edge: str) -> None:
    events: list[tuple[str, dict]] = []

    async def main() -> tuple[Plan, str, dict]:
        transport = WebSocketsTransport(edge, notify=lambda kind, data: events.append((kind, data)))
        async with connect(edge, transport=transport) as client:
            client.set_plan(Plan(0, N, "f32", False))
            clamped = client.set_goal(Goal("latency", privacy=True))
            with pytest.raises(PlanError, match="privacy"):
                client.set_plan(Plan(0, N, "f32", False))
            await asyncio.wait_for(_until(lambda: client.link.up and "private=1" in client.link.url), 10)
            answer = (await client.classify(IMAGES[0])).to_dict()
            await transport.aclose()
            return clamped, client.link.url, answer

    clamped, url, answer = asyncio.run(main())
    assert clamped.a == 1 and url.endswith("?private=1")
    assert answer["plan"]["a"] >= 1 and answer["fallback"] is None
    assert any(kind == "plan" and "privacy" in data["reason"] for kind, data in events)


def test_strata_classify_prints_one_answer_per_image(edge: str, tmp_path) -> None:
    from PIL import Image

    # A photo as people take them: a dark object on a light background, larger than 28x28.
    photo = tmp_path / "photo.png"
    Image.fromarray(np.kron(255 - IMAGES[1], np.ones((9, 9), np.uint8))).convert("RGB").save(photo)
    command = [sys.executable, "-m", "strata.cli", "classify", str(photo), "--sample", "2", "--edge", edge,
               "--plan", f"1,{N},f32", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["image"] for line in lines] == [str(photo), "sample 2"]
    assert lines[0]["label"] == _reference(IMAGES[1])[0] and lines[1]["label"] == _reference(IMAGES[2])[0]
    assert all(line["tier"] == "edge" and line["class"] == MANIFEST["classes"][line["label"]] for line in lines)

    text = subprocess.run(command[:-1], capture_output=True, text=True, timeout=120).stdout
    assert f"sample 2: {MANIFEST['classes'][lines[1]['label']]}" in text and "answered by the edge" in text


@pytest.mark.parametrize(("args", "message"), [
    (["--sample", "0", "--edge", "http://127.0.0.1:1/ws"], "must look like ws://"),
    (["/no/such/picture.png"], "does not exist"),
    (["--sample", "0", "--plan", "x"], "expected A,B"),
    (["--sample", "0", "--plan", "0,2", "--private"], "privacy"),
    (["--sample", "100000"], "the model ships samples"),
    ([], "nothing to classify"),
])
def test_strata_classify_errors_are_one_line(edge: str, args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "strata.cli", "classify", "--edge", edge, *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_strata_classify_without_an_edge_says_so() -> None:
    done = subprocess.run([sys.executable, "-m", "strata.cli", "classify", "--sample", "0", "--edge",
                           "ws://127.0.0.1:9/ws"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Is `strata serve` running there?" in done.stderr


def test_strata_classify_turns_a_photo_into_a_split_models_input_by_its_rule(tmp_path) -> None:
    """The rule the manifest records (here mean and std 0.5), as the page's uploads use it."""
    import onnx
    from PIL import Image
    from strata.cli import main

    from tests.onnx_models import colour_classifier

    onnx.save(colour_classifier(), tmp_path / "model.onnx")
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    Image.new("RGB", (40, 30), (20, 200, 30)).save(tmp_path / "green.png")
    Image.new("RGB", (300, 120), (30, 20, 230)).save(tmp_path / "blue.png")
    assert main(["split", str(tmp_path / "model.onnx"), "--out", str(tmp_path / "split"), "--max-blocks", "2",
                 "--samples", str(tmp_path / "green.png"), "--labels", str(tmp_path / "labels.txt"),
                 "--mean", "0.5", "--std", "0.5"]) == 0
    with edge_process(models=tmp_path / "split") as (url, _):
        done = subprocess.run([sys.executable, "-m", "strata.cli", "classify", str(tmp_path / "blue.png"),
                               "--sample", "0", "--edge", url.replace("http://", "ws://") + "/ws"],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{tmp_path / 'blue.png'}: blue ") and "sample 0: green " in done.stdout, done.stdout


def test_the_edges_frame_limit_comes_in_hello_and_no_frame_goes_over_it() -> None:
    """`strata serve --max-frame-bytes 12000`: cut 1 (32x16x16 float32, 32 KiB) cannot go
    as f32, while i8 (8 KiB) can. HELLO says the limit; a plan over it is refused by name;
    the planner's plans, the probes and a frame forced over it never leave the client."""
    limit, sent = 12_000, []

    class Recording(WebSocketsTransport):
        async def open(self, url, on_message, on_close):  # noqa: ANN001, ANN202
            socket = await super().open(url, on_message, on_close)
            send = socket.send

            async def recorded(data: bytes) -> None:
                sent.append(len(data))
                await send(data)

            socket.send = recorded
            return socket

    async def main(url: str) -> tuple[list[dict], dict, float | None]:
        async with connect(url, transport=Recording(url)) as client:
            assert client.link.hello["max_frame_bytes"] == limit
            with pytest.raises(PlanError, match="frame limit of 12,000 bytes"):
                client.set_plan(Plan(1, N, "f32", False))
            client.set_plan(Plan(1, N, "i8", False))
            answers = [(await client.classify(image)).to_dict() for image in IMAGES[:2]]
            client.set_plan(None)
            for goal in (Goal("latency"), Goal("energy")):
                client.set_goal(goal)
                answers += [(await client.classify(image)).to_dict() for image in IMAGES[:2]]
            features = client.model.conv1(IMAGES[:1])[0]  # block 1's input, forced through as f32
            forced = (await client.offload(features, Plan(1, N, "f32", True))).to_dict()
            return answers, forced, client.context.up.value

    with edge_process("--max-frame-bytes", str(limit), "--no-cloud") as (url, _):
        answers, forced, up_bps = asyncio.run(main(url.replace("http://", "ws://") + "/ws"))
    assert answers[0]["plan"]["codec"] == "i8" and answers[0]["tier"] == "edge"
    assert all(answer["fallback"] is None for answer in answers)
    assert "too-large" in forced["fallback"] and forced["tier"] == "browser"
    assert up_bps is not None  # the uplink probes went, within the limit
    assert sent and max(sent) <= limit
