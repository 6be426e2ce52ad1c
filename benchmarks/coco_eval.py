"""Benchmark: COCO evaluation, ours (numpy) vs pycocotools vs faster-coco-eval, same run, boxes and masks.

Boxes ("bbox"): 500 images x 20 GT x 100 detections, 10 classes (10k GT, 50k detections; a few crowd
GTs, scores rounded to 3 decimals so that many are tied). Masks ("segm"): 200 images of 480 x 640 x 20
GT masks, 10 classes (ellipses of 8..300 px, a few crowd), 50 detections per image (2 jittered copies
of every GT mask, 10 % of them with a wrong class, and 10 random false positives); GT masks as
uncompressed RLE (what a COCO JSON holds), detections as compressed RLE strings (what pycocotools'
loadRes needs). Each timing covers the whole pipeline from the JSON dicts to the 12 stats (index
building, loadRes, evaluate, accumulate, summarize); the deep copies that pycocotools /
faster-coco-eval need (they modify their inputs) are made outside the timer.

Two conditions, one after the other (benchmarks/timing.py): the machine as it is, and with one
competing busy process. Goal (issue 10): segm at most 1/3 of pycocotools' time (speed-up >= 3), in both
conditions; the JSON records whether it meets it.
Run: python benchmarks/coco_eval.py -> lectures_code/results/benchmarks/coco_eval.{json,md}
"""

from __future__ import annotations

import contextlib
import copy
import gc
import io
import json
import multiprocessing
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import CONDITIONS, condition_details, environment, in_both_conditions  # noqa: E402

from lectures_code.metrics.coco_eval import coco_evaluate  # noqa: E402
from lectures_code.metrics.rle import rle_encode  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "lectures_code" / "results" / "benchmarks"  # package data
REPEATS = 5
SEGM_GOAL_SPEEDUP = 3.0  # pycocotools ms / ours ms


def make_dataset(seed=0, num_images=500, gts_per_image=20, dets_per_image=100, num_classes=10):
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "width": 640, "height": 480} for i in range(num_images)]
    categories = [{"id": c + 1, "name": f"class{c + 1}"} for c in range(num_classes)]
    annotations, detections = [], []
    for image in images:
        wh = np.exp(rng.uniform(np.log(8), np.log(300), (gts_per_image, 2)))  # small to large
        xy = rng.uniform(0, 640 - wh)
        labels = rng.integers(1, num_classes + 1, gts_per_image)
        for (x, y), (w, h), label in zip(xy, wh, labels):
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"],
                                "category_id": int(label), "bbox": [float(x), float(y), float(w), float(h)],
                                "area": float(w * h), "iscrowd": int(rng.random() < 0.02)})
        # 3 jittered detections per GT (some with a wrong class), the rest random false positives
        src = np.repeat(np.arange(gts_per_image), 3)
        jitter = rng.normal(0, 0.12, (len(src), 4)) * np.concatenate([wh[src], wh[src]], axis=1)
        boxes = np.concatenate([xy[src], wh[src]], axis=1) + jitter
        boxes[:, 2:] = np.maximum(boxes[:, 2:], 1.0)
        confused = rng.integers(1, num_classes + 1, len(src))
        labels_det = np.where(rng.random(len(src)) < 0.9, labels[src], confused)
        n_fp = dets_per_image - len(src)
        fp_wh = np.exp(rng.uniform(np.log(8), np.log(300), (n_fp, 2)))
        boxes = np.concatenate([boxes, np.concatenate([rng.uniform(0, 640 - fp_wh), fp_wh], axis=1)])
        labels_det = np.concatenate([labels_det, rng.integers(1, num_classes + 1, n_fp)])
        scores = np.round(rng.random(dets_per_image), 3)
        for box, label, score in zip(boxes, labels_det, scores):
            detections.append({"image_id": image["id"], "category_id": int(label),
                               "bbox": [float(v) for v in box], "score": float(score)})
    return {"images": images, "categories": categories, "annotations": annotations}, detections


