"""The package as a user installs it: build the wheel, install it (not editable) outside the checkout, and run
the commands the README promises from another directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP = {".git", ".venv", "node_modules", "site", "test-artifacts", "build", ".pytest_cache", ".ruff_cache",
        "__pycache__"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """{"target": where the wheel is installed, "env": the environment that uses it, "cwd": an unrelated folder}."""
    root = tmp_path_factory.mktemp("package")
    source = root / "source"  # a copy: building in place would leave build/ and *.egg-info in the checkout
    shutil.copytree(REPO, source, ignore=lambda _, names: [n for n in names if n in SKIP or n.endswith(".egg-info")])
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(root / "dist"), str(source)], check=True, timeout=600)
    wheel = next((root / "dist").glob("lectures_code-*.whl"))
    target = root / "target"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, timeout=600)
    cwd = root / "elsewhere"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "LECTURES_CODE_HOME": str(root / "home"),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    return {"wheel": wheel, "target": target, "env": env, "cwd": cwd, "home": root / "home", "root": root}


def run(installed, *args, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=installed["cwd"], env=env or installed["env"])


def test_the_wheel_holds_code_weights_and_records_but_no_repository_files(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert "lectures_code/checkpoints/fcos_digits.pt" in names and "lectures_code/checkpoints/SHA256SUMS" in names
    assert "lectures_code/results/lecture14_detectors.json" in names
    assert "lectures_code/demos/server.py" in names and "lectures_code/registry.py" in names
    assert not [n for n in names if n.startswith(("demos/", "tests/", "docs/", "benchmarks/"))]
    metadata = zipfile.ZipFile(installed["wheel"]).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT AND CC-BY-SA-4.0" in metadata


def test_the_installed_copy_is_the_one_that_runs(installed):
    proc = run(installed, "-c", "import lectures_code; print(lectures_code.__file__)")
    assert proc.returncode == 0 and proc.stdout.strip().startswith(str(installed["target"])), proc.stdout


def test_list_run_and_evaluate_work_from_another_directory(installed):
    listed = run(installed, "-m", "lectures_code", "list")
    assert listed.returncode == 0 and "fcos" in listed.stdout and "not trained" not in listed.stdout, listed.stderr
    ran = run(installed, "-m", "lectures_code", "run", "adam", "--steps", "5", "--quiet")
    assert ran.returncode == 0 and "loss" in ran.stdout, ran.stderr
    evaluated = run(installed, "-m", "lectures_code", "evaluate", "fcos", "--num-test-images", "2")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "Average Precision" in evaluated.stdout and str(installed["target"]) in evaluated.stdout
    recorded = run(installed, "-c",
                   "from lectures_code import results; print(len(results.read('lecture14_detectors')))")
    assert recorded.returncode == 0 and int(recorded.stdout) >= 5, recorded.stderr
    tables = run(installed, "-c",
                 "from lectures_code.tables import TABLES; print(sum(len(f()) for f in TABLES.values()))")
    assert tables.returncode == 0 and int(tables.stdout) > 10_000, tables.stderr  # every table from package data


def test_ship_writes_to_the_user_folder_and_evaluate_then_loads_it(installed):
    proc = run(installed, "-m", "lectures_code", "train", "fcos", "--num-train-images", "4", "--epochs", "1",
               "--batch-size", "2", "--num-test-images", "2", "--quiet", "--ship")
    assert proc.returncode == 0, proc.stderr[-2000:]
    home = installed["home"]
    assert (home / "checkpoints" / "fcos_digits.pt").is_file() and (home / "checkpoints" / "SHA256SUMS").is_file()
    record = json.loads((home / "results" / "lecture14_detectors.json").read_text())["fcos"]
    assert record["train_images"] == 4 and record["checkpoint"]["file"] == "fcos_digits.pt"
    assert not list((installed["target"] / "lectures_code" / "checkpoints").glob("*.tmp"))
    evaluated = run(installed, "-m", "lectures_code", "evaluate", "fcos", "--num-test-images", "2")
    assert evaluated.returncode == 0 and str(home / "checkpoints" / "fcos_digits.pt") in evaluated.stdout


def test_site_build_outside_a_checkout_says_where_the_sources_are(installed):
    proc = run(installed, "-m", "lectures_code", "site", "build")
    assert proc.returncode == 2 and "source checkout" in proc.stderr and "Traceback" not in proc.stderr


def test_serve_without_the_site_extra_names_the_extra(installed, tmp_path):
    blocker = tmp_path / "blocker" / "gradio"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ModuleNotFoundError("No module named \'gradio\'", name="gradio")\n')
    env = {**installed["env"], "PYTHONPATH": f"{tmp_path / 'blocker'}{os.pathsep}{installed['target']}"}
    proc = run(installed, "-m", "lectures_code", "serve", env=env, timeout=120)
    assert proc.returncode == 2 and "lectures-code[site]" in proc.stderr and "Traceback" not in proc.stderr


def test_serve_with_the_site_extra_answers(installed):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lectures_code", "serve", "--port", str(port)],
                            cwd=installed["cwd"], env=installed["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(1)
        else:
            pytest.fail("the installed server did not answer within 180 s")
        assert health.status_code == 200 and "lecture14-detector" in health.json()["demos"]
        assert httpx.get(f"http://127.0.0.1:{port}/demos/lecture14-detector/", timeout=30).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
