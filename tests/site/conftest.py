"""Session fixtures: the site built once (strict, notebooks executed) and one server serving it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> Path:
    site_dir = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site_dir)],
                          cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=600)
    elapsed = time.perf_counter() - start
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "mkdocs-build.log").write_text(proc.stdout + proc.stderr)
    (ARTIFACTS / "mkdocs-build-seconds.txt").write_text(f"{elapsed:.1f}\n")
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-4000:]}"
    return site_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def upload_dir(tmp_path_factory) -> Path:
    """The server's own Gradio upload folder (GRADIO_TEMP_DIR): tests count the files left in it."""
    return tmp_path_factory.mktemp("gradio-uploads")


@pytest.fixture(scope="session")
def server(built_site, upload_dir) -> str:
    """The real server process (`lectures serve`), on a free port of 127.0.0.1. Yields its base URL."""
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "LECTURES_DEVICE": "cpu",
           "GRADIO_TEMP_DIR": str(upload_dir)}
    log = open(ARTIFACTS / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "lectures_code", "serve", "--port", str(port),
                             "--site-dir", str(built_site)], cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}; see test-artifacts/server.log")
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("server did not answer /healthz within 120 s")
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