def make_mask_dataset(seed=0, num_images=200, gts_per_image=20, num_classes=10, height=480, width=640):
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "height": height, "width": width} for i in range(num_images)]
    categories = [{"id": c + 1, "name": f"class{c + 1}"} for c in range(num_classes)]
    annotations, detections = [], []
    for image in images:
        radii = np.exp(rng.uniform(np.log(4), np.log(150), (gts_per_image, 2)))  # [G, 2] (ry, rx)
        centres = rng.uniform([0, 0], [height, width], (gts_per_image, 2))
        labels = rng.integers(1, num_classes + 1, gts_per_image)
        source = np.repeat(np.arange(gts_per_image), 2)  # 2 jittered detections per GT
        n_fp = 10
        all_centres = np.concatenate([centres, centres[source] + rng.normal(0, 0.15, (len(source), 2)) * radii[source],
                                      rng.uniform([0, 0], [height, width], (n_fp, 2))])
        all_radii = np.concatenate([radii, radii[source] * rng.uniform(0.75, 1.25, (len(source), 2)),
                                    np.exp(rng.uniform(np.log(4), np.log(150), (n_fp, 2)))])
        masks = np.zeros((len(all_centres), height, width), dtype=bool)
        for mask, (cy, cx), (ry, rx) in zip(masks, all_centres, all_radii):
            y0, y1 = max(int(cy - ry), 0), min(int(cy + ry) + 2, height)
            x0, x1 = max(int(cx - rx), 0), min(int(cx + rx) + 2, width)
            y, x = np.mgrid[y0:y1, x0:x1]
            mask[y0:y1, x0:x1] = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1
        gt_rles, det_rles = rle_encode(masks[:gts_per_image]), rle_encode(masks[gts_per_image:], compressed=True)
        areas = masks[:gts_per_image].sum((1, 2))
        for rle, label, area in zip(gt_rles, labels, areas):
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": int(label),
                                "segmentation": rle, "area": float(area), "iscrowd": int(rng.random() < 0.02)})
        confused = rng.integers(1, num_classes + 1, len(source))
        det_labels = np.concatenate([np.where(rng.random(len(source)) < 0.9, labels[source], confused),
                                     rng.integers(1, num_classes + 1, n_fp)])
        scores = np.round(rng.random(len(det_labels)), 3)
        for rle, label, score in zip(det_rles, det_labels, scores):
            detections.append({"image_id": image["id"], "category_id": int(label), "segmentation": rle,
                               "score": float(score)})
    return {"images": images, "categories": categories, "annotations": annotations}, detections


def run_pycocotools(gt, detections, iou_type="bbox"):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(detections), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return list(evaluator.stats)


def run_faster_coco_eval(gt, detections, iou_type="bbox"):
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt)
        evaluator = COCOeval_faster(coco_gt, coco_gt.loadRes(detections), iou_type,
                                    print_function=lambda *args: None)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return list(evaluator.stats[:12])


def time_all(runners, gt, detections, repeats):
    """Median ms per runner; the runners take turns in every round so that machine load hits all alike.

    Before each run (outside the timer) the garbage collector cleans up after the previous one: otherwise
    a full collection triggered by one runner's allocations walks all objects the last runner and the
    deep copies left behind, and lands in whichever runner happens to be next.
    """
    times = {name: [] for name in runners}
    stats = {}
    for _ in range(repeats):
        for name, fn in runners.items():
            gt_copy, det_copy = copy.deepcopy(gt), copy.deepcopy(detections)
            gc.collect()
            start = time.perf_counter()
            stats[name] = fn(gt_copy, det_copy)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}, stats


# (iou_type, case in English for the JSON, its Chinese label), in the order of the results
CASES = {
    "bbox": ("{images} images, {gts} GT, {dets} dets, {classes} classes",
             "边界框：{images} 张图、{gts} 个真实框、{dets} 个检测"),
    "segm": ("segm: {images} images of 480x640, {gts} GT masks, {dets} dets, {classes} classes",
             "分割掩码：{images} 张 480×640 的图、{gts} 个真实掩码、{dets} 个检测"),
}
REFERENCE_LABELS = {"pycocotools": "pycocotools", "faster-coco-eval": "faster-coco-eval"}


def measure_case(iou_type, gt, detections, repeats):
    names = dict(images=len(gt["images"]), gts=len(gt["annotations"]), dets=len(detections),
                 classes=len(gt["categories"]))
    case, label = (text.format(**names) for text in CASES[iou_type])
    runners = {"ours": lambda g, d: coco_evaluate(g, d, iou_type)["stats"],
               "pycocotools": lambda g, d: run_pycocotools(g, d, iou_type),
               "faster-coco-eval": lambda g, d: run_faster_coco_eval(g, d, iou_type)}
    ms, stats = time_all(runners, gt, detections, repeats)
    rows = []
    for name in ["pycocotools", "faster-coco-eval"]:
        max_diff = float(np.max(np.abs(np.array(stats["ours"]) - np.array(stats[name]))))
        row = {"case": case, "label": label, "iou_type": iou_type, "reference": name,
               "ours_ms": round(ms["ours"], 1), "reference_ms": round(ms[name], 1),
               "ratio": round(ms[name] / ms["ours"], 2), "max_stats_diff": max_diff}
        if iou_type == "segm" and name == "pycocotools":
            row["goal_speedup"] = SEGM_GOAL_SPEEDUP
            row["meets_goal"] = row["ratio"] >= SEGM_GOAL_SPEEDUP
        rows.append(row)
        print(f"{case} vs {name}: ours {ms['ours']:.0f} ms, {name} {ms[name]:.0f} ms, speed-up "
              f"{ms[name] / ms['ours']:.2f}x, max stats diff {max_diff:g}", flush=True)
    return rows


