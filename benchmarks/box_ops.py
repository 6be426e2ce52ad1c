"""Time our box ops against torchvision in the same run: box_iou, nms, batched_nms.

Run: ``python benchmarks/box_ops.py``. Writes lectures_code/results/benchmarks/box_ops.json and box_ops.md.
CPU with 2 threads (``BENCH_DEVICE=cuda``: the CUDA rows instead, into box_ops_cuda).
Two conditions, one after the other:
the machine as it is, and with one competing busy process (``benchmarks/busy.py``). Each time is the
median of several repeats, ours and the reference alternating, so both see the same machine load.

Boxes: centers uniform in a 1000 x 1000 image, width and height uniform in [10, 200], clipped to the
image, distinct scores uniform in [0, 1), IoU threshold 0.5; batched_nms with 10 classes drawn uniformly.

Goals (issue 8): box_iou and nms at 1k and 10k boxes at most 1.5x torchvision's time on the CPU, in
both conditions; the JSON records whether each such row meets it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import (  # noqa: E402
    bench_device,
    condition_details,
    environment,
    in_both_conditions,
    mark_goals,
    report_goals,
    results_stem,
    timed_row,
    write_results,
)

from lectures_code.ops.boxes import box_iou  # noqa: E402
from lectures_code.ops.nms import batched_nms, nms, nms_simple  # noqa: E402

THRESHOLD = 0.5
GOAL_RATIO = 1.5
GOAL_CASES = ("box_iou 1k x 1k", "nms 1k", "nms 10k")


def random_boxes(n: int, seed: int, device: str):
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(n, 2, generator=g) * 1000
    sizes = torch.rand(n, 2, generator=g) * 190 + 10
    # Clipped to the image, as a detector does before NMS (batched_nms needs coordinates >= 0
    # for the offset trick).
    boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], dim=1).clamp(0, 1000)
    # Distinct scores: torchvision's per-class loop orders equal scores arbitrarily.
    scores = torch.randperm(n, generator=g) / n
    labels = torch.randint(0, 10, (n,), generator=g)
    return boxes.to(device), scores.to(device), labels.to(device)


def cases(device: str):
    """(name, Chinese label, ours, reference, repeats); every pair is checked for equal output first."""
    b1k, s1k, l1k = random_boxes(1000, 0, device)
    b10k, s10k, l10k = random_boxes(10_000, 1, device)
    b999, s999, l999 = b1k[:999], s1k[:999], l1k[:999]
    tv = torchvision.ops
    yield "box_iou 1k x 1k", "box_iou 1k × 1k", lambda: box_iou(b1k, b1k), lambda: tv.box_iou(b1k, b1k), 21
    yield "nms 1k", "nms 1k", lambda: nms(b1k, s1k, THRESHOLD), lambda: tv.nms(b1k, s1k, THRESHOLD), 21
    yield "nms 10k", "nms 10k", lambda: nms(b10k, s10k, THRESHOLD), lambda: tv.nms(b10k, s10k, THRESHOLD), 9
    yield (
        "nms_simple (teaching loop) 1k",
        "nms_simple（教学用的循环）1k",
        lambda: nms_simple(b1k, s1k, THRESHOLD),
        lambda: tv.nms(b1k, s1k, THRESHOLD),
        5,
    )
    yield (
        "batched_nms 999 (offset trick)",
        "batched_nms 999（坐标平移）",
        lambda: batched_nms(b999, s999, l999, THRESHOLD),
        lambda: tv.batched_nms(b999, s999, l999, THRESHOLD),
        21,
    )
    per_class = device == "cpu"  # torchvision (and we) loop over the classes on the CPU above 4000 numbers
    yield (
        "batched_nms 10k (per-class loop)" if per_class else "batched_nms 10k (offset trick)",
        "batched_nms 10k（逐类循环）" if per_class else "batched_nms 10k（坐标平移）",
        lambda: batched_nms(b10k, s10k, l10k, THRESHOLD),
        lambda: tv.batched_nms(b10k, s10k, l10k, THRESHOLD),
        9,
    )
    if device == "cuda":
        b100k, s100k, _ = random_boxes(100_000, 2, device)
        yield (
            "nms 100k", "nms 100k", lambda: nms(b100k, s100k, THRESHOLD),
            lambda: tv.nms(b100k, s100k, THRESHOLD), 5,
        )


def measure() -> list[dict]:
    devices = [bench_device()]
    rows = []
    for device in devices:
        for name, label, ours, reference, repeats in cases(device):
            out, ref = ours(), reference()
            same = torch.equal(out, ref) if out.dtype == torch.int64 else torch.allclose(out, ref)
            if not same:
                raise SystemExit(f"{name} on {device}: our output differs from torchvision's")
            rows.append(timed_row(name, label, device, ours, reference, repeats,
                                  GOAL_RATIO if name in GOAL_CASES else None))
    return rows


def main() -> None:
    torch.set_num_threads(2)
    conditions = in_both_conditions(measure)
    mark_goals(conditions)
    payload = {
        "note": "Ratio = ours / torchvision (< 1: ours is faster), medians of interleaved repeats. Boxes: centers "
        "uniform in a 1000x1000 image, sides uniform in [10, 200], clipped to the image, distinct scores, "
        f"IoU threshold {THRESHOLD}, batched_nms with 10 classes.",
        "command": ("BENCH_DEVICE=cuda " if bench_device() == "cuda" else "") + "python benchmarks/box_ops.py",
        "environment": environment(),
        "conditions": conditions,
    }
    details = condition_details(payload) + [
        "框：中心在 1000×1000 的图像内均匀分布，宽和高在 [10, 200] 内均匀分布并裁剪到图像内，分数互不相同；"
        f"IoU 阈值 {THRESHOLD}；batched_nms 有 10 个类别。测时之前先检查两者的输出相同（nms 的下标逐个相等）。",
        "重复次数：box_iou、nms 1k、batched_nms 999 各 21 次，nms 10k、batched_nms 10k 各 9 次，nms_simple 5 次。",
    ]
    write_results(results_stem("box_ops"), payload, details)
    report_goals(conditions)


if __name__ == "__main__":
    main()
