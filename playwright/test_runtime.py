"""Real samples through the real page, the edge and the cloud, and what happens when a tier dies."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from playwright.sync_api import Page
from strata import device
from strata.codecs import decode_tensor, encode_tensor
from strata.executor import load_browser_model
from strata.plan import Plan, default_plan

from edge_server.blocks.main_path import MainPath
from edge_server.config import Settings
from testing.chromium import PageWatch
from testing.servers import cloud_process, edge_process

READY_TIMEOUT_MS = 90_000
MODELS = Settings().models_dir
MAIN_PATH_BLOCKS = len(json.loads((MODELS / "manifest.json").read_text())["blocks"])


@pytest.fixture
def tiers() -> Iterator[dict]:
    """A cloud and an edge process of this test's own, so that the test may kill them."""
    with cloud_process() as (cloud, cloud_proc), edge_process("--cloud-url", cloud) as (edge, edge_proc):
        yield {"edge": edge, "edge_process": edge_proc, "cloud_process": cloud_proc}


def _open(watched: PageWatch, url: str) -> Page:
    page = watched.page
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=READY_TIMEOUT_MS)
    page.wait_for_selector("#edge-state[data-state=connected]", timeout=30_000)
    return page


def _fix_plan(page: Page, plan: Plan) -> None:
    """Take the planner out of the loop, so the test knows what ran where."""
    page.evaluate("plan => window.strata.callWorker('set_plan', plan)", plan.to_header())
    page.wait_for_selector(f"#plan-strip[data-auto=false][data-a='{plan.a}'][data-b='{plan.b}']")


def _explain_when(page: Page, ready: Callable[[dict], bool], timeout_s: float = 60.0) -> dict:
    """The worker's explain() once `ready` holds for it."""
    deadline = time.monotonic() + timeout_s
    while True:
        explained = page.evaluate("window.strata.callWorker('explain')")
        if ready(explained) or time.monotonic() > deadline:
            return explained
        time.sleep(0.2)


def _rows(page: Page) -> list[dict]:
    return page.eval_on_selector_all("#run-table tbody tr", "rows => rows.map(r => ({...r.dataset}))")


def _cpython_answers(plan: Plan, count: int) -> list[tuple[int, str]]:
    """The same plan in CPython: the shared device code, then onnxruntime for the rest."""
    manifest = json.loads((MODELS / "manifest.json").read_text())
    bundle = manifest["browser_bundle"]["file"]
    model = load_browser_model(manifest, {bundle: (MODELS / bundle).read_bytes()})
    main_path = MainPath(MODELS)
    with np.load(MODELS / "samples.npz") as shipped:
        images = shipped["images"][:count]
    answers = []
    for i, image in enumerate(images):
        pending = device.start(model, image, plan, i, len(main_path))
        if pending.blocks is not None:
            x = main_path.run(pending.block_input, *pending.blocks)
            pending = device.after_blocks(pending, x, plan, i, len(main_path))
        if pending.answer is not None:
            answers.append((pending.answer.label, "browser"))
            continue
        x = decode_tensor(*encode_tensor(pending.request.tensor, plan.codec))
        tier = "cloud" if plan.b < len(main_path) else "edge"
        answers.append((int(main_path.run(x, plan.a, len(main_path)).argmax()), tier))
    return answers


def test_a_batch_through_the_page_matches_cpython(tiers: dict, watched: PageWatch) -> None:
    page = _open(watched, tiers["edge"])
    plan = default_plan(MAIN_PATH_BLOCKS)
    _fix_plan(page, plan)
    page.fill("#run-count", "40")
    page.click("#run")
    page.wait_for_selector("#run-summary[data-done]", timeout=120_000)
    watched.screenshot("runtime-batch")
    rows = _rows(page)
    assert len(rows) == 40
    page_answers = [(int(r["label"]), r["tier"]) for r in rows]
    assert page_answers == _cpython_answers(plan, 40)
    assert {tier for _, tier in page_answers} == {"browser", "cloud"}, "the batch should exercise both exits"
    assert not any(r["fallback"] for r in rows)
    assert not watched.console_errors, watched.console_errors


def test_a_batch_through_the_page_with_triton_as_the_cloud(triton_edge: str, watched: PageWatch) -> None:
    """The page's offloads finish in a real Triton Inference Server (conftest.py), which
    reports no compute time: the answers are onnxruntime's, and the page shows them."""
    page = _open(watched, triton_edge)
    plan = Plan(1, 3, "f16", branch=False)  # every sample goes on to the cloud
    _fix_plan(page, plan)
    page.fill("#run-count", "20")
    page.click("#run")
    page.wait_for_selector("#run-summary[data-done]", timeout=120_000)
    watched.screenshot("runtime-triton")
    rows = _rows(page)
    assert [(int(r["label"]), r["tier"]) for r in rows] == _cpython_answers(plan, 20)
    assert not any(r["fallback"] for r in rows)
    assert not watched.console_errors, watched.console_errors


