"""Lecture 13 demo: an IoU / NMS / mAP playground on top of lectures_code.detection.

Three tabs, each a handler that returns (matplotlib Figure or None, Markdown message):
- IoU: two xyxy boxes set by sliders -> the drawing, the IoU from ``box_iou`` and the areas;
- NMS: scored boxes around the digits of a canvas -> the greedy steps of NMS one at a time, ending on
  exactly what ``nms`` keeps;
- mAP: synthetic detections of one class ("digit") on 30 canvases -> the precision-recall curve and AP
  from ``coco_evaluate``, plus the raw precision steps.
Bad input never raises: the handlers answer with a message.
"""

from __future__ import annotations

import logging
import math

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from lectures_code.demos.common import BadInput, int_in_range
from lectures_code.figures.lecture13 import (
    canvas_ground_truth,
    iou_verdict,
    nms_example,
    precision_recall_points,
    synthetic_detections,
)
from lectures_code.metrics.coco_eval import IOU_THRESHOLDS, coco_evaluate
from lectures_code.ops.boxes import box_area, box_iou
from lectures_code.ops.nms import nms
from lectures_code.plotting import PALETTE, draw_boxes, show_image

logger = logging.getLogger(__name__)

IOU_CANVAS = 200  # the IoU sliders run over 0..200 pixels
NMS_CANVASES = 20  # the NMS seed picks one of the first 20 validation canvases
NMS_COPIES = 5  # noisy boxes per digit
NMS_MAX_STEPS = 4 * NMS_COPIES  # at most 4 digits per canvas, so at most 20 greedy steps
MAP_IMAGES = 30
MAX_SEED = 9999


def _failed(err: Exception) -> tuple[None, str]:
    if isinstance(err, BadInput):
        return None, f"**输入有误：** {err}"
    logger.exception("lecture13 demo handler failed")
    return None, f"**出错了：** {type(err).__name__}（请换一组输入再试）"


