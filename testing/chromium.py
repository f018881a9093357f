"""How Strata starts Debian's Chromium, for the tests and the benchmarks alike.

Never `playwright install`: it downloads a browser, which this machine cannot do. The
background-networking flags stop Chromium from calling outside hosts on its own.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Page, Playwright

EXECUTABLE = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=EXECUTABLE, args=ARGS)


def wait_for_cached_snapshot(page: Page, timeout_ms: float = 60_000) -> None:
    """Wait until the page's worker has put the Python snapshot that assets.json names
    into Cache Storage (browser/worker.js does it after a cold load's first answer), so
    that the next load in this browser context can restore it."""
    page.wait_for_function("""async () => {
        const { python } = await (await fetch("/assets.json")).json();
        const keys = await (await caches.open("strata-python-snapshot")).keys();
        return keys.some((request) => new URL(request.url).pathname === python.snapshot.url);
    }""", timeout=timeout_ms, polling=250)


class PageWatch:
    """Everything a page did that a test may want to assert on."""

    def __init__(self, page: Page, output: Path) -> None:
        self.page = page
        self.output = output
        self.requests: list[str] = []
        self.console_errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("console", lambda message: message.type == "error" and self.console_errors.append(message.text))
        page.on("pageerror", lambda error: self.console_errors.append(str(error)))
        page.context.on("weberror", lambda error: self.console_errors.append(str(error.error)))

    def screenshot(self, name: str) -> Path:
        self.output.mkdir(exist_ok=True)
        path = self.output / f"{name}.png"
        self.page.screenshot(path=path, full_page=True)
        return path
