"""Real headless Chromium (Debian's), driven by Playwright for Python, never downloaded."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from testing.chromium import PageWatch, launch

OUTPUT = Path(__file__).resolve().parents[1] / "test-output"  # screenshots land here


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
