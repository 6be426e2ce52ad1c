"""Markdown tables of recorded results (docs/data/*.json), by name; docs/hooks/tables.py puts them in pages."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "docs" / "data"


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


def lecture14_detectors() -> str:
    """R-CNN (Lecture 13) next to the Lecture 14 detectors, as in the lecture's comparison."""
    rcnn = load_result("lecture13_detectors")["rcnn"]
    lecture14 = load_result("lecture14_detectors")
    rows = [["R-CNN（Lecture 13）", "两阶段，外部提议", rcnn["train_images"], rcnn["train_seconds"],
             f"{1000 * rcnn['seconds_per_test_image']['total_without_cache']:.1f}", rcnn["test"]["AP50"],
             rcnn["test"]["AP"]]]
    kinds = {"faster_rcnn": ("Faster R-CNN", "两阶段，RPN"), "fcos": ("FCOS（FPN）", "单阶段，无锚框")}
    commands = [f"- R-CNN：`{rcnn['command']}`"]
    for key, (name, kind) in kinds.items():
        if key not in lecture14:
            continue
        r = lecture14[key]
        per_image = r.get("seconds_per_test_image", r.get("seconds_per_test_image (cpu, batch 1)"))
        rows.append([name, kind, r["train_images"], r["train_seconds"], f"{1000 * per_image:.1f}", r["test"]["AP50"],
                     r["test"]["AP"]])
        commands.append(f"- {name}：`{r['command']}`")
    header = ["模型", "类型", "训练图像", "训练用时 (s, CPU)", "每图测试用时 (ms, CPU)", "AP50", "AP@[.5:.95]"]
    return (markdown_table(header, rows)
            + "\n测试集都是同样的 200 张测试画布，用我们的 `coco_evaluate` 评分；训练都在本机 CPU 上单线程完成"
            "（训练时机器上还有其他任务，用时是上限）。R-CNN 的测试用时大部分是 Selective Search。"
            "复现命令：\n\n" + "\n".join(commands) + "\n")


TABLES: dict[str, Callable[[], str]] = {
    "lecture14-detectors": lecture14_detectors,
    "lecture13-transfer": lecture13_transfer,
    "lecture13-single-object": lecture13_single_object,
    "lecture13-rcnn": lecture13_rcnn,
}
