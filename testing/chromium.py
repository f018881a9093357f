"""How Strata starts Debian's Chromium, for the tests and the benchmarks alike.

Never `playwright install`: it downloads a browser, which this machine cannot do. The
background-networking flags stop Chromium from calling outside hosts on its own.
"""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
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


def trust(cert_pem: bytes) -> str:
    """The Chromium flag that trusts this certificate's key, and only it (by the base64
    SHA-256 of its SubjectPublicKeyInfo), as a phone trusts a certificate its user
    accepted: any other certificate is still refused, whereas Playwright's
    ignore_https_errors accepts every one."""
    spki = x509.load_pem_x509_certificate(cert_pem).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"--ignore-certificate-errors-spki-list={base64.b64encode(hashlib.sha256(spki).digest()).decode()}"
def wait_for_cached_snapshot(page: Page, timeout_ms: float = 60_000) -> None:
    """Wait until the page's worker has put the Python snapshot that assets.json names
    into Cache Storage (browser/worker.js does it after a cold load's first answer), so
    that the next load in this browser context can restore it. TimeoutError after
    `timeout_ms`. Polled with evaluate(), which awaits the check: wait_for_function does
    not await an async predicate, and takes its promise for a truthy answer at once."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate("""async () => {
        const { python } = await (await fetch("/assets.json")).json();
        return Boolean(await (await caches.open("strata-python-snapshot")).match(python.snapshot.url));
    }"""):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page's worker did not cache the Python snapshot within {timeout_ms / 1000:.0f} s")
        page.wait_for_timeout(250)


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
