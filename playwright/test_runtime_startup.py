"""Start-up in real Chromium against a real edge: a cold load starts Python and caches its
memory snapshot after the first answer; the next load in the same browser context
restores it and answers alike; a snapshot that is tampered with, or was taken with
another worker.py, is not restored: the worker starts Python and still answers."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Route
from strata.plan import default_plan

from edge_server.config import Settings
from testing.chromium import wait_for_cached_snapshot

READY_TIMEOUT_MS = 90_000
SNAPSHOT = json.loads(Settings().assets_file.read_text())["python"]["snapshot"]
BLOCKS = len(json.loads((Settings().models_dir / "manifest.json").read_text())["blocks"])
SAMPLES = range(4)


def load(page: Page, url: str | None = None) -> dict:
    """Load `url` (else reload the page) until its first answer; whether Python was
    restored from the snapshot, and the answers to a few samples under one fixed plan."""
    if url:
        page.goto(url)
    else:
        page.reload()
    page.wait_for_selector("body[data-first-answer-ms]", timeout=READY_TIMEOUT_MS)
    page.evaluate("plan => window.strata.callWorker('set_plan', plan)", default_plan(BLOCKS).to_header())
    answers = [page.evaluate("i => window.strata.callWorker('classify_sample', i)", i) for i in SAMPLES]
    return {"snapshot": page.get_attribute("body", "data-snapshot"),
            "answers": [(answer["label"], round(answer["confidence"], 4)) for answer in answers]}


@pytest.fixture
def cold(edge_url: str, browser: Browser) -> Iterator[tuple[Page, dict]]:
    """A page loaded cold in a fresh context, once its snapshot is cached."""
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    first = load(page, edge_url + "/")
    assert first["snapshot"] == "false", "an empty cache holds no snapshot"
    wait_for_cached_snapshot(page)
    yield page, first
    assert not errors, errors
    context.close()


def test_a_warm_load_restores_the_snapshot_and_answers_as_the_cold_one(cold: tuple[Page, dict]) -> None:
    page, first = cold
    warm = load(page)
    assert warm["snapshot"] == "true"
    assert warm["answers"] == first["answers"]
    again = load(page)
    assert again == warm, "a restored worker's Python holds no state of the load before"


def test_a_tampered_snapshot_is_not_restored(cold: tuple[Page, dict]) -> None:
    page, first = cold
    page.evaluate("""async (url) => {
        const cache = await caches.open('strata-python-snapshot');
        const bytes = new Uint8Array(await (await cache.match(url)).arrayBuffer());
        bytes[bytes.length >> 1] ^= 0xff;
        await cache.put(url, new Response(bytes));
    }""", SNAPSHOT["url"])
    tampered = load(page)
    assert tampered == {**first, "snapshot": "false"}
    cached = page.evaluate("""async (url) => {
        const response = await (await caches.open('strata-python-snapshot')).match(url);
        if (!response) return null;
        const digest = await crypto.subtle.digest('SHA-256', await response.arrayBuffer());
        return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
    }""", SNAPSHOT["url"])
    assert cached in (None, SNAPSHOT["sha256"]), "the tampered copy is deleted, not kept beside the good one"
    wait_for_cached_snapshot(page)
    assert load(page) == {**first, "snapshot": "true"}, "the good snapshot is cached again"


def test_a_snapshot_taken_with_another_worker_py_is_not_restored(cold: tuple[Page, dict]) -> None:
    page, first = cold

    def changed(route: Route) -> None:
        response = route.fetch()
        route.fulfill(response=response, body=response.body() + b"\nCHANGED = True\n")

    page.context.route("**/worker.py", changed)
    assert load(page) == {**first, "snapshot": "false"}
