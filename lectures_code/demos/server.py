"""One local server for everything: every Gradio demo at /demos/<name>/ and the built site at /.

Binds 127.0.0.1 unless told otherwise; Gradio analytics are off, nothing leaves the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastapi.responses import HTMLResponse, RedirectResponse  # noqa: E402
from fastapi.staticfiles import StaticFiles  # noqa: E402

from lectures_code.demos.common import OFFLINE_THEME  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


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


def create_app(site_dir: Path | None = REPO_ROOT / "site") -> FastAPI:
    app = FastAPI(title="EECS 498.008 Part 3 notes and demos", docs_url=None, redoc_url=None)
    builders = _demo_builders()

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "demos": sorted(builders)}

    # Demos first: the static site mounted at "/" would otherwise shadow /demos/...
    for name, build in builders.items():
        path = f"/demos/{name}"
        app.add_api_route(path, lambda p=path: RedirectResponse(p + "/"), include_in_schema=False)
        gr.mount_gradio_app(app, build(), path=path, theme=OFFLINE_THEME, footer_links=[],
                            show_error=True, ssr_mode=False)

    if site_dir is not None and Path(site_dir, "index.html").is_file():
        app.mount("/", StaticFiles(directory=site_dir, html=True), name="site")
    else:
        @app.get("/", response_class=HTMLResponse)
        def no_site():
            return ("<h1>站点尚未构建 / site not built</h1>"
                    "<p>运行 <code>make serve</code>（或 <code>lectures site build</code>）后刷新。</p>")
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
