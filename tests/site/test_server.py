"""The one server: the site and every demo's API, and what it refuses: redirects off the site, oversized and
hostile uploads, a queue past its size, bad input on every endpoint; it keeps answering under load.

Most tests talk to the real server process (the `server` fixture, `lectures serve` with its own Gradio upload
folder); the queue tests run the same app in this process with a small queue and a Selective Search that waits
for the test, so that "full" is exact. The load helpers are benchmarks/server_load.py's.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import os
import socket
import struct
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urljoin, urlparse

import httpx
import numpy as np
import pytest
from PIL import Image

from lectures_code.demos.common import BUSY_MESSAGE, MAX_UPLOAD_BYTES

pytestmark = pytest.mark.site

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_LOG = REPO_ROOT / "test-artifacts" / "server.log"  # written by the `server` fixture


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("server_load", REPO_ROOT / "benchmarks" / "server_load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


LOAD = _load_benchmark()
DEMOS = ["lecture12", "lecture13-boxes", "lecture13-selective-search", "lecture13-detector", "lecture14-roi",
         "lecture14-detector"]
BAD = "**输入有误：**"


def call_demo(base: str, demo: str, api_name: str, data: list, timeout: float = 120, expect: str = "complete"):
    """Call a Gradio endpoint the way a client does (POST the inputs, read the event stream): its payload."""
    result = LOAD.call(base, demo, api_name, data, timeout=timeout)
    assert result.kind == expect, f"{demo}/{api_name} answered {result.kind}: {result.payload}"
    return result.payload


def test_site_pages_are_served(server):
    home = httpx.get(server + "/")
    assert home.status_code == 200 and "Part 3" in home.text
    page = httpx.get(server + "/lectures/lecture-12/")
    assert page.status_code == 200 and "torch.compile" in page.text
    assert httpx.get(server + "/assets/vendor/katex/katex.min.js").status_code == 200
    assert httpx.get(server + "/no/such/page/").status_code == 404


def test_demo_is_mounted_and_redirects(server):
    redirect = httpx.get(server + "/demos/lecture12", follow_redirects=False)
    assert redirect.status_code == 307 and redirect.headers["location"] == "/demos/lecture12/"
    config = httpx.get(server + "/demos/lecture12/config").json()
    assert config["analytics_enabled"] is False
    assert httpx.get(server + "/healthz").json()["demos"] == sorted(DEMOS)


def test_demo_api_trains_and_returns_a_curve(server):
    plot, summary = call_demo(server, "lecture12", "train", ["autograd", 1e-6, 30, 0])
    assert plot is not None and plot.get("plot")
    assert "2.89053e+07" in summary and "30 个 step" in summary


@pytest.mark.parametrize("inputs, message", [
    (["autograd", -1e-3, 10, 0], "学习率 必须是有限的正数"),
    (["autograd", math.nan, 10, 0], "学习率 必须是有限的正数"),
    (["autograd", 1e-6, 0, 0], "步数 必须在 1 到"),
    (["autograd", 1e-6, 10**9, 0], "步数 必须在 1 到"),
])
def test_bad_demo_input_gets_a_message_and_the_server_stays_up(server, inputs, message):
    plot, summary = call_demo(server, "lecture12", "train", inputs)
    assert plot is None
    assert message in summary
    assert httpx.get(server + "/healthz").status_code == 200


def test_a_variant_outside_the_dropdown_is_refused_by_gradio_with_a_message(server):
    error = call_demo(server, "lecture12", "train", ["no-such-variant", 1e-6, 10, 0], expect="error")
    assert "not in the list of choices" in error["error"] and "Traceback" not in error["error"]
    assert httpx.get(server + "/healthz").status_code == 200


def test_diverging_learning_rate_is_explained(server):
    _, summary = call_demo(server, "lecture12", "train", ["tensors", 1e-3, 50, 0])
    assert "发散" in summary


def test_server_binds_loopback_by_default():
    from lectures_code.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.port == 8000


# ----------------------------------------------------------------------------------------------------
# Redirects stay on the site


@pytest.mark.parametrize("query", ["p=//evil.example", "p=https://evil.example/x", "p=/%5Cevil.example",
                                   "p=javascript:alert(1)", "path=//evil.example"])
@pytest.mark.parametrize("demo", DEMOS)
def test_demo_redirect_ignores_the_query_string(server, demo, query):
    redirect = httpx.get(f"{server}/demos/{demo}?{query}", follow_redirects=False)
    assert redirect.status_code == 307 and redirect.headers["location"] == f"/demos/{demo}/"


@pytest.mark.parametrize("path", ["//evil.example", "//evil.example/", "///evil.example/", "/%2F%2Fevil.example",
                                  "/demos//evil.example", "/demos/lecture12//evil.example", "/lectures//evil.example",
                                  "/lectures/lecture-12", "/demos/lecture12/login", "/demos/lecture12/logout",
                                  "/healthz/"])
def test_no_path_redirects_off_the_site(server, path):
    response = httpx.get(server + path, follow_redirects=False)
    if response.is_redirect:
        target = urljoin(str(response.url), response.headers["location"])
        assert urlparse(target).netloc == urlparse(server).netloc, (path, response.headers["location"])


def test_no_event_skips_the_queue(server):
    direct = httpx.post(f"{server}/demos/lecture12/gradio_api/run/train", json={"data": ["autograd", 1e-6, 5, 0]})
    assert direct.status_code == 404 and "join the queue" in direct.json()["detail"]


# ----------------------------------------------------------------------------------------------------
# Uploads: refused by size while streaming, checked from the header, deleted once read


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels: a decompression bomb if anything decoded it."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def _photo(width: int, height: int) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea()).resize((width, height))


def upload(base: str, demo: str, name: str, content: bytes) -> dict:
    """POST a file to the demo's upload route; the FileData an event takes."""
    response = httpx.post(f"{base}/demos/{demo}/gradio_api/upload", files={"files": (name, content)}, timeout=60)
    assert response.status_code == 200, response.text
    (path,) = response.json()
    return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def propose_upload(base: str, file: dict, strategy: str = "single", count: int = 5):
    return call_demo(base, "lecture13-selective-search", "propose", ["猫 (chelsea)", file, strategy, count])


