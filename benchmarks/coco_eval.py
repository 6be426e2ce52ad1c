"""Benchmark: COCO box evaluation, ours (numpy) vs pycocotools vs faster-coco-eval, same run.

500 images x 20 GT x 100 detections, 10 classes (10k GT, 50k detections; a few crowd GTs, scores
rounded to 3 decimals so that many are tied). Each timing covers the whole pipeline from the JSON
dicts to the 12 stats (index building, loadRes, evaluate, accumulate, summarize); the deep copies
that pycocotools / faster-coco-eval need (they modify their inputs) are made outside the timer.
Run: python benchmarks/coco_eval.py -> lectures_code/results/benchmarks/coco_eval.{json,md}
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from lectures_code.metrics.coco_eval import coco_evaluate

RESULTS = Path(__file__).resolve().parents[1] / "lectures_code" / "results" / "benchmarks"  # package data


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


def run_pycocotools(gt, detections):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(detections), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return list(evaluator.stats)


def run_faster_coco_eval(gt, detections):
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt)
        evaluator = COCOeval_faster(coco_gt, coco_gt.loadRes(detections), "bbox",
                                    print_function=lambda *args: None)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return list(evaluator.stats[:12])


def time_all(runners, gt, detections, repeats):
    """Median ms per runner; the runners take turns in every round so that machine load hits all alike."""
    times = {name: [] for name in runners}
    stats = {}
    for _ in range(repeats):
        for name, fn in runners.items():
            gt_copy, det_copy = copy.deepcopy(gt), copy.deepcopy(detections)
            start = time.perf_counter()
            stats[name] = fn(gt_copy, det_copy)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}, stats


def main(repeats: int = 5) -> None:
    torch.set_num_threads(2)
    gt, detections = make_dataset()
    case = f"{len(gt['images'])} images, {len(gt['annotations'])} GT, {len(detections)} dets, 10 classes"
    runners = {"ours": lambda g, d: coco_evaluate(g, d)["stats"], "pycocotools": run_pycocotools,
               "faster-coco-eval": run_faster_coco_eval}
    ms, stats = time_all(runners, gt, detections, repeats)
    rows = []
    for name in ["pycocotools", "faster-coco-eval"]:
        max_diff = float(np.max(np.abs(np.array(stats["ours"]) - np.array(stats[name]))))
        rows.append({"case": case, "reference": name, "ours_ms": round(ms["ours"], 1),
                     "reference_ms": round(ms[name], 1), "ratio": round(ms[name] / ms["ours"], 2),
                     "max_stats_diff": max_diff})
    payload = {"benchmark": "coco_eval", "repeats": repeats, "statistic": "median (interleaved rounds)",
               "machine": platform.processor() or platform.machine(), "threads": 2,
               "note": "ratio = reference ms / ours ms (> 1: ours is faster); whole pipeline from JSON dicts",
               "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "coco_eval.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = ["| case | ours ms | reference ms | speed-up (reference ms / ours ms) |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['case']} vs {r['reference']} | {r['ours_ms']:.0f} | {r['reference_ms']:.0f} | "
              f"{r['ratio']:.2f}x |" for r in rows]
    (RESULTS / "coco_eval.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
