"""Timing shared by the benchmark scripts: ours and the reference, interleaved, in the same run, in two
conditions (the machine as it is, and with one competing busy process), and the results files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from busy import busy_process

RESULTS = Path(__file__).resolve().parents[1] / "lectures_code" / "results" / "benchmarks"  # package data

# (key in the JSON, label in the Chinese .md)
CONDITIONS = (("quiet", "无额外负载"), ("busy", "另有一个忙碌进程"))


def bench_device() -> str:
    """"cpu", or "cuda" with ``BENCH_DEVICE=cuda`` (benchmarks/cuda_check.py on a GPU machine): the CPU rows the
    pages show are measured on a small CPU machine, the CUDA rows separately, into ``<stem>_cuda`` files."""
    device = os.environ.get("BENCH_DEVICE", "cpu")
    if device not in ("cpu", "cuda"):
        raise SystemExit(f"BENCH_DEVICE must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("BENCH_DEVICE=cuda but torch sees no CUDA device")
    return device


def results_stem(stem: str) -> str:
    return stem if bench_device() == "cpu" else f"{stem}_cuda"


def median_ms(ours, reference, device: str, repeats: int) -> tuple[float, float]:
    """Median wall time in ms of ``ours()`` and ``reference()``, alternating so load hits both alike.

    CUDA work is asynchronous: synchronize before and after, or only the launch is timed.
    """

    def once(fn):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1e3

    once(ours), once(reference)  # warm-up: allocator, lazy init, kernels
    ours_ms, ref_ms = [], []
    for _ in range(repeats):
        ours_ms.append(once(ours))
        ref_ms.append(once(reference))
    return statistics.median(ours_ms), statistics.median(ref_ms)


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (runnable processes, averaged), rounded."""
    return [round(v, 2) for v in os.getloadavg()]


def mark_goals(conditions: list[dict]) -> None:
    """Add "meets_goal" (ratio <= goal_ratio) to every row that has a goal."""
    for condition in conditions:
        for r in condition["rows"]:
            if "goal_ratio" in r:
                r["meets_goal"] = r["ratio"] <= r["goal_ratio"]


def report_goals(conditions: list[dict]) -> None:
    """Print whether every goal row met its goal, and which did not."""
    missed = [f"{c['condition']}: {r['case']} {r['ratio']:.2f}" for c in conditions for r in c["rows"]
              if r.get("meets_goal") is False]
    print("goals met" if not missed else f"goals missed: {missed}")


def in_both_conditions(measure: Callable[[], list[dict]]) -> list[dict]:
    """Run ``measure()`` (it returns result rows) quiet, then with one busy process; one dict per condition."""
    conditions = []
    for name, _ in CONDITIONS:
        print(f"--- {name} (load average {load_average()})", flush=True)
        before = load_average()
        busy = None
        if name == "busy":
            with busy_process() as busy:
                rows = measure()
        else:
            rows = measure()
        conditions.append(
            {"condition": name, "load_average_before": before, "load_average_after": load_average(),
             "busy_process": busy, "rows": rows}
        )
    return conditions


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def row(case: str, label: str, device: str, ours_ms: float, ref_ms: float, repeats: int, **extra) -> dict:
    """One result row; ``label`` is the case's name in the Chinese .md."""
    return {"case": case, "label": label, "device": device, "ours_ms": round(ours_ms, 3),
            "reference_ms": round(ref_ms, 3), "ratio": round(ours_ms / ref_ms, 3), "repeats": repeats, **extra}


def timed_row(name: str, label: str, device: str, ours, reference, repeats: int, goal_ratio: float | None = None,
              reference_name: str = "torchvision", **extra) -> dict:
    """Time ``ours`` against ``reference`` (``median_ms``), print the line and return the result row; a row
    with ``goal_ratio`` (CPU rows only) carries the goal that ``mark_goals`` checks."""
    ours_ms, ref_ms = median_ms(ours, reference, device, repeats)
    goal = {"goal_ratio": goal_ratio} if goal_ratio is not None and device == "cpu" else {}
    result = row(f"{name} ({device})", f"{label}（{device.upper()}）", device, ours_ms, ref_ms, repeats, **extra,
                 **goal)
    print(f"{result['case']:58s} ours {ours_ms:9.3f} ms   {reference_name} {ref_ms:9.3f} ms   "
          f"ratio {ours_ms / ref_ms:5.2f}", flush=True)
    return result


def write_results(stem: str, payload: dict, details: list[str], reference: str = "torchvision") -> None:
    """``results/<stem>.json`` (everything) and ``results/<stem>.md`` (for the pages, in Chinese): one table
    with each condition's times and ratio per case, then ``details`` (Chinese lines) in a collapsed note.
    ``reference`` names the library compared against in the table's header."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")

    conditions = payload["conditions"]
    labels = dict(CONDITIONS)
    header = ["运算"]
    for c in conditions:
        header += [f"{labels[c['condition']]}：我们 / {reference}（ms）", "比值"]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: | ---: |" * len(conditions)]
    for i, first in enumerate(conditions[0]["rows"]):
        cells = [first["label"]]
        for c in conditions:
            r = c["rows"][i]
            cells += [f"{r['ours_ms']:.2f} / {r['reference_ms']:.2f}", f"{r['ratio']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", '??? note "测量方法"', ""] + [f"    - {line}" for line in details]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")


def condition_details(payload: dict, reference: str = "torchvision") -> list[str]:
    """The Chinese lines, shared by the benchmarks, that describe the machine and the two conditions;
    ``reference`` names the library compared against."""
    env, conditions = payload["environment"], payload["conditions"]
    quiet = next(c for c in conditions if c["condition"] == "quiet")
    busy = next(c for c in conditions if c["condition"] == "busy")
    gpu = f"，GPU：{env['gpu']}" if env["gpu"] else ""
    busy_info = busy["busy_process"] or {}

    def load(values: list[float]) -> str:
        return "、".join(f"{v:.2f}" for v in values)

    return [
        f"机器：{env['cpu']}，{env['cpu_count']} 个 CPU 核{gpu}；PyTorch {env['torch']}，torchvision "
        f"{env['torchvision']}，PyTorch 的 CPU 线程数 {env['torch_threads']}。",
        f"两种条件在同一次运行中先后测量。“{dict(CONDITIONS)['quiet']}”：除测量本身外不启动其他负载（1、5、15 "
        f"分钟平均负载开始时为 {load(quiet['load_average_before'])}，结束时为 {load(quiet['load_average_after'])}）。"
        f"“{dict(CONDITIONS)['busy']}”：另起一个进程（`benchmarks/busy.py`，不绑定 CPU 核）执行紧凑的浮点循环，"
        f"占满一个核，先运行 2 秒再开始测量，测完即停止（它在 {busy_info.get('busy_wall_s', '?')} 秒内用了 "
        f"{busy_info.get('busy_cpu_s', '?')} 秒 CPU 时间；平均负载开始时为 {load(busy['load_average_before'])}，"
        f"结束时为 {load(busy['load_average_after'])}）。",
        f"每个时间是多次重复的中位数，我们的实现与 {reference} 交替运行，两者经历同样的机器负载；"
        f"比值 = 我们 / {reference}，小于 1 表示我们更快。",
        f"命令：`{payload['command']}`；全部数字见同名的 `.json` 文件。",
    ]