def write_markdown(payload: dict) -> None:
    """coco_eval.md: both conditions side by side, and the measurement notes in a collapsed box (Chinese)."""
    conditions, labels = payload["conditions"], dict(CONDITIONS)
    header = ["情形（对比的参考实现）"]
    for c in conditions:
        header += [f"{labels[c['condition']]}：我们 / 参考实现（ms）", "参考实现 ms / 我们 ms"]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: | ---: |" * len(conditions)]
    for i, first in enumerate(conditions[0]["rows"]):
        cells = [f"{first['label']}（{REFERENCE_LABELS[first['reference']]}）"]
        for c in conditions:
            r = c["rows"][i]
            cells += [f"{r['ours_ms']:.0f} / {r['reference_ms']:.0f}", f"{r['ratio']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    machine_line, conditions_line, _, command_line = condition_details(payload)  # the third names torchvision
    max_diff = max(r["max_stats_diff"] for c in conditions for r in c["rows"])
    details = [
        machine_line,
        conditions_line,
        f"每种情形在一个新进程里测量；每个时间是 {payload['repeats']} 轮的中位数：每轮里我们的实现、pycocotools 和 "
        "faster-coco-eval 各运行一次，"
        "经历同样的机器负载；比值 = 参考实现 ms / 我们 ms，大于 1 表示我们更快。每次计时包括从 JSON 字典到 12 个指标的"
        "全过程（建索引、loadRes、匹配、累积和汇总）；参考实现会修改输入，它们需要的深拷贝在计时之外完成，"
        "每次计时前先做一次垃圾回收（`gc.collect()`，不计时），免得上一个实现留下的对象由下一个实现来回收。"
        f"我们与参考实现的 12 个指标之差，所有情形中最大为 {max_diff:g}（每行的值见 JSON 的 max_stats_diff）。",
        "边界框：每张图 20 个真实框（约 2% 为 crowd）、100 个检测，10 个类别，分数保留 3 位小数（很多同分）。"
        "分割掩码：每张图 20 个椭圆真实掩码（半径 4 到 150 像素，约 2% 为 crowd）、50 个检测（每个真实掩码的 2 个"
        "扰动副本，其中 10% 类别错误，外加 10 个随机的误检）；真实掩码是未压缩的 RLE，检测是压缩的 RLE 字符串。",
        command_line,
    ]
    lines += ["", '??? note "测量方法"', ""] + [f"    - {line}" for line in details]
    (RESULTS / "coco_eval.md").write_text("\n".join(lines) + "\n")


def measure_in_this_process(iou_type: str, repeats: int) -> list[dict]:
    torch.set_num_threads(2)
    gt, detections = make_dataset() if iou_type == "bbox" else make_mask_dataset()
    return measure_case(iou_type, gt, detections, repeats)


def main(repeats: int = REPEATS) -> None:
    torch.set_num_threads(2)  # as in the measuring processes (environment() reports it)

    def measure():
        # each case in a fresh process: what the box case's reference runs leave in the heap (millions of
        # freed Python objects) slowed down the next case's numpy code by a third
        rows = []
        for iou_type in CASES:
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                rows += pool.apply(measure_in_this_process, (iou_type, repeats))
        return rows

    conditions = in_both_conditions(measure)
    quiet = next(c for c in conditions if c["condition"] == "quiet")
    payload = {"benchmark": "coco_eval", "repeats": repeats, "statistic": "median (interleaved rounds)",
               "machine": platform.processor() or platform.machine(), "threads": 2,
               "note": "ratio = reference ms / ours ms (> 1: ours is faster); whole pipeline from JSON dicts. "
                       "'rows': the box rows of the quiet condition (the Lecture 13 table); 'conditions': every "
                       "row (boxes and masks) in both conditions.",
               # the Lecture 13 table (tables.lecture13_coco_eval) reads these rows, in these keys
               "rows": [{k: r[k] for k in ("case", "reference", "ours_ms", "reference_ms", "ratio", "max_stats_diff")}
                        for r in quiet["rows"] if r["iou_type"] == "bbox"],
               "command": "python benchmarks/coco_eval.py",
               "environment": environment(),
               "conditions": conditions}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "coco_eval.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    write_markdown(payload)
    missed = [f"{c['condition']}: {r['case']} speed-up {r['ratio']:.2f}" for c in conditions for r in c["rows"]
              if r.get("meets_goal") is False]
    print("goals met" if not missed else f"goals missed: {missed}")


if __name__ == "__main__":
    main()
