"""A real Chromium (Debian's, driven by Playwright) reads the Lecture 12 page as a student would."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "screenshots"
# Debian's chromium by default; CHROMIUM=/path/to/chrome points the tests at another build.
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}

IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

pytestmark = [pytest.mark.browser, pytest.mark.site]

# Outside CI a machine without Chromium skips this whole file with one line in pytest's summary;
# in CI (CI=true) the file runs and every test fails in `chromium_is_installed` instead.
if not Path(CHROMIUM).exists() and not IN_CI:
    pytest.skip("browser tests skipped: Chromium is not installed (Debian: apt-get install chromium)",
                allow_module_level=True)


@pytest.fixture(scope="session", autouse=True)
def chromium_is_installed() -> None:
    """Session-scoped and autouse, so that it runs before the site is built for nothing."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM} and CI must run the browser tests: "
                    ".ci/run installs Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        yield browser
        browser.close()


@pytest.fixture()
def page(browser):
    """A page that records every request; the test fails if one leaves the machine."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.requests = requests
    yield page
    context.close()
    remote = [u for u in requests
              if urlparse(u).scheme in ("http", "https", "ws", "wss") and urlparse(u).hostname not in LOCAL_HOSTS]
    assert not remote, f"requests left 127.0.0.1: {remote[:10]}"


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


def test_math_and_diagrams_render(page, server):
    page.goto(server + "/lectures/lecture-12/", wait_until="networkidle")
    page.wait_for_selector(".katex", timeout=20_000)
    assert page.locator(".katex").count() >= 10
    assert page.locator(".katex-error").count() == 0
    # Material renders mermaid into a closed shadow root: check that the containers got a real size.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.mermaid')].every(e => e.getBoundingClientRect().height > 80)",
        timeout=30_000,
    )
    assert page.locator(".mermaid").count() >= 2
    figure = page.locator("img[src$='lecture12-autograd-graph.svg']")
    assert figure.evaluate("img => img.complete && img.naturalWidth > 100")
    _shot(page, "lecture12-top")
    page.locator(".mermaid").nth(1).scroll_into_view_if_needed()
    _shot(page, "lecture12-static-graph-diagram")


@pytest.mark.parametrize("word", ["累加", "计算图"])
def test_chinese_search_finds_words_inside_sentences(page, server, word):
    page.goto(server + "/", wait_until="networkidle")
    page.locator("label.md-search__icon, .md-search__input").first.click()
    search = page.locator("input.md-search__input")
    search.fill(word)
    search.press("End")           # fill() sends no key event; Material searches on keyup
    result = page.locator(".md-search-result__item a[href*='lecture-12']").first
    result.wait_for(timeout=20_000)
    _shot(page, f"search-{word}")


def test_demo_is_embedded_and_can_be_driven(page, server):
    page.goto(server + "/lectures/lecture-12/", wait_until="networkidle")
    page.locator(".demo-embed").scroll_into_view_if_needed()
    page.wait_for_selector(".demo-embed iframe", timeout=20_000)
    frame = page.frame_locator(".demo-embed iframe")
    steps = frame.locator("#steps input")
    steps.wait_for(timeout=60_000)

    steps.fill("25")
    frame.locator("#train").click()
    summary = frame.locator("#summary")
    summary.get_by_text("25 个 step").wait_for(timeout=60_000)
    first = summary.inner_text()
    frame.locator("#loss-plot img, #loss-plot canvas, #loss-plot svg").first.wait_for(timeout=30_000)
    _shot(page, "lecture12-demo-trained")

    frame.locator("#learning-rate input").fill("-1")
    frame.locator("#train").click()
    summary.get_by_text("输入有误").wait_for(timeout=60_000)
    assert summary.inner_text() != first
    _shot(page, "lecture12-demo-bad-input")


def test_demo_page_without_server_explains_how_to_start_it(page, built_site):
    page.goto((built_site / "lectures/lecture-12/index.html").as_uri())
    message = page.locator(".demo-embed .demo-missing")
    message.wait_for(timeout=20_000)
    assert "make serve" in message.inner_text()


def _demo_frame(page, server, name, lecture: int = 13):
    page.goto(server + f"/lectures/lecture-{lecture}/", wait_until="networkidle")
    box = page.locator(f".demo-embed[data-demo='{name}']")
    box.scroll_into_view_if_needed()
    page.wait_for_selector(f".demo-embed[data-demo='{name}'] iframe", timeout=20_000)
    return box, page.frame_locator(f".demo-embed[data-demo='{name}'] iframe")


def _set_number(locator, value: str) -> None:
    locator.fill(value)
    locator.press("Enter")
    locator.blur()


def test_lecture13_page_renders_figures_and_tables(page, server):
    page.goto(server + "/lectures/lecture-13/", wait_until="networkidle")
    for name in ["lecture13-vision-tasks.png", "lecture13-iou-examples.svg", "lecture13-selective-search.png",
                 "lecture13-box-transform.svg", "lecture13-nms.svg", "lecture13-pr-curve.svg",
                 "lecture13-transfer-learning.svg", "lecture13-sliding-window-counts.svg"]:
        image = page.locator(f"img[src$='{name}']")
        image.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 100", arg=image.element_handle(),
                               timeout=20_000)
    assert page.locator(".katex").count() >= 20
    assert page.locator("table").count() >= 6
    page.locator("#rcnn-results").scroll_into_view_if_needed()
    _shot(page, "lecture13-rcnn-results")


def test_lecture13_iou_and_nms_playground(page, server):
    box, frame = _demo_frame(page, server, "lecture13-boxes")
    value = frame.locator("#iou-value")
    value.get_by_text("IoU").first.wait_for(timeout=60_000)
    before = value.inner_text()
    _set_number(frame.locator("#iou-a-x1 input[type=number]"), "60")
    page.wait_for_function("([el, old]) => el.innerText !== old", arg=[value.element_handle(), before],
                           timeout=30_000)
    _shot(page, "lecture13-iou-demo")

    frame.get_by_role("tab", name="NMS").click()
    info = frame.locator("#nms-info")
    info.wait_for(timeout=30_000)
    start = info.inner_text()
    _set_number(frame.locator("#nms-step input[type=number]"), "3")
    page.wait_for_function("([el, old]) => el.innerText !== old", arg=[info.element_handle(), start],
                           timeout=30_000)
    _shot(page, "lecture13-nms-demo")


def test_lecture13_selective_search_demo(page, server):
    box, frame = _demo_frame(page, server, "lecture13-selective-search")
    frame.locator("#ss-run").click()
    frame.locator("#ss-info").get_by_text("候选框").first.wait_for(timeout=90_000)
    frame.locator("#ss-plot img, #ss-plot canvas, #ss-plot svg").first.wait_for(timeout=30_000)
    _shot(page, "lecture13-selective-search-demo")


def test_lecture13_detector_demo(page, server):
    box, frame = _demo_frame(page, server, "lecture13-detector")
    frame.locator("#det-run").click()
    info = frame.locator("#det-info")
    info.get_by_text("检测到").first.wait_for(timeout=90_000)
    text = info.inner_text()
    assert "R-CNN" in text and "输入有误" not in text
    assert int(re.search(r"检测到\s*(\d+)", text).group(1)) >= 1
    frame.locator("#det-plot img, #det-plot canvas, #det-plot svg").first.wait_for(timeout=30_000)
    _shot(page, "lecture13-detector-demo")


def test_lecture14_roi_demo(page, server):
    page.goto(server + "/lectures/lecture-14/", wait_until="networkidle")
    for name in ["lecture14-roi-pool-vs-align.png", "lecture14-feature-projection.svg"]:
        image = page.locator(f"img[src$='{name}']")
        image.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 100", arg=image.element_handle(),
                               timeout=20_000)
    box, frame = _demo_frame(page, server, "lecture14-roi", lecture=14)
    info = frame.locator("#roi-info")
    info.get_by_text("RoI Align").first.wait_for(timeout=60_000)
    before = info.inner_text()
    _set_number(frame.locator("#roi-x2 input[type=number]"), "120")
    page.wait_for_function("([el, old]) => el.innerText !== old", arg=[info.element_handle(), before],
                           timeout=30_000)
    _set_number(frame.locator("#roi-x2 input[type=number]"), "10")   # x2 < x1: a message, not a crash
    info.get_by_text("输入有误").first.wait_for(timeout=30_000)
    _shot(page, "lecture14-roi-demo")


def test_lecture14_figures_and_detector_demo(page, server):
    page.goto(server + "/lectures/lecture-14/", wait_until="networkidle")
    for name in ["lecture14-anchors.png", "lecture14-rpn-proposals.png", "lecture14-fpn-levels.png",
                 "lecture14-detections.png", "lecture14-speed-accuracy.svg", "lecture14-proposal-scaling.svg"]:
        image = page.locator(f"img[src$='{name}']")
        image.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 100", arg=image.element_handle(),
                               timeout=20_000)
    box, frame = _demo_frame(page, server, "lecture14-detector", lecture=14)
    frame.locator("#det14-run").click()
    info = frame.locator("#det14-info")
    info.get_by_text("检测到").first.wait_for(timeout=90_000)
    text = info.inner_text()
    assert "输入有误" not in text and int(re.search(r"检测到\s*(\d+)", text).group(1)) >= 1
    frame.locator("#det14-plot img, #det14-plot canvas, #det14-plot svg").first.wait_for(timeout=30_000)
    _shot(page, "lecture14-detector-demo")
    frame.locator("#det14-source").get_by_text("手绘").click()  # an empty sketch: a message, not a crash
    frame.locator("#det14-run").click()
    info.get_by_text("输入有误").first.wait_for(timeout=30_000)