def detect14(base: str, source: str, sketch=None, upload=None) -> list:
    return call_demo(base, "lecture14-detector", "detect",
                     [source, sketch, 0, upload, "Faster R-CNN", 0.3, 0.5, 100, False, 20, False, 0, 64, 64])


def test_an_upload_is_read_once_then_deleted_and_kept_for_the_next_event(server, upload_dir):
    before = _files(upload_dir)
    file = upload(server, "lecture13-selective-search", "cat.png", _png(_photo(120, 80)))
    assert Path(file["path"]).is_file() and len(_files(upload_dir)) == len(before) + 1
    plot, message = propose_upload(server, file)
    assert plot is not None and "上传的图片，120×80 像素" in message, message
    assert _files(upload_dir) == before  # the upload is gone, and Gradio's empty temporary file was never made
    plot, again = propose_upload(server, file, count=7)  # a slider moved: the same upload, read from memory
    assert plot is not None and "上传的图片，120×80 像素" in again and "最前的 7 个" in again, again
    assert _files(upload_dir) == before
    for demo, data in [("lecture13-detector", ["upload", 0, None, "R-CNN", 0.5, 0.5, 0]),
                       ("lecture14-detector", None)]:
        file = upload(server, demo, "canvas.png", _png(_photo(256, 256)))
        if data is None:
            plot, message, _ = detect14(server, "upload", upload=file)
        else:
            data[2] = file
            plot, message, _ = call_demo(server, demo, "detect", data)
        assert plot is not None and "256×256" in message, message
        assert _files(upload_dir) == before, demo


@pytest.mark.parametrize("size", [MAX_UPLOAD_BYTES + 2**19, 30 * 2**20])
def test_an_oversized_upload_is_refused_while_it_streams_in(server, upload_dir, size):
    before = _files(upload_dir)
    response = httpx.post(f"{server}/demos/lecture13-selective-search/gradio_api/upload",
                          files={"files": ("big.png", b"\0" * size)}, timeout=60)
    assert response.status_code == 413
    # just over the file limit: Gradio's max_file_size; far over: our request limit, by Content-Length
    assert ("maximum allowed size" in response.text) if size < 21 * 2**20 else ("请求太大" in response.json()["detail"])
    assert _files(upload_dir) == before  # the part already written is deleted
    assert httpx.get(server + "/healthz").status_code == 200


def test_a_body_without_a_length_is_counted_as_it_streams_in(server, upload_dir):
    before = _files(upload_dir)

    def chunks():  # chunked transfer: no Content-Length to check up front
        yield b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n\r\n"
        for _ in range(30):
            yield b"\0" * 2**20

    response = httpx.post(f"{server}/demos/lecture13-selective-search/gradio_api/upload", content=chunks(),
                          headers={"content-type": "multipart/form-data; boundary=x"}, timeout=60)
    assert response.status_code == 413
    assert _files(upload_dir) == before
    assert httpx.get(server + "/healthz").status_code == 200


