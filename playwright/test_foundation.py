"""The page in real Chromium: the worker loads Python, reaches ready, and measures RTT."""

from __future__ import annotations

from urllib.parse import urlsplit

from testing.chromium import PageWatch

READY_TIMEOUT_MS = 90_000


def test_page_reaches_ready_with_python_in_the_worker_and_shows_rtt(edge_url: str, watched: PageWatch) -> None:
    page = watched.page
    page.goto(edge_url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=READY_TIMEOUT_MS)
    page.wait_for_selector("#rtt[data-ms]", timeout=30_000)
    watched.screenshot("foundation-ready")

    info = page.inner_text("#runtime-info")
    assert "emscripten" in info, "the answer must come from Python compiled to WebAssembly"
    assert "3.12" in info and "2.0.2" in info, info
    assert page.get_attribute("#status", "data-state") == "ready"
    assert float(page.get_attribute("#rtt", "data-ms")) > 0
    assert "ms median" in page.inner_text("#rtt")

    origin = urlsplit(edge_url).netloc
    # data: URLs and the edge origin's blob: URLs (the worker's checked bytes) never leave the browser.
    foreign = [url for url in watched.requests if urlsplit(url).netloc != origin
               and not url.startswith(("data:", f"blob:{edge_url}/"))]
    assert not foreign, f"requests left the edge server: {foreign}"
    assert any(url.endswith(".wasm") for url in watched.requests), "the worker's requests must be observed"
    assert not watched.console_errors, watched.console_errors


def test_progress_is_reported_with_bytes(edge_url: str, watched: PageWatch) -> None:
    page = watched.page
    seen: list[str] = []
    page.expose_function("recordProgress", lambda text: seen.append(text))
    page.add_init_script("""
        new MutationObserver(() => {
          const el = document.getElementById('load-bytes');
          if (el && el.textContent) window.recordProgress(el.textContent);
        }).observe(document, {subtree: true, childList: true, characterData: true});
    """)
    page.goto(edge_url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=READY_TIMEOUT_MS)
    loaded = [float(text.split(" MB of ")[0]) for text in seen]
    total = float(seen[-1].split(" MB of ")[1].split(" MB")[0])
    assert loaded == sorted(loaded), "progress must only go forward"
    assert any(0 < value < total for value in loaded), f"no intermediate progress in {seen}"
    assert loaded[-1] == total > 10, seen
    assert page.get_attribute("#load-progress", "value") == "100"
