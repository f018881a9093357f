"""The page a person uses, in real Chromium against a real edge: cold and warm start-up,
an uploaded image, the camera, the latency histogram, a phone-sized viewport, the
keyboard and accessible names. Screenshots at desktop and phone sizes go to test-output/."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import numpy as np
import pytest
from playwright.sync_api import Browser, Page
from strata.plan import default_plan

from edge_server.config import Settings
from testing.chromium import ARGS, EXECUTABLE
from testing.pictures import png, trousers_photo

READY_TIMEOUT_MS = 90_000
MANIFEST = json.loads((Settings().models_dir / "manifest.json").read_text())
CLASSES = MANIFEST["classes"]
ROWS, COLS = MANIFEST["input"]["raw_size"]
CONTROLS = "input, select, button, textarea"
# Roles of the controls a person operates, as Chromium's accessibility tree names them.
CONTROL_ROLES = {"button", "checkbox", "combobox", "spinbutton", "textbox", "slider", "radio", "switch", "searchbox",
                 "listbox", "menuitem", "link"}


@pytest.fixture(scope="module")
def camera_browser(browser: Browser) -> Iterator[Browser]:
    """Chromium with a fake camera (a generated test pattern). Its permission is still
    asked for, so a test can grant it or leave it denied."""
    fake = browser.browser_type.launch(executable_path=EXECUTABLE,
                                       args=[*ARGS, "--use-fake-device-for-media-stream"])
    yield fake
    fake.close()


def preview(page: Page) -> np.ndarray:
    """What the page says the model sees: the preview canvas's grey values."""
    data = page.evaluate("""() => {
        const c = document.getElementById('preview');
        return {w: c.width, h: c.height, rgba: Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)};
    }""")
    rgba = np.array(data["rgba"], np.uint8).reshape(data["h"], data["w"], 4)
    assert (rgba[..., 0] == rgba[..., 1]).all() and (rgba[..., 0] == rgba[..., 2]).all(), "the preview must be grey"
    return rgba[..., 0]


def answers(page: Page) -> int:
    return int(page.get_attribute("#result", "data-count") or 0)


def fix_plan(page: Page) -> None:
    plan = default_plan(len(MANIFEST["blocks"]))
    page.evaluate("plan => window.strata.callWorker('set_plan', plan)", plan.to_header())
    page.wait_for_selector(f"#plan-strip[data-auto=false][data-a='{plan.a}'][data-b='{plan.b}']")


def test_start_up_says_cold_then_warm_and_remembers_both(edge_url: str, open_page) -> None:
    watched = open_page(edge_url)
    page = watched.page
    line = page.locator("#start-times")
    assert line.get_attribute("data-kind") == "cold", line.inner_text()
    cold_ready, cold_first = int(line.get_attribute("data-ready-ms")), int(line.get_attribute("data-first-answer-ms"))
    assert 0 < cold_ready <= cold_first
    assert "cold" in line.inner_text() and "first answer" in line.inner_text()
    assert page.get_attribute("#start-history", "data-both") == "false"
    assert page.get_attribute("#result", "data-source") == "gallery", "the first answer comes without a click"

    page.reload()  # the same context: the HTTP cache holds the runtime now
    page.wait_for_selector("body[data-first-answer-ms]", timeout=READY_TIMEOUT_MS)
    assert line.get_attribute("data-kind") == "warm", line.inner_text()
    history = page.locator("#start-history")
    assert history.get_attribute("data-both") == "true"
    assert re.search(r"cold \d+\.\d\d s · warm \d+\.\d\d s", history.inner_text()), history.inner_text()
    stored = json.loads(page.evaluate("localStorage.getItem('strata.startup')"))
    assert stored["cold"]["ready_ms"] == pytest.approx(cold_ready, abs=1)
    assert stored["warm"]["first_answer_ms"] >= stored["warm"]["ready_ms"] > 0
    watched.screenshot("page-desktop-start-up")
    assert not watched.console_errors, watched.console_errors