HOSTILE = [
    ("bomb.png", _png_header(20000, 20000), "尺寸过大"),  # 400 M pixels claimed by a few bytes
    ("big.png", _png_header(8000, 8000), "尺寸过大"),  # 64 M pixels: over our 40 M limit
    ("notes.png", b"this is not an image\n" * 50, "无法识别为图片"),
    ("empty.png", b"", "空的"),
    ("cut.png", _png(_photo(200, 150))[:400], "损坏"),
]


@pytest.mark.parametrize("name, content, message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_upload_gets_a_message_before_anything_is_decoded(server, upload_dir, name, content, message):
    before = _files(upload_dir)
    start = time.perf_counter()
    plot, text = propose_upload(server, upload(server, "lecture13-selective-search", name, content))
    assert plot is None and text.startswith(BAD) and message in text, text
    plot, text, rows = detect14(server, "upload", upload=upload(server, "lecture14-detector", name, content))
    assert plot is None and rows["data"] == [] and text.startswith(BAD) and message in text, text
    assert time.perf_counter() - start < 20  # no 400-megapixel decode happened
    assert _files(upload_dir) == before
    assert httpx.get(server + "/healthz").status_code == 200


@pytest.mark.parametrize("name, content, message", HOSTILE[:3], ids=[h[0] for h in HOSTILE[:3]])
def test_a_hostile_sketch_is_refused_before_gradio_decodes_it(server, upload_dir, name, content, message):
    before = _files(upload_dir)
    sketch = {"background": None, "layers": [],
              "composite": upload(server, "lecture14-detector", name, content)}
    plot, text, rows = detect14(server, "sketch", sketch=sketch)
    assert plot is None and rows["data"] == [] and text.startswith(BAD) and message in text, text
    assert _files(upload_dir) == before


def test_a_sketch_sent_as_a_file_is_detected_and_deleted(server, upload_dir):
    from lectures_code.data.digit_canvases import DigitCanvases

    before = _files(upload_dir)
    image, _ = DigitCanvases("test", size=1)[0]
    drawing = Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).resize((384, 384))
    sketch = {"background": None, "layers": [], "composite": upload(server, "lecture14-detector", "sketch.png",
                                                                    _png(drawing))}
    plot, text, rows = detect14(server, "sketch", sketch=sketch)
    assert plot is not None and "手绘（384×384" in text and rows["data"], text
    assert _files(upload_dir) == before


# ----------------------------------------------------------------------------------------------------
# A slow request only holds its own slot


def test_a_slow_selective_search_upload_does_not_block_anyone_else(server):
    rng = np.random.default_rng(0)
    blocks = np.kron(rng.integers(0, 256, (30, 40, 3)), np.ones((40, 40, 1))).astype(np.uint8)  # 1600x1200
    slow_file = upload(server, "lecture13-selective-search", "blocks.png", _png(Image.fromarray(blocks)))
    finished: dict[str, float] = {}

    def timed(name, demo, api, data):
        result = LOAD.call(server, demo, api, data)
        finished[name] = time.perf_counter()
        return result

    others = [("another Selective Search user", "lecture13-selective-search", "propose",
               ["数字画布 (digit canvas)", None, "single", 5])]
    others += [(f"{demo}/{api}", demo, api, data) for demo, api, data in LOAD.MIXED_CASES
               if demo in ("lecture13-boxes", "lecture14-roi") or api == "control_updates"]
    with ThreadPoolExecutor(max_workers=len(others) + 1) as pool:
        slow = pool.submit(timed, "slow", "lecture13-selective-search", "propose",
                           ["猫 (chelsea)", slow_file, "fast", 300])  # ~4 s of CPU on a free core
        time.sleep(0.5)
        futures = {case[0]: pool.submit(timed, *case) for case in others}
        results = {name: future.result() for name, future in futures.items()}
        slow_result = slow.result()
    assert slow_result.kind == "complete" and "个候选框" in slow_result.payload[1], slow_result.payload
    for name, result in results.items():
        assert result.kind == "complete", (name, result.payload)
    late = [name for name in results if finished[name] > finished["slow"]]
    assert not late, f"waited for the slow upload ({slow_result.seconds:.1f} s): {late}"


