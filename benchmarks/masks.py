"""Time our Mask R-CNN mask ops against torchvision's in the same run: paste_masks_in_image, project_masks_on_boxes.

Run: ``python benchmarks/masks.py``. Writes lectures_code/results/benchmarks/masks.json and masks.md.
CPU with 2 threads (``BENCH_DEVICE=cuda``: the CUDA rows instead, into masks_cuda). Two conditions, one
after the other: the machine as it is, and with one competing busy process (``benchmarks/busy.py``). Each
time is the median of several repeats, ours and the reference alternating, so both see the same load.

Cases (float32): paste_masks_in_image of 100 predicted 28 x 28 masks (uniform random probabilities) into
a 512 x 512 image, boxes inside the image with sides log-uniform in [16, 256] px, padding 1 (what Mask
R-CNN does at test time); project_masks_on_boxes of 256 positive proposals onto 10 GT masks of a
512 x 512 image, and of 64 proposals onto the digits of a 128 x 128 DigitCanvases training image, M = 28
(the training targets; proposals = GT boxes jittered by 10 % of their size).

Goal (issue 10): paste_masks_in_image at most 1.5x torchvision's time on the CPU, in both conditions;
the JSON records whether it meets it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torchvision.models.detection import roi_heads

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

from lectures_code.data.digit_canvases import DigitCanvases  # noqa: E402
from lectures_code.ops.masks import paste_masks_in_image, project_masks_on_boxes  # noqa: E402

GOAL_RATIO = 1.5
GOAL_CASES = ("paste_masks_in_image 100 x 28x28 -> 512x512",)
IMAGE = 512


def random_boxes(n: int, g: torch.Generator) -> torch.Tensor:
    """[n, 4] xyxy boxes inside an IMAGE x IMAGE image, sides log-uniform in [16, 256]."""
    sides = torch.exp(torch.empty(n, 2).uniform_(torch.log(torch.tensor(16.0)).item(),
                                                 torch.log(torch.tensor(256.0)).item(), generator=g))
    corners = torch.rand(n, 2, generator=g) * (IMAGE - sides)
    return torch.cat([corners, corners + sides], dim=1)


def cases(device: str):
    """(name, Chinese label, ours, reference, repeats); every pair is checked for equal output first."""
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(100, 1, 28, 28, generator=g).to(device)
    boxes = random_boxes(100, g).to(device)
    yield (
        "paste_masks_in_image 100 x 28x28 -> 512x512",
        "paste_masks_in_image：100 个 28×28 掩码贴回 512×512",
        lambda: paste_masks_in_image(masks, boxes, (IMAGE, IMAGE)),
        lambda: roi_heads.paste_masks_in_image(masks, boxes, (IMAGE, IMAGE)),
        9,
    )
    gt_boxes = random_boxes(10, g)
    gt_masks = torch.zeros(10, IMAGE, IMAGE, dtype=torch.bool)
    for mask, (x1, y1, x2, y2) in zip(gt_masks, gt_boxes.round().long().tolist()):
        mask[y1:y2, x1:x2] = torch.rand(y2 - y1, x2 - x1, generator=g) < 0.7
    matched = torch.randint(0, 10, (256,), generator=g)
    size = gt_boxes[matched, 2:] - gt_boxes[matched, :2]
    proposals = gt_boxes[matched] + torch.randn(256, 4, generator=g) * 0.1 * size.repeat(1, 2)
    gt_masks, proposals, matched = gt_masks.to(device), proposals.to(device), matched.to(device)
    yield (
        "project_masks_on_boxes 256 proposals on 512x512, M=28",
        "project_masks_on_boxes：512×512 图像上 256 个候选框，M = 28",
        lambda: project_masks_on_boxes(gt_masks, proposals, matched, 28),
        lambda: roi_heads.project_masks_on_boxes(gt_masks, proposals, matched, 28),
        9,
    )
    # a training image of our data: a 128 x 128 digit canvas, 64 positive proposals on its digits
    _, target = DigitCanvases("train", size=1, seed=0, max_objects=4)[0]
    canvas_masks, canvas_boxes = target["masks"], target["boxes"]
    matched_c = torch.randint(0, len(canvas_boxes), (64,), generator=g)
    size_c = canvas_boxes[matched_c, 2:] - canvas_boxes[matched_c, :2]
    proposals_c = canvas_boxes[matched_c] + torch.randn(64, 4, generator=g) * 0.1 * size_c.repeat(1, 2)
    canvas_masks, proposals_c, matched_c = canvas_masks.to(device), proposals_c.to(device), matched_c.to(device)
    yield (
        "project_masks_on_boxes 64 proposals on a 128x128 digit canvas, M=28",
        "project_masks_on_boxes：128×128 数字画布上 64 个候选框，M = 28",
        lambda: project_masks_on_boxes(canvas_masks, proposals_c, matched_c, 28),
        lambda: roi_heads.project_masks_on_boxes(canvas_masks, proposals_c, matched_c, 28),
        21,
    )


def measure() -> list[dict]:
    device = bench_device()
    rows = []
    for name, label, ours, reference, repeats in cases(device):
        out, ref = ours(), reference()
        if out.shape != ref.shape or not torch.allclose(out, ref, atol=1e-5, rtol=0):
            raise SystemExit(f"{name} on {device}: our output differs from torchvision's")
        rows.append(timed_row(name, label, device, ours, reference, repeats,
                              GOAL_RATIO if name in GOAL_CASES else None))
    return rows


def main() -> None:
    torch.set_num_threads(2)
    conditions = in_both_conditions(measure)
    mark_goals(conditions)
    payload = {
        "note": "Ratio = ours / torchvision (< 1: ours is faster), medians of interleaved repeats, float32. paste: "
        "100 random 28x28 masks, boxes inside a 512x512 image with sides log-uniform in [16, 256], padding 1. "
        "project: 256 jittered GT boxes onto 10 GT masks of 512x512, and 64 onto a 128x128 digit canvas, M = 28.",
        "command": ("BENCH_DEVICE=cuda " if bench_device() == "cuda" else "") + "python benchmarks/masks.py",
        "environment": environment(),
        "conditions": conditions,
    }
    details = condition_details(payload) + [
        "paste_masks_in_image：100 个 28×28 的随机概率掩码，框在 512×512 的图像内，宽和高在 [16, 256] 内对数均匀分布，"
        "padding = 1（Mask R-CNN 推理时的做法）。project_masks_on_boxes：一张 512×512 图像的 10 个真实掩码，"
        "256 个候选框（真实框加上其大小 10% 的扰动），M = 28；以及一张 128×128 的数字画布（训练集第 0 张）上的 64 个"
        "候选框。float32；测时之前先检查两者的输出相同（误差 ≤ 1e-5）。",
        "重复次数：数字画布 21 次，其余 9 次。",
    ]
    write_results(results_stem("masks"), payload, details)
    report_goals(conditions)


if __name__ == "__main__":
    main()
