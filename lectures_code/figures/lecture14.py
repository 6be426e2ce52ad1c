"""Lecture 14 figures: how a box in the image becomes a fixed-size feature (RoI Pool vs RoI Align).

Every ``figure_*`` function returns the bytes of one file (PNG or SVG), deterministic, drawn with
matplotlib's object API (Agg). Boxes are xyxy: in image pixels on the image, times ``1 / stride``
(= ``spatial_scale``) on the feature map.

The feature map is real but simple: :func:`canvas_feature_map` takes a DigitCanvases image, measures how
far each pixel is from the background ("ink") and averages it over stride x stride blocks, i.e. a
one-channel stride-s map where the digit lights up. Unlike learned activations it can be read by eye,
which is what the comparison needs.

Drawing conventions (see ``visualize.show_image``): feature cell (row r, column c) is the square
[c, c + 1] x [r, r + 1], so a box edge at ``x * spatial_scale`` is drawn at that value. RoI Align's
bilinear coordinates put cell c's value at x = c, the square's centre, so its sample coordinates are
drawn at ``+ 0.5``: with ``aligned=True`` the sampled region coincides with the projected box, with
``aligned=False`` it sits half a cell to the right and below.

:func:`draw_roi_comparison` is shared with the Lecture 14 demo (``lectures_code/demos/lecture14_roi.py``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

import lectures_code.plotting  # noqa: F401  (Agg off-screen backend and the CJK font)
from lectures_code.figures.lecture13 import _png, _svg, digit_canvas
from lectures_code.lecture14.roi_teaching import roi_align_sample_points, roi_pool_bins
from lectures_code.ops.roi_align import roi_align
from lectures_code.ops.roi_pool import roi_pool
from lectures_code.plotting import PALETTE, draw_boxes, show_image

ROI_CANVAS = 2  # val canvas 2: one large "9"
ROI_BOX = (44.0, 22.0, 82.0, 79.0)  # its ground-truth box, xyxy pixels
FEATURE_CMAP = "viridis"


def canvas_feature_map(image: torch.Tensor, stride: int) -> torch.Tensor:
    """A one-channel stride-``stride`` feature map of an image: float64 [1, H // stride, W // stride] in [0, 1].

    ``image``: float [3, H, W] in [0, 1]. Each pixel's "ink" is its distance from the median grey (the
    background), averaged over stride x stride blocks and scaled so that the largest cell is 1.
    """
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be [3, H, W], got {list(image.shape)}")
    if not (isinstance(stride, int) and stride >= 1):
        raise ValueError(f"stride must be a positive int, got {stride!r}")
    grey = image.detach().to(torch.float64).mean(dim=0)  # [H, W]
    ink = (grey - grey.median()).abs()
    feature = F.avg_pool2d(ink[None, None], stride)[0]  # [1, H/s, W/s]
    return feature / feature.max().clamp(min=1e-12)


def roi_outputs(feature: torch.Tensor, box, stride: int, output_size: int, sampling_ratio: int, aligned: bool):
    """RoI Pool and RoI Align of one pixel box on a [1, h, w] map: (pool, align), float64 [out, out] each."""
    boxes = [torch.tensor([box], dtype=feature.dtype, device=feature.device)]  # [1, 4] xyxy pixels
    pool = roi_pool(feature[None], boxes, output_size, 1 / stride)[0, 0]
    align = roi_align(feature[None], boxes, output_size, 1 / stride, sampling_ratio, aligned)[0, 0]
    return pool, align


def _feature_panel(ax, feature: torch.Tensor) -> None:
    h, w = feature.shape[1:]
    ax.imshow(feature[0].cpu().numpy(), extent=(0, w, h, 0), cmap=FEATURE_CMAP, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_xticks(np.arange(0, w + 1, 1), minor=True)
    ax.set_yticks(np.arange(0, h + 1, 1), minor=True)
    ax.grid(True, which="minor", color="white", alpha=0.25, linewidth=0.5)
    ax.tick_params(which="both", length=0, labelsize=7)
    step = 1 if w <= 16 else 4
    ax.set_xticks(np.arange(0, w + 1, step))
    ax.set_yticks(np.arange(0, h + 1, step))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)


def _output_panel(ax, values: torch.Tensor, title: str, vmax: float = 1.0, cmap: str = FEATURE_CMAP) -> None:
    """A pooled [out, out] grid with its numbers written in (2 decimals)."""
    array = values.detach().cpu().numpy()
    ax.imshow(array, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
    fontsize = 10 if array.shape[1] <= 3 else 8 if array.shape[1] <= 5 else 6.5
    for (r, c), v in np.ndenumerate(array):
        colour = "black" if v > 0.6 * vmax else "white"
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=fontsize, color=colour)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)


def draw_roi_comparison(fig: Figure, image: torch.Tensor, box, stride: int, output_size: int,
                        sampling_ratio: int, aligned: bool) -> dict:
    """Draw image + box, RoI Pool's cells, RoI Align's samples and both outputs on ``fig`` (2 x 3 panels).

    ``box`` is xyxy in image pixels, ``stride`` the feature map's stride (spatial_scale = 1 / stride).
    Returns {"feature": [1, h, w], "pool": [out, out], "align": [out, out]} (float64), the values drawn.
    The output panels' titles start with "RoI Pool 输出" / "RoI Align 输出"; each cell shows its value.
    """
    feature = canvas_feature_map(image, stride)  # [1, h, w]
    _, h, w = feature.shape
    scale = 1 / stride
    projected = [v * scale for v in box]  # feature-map coordinates
    pool, align = roi_outputs(feature, box, stride, output_size, sampling_ratio, aligned)
    (sx1, sy1, sx2, sy2), rows, cols = roi_pool_bins(projected, output_size, h, w)
    region, ys, xs = roi_align_sample_points(projected, output_size, sampling_ratio, aligned)

    (ax_image, ax_pool, ax_align), (ax_pool_out, ax_align_out, ax_diff) = fig.subplots(
        2, 3, gridspec_kw={"height_ratios": [1.35, 1]})

    # ① the image, the box and the stride grid
    show_image(ax_image, image)
    for v in range(0, image.shape[-1] + 1, stride):
        ax_image.axvline(v, color="white", alpha=0.2, linewidth=0.5)
    for v in range(0, image.shape[-2] + 1, stride):
        ax_image.axhline(v, color="white", alpha=0.2, linewidth=0.5)
    draw_boxes(ax_image, torch.tensor([box]), colors="white", linewidth=2.0)
    ax_image.set_title(f"① 图像上的框 [{', '.join(f'{v:g}' for v in box)}] px\n网格 = stride {stride} 的特征格子",
                       fontsize=10)

    # ② RoI Pool: the projected box (dashed), the snapped cells (red) and the bins
    _feature_panel(ax_pool, feature)
    bin_colours = [PALETTE[k % len(PALETTE)] for k in (1, 2, 4, 6, 8, 9, 0, 3, 5)]
    inset = 0.08
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            if r0 < r1 and c0 < c1:  # a bin outside the map is empty (outputs 0)
                k = (i * len(cols) + j) % len(bin_colours)
                ax_pool.add_patch(Rectangle((c0 + inset * (1 + k % 3), r0 + inset * (1 + k % 3)),
                                            c1 - c0 - 2 * inset * (1 + k % 3), r1 - r0 - 2 * inset * (1 + k % 3),
                                            fill=False, edgecolor=bin_colours[k], linewidth=1.3))
    ax_pool.add_patch(Rectangle((sx1, sy1), sx2 + 1 - sx1, sy2 + 1 - sy1, fill=False, edgecolor="#ff3030",
                                linewidth=2.2))
    draw_boxes(ax_pool, torch.tensor([projected]), colors="white", linestyle="--", linewidth=1.8)
    ax_pool.legend(handles=[Line2D([], [], color="white", ls="--", lw=1.8, label="框 × 1/stride"),
                            Line2D([], [], color="#ff3030", lw=2.2, label="取整后的格子"),
                            Patch(fill=False, edgecolor=bin_colours[0], label="bin（floor/ceil，可重叠）")],
                   loc="lower left", fontsize=7, facecolor="#333333", labelcolor="white", framealpha=0.8)
    ax_pool.set_title(f"② RoI Pool：四边取整 → 列 {sx1}..{sx2}、行 {sy1}..{sy2}（含两端）\n"
                      f"真实框 [{', '.join(f'{v:.2f}' for v in projected)}]，每个 bin 取最大值", fontsize=10)

    # ③ RoI Align: the region (drawn at +0.5, see the module docstring), bin borders and sample points
    _feature_panel(ax_align, feature)
    rx1, ry1, rx2, ry2 = (v + 0.5 for v in region)
    out_h, out_w = len(ys), len(xs)
    for i in range(1, out_h):
        y = ry1 + i * (ry2 - ry1) / out_h
        ax_align.plot([rx1, rx2], [y, y], color="#ffa500", linewidth=1.0)
    for j in range(1, out_w):
        x = rx1 + j * (rx2 - rx1) / out_w
        ax_align.plot([x, x], [ry1, ry2], color="#ffa500", linewidth=1.0)
    ax_align.add_patch(Rectangle((rx1, ry1), rx2 - rx1, ry2 - ry1, fill=False, edgecolor="#ffa500", linewidth=2.2))
    draw_boxes(ax_align, torch.tensor([projected]), colors="white", linestyle="--", linewidth=1.8)
    points = np.array([(x + 0.5, y + 0.5) for row in ys for y in row for col in xs for x in col]).reshape(-1, 2)
    ax_align.scatter(points[:, 0], points[:, 1], s=14 if len(points) < 200 else 5, color="#ff3030",
                     edgecolors="white", linewidths=0.5, zorder=3)
    grid_h, grid_w = len(ys[0]), len(xs[0])
    ax_align.legend(handles=[Line2D([], [], color="white", ls="--", lw=1.8, label="框 × 1/stride"),
                             Line2D([], [], color="#ffa500", lw=2.2, label="采样区域与 bin"),
                             Line2D([], [], color="#ff3030", marker="o", ls="", label="双线性采样点")],
                    loc="lower left", fontsize=7, facecolor="#333333", labelcolor="white", framealpha=0.8)
    shift = "采样区域与框重合" if aligned else "采样区域相对框偏移半格"
    ax_align.set_title(f"③ RoI Align：不取整，每个 bin {grid_h}×{grid_w} 个采样点取平均\n"
                       f"sampling_ratio={sampling_ratio}，aligned={aligned}（{shift}）", fontsize=10)

    # ④ ⑤ ⑥ the two outputs and their difference
    vmax = max(float(pool.max()), float(align.max()), 1e-12)  # one colour scale for both outputs
    _output_panel(ax_pool_out, pool, f"RoI Pool 输出 {out_h}×{out_w}（bin 内最大值）", vmax)
    _output_panel(ax_align_out, align, f"RoI Align 输出 {out_h}×{out_w}（采样点平均）", vmax)
    difference = (pool - align).abs()
    _output_panel(ax_diff, difference, f"|Pool − Align|，最大 {float(difference.max()):.3f}",
                  max(float(difference.max()), 1e-12), cmap="magma")
    return {"feature": feature, "pool": pool, "align": align}


def figure_roi_pool_vs_align(stride: int = 8, output_size: int = 2, sampling_ratio: int = 2,
                             aligned: bool = True) -> bytes:
    """PNG: a digit's box on a stride-8 map; RoI Pool's snapped cells vs RoI Align's samples; both outputs."""
    image, _ = digit_canvas(ROI_CANVAS)
    fig = Figure(figsize=(12, 7.6), layout="constrained")
    draw_roi_comparison(fig, image, ROI_BOX, stride, output_size, sampling_ratio, aligned)
    fig.suptitle("RoI Pool 与 RoI Align：同一个框，同一张特征图（特征 = 数字“墨迹”按 stride 平均）", fontsize=12)
    return _png(fig)


