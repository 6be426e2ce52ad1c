"""Lecture 14 figures drawn from the trained detectors: anchors, RPN proposals, FPN levels, detections.

Every ``figure_*`` function returns the bytes of one deterministic file (PNG or SVG). They use the
shipped models of the registry (``lectures_code.registry``, hash-checked), through their inference API
(``predict``) and their own methods, on the first canvases of the DigitCanvases test split (seed 0), which
no detector saw in training. Boxes are xyxy in pixels. A detector whose checkpoint is not shipped is left
out of the multi-model figures.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache

import numpy as np
import torch
from matplotlib.figure import Figure

import lectures_code.plotting  # noqa: F401  (Agg off-screen backend and the CJK font)
from lectures_code import registry, results
from lectures_code.data.digit_canvases import DigitCanvases
from lectures_code.detection.anchors import AnchorGenerator
from lectures_code.detection.rpn_targets import rpn_targets
from lectures_code.figures.lecture13 import _png, _svg
from lectures_code.ops.boxes import box_iou
from lectures_code.plotting import PALETTE, draw_boxes, show_image

BENCHMARK_DETECTORS = results.BENCHMARK_DIR / "detectors.json"
NUM_CANDIDATES = 60  # canvases searched for a good example (the first 60 test canvases)

DETECTORS = [entry for entry in registry.MODELS.values() if entry.task == "detection"]  # in the lecture's order


@lru_cache(maxsize=1)
def test_canvases(count: int = NUM_CANDIDATES) -> list[tuple[torch.Tensor, dict]]:
    """The first ``count`` test canvases: (float32 [3, 128, 128] in [0, 1], target)."""
    dataset = DigitCanvases("test", size=count, seed=0)
    return [dataset[i] for i in range(count)]


def canvas_with_sizes(min_digits: int = 3) -> int:
    """Index of the test canvas with >= ``min_digits`` digits whose box heights spread the most."""
    best, best_spread = 0, -1.0
    for index, (_, target) in enumerate(test_canvases()):
        heights = target["boxes"][:, 3] - target["boxes"][:, 1]
        if len(heights) >= min_digits and float(heights.max() / heights.min()) > best_spread:
            best, best_spread = index, float(heights.max() / heights.min())
    return best


@lru_cache(maxsize=len(DETECTORS))
def _model(name: str):
    return registry.load_pretrained(name)


def detect(name: str, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """The shipped detector ``name`` on one float [3, H, W] image with its own thresholds (``predict``;
    R-CNN and Fast R-CNN run Selective Search, uncached)."""
    return _model(name).predict(image[None])[0]


def _draw_detections(ax, image: torch.Tensor, result: dict, score_threshold: float = 0.5) -> None:
    show_image(ax, image)
    keep = result["scores"] >= score_threshold
    labels = result["labels"][keep].tolist()
    draw_boxes(ax, result["boxes"][keep], labels=labels, scores=result["scores"][keep].tolist(),
               colors=[PALETTE[label % len(PALETTE)] for label in labels], linewidth=1.6, fontsize=7)


def positive_anchors(gt_boxes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Our Faster R-CNN's anchors on a ``size`` x ``size`` canvas (float [A, 4] xyxy) and the indices of those
    the RPN's matcher labels positive for ``gt_boxes`` [G, 4] (IoU >= 0.7 or a box's best anchor)."""
    from lectures_code.detection.faster_rcnn import ANCHOR_RATIOS, ANCHOR_SIZES, STRIDE

    generator = AnchorGenerator((ANCHOR_SIZES,), (ANCHOR_RATIOS,))
    grid = size // STRIDE
    anchors = generator((size, size), [(grid, grid)], torch.float32, torch.device("cpu"))  # [grid * grid * K, 4]
    labels, _ = rpn_targets(anchors, gt_boxes)  # [A]: 1 positive, 0 negative, -1 ignored
    return anchors, torch.where(labels == 1)[0]