# ----------------------------------------------------------------------------------------------------
# Load: many students at once


@pytest.mark.slow
def test_fifty_concurrent_requests_over_every_demo_all_succeed(server):
    cases = [LOAD.MIXED_CASES[i % len(LOAD.MIXED_CASES)] for i in range(50)]
    results, wall = LOAD.run_at_once(server, cases)
    failures = [(r.demo, r.api_name, r.kind, r.payload) for r in results if r.kind != "complete"]
    assert not failures, failures[:3]
    for result in results:
        if result.api_name not in ("default_learning_rate", "control_updates"):
            plot, message = result.payload[:2]
            assert plot is not None and not message.startswith(("**输入有误", "**出错了")), message
    summary = LOAD.summarize(results, wall)
    print(json.dumps(summary["overall"]), f"wall {wall:.1f} s")
    assert LOAD.healthy(server)
    assert call_demo(server, "lecture13-boxes", "iou_playground", [0, 0, 10, 10, 5, 0, 15, 10])[0] is not None


# ----------------------------------------------------------------------------------------------------
# Bad input on every endpoint of every demo, through the HTTP API

BAD_VALUES = [math.nan, math.inf, -math.inf, 1e12, -1e12, "abc", [1, 2], {"x": 1}, None, ""]


def test_every_public_endpoint_has_a_valid_case():
    """MIXED_CASES (the load test's and the bad-input test's starting point) names every public endpoint."""
    from lectures_code.demos.server import _demo_builders

    endpoints = set()
    for name, build in _demo_builders().items():
        demo = build()
        endpoints |= {(name, fn.api_name) for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert endpoints == {(demo, api) for demo, api, _ in LOAD.MIXED_CASES}


# the cheapest valid inputs where MIXED_CASES (what a reader sees first) costs seconds
CHEAP = {("lecture12", "train"): ["autograd", 1e-6, 5, 0],
         ("lecture13-selective-search", "propose"): ["数字画布 (digit canvas)", None, "single", 5],
         ("lecture13-detector", "detect"): ["canvas", 0, None, "单目标检测器 (single-object)", 0.5, 0.5, 0]}


def _bad_cases():
    for demo, api, good in LOAD.MIXED_CASES:
        good = CHEAP.get((demo, api), good)
        for position in range(len(good)):
            for value in BAD_VALUES:
                yield demo, api, [*good[:position], value, *good[position + 1:]], position


def test_every_endpoint_answers_bad_input_with_a_message(server):
    info = {demo: httpx.get(f"{server}/demos/{demo}/gradio_api/info").json()["named_endpoints"] for demo in DEMOS}
    assert {(demo, api.lstrip("/")) for demo in DEMOS for api in info[demo]} == \
        {(demo, api) for demo, api, _ in LOAD.MIXED_CASES}
    log_start = SERVER_LOG.stat().st_size
    cases = list(_bad_cases())
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda case: (case, LOAD.call(server, *case[:3])), cases))
    problems = []
    for (demo, api, data, position), result in results:
        where = f"{demo}/{api} input {position} = {data[position]!r}"
        if result.kind == "error":  # refused by Gradio's own checks (type, range, choices): its message
            message = (result.payload or {}).get("error") or ""
            if not message.strip() or "Traceback" in message:
                problems.append(f"{where}: error without a message: {result.payload}")
        elif result.kind == "complete":  # refused by the handler, or a value the handler ignores
            texts = [v for v in result.payload if isinstance(v, str)]
            if result.payload[0] is None and not any(t.startswith(BAD) for t in texts):
                problems.append(f"{where}: no figure and no message: {result.payload}")
            if any(t.startswith("**出错了") for t in texts):
                problems.append(f"{where}: the handler failed: {texts}")
        else:
            problems.append(f"{where}: {result.kind} {result.payload}")
    assert not problems, f"{len(problems)} of {len(cases)}:\n" + "\n".join(problems[:15])
    refused = sum(r.kind == "error" or any(isinstance(v, str) and v.startswith(BAD) for v in r.payload)
                  for _, r in results)
    assert refused > 0.8 * len(cases)  # nearly every bad value is refused, not silently used
    assert httpx.get(server + "/healthz").status_code == 200
    with open(SERVER_LOG, encoding="utf-8", errors="replace") as log:
        log.seek(log_start)
        assert "lectures_code" not in log.read()  # no traceback through our code: no handler raised


