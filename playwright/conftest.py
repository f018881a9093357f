"""Real headless Chromium (Debian's), driven by Playwright for Python, never downloaded."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from testing.chromium import PageWatch, launch

OUTPUT = Path(__file__).resolve().parents[1] / "test-output"  # screenshots land here
READY_TIMEOUT_MS = 90_000
SIZES = {  # a desktop window, and a phone's 390 x 844 viewport
    "desktop": {"viewport": {"width": 1280, "height": 900}},
    "phone": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True},
}


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if shutil.which("chromium") is None:
        pytest.fail("Chromium is not installed: run `make test` (it installs Debian's chromium)")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def watched(browser: Browser) -> Iterator[PageWatch]:
    context = browser.new_context()
    watch = PageWatch(context.new_page(), OUTPUT)
    # Requests made by the worker are reported on the context, not the page.
    context.on("request", lambda request: request.url not in watch.requests and watch.requests.append(request.url))
    yield watch
    context.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., PageWatch]]:
    """Open the page in a fresh context (an empty cache) at a size of SIZES and wait for its
    first answer; `browser_` for another browser, `init_script` to run before the page's."""
    contexts = []

    def open_(url: str, browser_: Browser = browser, init_script: str | None = None, size: str = "desktop",
              **options) -> PageWatch:
        context = browser_.new_context(**SIZES[size], **options)
        contexts.append(context)
        watch = PageWatch(context.new_page(), OUTPUT)
        if init_script:
            watch.page.add_init_script(init_script)
        watch.page.goto(url + "/")
        watch.page.wait_for_selector("body[data-first-answer-ms]", timeout=READY_TIMEOUT_MS)
        return watch

    yield open_
    for context in contexts:
        context.close()