def figure_anchors() -> bytes:
    """PNG: the K anchors of one feature-map cell, and every anchor that the matcher labels positive."""
    from lectures_code.detection.faster_rcnn import ANCHOR_RATIOS, ANCHOR_SIZES, STRIDE

    index = canvas_with_sizes()
    image, target = test_canvases()[index]
    gt = target["boxes"].float()
    size = image.shape[-1]
    grid = size // STRIDE
    anchors, positive = positive_anchors(gt, size)
    k = len(ANCHOR_SIZES) * len(ANCHOR_RATIOS)
    largest = int((gt[:, 2] - gt[:, 0]).mul(gt[:, 3] - gt[:, 1]).argmax())
    cx, cy = float(gt[largest, 0::2].mean()), float(gt[largest, 1::2].mean())
    col, row = min(round(cx / STRIDE), grid - 1), min(round(cy / STRIDE), grid - 1)
    cell_anchors = anchors.view(grid, grid, k, 4)[row, col]  # [K, 4]
    owner = box_iou(anchors[positive], gt).argmax(dim=1)

    fig = Figure(figsize=(12.5, 4.6), layout="constrained")
    axes = fig.subplots(1, 3)
    show_image(axes[0], image)
    draw_boxes(axes[0], gt, labels=target["labels"].tolist(), colors="white", linewidth=1.5)
    axes[0].set_title(f"测试画布 {index}：{len(gt)} 个数字（真实框）", fontsize=10)
    show_image(axes[1], image)
    ratio_colors = {ratio: PALETTE[i] for i, ratio in enumerate(ANCHOR_RATIOS)}
    colors = [ratio_colors[ratio] for _ in ANCHOR_SIZES for ratio in ANCHOR_RATIOS]
    draw_boxes(axes[1], cell_anchors, colors=colors, linewidth=1.0)
    axes[1].plot([col * STRIDE], [row * STRIDE], "w+", markersize=10, markeredgewidth=2)
    axes[1].set_xlim(0, size)
    axes[1].set_ylim(size, 0)
    sizes, ratios = ", ".join(f"{s:g}" for s in ANCHOR_SIZES), ", ".join(f"{r:g}" for r in ANCHOR_RATIOS)
    axes[1].set_title(f"格 (行 {row}, 列 {col}) 的 K = {k} 个锚框：\n大小 {sizes} × 长宽比 h/w {ratios}（颜色）",
                      fontsize=10)
    show_image(axes[2], image)
    draw_boxes(axes[2], anchors[positive], colors=[PALETTE[int(i) % len(PALETTE)] for i in owner], linewidth=0.8,
               alpha=0.8)
    draw_boxes(axes[2], gt, colors="white", linewidth=1.5, linestyle="--")
    axes[2].set_title(f"{len(anchors)} 个锚框中的正例：{len(positive)} 个\n"
                      f"（IoU ≥ 0.7，或是某个真实框 IoU 最大的锚框）", fontsize=10)
    fig.suptitle(f"Faster R-CNN 的锚框：stride {STRIDE}，{grid}×{grid} 个位置 × {k} = {len(anchors)} 个", fontsize=11)
    fig.get_layout_engine().set(h_pad=0.08)  # room between the two-line titles and the suptitle
    return _png(fig)