def test_an_uploaded_image_is_converted_previewed_and_classified(edge_url: str, open_page) -> None:
    watched = open_page(edge_url)
    page = watched.page
    fix_plan(page)  # so that the same input gives the same answer below
    before = answers(page)
    page.set_input_files("#upload", files=[{"name": "trousers.png", "mimeType": "image/png",
                                            "buffer": png(trousers_photo())}])
    page.wait_for_selector("#result[data-source=upload]", timeout=30_000)
    assert answers(page) == before + 1
    label = int(page.get_attribute("#result", "data-label"))
    assert page.inner_text("#result .answer").startswith(CLASSES[label])
    assert label == CLASSES.index("Trouser"), f"dark trousers on white read as {CLASSES[label]}"
    assert page.is_checked("#invert"), "a light border means a dark object: invert"

    seen = preview(page)
    assert seen.shape == (ROWS, COLS)
    assert seen[:, :3].max() < 30 and seen[:, -3:].max() < 30, "the padding is dark, as in Fashion-MNIST"
    assert seen[ROWS // 2, COLS // 2 - 3] > 200 and seen[ROWS // 2, COLS // 2 + 3] > 200, "the legs are light"
    assert seen.std() > 50

    # The preview is exactly the model's input: sent again as a picture (not inverted, and
    # already stretched), the worker's rule leaves it as it is and gets the same answer.
    again = page.evaluate(f"""pixels => window.strata.callWorker('classify_picture',
        Uint8ClampedArray.from(pixels.flatMap(v => [v, v, v, 255])), {COLS}, {ROWS}, false, true)""",
                          seen.reshape(-1).tolist())
    assert again["label"] == label and "truth" not in again
    assert again["inverted"] is False
    # And classify_picture treats a sample's picture as classify_sample treats the sample.
    pairs = page.evaluate("""async () => {
        const {pixels, rows, cols} = await window.strata.callWorker('gallery', 8);
        const out = [];
        for (let i = 0; i < 8; i++) {
          const picture = pixels.slice(i * rows * cols * 4, (i + 1) * rows * cols * 4);
          const mine = await window.strata.callWorker('classify_picture', picture, cols, rows, false, false);
          const theirs = await window.strata.callWorker('classify_sample', i);
          out.push([mine.label, theirs.label, mine.tier, theirs.tier]);
        }
        return out;
    }""")
    assert all(a == b and c == d for a, b, c, d in pairs), pairs
    error = page.evaluate("window.strata.callWorker('classify_picture', new Uint8Array(3), 3, 1).catch(e => e.message)")
    assert "expected 3x1 RGBA pixels (12 bytes); got 3 bytes" in error, error

    page.set_input_files("#upload", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a picture"}])
    page.wait_for_selector("#input-message:has-text('not an image')")

    page.uncheck("#invert")  # the person's choice wins, and the image is classified again
    page.wait_for_function("n => Number(document.getElementById('result').dataset.count) > n", arg=before + 1)
    assert preview(page)[:, :3].min() > 200, "not inverted: the light background stays light"
    watched.screenshot("page-desktop-upload")
    assert not watched.console_errors, watched.console_errors


def test_the_camera_classifies_frames_one_at_a_time_and_continuously(edge_url: str, camera_browser: Browser,
                                                                     open_page) -> None:
    watched = open_page(edge_url, camera_browser)
    page = watched.page
    page.context.grant_permissions(["camera"], origin=edge_url)
    page.click("#camera")
    page.wait_for_function("document.getElementById('camera-video').videoWidth > 0", timeout=10_000)
    assert page.inner_text("#camera") == "Stop the camera"
    square = page.evaluate("""() => { const v = document.getElementById('camera-video');
        return [Math.min(v.videoWidth, v.videoHeight) / v.videoWidth,
                parseFloat(document.getElementById('camera-view').style.getPropertyValue('--square-width')) / 100]; }""")
    assert square[0] == pytest.approx(square[1]), "the preview outlines the centre square that is classified"
    page.click("#camera-frame")
    page.wait_for_selector("#result[data-source=camera]", timeout=30_000)
    assert 0 <= int(page.get_attribute("#result", "data-label")) < len(CLASSES)
    assert "From a camera frame" in page.inner_text("#result")
    assert preview(page).std() > 5, "the preview shows the frame"

    counted = answers(page)
    page.check("#camera-continuous")
    page.wait_for_function("n => Number(document.getElementById('result').dataset.count) >= n + 3",
                           arg=counted, timeout=10_000)
    watched.screenshot("page-desktop-camera")
    page.uncheck("#camera-continuous")
    page.click("#camera")
    assert page.is_hidden("#camera-video")
    assert page.is_disabled("#camera-frame")
    assert not watched.console_errors, watched.console_errors


def test_a_denied_or_missing_camera_is_explained_without_errors(edge_url: str, camera_browser: Browser,
                                                               open_page) -> None:
    watched = open_page(edge_url, camera_browser)  # a camera, but no permission granted
    page = watched.page
    page.click("#camera")
    page.wait_for_selector("#camera-message[data-error]", timeout=10_000)
    assert "denied" in page.inner_text("#camera-message"), page.inner_text("#camera-message")
    assert page.is_visible("#camera-message") and page.is_enabled("#camera") and page.is_hidden("#camera-video")
    assert not watched.console_errors, watched.console_errors

    # No camera API at all (as on a page served over plain HTTP to a phone).
    missing = open_page(edge_url, init_script="Object.defineProperty(Navigator.prototype, 'mediaDevices', "
                                              "{get: () => undefined, configurable: true})")
    camera = missing.page.locator("#camera")
    assert camera.is_disabled()
    assert "camera" in (camera.get_attribute("title") or ""), "a disabled button says why"
    assert missing.page.inner_text("#camera-message") == camera.get_attribute("title")
    assert not missing.console_errors, missing.console_errors


def test_a_run_draws_a_latency_histogram_by_tier_with_p50_and_p95(edge_url: str, open_page) -> None:
    watched = open_page(edge_url)
    page = watched.page
    page.fill("#run-count", "30")
    page.click("#run")
    page.wait_for_selector("#run-summary[data-done]", timeout=120_000)
    figure = page.locator("#latency-histogram figure")
    bars = page.eval_on_selector_all("#latency-histogram rect.bar",
                                     "rs => rs.map(r => [r.dataset.tier, Number(r.dataset.count), r.getAttribute('fill')])")
    rows = page.eval_on_selector_all("#run-table tbody tr",
                                     "rs => rs.map(r => [r.dataset.tier, Number(r.cells[4].textContent)])")
    assert len(rows) == 30 and int(figure.get_attribute("data-count")) == 30
    assert sum(count for _, count, _ in bars) == 30
    for tier in {tier for tier, _ in rows}:  # every tier's answers are drawn, in its own colour
        assert sum(c for t, c, _ in bars if t == tier) == sum(1 for t, _ in rows if t == tier)
    assert len({(tier, fill) for tier, _, fill in bars}) == len({tier for tier, _, _ in bars})
    latencies = sorted(ms for _, ms in rows)
    p50, p95 = float(figure.get_attribute("data-p50")), float(figure.get_attribute("data-p95"))
    assert p50 == pytest.approx(latencies[14], abs=0.06) and p95 == pytest.approx(latencies[28], abs=0.06)
    assert page.locator("#latency-histogram line.quantile").count() == 2
    assert f"p95 {p95:.0f} ms" in figure.inner_text() or f"p95 {p95:.1f} ms" in figure.inner_text()
    watched.screenshot("page-desktop-run")
    assert not watched.console_errors, watched.console_errors


def test_the_default_batch_runs_past_the_gallerys_pictures(edge_url: str, open_page) -> None:
    """The batch's default count (50) is more than the gallery shows (40): the samples past
    it are classified too, with no picture to preview, and the button comes back."""
    watched = open_page(edge_url)
    page = watched.page
    shown = page.locator("#gallery .sample").count()
    count = int(page.input_value("#run-count"))
    assert count > shown, f"the default batch ({count}) should run past the gallery ({shown})"
    page.click("#run")
    page.wait_for_selector(f"#run-summary[data-done='{count}']", timeout=120_000)
    assert page.locator("#run-table tbody tr").count() == count and page.locator("#run").is_enabled()
    assert page.inner_text("#preview-caption") == f"What the model sees: sample {count - 1}, 28×28."
    assert not watched.console_errors, watched.console_errors


def test_on_a_phone_one_column_no_sideways_scroll_and_every_control_named(edge_url: str, open_page) -> None:
    watched = open_page(edge_url, size="phone")
    page = watched.page
    page.set_input_files("#upload", files=[{"name": "trousers.png", "mimeType": "image/png",
                                            "buffer": png(trousers_photo())}])
    page.wait_for_selector("#result[data-source=upload]", timeout=30_000)
    page.fill("#run-count", "12")
    page.click("#run")
    page.wait_for_selector("#run-summary[data-done]", timeout=60_000)
    page.click("#manual summary")  # open the hand-made plan's controls too

    width, scroll = page.evaluate("[innerWidth, document.documentElement.scrollWidth]")
    assert width == 390 and scroll <= width, f"sideways scroll: {scroll} px of content in {width}"
    wider = page.evaluate(f"""[...document.querySelectorAll('main *')].filter(el => {{
        const box = el.getBoundingClientRect(); return box.width > 0 && (box.left < 0 || box.right > {width});
    }}).map(el => el.id || el.className || el.tagName)""")
    assert not wider, f"elements past the screen's edge: {wider}"
    for group in (".inputs > *", "main > section"):
        lefts = page.eval_on_selector_all(group, "els => els.map(e => Math.round(e.getBoundingClientRect().left))")
        assert len(set(lefts)) == 1, f"one column expected for {group}: {lefts}"

    # Chromium's own accessibility tree: every control it exposes has a name.
    nodes = page.context.new_cdp_session(page).send("Accessibility.getFullAXTree")["nodes"]
    controls = [n for n in nodes if not n.get("ignored") and n.get("role", {}).get("value") in CONTROL_ROLES]
    unnamed = [n["role"]["value"] for n in controls if not n.get("name", {}).get("value", "").strip()]
    assert not unnamed, f"controls without a name: {unnamed}"
    # And every control in the DOM, hidden ones included, has a label, aria-label or text.
    unlabelled = page.eval_on_selector_all(CONTROLS, """els => els.filter(el =>
        !(el.labels && [...el.labels].some(l => l.textContent.trim())) && !el.getAttribute('aria-label')
        && !el.getAttribute('aria-labelledby') && !(el.tagName === 'BUTTON' && el.textContent.trim())
    ).map(el => el.outerHTML.slice(0, 80))""")
    assert not unlabelled, unlabelled
    visible = page.eval_on_selector_all(CONTROLS, "els => els.filter(el => el.getClientRects().length).length")
    assert len(controls) >= visible, "the accessibility tree must cover every visible control"
    watched.screenshot("page-phone")
    assert not watched.console_errors, watched.console_errors


def test_the_keyboard_reaches_and_works_the_gallery(edge_url: str, open_page) -> None:
    watched = open_page(edge_url)
    page = watched.page
    assert page.eval_on_selector_all("[tabindex]", "els => els.filter(el => el.tabIndex > 0).length") == 0
    assert page.is_disabled("#budget"), "the budget is only for the accuracy goal"
    page.evaluate("""() => { const goal = document.getElementById('goal');
        goal.value = 'accuracy'; goal.dispatchEvent(new Event('change', {bubbles: true})); }""")
    stops = []
    for _ in range(60):
        page.keyboard.press("Tab")
        stop = page.evaluate("""() => { const el = document.activeElement;
            return {id: el.id, sample: el.classList.contains('sample'), index: [...document.querySelectorAll('body *')].indexOf(el)}; }""")
        stops.append(stop)
        if stop["sample"]:
            break
    assert stops[-1]["sample"], f"Tab never reached the gallery: {stops}"
    indexes = [s["index"] for s in stops]
    assert indexes == sorted(indexes), "the tab order follows the page's order"
    assert {"goal", "budget", "privacy"} <= {s["id"] for s in stops}

    gallery = "[...document.querySelectorAll('#gallery .sample')]"
    page.keyboard.press("ArrowRight")
    assert page.evaluate(f"{gallery}.indexOf(document.activeElement)") == 1
    page.keyboard.press("Enter")
    page.wait_for_selector("#result[data-source=gallery][data-index='1']", timeout=30_000)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Space")
    page.wait_for_selector("#result[data-index='2']", timeout=30_000)
    page.keyboard.press("End")
    assert page.evaluate(f"{gallery}.indexOf(document.activeElement)") == page.locator("#gallery .sample").count() - 1
    page.keyboard.press("Tab")  # one tab stop for the whole gallery: Tab leaves it
    assert page.evaluate("document.activeElement.id") == "upload"
    assert not watched.console_errors, watched.console_errors