def _number_in_range(value, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{name} 必须是数字（收到 {value!r}）") from None
    if not math.isfinite(number):
        raise BadInput(f"{name} 必须是有限的数（收到 {value}）")
    if not low <= number <= high:
        raise BadInput(f"{name} 必须在 {low:g} 到 {high:g} 之间（收到 {number:g}）")
    return number


# ----------------------------------------------------------------------------------------------
# Tab 1: IoU


def _box(x1, y1, x2, y2, name: str) -> torch.Tensor:
    x1, y1, x2, y2 = (_number_in_range(v, f"框 {name} 的 {axis}", 0, IOU_CANVAS)
                      for v, axis in zip((x1, y1, x2, y2), ("x1", "y1", "x2", "y2")))
    if x2 <= x1 or y2 <= y1:
        raise BadInput(f"框 {name} 需要 x1 < x2 且 y1 < y2（xyxy 格式：左上角、右下角），"
                       f"收到 [{x1:g}, {y1:g}, {x2:g}, {y2:g}]")
    return torch.tensor([[x1, y1, x2, y2]], dtype=torch.float64)  # [1, 4] xyxy


def iou_playground(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2):
    """Two xyxy boxes A and B -> (Figure, Markdown with IoU, intersection and union areas)."""
    try:
        box_a, box_b = _box(ax1, ay1, ax2, ay2, "A"), _box(bx1, by1, bx2, by2, "B")
        iou = float(box_iou(box_a, box_b)[0, 0])
        area_a, area_b = float(box_area(box_a)[0]), float(box_area(box_b)[0])
        top_left = torch.max(box_a[0, :2], box_b[0, :2])
        bottom_right = torch.min(box_a[0, 2:], box_b[0, 2:])
        inter_w, inter_h = (bottom_right - top_left).clamp(min=0).tolist()
        inter = inter_w * inter_h
        union = area_a + area_b - inter

        fig = Figure(figsize=(5.2, 5.2), layout="constrained")
        ax = fig.subplots()
        if inter > 0:
            ax.add_patch(Rectangle(top_left.tolist(), inter_w, inter_h, color="#9467bd", alpha=0.35, linewidth=0))
        draw_boxes(ax, torch.cat([box_a, box_b]), labels=["A", "B"], colors=[PALETTE[0], PALETTE[1]])
        ax.set_xlim(0, IOU_CANVAS)
        ax.set_ylim(IOU_CANVAS, 0)  # image coordinates: y grows downwards
        ax.set_aspect("equal")
        ax.grid(True, alpha=0.3)
        ax.set_title(f"IoU = {iou:.4f}（紫色 = 交集）", fontsize=11)
        message = "\n".join([
            f"**IoU = {iou:.4f}**　{iou_verdict(iou)}",
            f"- 交集 (intersection) = {inter_w:g} × {inter_h:g} = {inter:g}",
            f"- 并集 (union) = {area_a:g} + {area_b:g} − {inter:g} = {union:g}",
            f"- `box_iou(A, B)` 中 A = {box_a[0].tolist()}，B = {box_b[0].tolist()}（xyxy）",
        ])
        return fig, message
    except Exception as err:  # no traceback may reach the reader
        return _failed(err)


# ----------------------------------------------------------------------------------------------
# Tab 2: NMS, one greedy step at a time


def nms_trace(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> list[dict]:
    """The greedy NMS loop, recorded: one dict per step with the picked index and the suppressed ones.

    boxes: float64 [N, 4] xyxy; scores: [N]. Step k: {"picked": i, "suppressed": [j, ...], "ious": [...]}.
    The picked indices, in order, are what ``nms(boxes, scores, iou_threshold)`` returns.
    """
    remaining = torch.sort(scores, descending=True, stable=True).indices.tolist()
    steps = []
    while remaining:
        best, rest = remaining[0], remaining[1:]
        ious = box_iou(boxes[best][None], boxes[rest])[0].tolist() if rest else []
        steps.append({
            "picked": best,
            "suppressed": [j for j, v in zip(rest, ious) if v > iou_threshold],
            "ious": [v for v in ious if v > iou_threshold],
        })
        remaining = [j for j, v in zip(rest, ious) if not v > iou_threshold]  # IoU == threshold survives
    return steps


def nms_boxes(seed: int):
    """The NMS tab's input for a seed: (image [3, H, W], boxes float64 [N, 4] xyxy, scores float64 [N])."""
    image, boxes, scores, _ = nms_example(canvas_index=seed % NMS_CANVASES, copies=NMS_COPIES, jitter=0.12,
                                          seed=seed)
    return image, boxes, scores


def nms_playground(seed, iou_threshold, step):
    """(seed, IoU threshold, step number) -> (Figure, Markdown); step 0 = the input, the last = nms()."""
    try:
        seed = int_in_range(seed, "随机种子", 0, MAX_SEED)
        iou_threshold = _number_in_range(iou_threshold, "IoU 阈值", 0.0, 1.0)
        step = int_in_range(step, "步数", 0, NMS_MAX_STEPS)
        image, boxes, scores = nms_boxes(seed)
        steps = nms_trace(boxes, scores, iou_threshold)
        step = min(step, len(steps))
        done = steps[:step]
        kept = [s["picked"] for s in done]
        suppressed_before = [j for s in done[:-1] for j in s["suppressed"]]
        current = done[-1] if done else None
        finished = set(kept) | set(suppressed_before) | set(current["suppressed"] if current else [])
        candidates = [i for i in range(len(boxes)) if i not in finished]

        fig = Figure(figsize=(6, 6.3), layout="constrained")
        ax = fig.subplots()
        show_image(ax, image)
        tags = [f"#{i}" for i in range(len(boxes))]
        draw_boxes(ax, boxes[suppressed_before], colors="#aaaaaa", linestyle=":", linewidth=1.0)
        draw_boxes(ax, boxes[candidates], labels=[tags[i] for i in candidates], scores=scores[candidates],
                   colors="#ffffff", linewidth=1.0, fontsize=7)
        if current:
            gone = current["suppressed"]
            draw_boxes(ax, boxes[gone], labels=[f"#{j} IoU {v:.2f}" for j, v in zip(gone, current["ious"])],
                       colors="#ff4040", linestyle="--", linewidth=1.5, fontsize=7)
        draw_boxes(ax, boxes[kept], labels=[tags[i] for i in kept], scores=scores[kept], colors="#2ca02c",
                   linewidth=2.5, fontsize=7)
        if current:
            draw_boxes(ax, boxes[current["picked"]], colors="#ffd92f", linewidth=3.5)
        legend = [Line2D([], [], color="#ffd92f", lw=3.5, label="本步选中"),
                  Line2D([], [], color="#2ca02c", lw=2.5, label="已保留"),
                  Line2D([], [], color="#ff4040", lw=1.5, ls="--", label="本步抑制"),
                  Line2D([], [], color="#aaaaaa", lw=1.0, ls=":", label="之前抑制"),
                  Line2D([], [], color="#ffffff", lw=1.0, label="候选")]
        ax.legend(handles=legend, loc="lower left", fontsize=7, ncols=5, facecolor="#333333", labelcolor="white",
                  framealpha=0.8)
        ax.set_title(f"NMS 第 {step} / {len(steps)} 步，IoU 阈值 {iou_threshold:g}", fontsize=10)

        lines = [f"**第 {step} / {len(steps)} 步**（{len(boxes)} 个框，按分数从高到低处理）"]
        if current is None:
            lines.append("- 第 0 步：还没有处理任何框。把“步数”往右拖。")
        else:
            picked = current["picked"]
            gone = ", ".join(f"#{j}（IoU {v:.3f}）" for j, v in zip(current["suppressed"], current["ious"]))
            lines.append(f"- 选中剩余框中分数最高的 #{picked}（分数 {float(scores[picked]):.3f}），保留它")
            lines.append(f"- 抑制与它 IoU > {iou_threshold:g} 的框：{gone or '无'}")
        lines.append(f"- 已保留：{kept}；剩余候选：{len(candidates)} 个")
        if step == len(steps):
            final = nms(boxes, scores, iou_threshold).tolist()
            lines.append(f"- **已结束。最终保留：{kept}**（`nms(boxes, scores, {iou_threshold:g})` = {final}）")
        return fig, "\n".join(lines)
    except Exception as err:
        return _failed(err)


# ----------------------------------------------------------------------------------------------
# Tab 3: mAP of one class


def map_playground(seed, iou_threshold, score_threshold, jitter):
    """Synthetic detections of the class "digit" -> (PR-curve Figure, Markdown with AP)."""
    try:
        seed = int_in_range(seed, "随机种子", 0, MAX_SEED)
        iou_threshold = _number_in_range(iou_threshold, "IoU 阈值", 0.5, 0.95)
        t = int(np.argmin(np.abs(IOU_THRESHOLDS - iou_threshold)))
        if abs(IOU_THRESHOLDS[t] - iou_threshold) > 1e-6:
            raise BadInput(f"COCO 只在 0.50, 0.55, ..., 0.95 上评估，收到 {iou_threshold:g}")
        score_threshold = _number_in_range(score_threshold, "分数阈值", 0.0, 1.0)
        jitter = _number_in_range(jitter, "框的抖动", 0.0, 0.5)

        gt = canvas_ground_truth(MAP_IMAGES, single_class=True)
        detections = synthetic_detections(gt, seed=seed, jitter=jitter, score_threshold=score_threshold)
        result = coco_evaluate(gt, detections)
        curve = result["precision"][t, :, 0, 0, -1]  # [101]: class "digit", area all, maxDets 100
        ap = float(curve.mean())
        recall, precision, num_gt = precision_recall_points(gt, detections, 1, float(IOU_THRESHOLDS[t]))

        fig = Figure(figsize=(6.4, 4.6), layout="constrained")
        ax = fig.subplots()
        points = result["recall_thresholds"]
        ax.fill_between(points, curve, step="post", color=PALETTE[0], alpha=0.15)
        ax.step(recall, precision, where="post", color="gray", linewidth=1.0, label="原始 precision")
        ax.plot(points, curve, color=PALETTE[0], linewidth=2.0, label=f"101 点插值：AP = {ap:.3f}")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("召回率 recall")
        ax.set_ylabel("精确率 precision")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
        ax.set_title(f"类别“数字”，IoU ≥ {IOU_THRESHOLDS[t]:.2f}", fontsize=10)
        ap_all, ap50, ap75 = result["stats"][:3]
        message = "\n".join([
            f"**AP@{IOU_THRESHOLDS[t]:.2f} = {ap:.3f}**",
            f"- {len(detections)} 个检测（分数 ≥ {score_threshold:g}），{num_gt} 个真值框，{MAP_IMAGES} 张画布",
            f"- 最高召回率 {recall[-1] if len(recall) else 0.0:.3f}：分数阈值越高、抖动越大，曲线越早掉到 0",
            f"- COCO：AP@[.5:.95] = {ap_all:.3f}，AP50 = {ap50:.3f}，AP75 = {ap75:.3f}（`coco_evaluate`）",
        ])
        return fig, message
    except Exception as err:
        return _failed(err)


# ----------------------------------------------------------------------------------------------


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="Lecture 13 · IoU / NMS / mAP", analytics_enabled=False) as demo:
        gr.Markdown("## Lecture 13 · IoU、非极大值抑制 (NMS) 与 mAP\n框都是 xyxy 像素坐标（左上角、右下角）。")

        with gr.Tab("IoU", elem_id="tab-iou"):
            sliders = []
            with gr.Row():
                for name, defaults in (("a", (20, 30, 120, 110)), ("b", (70, 60, 170, 160))):
                    with gr.Column():
                        gr.Markdown(f"**框 {name.upper()}**")
                        for axis, value in zip(("x1", "y1", "x2", "y2"), defaults):
                            sliders.append(gr.Slider(0, IOU_CANVAS, value=value, step=1, label=f"{name.upper()}.{axis}",
                                                     elem_id=f"iou-{name}-{axis}"))
                with gr.Column():
                    iou_value = gr.Markdown(elem_id="iou-value")
                    iou_plot = gr.Plot(label="两个框", elem_id="iou-plot")
            # One API endpoint per handler; the other events run the same function with the same inputs and
            # share its concurrency limit (each handler takes a fraction of a second: two at once).
            demo.load(iou_playground, sliders, [iou_plot, iou_value], api_name="iou_playground",
                      concurrency_id="iou", concurrency_limit=2)
            for slider in sliders:
                slider.change(iou_playground, sliders, [iou_plot, iou_value], api_visibility="private",
                              concurrency_id="iou", concurrency_limit=2)

        with gr.Tab("NMS", elem_id="tab-nms"):
            with gr.Row():
                with gr.Column():
                    nms_seed = gr.Number(value=0, precision=0, label=f"随机种子 (0-{MAX_SEED})", elem_id="nms-seed")
                    nms_threshold = gr.Slider(0.0, 1.0, value=0.7, step=0.05, label="IoU 阈值 (IoU > 阈值即抑制)",
                                              elem_id="nms-threshold")
                    nms_step = gr.Slider(0, NMS_MAX_STEPS, value=0, step=1, label="步数 (0 = 输入)",
                                         elem_id="nms-step")
                    nms_info = gr.Markdown(elem_id="nms-info")
                with gr.Column(scale=2):
                    nms_plot = gr.Plot(label="NMS", elem_id="nms-plot")
            nms_inputs = [nms_seed, nms_threshold, nms_step]
            demo.load(nms_playground, nms_inputs, [nms_plot, nms_info], api_name="nms_playground",
                      concurrency_id="nms", concurrency_limit=2)
            for control in nms_inputs:
                control.change(nms_playground, nms_inputs, [nms_plot, nms_info], api_visibility="private",
                               concurrency_id="nms", concurrency_limit=2)

        with gr.Tab("mAP", elem_id="tab-map"):
            with gr.Row():
                with gr.Column():
                    map_seed = gr.Number(value=0, precision=0, label=f"随机种子 (0-{MAX_SEED})", elem_id="map-seed")
                    map_iou = gr.Slider(0.5, 0.95, value=0.5, step=0.05, label="IoU 阈值", elem_id="map-iou")
                    map_score = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="分数阈值（低于它的检测被丢弃）",
                                          elem_id="map-score-threshold")
                    map_jitter = gr.Slider(0.0, 0.5, value=0.15, step=0.01, label="框的抖动（相对框大小）",
                                           elem_id="map-jitter")
                    map_value = gr.Markdown(elem_id="map-value")
                with gr.Column(scale=2):
                    map_plot = gr.Plot(label="PR 曲线", elem_id="map-plot")
            map_inputs = [map_seed, map_iou, map_score, map_jitter]
            demo.load(map_playground, map_inputs, [map_plot, map_value], api_name="map_playground",
                      concurrency_id="map", concurrency_limit=2)
            for control in map_inputs:
                control.change(map_playground, map_inputs, [map_plot, map_value], api_visibility="private",
                               concurrency_id="map", concurrency_limit=2)
    return demo