def figure_feature_projection(strides: tuple[int, ...] = (8, 16)) -> bytes:
    """SVG: a box in the image and the same box on stride-8 and stride-16 feature grids (Fast R-CNN)."""
    image, _ = digit_canvas(ROI_CANVAS)
    box = ROI_BOX
    fig = Figure(figsize=(4.2 * (1 + len(strides)), 4.6), layout="constrained")
    axes = fig.subplots(1, 1 + len(strides))
    show_image(axes[0], image)
    draw_boxes(axes[0], torch.tensor([box]), colors="white", linewidth=2.0)
    size = image.shape[-1]
    axes[0].set_title(f"图像 {size}×{size} px\n框 [{', '.join(f'{v:g}' for v in box)}]", fontsize=10)
    for ax, stride in zip(axes[1:], strides):
        feature = canvas_feature_map(image, stride)
        _, h, w = feature.shape
        _feature_panel(ax, feature)
        projected = [v / stride for v in box]
        (sx1, sy1, sx2, sy2), _, _ = roi_pool_bins(projected, 1, h, w)
        ax.add_patch(Rectangle((sx1, sy1), sx2 + 1 - sx1, sy2 + 1 - sy1, fill=True, facecolor="#ff3030",
                               alpha=0.25, edgecolor="#ff3030", linewidth=1.8))
        draw_boxes(ax, torch.tensor([projected]), colors="white", linestyle="--", linewidth=1.8)
        ax.set_title(f"stride {stride}：{h}×{w} 特征图，框 × 1/{stride}\n"
                     f"= [{', '.join(f'{v:g}' for v in projected)}]（白虚线）\n"
                     f"RoI Pool 取整 → 列 {sx1}..{sx2}、行 {sy1}..{sy2}（红）", fontsize=9)
    fig.suptitle("Fast R-CNN 的坐标映射：图像坐标 × spatial_scale (= 1/stride) = 特征图坐标", fontsize=11)
    return _svg(fig)


FIGURES = {
    "lecture14-roi-pool-vs-align.png": figure_roi_pool_vs_align,
    "lecture14-feature-projection.svg": figure_feature_projection,
}
