"""Markdown tables of recorded results (docs/data/*.json), by name; docs/hooks/tables.py puts them in pages."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "docs" / "data"
BENCHMARK_DETECTORS = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "detectors.json"


def load_result(name: str) -> dict:
    path = DATA_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the command recorded in the docs to produce it")
    return json.loads(path.read_text(encoding="utf-8"))


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def lecture13_single_object() -> str:
    r = load_result("lecture13_detectors")["single_object"]
    t = r["test"]
    rows = [
        ["类别准确率 accuracy", t["accuracy"]],
        ["平均 IoU mean IoU", t["mean_iou"]],
        ["IoU > 0.5 的比例", t["iou_above_0.5"]],
        ["类别正确且 IoU > 0.5", t["correct_and_iou_above_0.5"]],
        ["测试图像数", t["images"]],
        ["训练用时（秒，CPU 单线程）", r["train_seconds (steps only)"]],
        ["每张测试图用时（毫秒）", 1000 * r["seconds_per_test_image"]],
    ]
    return (markdown_table(["指标（测试集）", "值"], rows)
            + f"\n复现命令：`{r['command']}`（λ = {r['box_weight_lambda']}）\n")


def lecture13_rcnn() -> str:
    r = load_result("lecture13_detectors")["rcnn"]
    t, s = r["test"], r["settings"]
    timing = r["seconds_per_test_image"]
    header = ["AP@[.5:.95]", "AP50", "AP75", "AP small", "AP medium", "AR@100", "训练用时 (s)", "每图用时 (s)"]
    row = [t["AP"], t["AP50"], t["AP75"], t["AP_small"], t["AP_medium"], t["AR100"],
           r["train_seconds"], timing["total_without_cache"]]
    per_class = load_result("lecture13_detectors")["rcnn"]["per_class_ap"]
    class_rows = [[name, v["AP"], v["AP50"]] for name, v in sorted(per_class.items())]
    return (
        markdown_table(header, [row])
        + f"\n测试集 {r['test_images']} 张画布，用我们的 `coco_evaluate` 评分；训练 {r['train_images']} 张画布、"
        f"{r['epochs']} 个 epoch，RoI 缩放到 {s['crop_size']}（不是 224×224：CPU 上太慢），"
        f"候选框：{s['proposals']}。每图用时中 Selective Search 占 "
        f"{timing['selective_search']:.2f} s。\n\n复现命令：`{r['command']}`\n\n"
        + "??? info \"各类别的 AP\"\n\n"
        + "".join("    " + line + "\n" for line in markdown_table(["数字", "AP", "AP50"], class_rows).splitlines())
    )


def lecture13_transfer() -> str:
    r = load_result("lecture13_transfer")
    cfg = r["config"]
    names = {
        "feature_extraction": "特征提取（冻结，只训练线性层）",
        "fine_tuning": f"微调（骨干 lr × {cfg['backbone_lr_factor']:g}，冻结前 {cfg['freeze_blocks']} 个 block）",
        "scratch": "从头训练（随机初始化）",
    }
    shots = [str(s) for s in r["config"]["shots_per_class"]]
    rows = []
    for regime, label in names.items():
        runs = r["results"][regime]
        rows.append([label] + [f"{runs[s]['test_accuracy']:.3f}（{runs[s]['train_seconds']:.0f} s）" for s in shots])
    size = cfg["image_size"]
    return (
        markdown_table(["做法 \\ 每类训练样本数"] + shots, rows)
        + f"\n测试集：{cfg['test_per_class'] * 10} 个不参与训练的数字；图像缩放到 {size}×{size}，"
        f"全网络训练 {cfg['steps_full_network']} 步（Adam），CPU {r['environment']['threads']} 线程。"
        f"括号里是训练用时。复现命令：`{r['command']}`\n"
    )


LECTURE14_MODELS = {  # record key -> (name on the page, kind), in the lecture's order
    "fast_rcnn": ("Fast R-CNN", "两阶段，外部提议"),
    "faster_rcnn": ("Faster R-CNN", "两阶段，RPN"),
    "faster_rcnn_fpn": ("Faster R-CNN + FPN", "两阶段，RPN，FPN"),
    "retinanet": ("RetinaNet（FPN）", "单阶段，锚框"),
    "fcos": ("FCOS（FPN）", "单阶段，无锚框"),
}


def lecture14_detectors() -> str:
    """R-CNN (Lecture 13) next to the Lecture 14 detectors, as in the lecture's comparison.

    Accuracy and training time come from each model's training record; the per-canvas timings from
    benchmarks/results/detectors.json, where all detectors were timed in one run.
    """
    lecture13 = load_result("lecture13_detectors")
    lecture14 = load_result("lecture14_detectors")
    timings = json.loads(BENCHMARK_DETECTORS.read_text())
    records = {"rcnn": lecture13["rcnn"], **lecture14}
    models = {"rcnn": ("R-CNN（Lecture 13）", "两阶段，外部提议"), **LECTURE14_MODELS}
    rows, commands = [], []
    for key, (name, kind) in models.items():
        if key not in records:
            continue
        r, t = records[key], timings["detectors"].get(key, {})
        proposals = f"{t['proposals_ms']:.1f}" if "proposals_ms" in t else "—（网络内）"
        train_ms = f"{t['train_ms_per_canvas']:.1f}" if "train_ms_per_canvas" in t else "—"
        test_ms = f"{t['test_ms']:.1f}" if "test_ms" in t else "—"
        rows.append([name, kind, r["train_images"], r["train_seconds"], train_ms, test_ms, proposals,
                     r["test"]["AP50"], r["test"]["AP"]])
        commands.append(f"- {name}：`{r['command']}`")
    header = ["模型", "类型", "训练图像", "训练用时 (s)", "训练 ms/画布", "测试 ms/画布", "其中区域提议 (ms)",
              "AP50", "AP@[.5:.95]"]
    return (markdown_table(header, rows)
            + "\n同样的 200 张测试画布，都用我们的 `coco_evaluate` 评分。“训练用时”是各模型训练时记录的总用时"
            "（CPU 单线程，机器上同时有其他任务，只能当上限看）；“训练 ms/画布”与“测试 ms/画布”是在同一次运行里"
            f"轮流测的（`{timings['command'].strip()}`，CPU {timings['threads']} 线程，测试 batch 1、"
            f"含区域提议；训练是一次前向 + 全部损失 + 反向，batch {timings['train_batch']}，R-CNN 在裁剪后的"
            "区域上训练，不可比）。复现训练的命令：\n\n" + "\n".join(commands) + "\n")


def lecture14_test_time() -> str:
    """Where a canvas's test time goes: Selective Search vs the network, R-CNN / Fast R-CNN / Faster R-CNN."""
    timings = json.loads(BENCHMARK_DETECTORS.read_text())
    rows = []
    for key, name in (("rcnn", "R-CNN"), ("fast_rcnn", "Fast R-CNN"), ("faster_rcnn", "Faster R-CNN")):
        t = timings["detectors"].get(key)
        if t is None:
            continue
        proposals = t.get("proposals_ms", 0.0)
        network = t["test_ms"] - proposals
        rows.append([name, f"{t['test_ms']:.1f}", f"{proposals:.1f}" if proposals else "—（RPN 在网络内）",
                     f"{network:.1f}", f"{100 * proposals / t['test_ms']:.0f}%"])
    header = ["模型", "每张画布 (ms)", "Selective Search (ms)", "其余：网络 + NMS (ms)", "区域提议占比"]
    return (markdown_table(header, rows)
            + f"\nCPU {timings['threads']} 线程，batch 1，{timings['test_images']} 张测试画布的中位数，"
            f"所有检测器在同一次运行里轮流测（`{timings['command'].strip()}`）。\n")


TABLES: dict[str, Callable[[], str]] = {
    "lecture14-test-time": lecture14_test_time,
    "lecture14-detectors": lecture14_detectors,
    "lecture13-transfer": lecture13_transfer,
    "lecture13-single-object": lecture13_single_object,
    "lecture13-rcnn": lecture13_rcnn,
}
