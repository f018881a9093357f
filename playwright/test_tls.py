"""The page over https, as a phone on the LAN opens it: on a name that is not loopback
(`strata.test`, mapped to 127.0.0.1 inside Chromium), served by `strata serve
--tls-self-signed`, with the certificate trusted by its key for this test only.

Over plain http such a name is not a secure context (no camera, no cross-origin
isolation); over https with a trusted certificate it is both, and the worker's
WebSocket is wss."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Error

from edge_server.tls import fingerprint
from testing.chromium import ARGS, EXECUTABLE, PageWatch, trust
from testing.servers import edge_process

NAME = "strata.test"  # a reserved top-level domain (RFC 2606): never a real host
READY_TIMEOUT_MS = 90_000
OUTPUT = Path(__file__).resolve().parents[1] / "test-output"


def test_over_https_the_page_is_a_secure_context_cross_origin_isolated_and_answers(browser: Browser,
                                                                                 tmp_path: Path) -> None:
    log = tmp_path / "edge.log"
    with edge_process("--tls-self-signed", "--allowed-host", NAME, https=True, log=log,
                      env={"STRATA_TLS_DIR": str(tmp_path / "tls")}) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        printed = re.search(r"SHA-256 fingerprint:\s+([0-9A-F:]{95})", log.read_text())
        cert = ssl.get_server_certificate(("127.0.0.1", port)).encode()
        assert printed and printed.group(1) == fingerprint(cert), "the fingerprint printed is the one served"
        resolve = f"--host-resolver-rules=MAP {NAME} 127.0.0.1"
        page_url = f"https://{NAME}:{port}/"

        untrusting = browser.browser_type.launch(executable_path=EXECUTABLE, args=[*ARGS, resolve])
        try:
            with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
                untrusting.new_page().goto(page_url)
        finally:
            untrusting.close()

        trusting = browser.browser_type.launch(executable_path=EXECUTABLE, args=[*ARGS, resolve, trust(cert)])
        try:
            watch = PageWatch(trusting.new_context().new_page(), OUTPUT)
            watch.page.goto(page_url)
            watch.page.wait_for_selector("body[data-first-answer-ms]", timeout=READY_TIMEOUT_MS)
            state = watch.page.evaluate("({secure: isSecureContext, isolated: crossOriginIsolated, "
                                        "origin: location.origin})")
            connections = httpx.get(url + "/metrics", verify=False).text
            answered = int(watch.page.get_attribute("#result", "data-count") or 0)
            watch.screenshot("tls-page")
        finally:
            trusting.close()
    assert state == {"secure": True, "isolated": True, "origin": f"https://{NAME}:{port}"}
    assert answered >= 1
    assert "\nstrata_edge_connections 1.0\n" in connections, "the worker's WebSocket (wss) is open"
    # data: URLs and the page origin's blob: URLs (the worker's checked bytes) never leave the browser.
    assert all(u.startswith((page_url, "data:", f"blob:{page_url}")) for u in watch.requests), watch.requests
    assert not watch.console_errors, watch.console_errors