def figure_rpn_proposals(shown: int = 30) -> bytes:
    """PNG: the trained RPN's top proposals (objectness as opacity) and the detections after the box head."""
    from lectures_code.detection.faster_rcnn import STRIDE

    model = _model("faster-rcnn")
    index = canvas_with_sizes()
    image, target = test_canvases()[index]
    size = tuple(image.shape[-2:])
    result = model.predict(image[None])[0]
    proposals, scores = result["proposals"], result["proposal_scores"]
    heat = model.rpn_objectness(image[None])[0].amax(dim=-1)  # [h, w]: the best of the K anchors of a location

    fig = Figure(figsize=(12.5, 4.6), layout="constrained")
    axes = fig.subplots(1, 3)
    show_image(axes[0], image)
    top = scores.argsort(descending=True)[:shown]
    for box, score in zip(proposals[top].tolist(), scores[top].tolist()):
        draw_boxes(axes[0], torch.tensor([box]), colors="#ffd400", linewidth=1.0, alpha=max(0.15, score))
    axes[0].set_title(f"RPN：NMS(0.7) 后 {len(proposals)} 个候选框，画出前 {min(shown, len(proposals))} 个\n"
                      "（越不透明 = 物体性越高）", fontsize=10)
    show_image(axes[1], image)
    axes[1].imshow(heat.numpy(), extent=(0, size[1], size[0], 0), cmap="magma", alpha=0.6, vmin=0, vmax=1,
                   interpolation="nearest")
    axes[1].set_title(f"每个位置 K 个锚框中最高的物体性（stride {STRIDE}）", fontsize=10)
    _draw_detections(axes[2], image, result)
    draw_boxes(axes[2], target["boxes"], colors="white", linewidth=0.8, linestyle=":")
    axes[2].set_title("第二阶段（RoI Align + 框头）后的检测，分数 ≥ 0.5\n（白色点线：真实框）", fontsize=10)
    fig.suptitle("训练好的 Faster R-CNN 在一张测试画布上", fontsize=11)
    return _png(fig)


def figure_fpn_levels() -> bytes:
    """PNG: FCOS on one canvas: which points of P3/P4/P5 are positives for each digit, and the learned scores."""
    from lectures_code.detection.fcos import assign_targets

    model = _model("fcos")
    index = canvas_with_sizes()
    image, target = test_canvases()[index]
    gt = target["boxes"].float()
    size = image.shape[-1]
    with torch.no_grad():
        outputs = model.head_outputs(image[None])
    matched, _, _ = assign_targets(outputs, gt)
    score = (torch.sigmoid(outputs["cls_logits"][0]).amax(dim=1)
             * torch.sigmoid(outputs["centerness_logits"][0])).sqrt()  # [P]
    points = outputs["points"]
    fig = Figure(figsize=(4.0 * len(model.strides), 8.2), layout="constrained")
    axes = fig.subplots(2, len(model.strides))
    first = 0
    for level, (stride, count) in enumerate(zip(model.strides, outputs["num_points_per_level"])):
        last = first + count
        side = int(math.isqrt(count))
        ax = axes[0, level]
        show_image(ax, image)
        draw_boxes(ax, gt, colors=[PALETTE[i % len(PALETTE)] for i in range(len(gt))], linewidth=1.2)
        level_points, level_match = points[first:last], matched[first:last]
        background = level_match < 0
        ax.scatter(level_points[background, 0], level_points[background, 1], s=3, c="#777777")
        for g in range(len(gt)):
            mine = level_match == g
            ax.scatter(level_points[mine, 0], level_points[mine, 1], s=22, c=PALETTE[g % len(PALETTE)],
                       edgecolors="white", linewidths=0.5)
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)
        low, high = (0, 32, 64, math.inf)[level:level + 2]
        ax.set_title(f"P{level + 3}（stride {stride}，{side}×{side} 个点）\n正例：max(l,t,r,b) ∈ [{low}, {high})",
                     fontsize=10)
        ax = axes[1, level]
        show_image(ax, image)
        ax.imshow(score[first:last].view(side, side).numpy(), extent=(0, size, size, 0), cmap="magma", alpha=0.65,
                  vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"P{level + 3} 上学到的分数 √(p·centerness)（最大类）", fontsize=10)
        first = last
    fig.suptitle("FPN 的分工：小数字由高分辨率的 P3 负责，大数字由 P4/P5 负责（FCOS 的训练目标与训练后的输出）",
                 fontsize=11)
    return _png(fig)


