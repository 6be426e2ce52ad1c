"""benchmarks/cuda_check.py, the one script a GPU machine runs: its machinery works (a dry run on the CPU, where
every CUDA test is skipped, must report "not run", never "passed")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the dry run is for machines without CUDA")
def test_a_dry_run_without_cuda_reports_nothing_as_verified(tmp_path):
    report_path = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "benchmarks/cuda_check.py", "--device", "cpu", "--only", "metrics",
                           "box-ops-speed", "--out", str(tmp_path / "out"), "--report", str(report_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert set(report["checks"]) == {"metrics", "box-ops-speed"}
    metrics = report["checks"]["metrics"]
    assert metrics["status"] == "not run" and metrics["skipped"] > 0 and metrics["tests"] == metrics["skipped"]
    assert report["checks"]["box-ops-speed"]["status"] == "not run"
    assert report["environment"]["gpu"] == "no CUDA device"
    assert not (ROOT / "lectures_code" / "results" / "cuda_report.json").exists()  # the real report is untouched
