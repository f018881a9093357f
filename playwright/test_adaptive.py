"""The planner in the real page, behind the link emulator: change the link, watch the plan change."""

from __future__ import annotations

import httpx

from bench.throttle import slowed
from testing.chromium import PageWatch
from testing.servers import cloud_process, edge_process, link_process

READY_TIMEOUT_MS = 90_000


def _plan(page) -> dict:
    return page.eval_on_selector("#plan-strip", "el => ({...el.dataset})")


def test_switching_the_link_from_wifi_to_3g_changes_the_plan(watched: PageWatch) -> None:
    # On this desktop CPU onnxruntime-web runs the whole model in a few ms, faster than any
    # round trip, so the plan stays on the device whatever the link. A phone-speed device
    # (bench/throttle.py, as DevTools' 6x low-end preset) is where the link decides.
    with cloud_process() as (cloud, _), edge_process("--cloud-url", cloud) as (edge, _), \
            link_process(edge, "wifi") as (url, control), slowed(6):
        page = watched.page
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready=true]", timeout=READY_TIMEOUT_MS)
        page.wait_for_selector("#plan-strip[data-auto=true]", timeout=30_000)
        page.wait_for_function(  # the probes have measured both directions of the wifi link
            "() => [...document.querySelectorAll('#context-plots figcaption')]"
            ".filter(c => /link: [0-9]/.test(c.textContent)).length === 2", timeout=30_000)
        page.wait_for_timeout(3000)  # and the plan has settled on it
        on_wifi = _plan(page)
        watched.screenshot("adaptive-wifi")

        assert httpx.put(f"{control}/profile/3g").status_code == 200
        page.wait_for_function(
            "before => { const now = document.getElementById('plan-strip').dataset;"
            " return now.a !== before.a || now.b !== before.b || now.codec !== before.codec"
            " || now.branch !== before.branch; }", arg=on_wifi, timeout=30_000)
        on_3g = _plan(page)
        watched.screenshot("adaptive-3g")
        page.wait_for_function(  # the probes see 3g's 300 ms round trip within a few seconds
            "() => parseFloat(document.querySelector('#context-plots [data-series=rtt_ms] figcaption')"
            ".textContent.split(': ')[1]) > 250", timeout=10_000)
        assert on_3g != on_wifi
        assert not watched.console_errors, watched.console_errors