def test_float_blocks_on_the_device_load_onnxruntime_web_and_agree(tiers: dict, watched: PageWatch) -> None:
    page = _open(watched, tiers["edge"])
    assert not any("/ort/" in url for url in watched.requests), "onnxruntime-web must not load before it is needed"
    plan = Plan(MAIN_PATH_BLOCKS - 1, MAIN_PATH_BLOCKS, "f16", branch=False)  # the last block at the edge
    _fix_plan(page, plan)
    explained = _explain_when(page, lambda e: e.get("ort", {}).get("ready"))
    assert "ort" in explained["executors"], explained["device_block_ms"]
    assert all(set(times) == {"numpy", "ort"} for k, times in explained["device_block_ms"].items() if k != "0")
    page.fill("#run-count", "20")
    page.click("#run")
    page.wait_for_selector("#run-summary[data-done]", timeout=120_000)
    rows = _rows(page)
    assert [(int(r["label"]), r["tier"]) for r in rows] == _cpython_answers(plan, 20)
    assert any("/ort/1.30.0/ort-wasm-simd-threaded.wasm" in url for url in watched.requests)
    # The plan's onnxruntime-web blocks run as one graph the edge joined, timed against
    # the blocks alone: what one call costs is learned.
    explained = _explain_when(page, lambda e: e.get("route_ready"))
    onnx_web = [k for k, executor in enumerate(explained["executors"]) if executor == "ort"]
    assert [onnx_web[0], onnx_web[-1] + 1] in explained["joined"], explained
    assert explained["session_ms"] is not None
    assert any("/joined/" in url for url in watched.requests)
    assert not watched.console_errors, watched.console_errors


def test_killing_the_cloud_mid_run_still_answers_at_the_edge(tiers: dict, watched: PageWatch) -> None:
    page = _open(watched, tiers["edge"])
    _fix_plan(page, Plan(1, MAIN_PATH_BLOCKS - 2, "f16", branch=False))  # every sample goes on to the cloud
    page.fill("#run-count", "30")
    page.click("#run")
    page.wait_for_function("document.querySelectorAll('#run-table tbody tr').length >= 5")
    tiers["cloud_process"].kill()
    page.wait_for_selector("#run-summary[data-done]", timeout=120_000)
    rows = _rows(page)
    assert len(rows) == 30, "no request may be lost"
    assert rows[0]["tier"] == "cloud"
    late = rows[-5:]
    assert all(r["tier"] == "edge" and r["fallback"].startswith("cloud-unavailable") for r in late), late
    assert "fallback" in page.inner_text("#run-table")


def test_killing_the_edge_falls_back_to_the_branch_and_says_so(tiers: dict, watched: PageWatch) -> None:
    page = _open(watched, tiers["edge"])
    _fix_plan(page, Plan(1, MAIN_PATH_BLOCKS, "f16", branch=False))
    tiers["edge_process"].kill()
    page.wait_for_selector("#edge-state:not([data-state=connected])", timeout=30_000)
    page.click("#gallery .sample >> nth=0")
    page.wait_for_selector("#result[data-fallback^=edge-unreachable]", timeout=30_000)
    watched.screenshot("runtime-edge-down")
    assert page.get_attribute("#result", "data-tier") == "browser"
    assert "fallback" in page.inner_text("#result")
    assert "reconnecting" in page.inner_text("#edge-state") or "unreachable" in page.inner_text("#edge-state")


def test_the_probe_period_is_configurable_within_bounds(edge_url: str, watched: PageWatch) -> None:
    page = _open(watched, edge_url)
    assert page.evaluate("window.strata.callWorker('set_probe_period', 0.5)") == 0.5
    with pytest.raises(Exception, match="between 0.2 and 60 seconds; got 0.0"):
        page.evaluate("window.strata.callWorker('set_probe_period', 0)")
    page.wait_for_timeout(2000)  # the probes go on at the new period
    assert page.evaluate("window.strata.callWorker('explain')")["ready"]


def test_the_page_and_the_python_client_answer_and_plan_alike(edge_url: str, watched: PageWatch) -> None:
    """One client runtime, two transports: the page's worker (Pyodide) and CPython's
    (`strata classify`) give the same answers for the same images and plan, and plan the
    same from the same inputs."""
    import subprocess
    import sys

    from strata.planner import Context, Costs, Goal, Link
    from strata.planner import plan as choose

    page = _open(watched, edge_url)
    plan = Plan(1, 4, "f32", False)
    _fix_plan(page, plan)
    in_page = [page.evaluate("i => window.strata.callWorker('classify_sample', i)", i) for i in range(5)]
    samples = [arg for i in range(5) for arg in ("--sample", str(i))]
    done = subprocess.run([sys.executable, "-m", "strata.cli", "classify", *samples, "--plan", "1,4,f32", "--json",
                           "--edge", edge_url.replace("http://", "ws://") + "/ws"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    in_python = [json.loads(line) for line in done.stdout.splitlines()]
    for mine, theirs in zip(in_python, in_page, strict=True):
        assert (mine["label"], mine["tier"], mine["plan"]) == (theirs["label"], theirs["tier"], theirs["plan"])
        assert abs(mine["confidence"] - theirs["confidence"]) < 1e-5

    page.evaluate("window.strata.callWorker('set_plan', null)")
    explained = _explain_when(page, lambda e: e.get("ready") and e.get("best") is not None)
    inputs = explained["inputs"]
    links = {k: None if v is None else Link(**v) for k, v in inputs["context"].items() if k in ("edge", "cloud")}
    context = Context(**{**inputs["context"], **links})
    chosen = choose(Costs(**inputs["costs"]), context, Goal(**inputs["goal"]))
    assert chosen.plan is not None and chosen.plan.to_header() == explained["best"]
