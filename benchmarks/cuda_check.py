"""Every CUDA check of ``lectures_code/cuda_checks.py``, on a GPU machine, with the results written here.

Run from the repository root on a machine with an NVIDIA GPU:  ``python benchmarks/cuda_check.py``

- each "pytest" check runs the ``cuda``-marked tests under its paths (``-m cuda``, ``LECTURES_DEVICE=cuda``);
  it passes when at least one test ran and none failed;
- each "benchmark" check runs its script on the GPU (``BENCH_DEVICE=cuda`` / ``--device cuda``), which writes
  ``lectures_code/results/benchmarks/<name>_cuda.{json,md}``; it passes when the script succeeded.

Writes ``lectures_code/results/cuda_report.json`` (the "running" page's table of checks reads it) and the
logs into ``--out``. Packages missing on the GPU machine can be provided as wheels in ``.whl/`` (installed with
``pip install --no-index --target``); tests whose reference library is missing there are reported, not hidden.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lectures_code.cuda_checks import CHECKS, REPORT  # noqa: E402

BENCHMARK_COMMANDS = {
    "box_ops": ([sys.executable, "benchmarks/box_ops.py"], {"BENCH_DEVICE": "cuda"}),
    "roi_ops": ([sys.executable, "benchmarks/roi_ops.py"], {"BENCH_DEVICE": "cuda"}),
    "masks": ([sys.executable, "benchmarks/masks.py"], {"BENCH_DEVICE": "cuda"}),
    "detectors": ([sys.executable, "benchmarks/detectors.py", "--device", "cuda", "--images", "20"], {}),
}


def junit_counts(path: Path) -> dict:
    """{"tests", "failures", "errors", "skipped"} summed over the test suites of a JUnit XML file."""
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if not path.is_file():
        return counts
    root = ET.parse(path).getroot()
    for suite in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
    return counts


def run_pytest(check, out: Path, env: dict, device: str) -> dict:
    xml = out / f"{check.id}.xml"
    cmd = [sys.executable, "-m", "pytest", *check.target.split(), "-m", "cuda", "-q", "-p", "no:cacheprovider",
           f"--junitxml={xml}", "-o", "addopts=--import-mode=importlib"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env | {"LECTURES_DEVICE": device}, capture_output=True, text=True)
    (out / f"{check.id}.log").write_text(proc.stdout + proc.stderr)
    counts = junit_counts(xml)
    ran = counts["tests"] - counts["skipped"]
    failed = counts["failures"] + counts["errors"]
    status = "passed" if proc.returncode == 0 and ran > 0 and failed == 0 else "failed"
    if ran == 0 and failed == 0:
        status = "not run"
    summary = f"{ran - failed} passed, {failed} failed, {counts['skipped']} skipped"
    return {"status": status, "summary": summary, **counts, "seconds": round(time.perf_counter() - start, 1)}


def run_benchmark(check, out: Path, env: dict) -> dict:
    cmd, extra_env = BENCHMARK_COMMANDS[check.target]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env | extra_env, capture_output=True, text=True)
    (out / f"{check.id}.log").write_text(proc.stdout + proc.stderr)
    written = ROOT / "lectures_code" / "results" / "benchmarks" / f"{check.target}_cuda.json"
    status = "passed" if proc.returncode == 0 and written.is_file() else "failed"
    summary = f"lectures_code/results/benchmarks/{written.name}" if status == "passed" else \
        (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
    return {"status": status, "summary": summary, "seconds": round(time.perf_counter() - start, 1)}


def environment() -> dict:
    import torch
    import torchvision

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    return {"gpu": gpu, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(), "date": datetime.date.today().isoformat()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "cuda-check", help="folder for the logs")
    parser.add_argument("--only", nargs="+", choices=[c.id for c in CHECKS], help="run only these checks")
    parser.add_argument("--report", type=Path, default=ROOT / "lectures_code" / "results" / REPORT)
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # cpu: a dry run of this script
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    wheels = sorted((ROOT / ".whl").glob("*.whl"))
    if wheels:  # packages the GPU machine lacks (pycocotools, mlxtend, ...), installed next to it
        site = args.out / "site"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target",
                        str(site), *map(str, wheels)], check=True)
        env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])

    checks = [c for c in CHECKS if args.only is None or c.id in args.only]
    results = {}
    for check in checks:
        print(f"== {check.id}: {check.description}", flush=True)
        if check.kind == "pytest":
            results[check.id] = run_pytest(check, args.out, env, args.device)
        elif args.device == "cuda":
            results[check.id] = run_benchmark(check, args.out, env)
        else:
            results[check.id] = {"status": "not run", "summary": "needs a GPU"}
        print(f"   {results[check.id]['status']}: {results[check.id]['summary']}", flush=True)
    command = "python benchmarks/cuda_check.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])
                                                   if (argv if argv is not None else sys.argv[1:]) else "")
    report = {"command": command, "environment": environment(), "checks": results}
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.report}")
    return report


if __name__ == "__main__":
    main()