def test_wrong_shapes_of_request_get_a_message(server):
    prefix = f"{server}/demos/lecture12/gradio_api/call/train"
    for body in ("not json", "{}", '{"data": null}', '{"data": "abc"}'):
        response = httpx.post(prefix, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422 and response.json()["detail"], body
    for data in ([], ["autograd"], ["autograd", 1e-6]):
        error = call_demo(server, "lecture12", "train", data, expect="error")
        assert error["error"] and "Traceback" not in error["error"]
    assert httpx.post(f"{server}/demos/lecture12/gradio_api/call/no_such_api", json={"data": []}).status_code >= 400
    assert httpx.get(server + "/healthz").status_code == 200


# ----------------------------------------------------------------------------------------------------
# A full queue: "busy, try again", exactly at the configured size (the app in this process)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_in_thread(app):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "the in-process server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


QUEUE_SIZE = 2


@pytest.fixture()
def full_queue(monkeypatch):
    """The app with a queue of QUEUE_SIZE per demo, whose Selective Search waits until the test lets it go.

    Yields (base URL, gate, event ids): the demo's two slots are running and QUEUE_SIZE more are waiting.
    """
    from lectures_code.demos import lecture13_selective_search as ss_demo
    from lectures_code.demos.server import create_app

    gate, entered = threading.Event(), threading.Semaphore(0)
    search = ss_demo.selective_search

    def waiting_search(*args, **kwargs):
        entered.release()
        gate.wait(60)
        return search(*args, **kwargs)

    monkeypatch.setattr(ss_demo, "selective_search", waiting_search)
    app = create_app(site_dir=None, queue_size=QUEUE_SIZE, demos=["lecture13-selective-search", "lecture13-boxes"])
    with serve_in_thread(app) as base:
        prefix = f"{base}/demos/lecture13-selective-search/gradio_api/call/propose"
        inputs = {"data": ["数字画布 (digit canvas)", None, "single", 5]}
        events = []
        try:
            for _ in range(2):  # the two slots
                events.append(httpx.post(prefix, json=inputs).json()["event_id"])
            for _ in range(2):
                assert entered.acquire(timeout=60), "Selective Search did not start"
            for _ in range(QUEUE_SIZE):  # the waiting room
                events.append(httpx.post(prefix, json=inputs).json()["event_id"])
            yield base, gate, events
        finally:
            gate.set()


def test_a_full_queue_answers_busy_try_again(full_queue):
    base, gate, events = full_queue
    refused = httpx.post(f"{base}/demos/lecture13-selective-search/gradio_api/call/propose",
                         json={"data": ["数字画布 (digit canvas)", None, "single", 5]})
    assert refused.status_code == 429 and BUSY_MESSAGE in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) > 0
    # the browser's route: the same answer, whose detail the page shows
    joined = httpx.post(f"{base}/demos/lecture13-selective-search/gradio_api/queue/join",
                        json={"data": ["数字画布 (digit canvas)", None, "single", 5], "fn_index": 0,
                              "session_hash": "full-queue-test", "event_data": None, "trigger_id": None})
    assert joined.status_code == 429 and BUSY_MESSAGE in joined.json()["detail"]
    # another demo has its own queue: it answers at once
    start = time.perf_counter()
    plot, message = LOAD.call(base, "lecture13-boxes", "iou_playground", [0, 0, 10, 10, 5, 0, 15, 10]).payload
    assert plot is not None and "IoU = 0.3333" in message and time.perf_counter() - start < 30
    gate.set()
    for event in events:  # everyone who got in is served
        stream = httpx.get(f"{base}/demos/lecture13-selective-search/gradio_api/call/propose/{event}", timeout=120)
        kind, data = [line.split(":", 1)[1].strip() for line in stream.text.splitlines() if line][:2]
        assert kind == "complete" and "个候选框" in json.loads(data)[1]
    again = LOAD.call(base, "lecture13-selective-search", "propose", ["数字画布 (digit canvas)", None, "single", 5])
    assert again.kind == "complete" and LOAD.healthy(base)


@pytest.mark.browser
def test_the_page_shows_busy_try_again_when_the_queue_is_full(full_queue):
    import shutil

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: .ci/run must install Debian's chromium")
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    base, _, _ = full_queue
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(locale="zh-CN")
            page.goto(f"{base}/demos/lecture13-selective-search/", wait_until="networkidle")
            page.locator("#ss-run").click()  # the page load's own run was refused too
            page.get_by_text(BUSY_MESSAGE).first.wait_for(timeout=30_000)
        finally:
            browser.close()
