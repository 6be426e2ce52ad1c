"""Benchmark: the one local server under load: many concurrent demo requests at once, latency per demo.

Starts `python -m lectures_code serve` on a free port of 127.0.0.1 (demos only, no site needed) unless
--url points at a running server, then runs two scenarios, each with every request released at the same
moment from its own thread, the way a class of students opening the demos at once would:

1. mixed: N requests (default 60) spread round-robin over every public endpoint of every demo, each with
   the inputs a reader sees first (MIXED_CASES);
2. detector: 40 requests to the Lecture 14 detector demo on test canvases (the first shipped detector);
   with --baseline DIR (a checkout of an earlier version, e.g. `git worktree add /tmp/before <commit>`), the
   same burst alternately against both servers, both started here and warm, for --rounds rounds.

A request is the Gradio HTTP API as a browser-less client uses it: POST /demos/<name>/gradio_api/call/<api>
with the inputs, then read the event stream until "complete" (success) or "error". Latency = both steps.
Records, per scenario: errors, wall time, p50/p95 latency per demo and overall, and whether /healthz still
answered afterwards. Writes lectures_code/results/benchmarks/server_load.{json,md}.
The helpers (`call`, `run_at_once`, `MIXED_CASES`, `summarize`) are also the suite's load test.

Run: python benchmarks/server_load.py [--url http://127.0.0.1:8000] [--requests 60] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "lectures_code" / "results" / "benchmarks"  # package data

# (demo, api_name, inputs): every public endpoint once, with the values a reader sees when the page opens
MIXED_CASES = [
    ("lecture12", "train", ["autograd", 1e-6, 200, 0]),
    ("lecture12", "default_learning_rate", ["adam"]),
    ("lecture13-boxes", "iou_playground", [20, 30, 120, 110, 70, 60, 170, 160]),
    ("lecture13-boxes", "nms_playground", [0, 0.7, 3]),
    ("lecture13-boxes", "map_playground", [0, 0.5, 0.0, 0.15]),
    ("lecture13-selective-search", "propose", ["猫 (chelsea)", None, "fast", 50]),
    ("lecture13-detector", "detect", ["canvas", 0, None, "R-CNN", 0.5, 0.5, 0]),
    ("lecture14-roi", "roi_playground", [10, 20, 91, 77, "1/8", 2, 2, True]),
    ("lecture14-detector", "detect", ["canvas", None, 0, None, "Faster R-CNN", 0.3, 0.5, 100, False, 20, False,
                                      0, 64, 64]),
    ("lecture14-detector", "control_updates", ["FCOS"]),
]


def detector_case(index: int) -> tuple[str, str, list]:
    """One Lecture 14 detector request on test canvas ``index`` (the demo's first detector)."""
    return ("lecture14-detector", "detect", ["canvas", None, index % 200, None, "Faster R-CNN", 0.3, 0.5, 100,
                                             False, 20, False, 0, 64, 64])


@dataclass
class Result:
    demo: str
    api_name: str
    kind: str  # "complete", "error", or "http <status>" / the exception's name when no event came back
    seconds: float
    payload: object = None


def call(base: str, demo: str, api_name: str, data: list, timeout: float = 180.0,
         client: httpx.Client | None = None) -> Result:
    """One request through Gradio's HTTP API: POST the inputs, then read the event stream to its end."""
    prefix = f"{base}/demos/{demo}/gradio_api/call/{api_name}"
    body = json.dumps({"data": data}, allow_nan=True)
    own = client is None
    client = client or httpx.Client(timeout=timeout)
    start = time.perf_counter()
    try:
        posted = client.post(prefix, content=body, headers={"content-type": "application/json"})
        if posted.status_code != 200:
            return Result(demo, api_name, f"http {posted.status_code}", time.perf_counter() - start,
                          _json_or_text(posted))
        kind, payload = None, None
        with client.stream("GET", f"{prefix}/{posted.json()['event_id']}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    payload = json.loads(line.split(":", 1)[1].strip())
                    break
        return Result(demo, api_name, kind or "no event", time.perf_counter() - start, payload)
    except httpx.HTTPError as err:
        return Result(demo, api_name, type(err).__name__, time.perf_counter() - start, str(err))
    finally:
        if own:
            client.close()


def _json_or_text(response: httpx.Response):
    try:
        return response.json()
    except ValueError:
        return response.text


def run_at_once(base: str, cases: list[tuple[str, str, list]], timeout: float = 180.0) -> tuple[list[Result], float]:
    """Send every case from its own thread, all released together by a barrier: (results, wall seconds)."""
    barrier = threading.Barrier(len(cases))

    def one(case):
        with httpx.Client(timeout=timeout) as client:
            barrier.wait()
            return call(base, *case, timeout=timeout, client=client)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        results = list(pool.map(one, cases))
    return results, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), q in [0, 100]."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(results: list[Result], wall: float) -> dict:
    """Errors, wall time and p50 / p95 latency (seconds) per demo and overall."""
    def stats(group: list[Result]) -> dict:
        seconds = [r.seconds for r in group]
        return {"requests": len(group), "errors": sum(r.kind != "complete" for r in group),
                "p50_s": round(percentile(seconds, 50), 3), "p95_s": round(percentile(seconds, 95), 3),
                "max_s": round(max(seconds), 3)}

    per_demo = {demo: stats([r for r in results if r.demo == demo]) for demo in sorted({r.demo for r in results})}
    failures = [asdict(r) for r in results if r.kind != "complete"][:5]
    return {"overall": stats(results), "per_demo": per_demo, "wall_s": round(wall, 2),
            "median_s": round(statistics.median(r.seconds for r in results), 3), "first_failures": failures}


def healthy(base: str) -> bool:
    try:
        return httpx.get(base + "/healthz", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def local_server(log_path: Path, tree: Path = REPO_ROOT):
    """`python -m lectures_code serve` from ``tree`` on a free port of 127.0.0.1 (no site): yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "LECTURES_DEVICE": "cpu"}
    with open(log_path, "w") as log, tempfile.TemporaryDirectory() as empty_site:
        proc = subprocess.Popen([sys.executable, "-m", "lectures_code", "serve", "--port", str(port),
                                 "--site-dir", empty_site], cwd=tree, env=env, stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 180
            while not healthy(base):
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"server did not start; see {log_path}")
                time.sleep(0.5)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def scenario(base: str, name: str, cases: list) -> dict:
    run_at_once(base, cases[:len(MIXED_CASES)])  # warm-up: models loaded, caches filled, first figures drawn
    results, wall = run_at_once(base, cases)
    summary = {"scenario": name, "concurrent_requests": len(cases), **summarize(results, wall),
               "healthz_after": healthy(base)}
    print(json.dumps({k: summary[k] for k in ("scenario", "overall", "wall_s", "healthz_after")}, ensure_ascii=False))
    return summary


def compare(ours: str, baseline: str, cases: list, rounds: int) -> dict:
    """The same burst alternately against both servers (who goes first alternates too): medians and ratio."""
    for base in (ours, baseline):
        run_at_once(base, cases)  # warm-up
    p50 = {"ours": [], "baseline": []}
    wall = {"ours": [], "baseline": []}
    for round_ in range(rounds):
        for name in ("ours", "baseline") if round_ % 2 == 0 else ("baseline", "ours"):
            results, seconds = run_at_once(ours if name == "ours" else baseline, cases)
            summary = summarize(results, seconds)
            if summary["overall"]["errors"]:
                raise RuntimeError(f"{name}: {summary['first_failures']}")
            p50[name].append(summary["overall"]["p50_s"])
            wall[name].append(seconds)
    medians = {f"{name}_{what}_s": round(statistics.median(values[name]), 3)
               for what, values in (("p50", p50), ("wall", wall)) for name in values}
    print(json.dumps(medians))
    return {"rounds": rounds, "concurrent_requests": len(cases), **medians,
            "p50_ratio": round(medians["ours_p50_s"] / medians["baseline_p50_s"], 3),
            "wall_ratio": round(medians["ours_wall_s"] / medians["baseline_wall_s"], 3)}


def write_results(payload: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "server_load.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    lines = []
    for run in payload["scenarios"]:
        title = {"mixed": f"{run['concurrent_requests']} 个并发请求，分布在全部演示上",
                 "detector": f"{run['concurrent_requests']} 个并发的 Lecture 14 检测器请求"}[run["scenario"]]
        lines += [f"**{title}**：{run['overall']['errors']} 个出错，全部完成用时 {run['wall_s']:.1f} 秒，"
                  f"之后 /healthz {'正常应答' if run['healthz_after'] else '没有应答'}。", "",
                  "| 演示 | 请求数 | 出错 | p50 (s) | p95 (s) | 最长 (s) |", "|---|---:|---:|---:|---:|---:|"]
        rows = [*run["per_demo"].items(), ("全部", run["overall"])]
        lines += [f"| {demo} | {s['requests']} | {s['errors']} | {s['p50_s']:.2f} | {s['p95_s']:.2f} | "
                  f"{s['max_s']:.2f} |" for demo, s in rows]
        lines.append("")
    if payload.get("comparison"):
        c = payload["comparison"]
        lines += [f"与基线（{payload['baseline']}）交替测量 {c['rounds']} 轮，"
                  f"每轮各 {c['concurrent_requests']} 个并发的检测器请求：p50 中位数 {c['ours_p50_s']:.2f} s "
                  f"对 {c['baseline_p50_s']:.2f} s（比值 {c['p50_ratio']:.2f}），全部完成用时中位数 "
                  f"{c['ours_wall_s']:.1f} s 对 {c['baseline_wall_s']:.1f} s（比值 {c['wall_ratio']:.2f}）。", ""]
    lines += [
        '??? note "测量方法"',
        "",
        f"    `python benchmarks/server_load.py` 启动 `lectures serve`（只绑定 127.0.0.1），每个场景先用一轮请求预热"
        f"（加载模型、填缓存），再从 {payload['scenarios'][0]['concurrent_requests']} 个（检测器场景 "
        f"{payload['scenarios'][-1]['concurrent_requests']} 个）线程在同一时刻各发一个请求。一个请求 = 通过 Gradio 的 "
        "HTTP API 提交输入（`POST /demos/<名字>/gradio_api/call/<端点>`）并读完事件流，延迟包含排队等待。"
        "混合场景轮流使用每个演示的每个公开端点、页面打开时的默认输入；"
        "检测器场景是 Lecture 14 检测器演示在不同测试画布上的请求。"
        "p50 / p95 为线性插值的百分位数。",
        "",
        f"    机器：{payload['machine']}，{payload['cpu_count']} 个 CPU 核，Python {payload['python']}，"
        f"gradio {payload['gradio']}，torch {payload['torch']}；测量开始时系统 1 分钟平均负载 "
        f"{payload['load_average']:.1f}；测量时间 {payload['date']}。",
        "",
    ]
    (RESULTS / "server_load.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server (default: start one on a free port)")
    parser.add_argument("--requests", type=int, default=60, help="concurrent requests in the mixed scenario")
    parser.add_argument("--detector-requests", type=int, default=40)
    parser.add_argument("--baseline", type=Path, help="a checkout of an earlier version to compare with")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds against the baseline")
    args = parser.parse_args()

    import gradio
    import torch

    mixed = [MIXED_CASES[i % len(MIXED_CASES)] for i in range(args.requests)]
    detector = [detector_case(i) for i in range(args.detector_requests)]
    load_average = os.getloadavg()[0]
    logs = Path(tempfile.gettempdir())
    with contextlib.ExitStack() as stack:
        base = args.url or stack.enter_context(local_server(logs / "server_load.log"))
        scenarios = [scenario(base, "mixed", mixed), scenario(base, "detector", detector)]
        comparison = None
        if args.baseline:
            baseline = stack.enter_context(local_server(logs / "server_load_baseline.log", args.baseline))
            comparison = compare(base, baseline, detector, args.rounds)
    payload = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
               "python": platform.python_version(), "gradio": gradio.__version__, "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d"), "load_average": round(load_average, 2), "scenarios": scenarios,
               "baseline": _describe(args.baseline) if args.baseline else None, "comparison": comparison}
    write_results(payload)


def _describe(tree: Path) -> str:
    """The baseline checkout as a commit: "cd89a86 ruff: import order after the move"."""
    found = subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    return found.stdout.strip() or str(tree)


if __name__ == "__main__":
    main()