def figure_detections(canvases: tuple[int, ...] = (0, 1, 2, 3)) -> bytes:
    """PNG: every shipped detector (rows) on the same test canvases (columns), detections scoring >= 0.5."""
    shipped = {entry.name for entry in registry.shipped()}
    entries = [entry for entry in DETECTORS if entry.name in shipped]
    fig = Figure(figsize=(2.6 * len(canvases) + 1.2, 2.7 * len(entries)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(entries), len(canvases)))
    for row, entry in enumerate(entries):
        for col, index in enumerate(canvases):
            image, target = test_canvases()[index]
            result = detect(entry.name, image)
            ax = axes[row, col]
            _draw_detections(ax, image, result)
            draw_boxes(ax, target["boxes"], colors="white", linewidth=0.7, linestyle=":")
            if col == 0:
                ax.set_ylabel(entry.title, fontsize=11)
            if row == 0:
                ax.set_title(f"测试画布 {index}", fontsize=10)
    fig.suptitle("各检测器在同样几张测试画布上的结果（分数 ≥ 0.5；白色点线：真实框）", fontsize=11)
    return _png(fig, dpi=95)


def speed_accuracy_points() -> list[dict]:
    """[{"name", "kind", "ms", "ap", "ap50"}]: AP from the training records (the registry names each one's file
    and key), test ms per canvas (CPU, batch 1, proposals included) from lectures_code/results/benchmarks/detectors.json
    (one run, all detectors)."""
    timings = json.loads(BENCHMARK_DETECTORS.read_text())["detectors"]
    points = []
    for entry in DETECTORS:
        file_name, key = entry.record
        record = results.read(file_name).get(key)
        if record is not None and key in timings:
            points.append({"name": entry.title, "kind": entry.kind, "ms": timings[key]["test_ms"],
                           "ap": record["test"]["AP"], "ap50": record["test"]["AP50"]})
    return points


def figure_speed_accuracy() -> bytes:
    """SVG: test time per image (log scale, CPU, batch 1) against COCO AP for every recorded detector."""
    points = speed_accuracy_points()
    fig = Figure(figsize=(9.5, 4.6), layout="constrained")
    ax = fig.subplots()
    for i, point in enumerate(points):
        two_stage = point["kind"].startswith("两阶段")
        ax.scatter(point["ms"], point["ap"], s=70, marker="o" if two_stage else "^", color=PALETTE[i % len(PALETTE)],
                   label=f"{point['name']}（{point['kind']}）")
        ax.annotate(point["name"], (point["ms"], point["ap"]), textcoords="offset points", xytext=(6, 5), fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("每张图的测试用时（ms，CPU，batch 1，含区域提议；对数坐标）")
    ax.set_ylabel("COCO AP@[.5:.95]（200 张测试画布）")
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.15, y=0.12)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.set_title("速度与精度：○ 两阶段，△ 单阶段", fontsize=11)
    return _svg(fig)


def figure_proposal_scaling() -> bytes:
    """SVG: R-CNN vs Fast R-CNN detection time against the number of proposals (benchmarks/detectors.py)."""
    timings = json.loads(BENCHMARK_DETECTORS.read_text())
    scaling = timings["scaling_ms_by_proposals"]
    counts = [int(n) for n in scaling]
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.subplots()
    for i, (key, label) in enumerate((("rcnn", "R-CNN：每个候选框缩放到 32×32，各跑一次 CNN"),
                                      ("fast_rcnn", "Fast R-CNN：整图一次骨干 + 每个候选框 RoI Align 和两层全连接"))):
        ax.plot(counts, [scaling[str(n)][key] for n in counts], "o-", color=PALETTE[i], label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("候选框个数 N（随机框，不含 Selective Search）")
    ax.set_ylabel(f"每张画布的检测时间（ms，CPU {timings['threads']} 线程）")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("候选框越多，逐区域的开销越重要", fontsize=11)
    return _svg(fig)


FIGURES = {
    "lecture14-proposal-scaling.svg": figure_proposal_scaling,
    "lecture14-anchors.png": figure_anchors,
    "lecture14-rpn-proposals.png": figure_rpn_proposals,
    "lecture14-fpn-levels.png": figure_fpn_levels,
    "lecture14-detections.png": figure_detections,
    "lecture14-speed-accuracy.svg": figure_speed_accuracy,
}
