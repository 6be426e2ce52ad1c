"""One local server for everything: every Gradio demo at /demos/<name>/ and the built site at /.

Binds 127.0.0.1 unless told otherwise; Gradio analytics are off, nothing leaves the machine. What one
request can cost is bounded:

- a request body is at most MAX_REQUEST_BYTES (413 otherwise) and an uploaded file at most
  MAX_UPLOAD_BYTES (Gradio's max_file_size, checked while the file streams in, before anything is decoded);
- each demo's queue holds at most QUEUE_SIZES[name] waiting events; one more is answered 429 with
  BUSY_MESSAGE, which the browser shows. How many events of each handler run at once is set next to the
  handler, in each demo's build_demo; the demos' queues are independent, so a slow request in one demo
  (a big Selective Search upload) never waits in front of another demo's requests;
- no event skips the queue: Gradio's direct /gradio_api/run/<api> routes are closed (api_open=False);
- uploads that no event read are swept from Gradio's upload folder (UPLOAD_SWEEP); the ones read are
  deleted at once (common.DecodedUploads).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastapi.responses import HTMLResponse, RedirectResponse  # noqa: E402
from fastapi.staticfiles import StaticFiles  # noqa: E402

from lectures_code.demos.common import BUSY_MESSAGE, MAX_UPLOAD_BYTES, OFFLINE_THEME  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]

MAX_REQUEST_BYTES = MAX_UPLOAD_BYTES + 2**20  # one upload plus its multipart headers; JSON inputs are far smaller
# Waiting events per demo (running ones not counted). The longest wait in a full queue is about
# size x (seconds per event) / (events at once): Selective Search ~1-3 s, two at once; Lecture 12's training
# up to a minute at 2000 steps, two at once; the rest a fraction of a second.
QUEUE_SIZES = {
    "lecture12": 16,
    "lecture13-boxes": 64,
    "lecture13-selective-search": 24,
    "lecture13-detector": 64,
    "lecture14-roi": 64,
    "lecture14-detector": 64,
}
UPLOAD_SWEEP = (300, 900)  # every 5 minutes, delete uploads older than 15 minutes
RETRY_AFTER_SECONDS = 5


def _demo_builders():
    from lectures_code.demos import (
        lecture12_training,
        lecture13_boxes,
        lecture13_detector,
        lecture13_selective_search,
        lecture14_detector,
        lecture14_roi,
    )

    return {
        "lecture12": lecture12_training.build_demo,
        "lecture13-boxes": lecture13_boxes.build_demo,
        "lecture13-selective-search": lecture13_selective_search.build_demo,
        "lecture13-detector": lecture13_detector.build_demo,
        "lecture14-roi": lecture14_roi.build_demo,
        "lecture14-detector": lecture14_detector.build_demo,
    }


def _redirect_to(target: str):
    """A route answering 307 -> ``target``, a fixed path. (A ``lambda p=path: ...`` route would read ``p`` from
    the query string: /demos/x?p=//evil.example redirected off the site.)"""

    async def redirect() -> RedirectResponse:
        return RedirectResponse(target, status_code=307)

    return redirect


class _TooLarge(Exception):
    pass


class RequestGuard:
    """ASGI middleware in front of everything: body size limit and a readable "busy" answer.

    - A POST body over ``max_bytes`` (by its Content-Length, or counted as it streams in) is answered 413.
    - Gradio answers a join to a full queue (POST .../gradio_api/queue/join or .../gradio_api/call/<api>) with
      503, for which the browser shows a fixed English text; it becomes 429 with {"detail": BUSY_MESSAGE}
      and Retry-After, and the browser shows the detail.
    """

    def __init__(self, app, max_bytes: int = MAX_REQUEST_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_bytes:
            return await _answer(send, 413, _too_large_message(self.max_bytes))

        received, started = 0, False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        path = scope["path"]
        joins_queue = path.endswith("/gradio_api/queue/join") or "/gradio_api/call/" in path
        busy = False

        async def guarded_send(message):
            nonlocal started, busy
            if message["type"] == "http.response.start":
                started = True
                if joins_queue and message["status"] == 503:
                    busy = True  # Gradio's body ("Queue is full ...") is dropped below
                    return
            if busy:
                if message["type"] == "http.response.body" and not message.get("more_body", False):
                    await _answer(send, 429, BUSY_MESSAGE + "（这个演示的排队人数已满）",
                                  [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())])
                return
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except _TooLarge:
            if not started:
                await _answer(send, 413, _too_large_message(self.max_bytes))


def _too_large_message(max_bytes: int) -> str:
    return f"请求太大：上限 {max_bytes / 2**20:.0f} MB（一个文件最多 {MAX_UPLOAD_BYTES / 2**20:.0f} MB）"


async def _answer(send, status: int, detail: str, headers: list | None = None) -> None:
    body = json.dumps({"detail": detail}, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def create_app(site_dir: Path | None = REPO_ROOT / "site", queue_size: int | None = None,
               demos: list[str] | None = None) -> FastAPI:
    """The app: the demos (all, or those named in ``demos``) and the site. ``queue_size`` replaces every
    demo's QUEUE_SIZES entry (tests fill a queue with it)."""
    app = FastAPI(title="EECS 498.008 Part 3 notes and demos", docs_url=None, redoc_url=None, openapi_url=None)
    builders = {name: build for name, build in _demo_builders().items() if demos is None or name in demos}

    @app.get("/healthz")
    async def healthz():  # async: answers even when every worker thread is busy
        return {"status": "ok", "demos": sorted(builders)}

    # Demos first: the static site mounted at "/" would otherwise shadow /demos/...
    for name, build in builders.items():
        path = f"/demos/{name}"
        app.add_api_route(path, _redirect_to(path + "/"), include_in_schema=False)
        demo = build()
        demo.delete_cache = UPLOAD_SWEEP
        demo.queue(max_size=queue_size or QUEUE_SIZES[name], api_open=False, default_concurrency_limit=1)
        gr.mount_gradio_app(app, demo, path=path, theme=OFFLINE_THEME, footer_links=[], show_error=True,
                            ssr_mode=False, max_file_size=MAX_UPLOAD_BYTES)

    if site_dir is not None and Path(site_dir, "index.html").is_file():
        app.mount("/", StaticFiles(directory=site_dir, html=True), name="site")
    else:
        @app.get("/", response_class=HTMLResponse)
        def no_site():
            return ("<h1>站点尚未构建 / site not built</h1>"
                    "<p>运行 <code>make serve</code>（或 <code>lectures site build</code>）后刷新。</p>")
    app.add_middleware(RequestGuard)
    return app


def serve(host: str = "127.0.0.1", port: int = 8000, site_dir: Path = REPO_ROOT / "site") -> int:
    import uvicorn

    if not Path(site_dir, "index.html").is_file():
        print(f"note: {site_dir}/index.html not found; run `lectures site build` first. Serving demos only.")
    print(f"serving the notes and demos at http://{host}:{port}/  (Ctrl+C to stop)")
    uvicorn.run(create_app(site_dir), host=host, port=port, log_level="warning")
    return 0


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="serve the site and the demos")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    raise SystemExit(serve(args.host, args.port))
