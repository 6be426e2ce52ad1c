"""Lecture 13 figures, drawn from real runs of our own detection code (matplotlib, Agg).

Every ``figure_*`` function returns the bytes of one file: SVG for line drawings, PNG where a photo or a
canvas makes up most of the picture. Boxes are xyxy pixels throughout (see ``detection/boxes.py``), COCO
records use xywh (see ``detection/coco_eval.py``). The figures are deterministic (fixed seeds, no date in
the SVG, fixed SVG ids), except for the measured run time printed in the selective-search figure.

The helpers :func:`jitter_boxes`, :func:`synthetic_detections` and :func:`precision_recall_points` build the
"real-ish" detections used here and in the Lecture 13 demos.
"""

from __future__ import annotations

import copy
import io
import time
from fractions import Fraction
from functools import lru_cache

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

import lectures_code.plotting  # noqa: F401  (Agg off-screen backend and the CJK font)
from lectures_code.data.digit_canvases import DigitCanvases, to_coco
from lectures_code.detection.selective_search import proposal_recall, selective_search
from lectures_code.detection.sliding_window import count_all_windows, count_windows
from lectures_code.metrics.coco_eval import coco_box_iou, coco_evaluate
from lectures_code.ops.box_coding import decode_boxes, encode_boxes
from lectures_code.ops.boxes import box_area, box_iou
from lectures_code.ops.nms import nms
from lectures_code.plotting import PALETTE, draw_boxes, show_image, to_rgb_uint8

SVG_HASH_SALT = "eecs498-lecture13"  # fixed ids inside the SVG, so the same figure gives the same bytes


def _svg(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASH_SALT}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _png(fig: Figure, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


@lru_cache(maxsize=8)
def digit_canvas(index: int, split: str = "val", canvas_size: int = 128) -> tuple[torch.Tensor, dict]:
    """One DigitCanvases image (seed 0): (float32 [3, H, W] in [0, 1], target dict with xyxy boxes)."""
    return DigitCanvases(split, size=index + 1, canvas_size=canvas_size, seed=0)[index]


# ----------------------------------------------------------------------------------------------
# Synthetic detections around real ground truth


def jitter_boxes(gt_boxes, copies: int, jitter: float, rng: np.random.Generator, size: float | None = None):
    """``copies`` noisy copies of every xyxy box: float64 [K * copies, 4] and the source index [K * copies].

    Each copy moves every edge by a uniform amount in [-jitter, jitter] times the box's width (x edges)
    or height (y edges), then is clipped to [0, size] when ``size`` is given; it keeps >= 1 px per side.
    """
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)  # [K, 4]
    source = np.repeat(np.arange(len(gt)), copies)  # [K * copies]
    boxes = gt[source]
    wh = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)  # [K*copies, 4]: w, h, w, h
    boxes = boxes + rng.uniform(-jitter, jitter, size=boxes.shape) * wh
    if size is not None:
        boxes = np.clip(boxes, 0.0, size)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1.0)
    return boxes, source


def synthetic_detections(
    gt: dict,
    seed: int = 0,
    jitter: float = 0.15,
    miss_rate: float = 0.1,
    duplicate_rate: float = 0.2,
    false_positives_per_image: float = 1.0,
    score_threshold: float = 0.0,
    image_size: float = 128.0,
) -> list[dict]:
    """COCO detections (xywh, score) imitating a decent detector on the COCO ground truth ``gt``.

    For every GT box: missed with probability ``miss_rate``, else one detection with every edge moved by
    up to ``jitter`` of the box size; its score is higher the better the box is (plus noise), as for a
    trained detector. With probability ``duplicate_rate`` a second, worse and lower-scored copy (a duplicate
    that a matcher must count as a false positive). Then Poisson(``false_positives_per_image``) random
    boxes per image with low scores, labelled with a random category of ``gt``. Detections scoring below
    ``score_threshold`` are dropped. Deterministic for a fixed seed.
    """
    rng = np.random.default_rng(seed)
    category_ids = [c["id"] for c in gt["categories"]]
    by_image: dict[int, list] = {im["id"]: [] for im in gt["images"]}
    for ann in gt["annotations"]:
        by_image[ann["image_id"]].append(ann)
    detections = []
    for image_id, anns in by_image.items():
        for ann in anns:
            x, y, w, h = ann["bbox"]
            gt_xyxy = np.array([[x, y, x + w, y + h]])
            copies = 0 if rng.random() < miss_rate else 1 + int(rng.random() < duplicate_rate)
            for duplicate in range(copies):
                noisy, _ = jitter_boxes(gt_xyxy, 1, jitter * (1 + duplicate), rng, image_size)
                iou = float(box_iou(torch.from_numpy(noisy), torch.from_numpy(gt_xyxy))[0, 0])
                score = np.clip(0.25 + 0.6 * iou + rng.normal(0.0, 0.1) - 0.2 * duplicate, 0.01, 0.99)
                detections.append({"image_id": image_id, "category_id": ann["category_id"],
                                   "bbox": _xywh(noisy[0]), "score": float(score)})
        for _ in range(rng.poisson(false_positives_per_image)):
            w, h = rng.uniform(12, 48, size=2)
            x, y = rng.uniform(0, image_size - w), rng.uniform(0, image_size - h)
            detections.append({"image_id": image_id, "category_id": int(rng.choice(category_ids)),
                               "bbox": [float(x), float(y), float(w), float(h)],
                               "score": float(rng.uniform(0.02, 0.6))})
    return [d for d in detections if d["score"] >= score_threshold]


def _xywh(box_xyxy) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return [x1, y1, x2 - x1, y2 - y1]


def precision_recall_points(gt: dict, detections: list[dict], category_id: int, iou_threshold: float):
    """The raw (not interpolated) precision-recall points of one category, matched by COCO's rules.

    Per image, detections in descending score order (stable, top 100) take the free GT with the highest
    IoU >= ``iou_threshold`` (on equal IoU the later GT); all GTs are non-crowd and every area counts, as
    for ``coco_evaluate``'s area "all". All images are then pooled and sorted by score (stable).

    Returns (recall float64 [N], precision float64 [N], number of GT boxes), N = kept detections.
    Applying the precision envelope and reading it at 101 recall points gives ``coco_evaluate``'s curve.
    """
    image_ids = sorted(im["id"] for im in gt["images"])
    gts = {i: [] for i in image_ids}
    for ann in gt["annotations"]:
        if ann["category_id"] == category_id and ann["image_id"] in gts:
            gts[ann["image_id"]].append(ann["bbox"])
    num_gt = sum(len(v) for v in gts.values())
    threshold = min(iou_threshold, 1 - 1e-10)  # as pycocotools: an IoU of exactly 1 passes at 1.0
    scores, hits = [], []
    for image_id in image_ids:
        dets = [d for d in detections if d["image_id"] == image_id and d["category_id"] == category_id]
        order = np.argsort([-d["score"] for d in dets], kind="mergesort")[:100]
        gt_boxes = np.asarray(gts[image_id], dtype=np.float64).reshape(-1, 4)  # [G, 4] xywh
        free = np.ones(len(gt_boxes), dtype=bool)
        for d in (dets[i] for i in order):
            iou = coco_box_iou(np.asarray(d["bbox"], dtype=np.float64), gt_boxes, np.zeros(len(gt_boxes), bool))
            candidates = np.where(free & (iou >= threshold), iou, -1.0)  # [G]
            hit = bool((candidates >= 0).any())
            if hit:
                free[len(candidates) - 1 - np.argmax(candidates[::-1])] = False  # last best GT
            scores.append(d["score"])
            hits.append(hit)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    tp = np.cumsum(np.asarray(hits, dtype=bool)[order])
    fp = np.cumsum(~np.asarray(hits, dtype=bool)[order])
    recall = tp / max(num_gt, 1)
    precision = tp / np.maximum(tp + fp, 1)
    return recall.astype(np.float64), precision.astype(np.float64), num_gt


def iou_verdict(iou: float) -> str:
    """Lecture 13's rule of thumb for one IoU value, in Chinese with the slide's English words."""
    if iou > 0.9:
        return "几乎完美 (almost perfect, > 0.9)"
    if iou > 0.7:
        return "相当好 (pretty good, > 0.7)"
    if iou > 0.5:
        return "还可以 (decent, > 0.5)"
    return "不够好 (< 0.5)"


# ----------------------------------------------------------------------------------------------
# The figures


VISION_TASKS_CANVAS = 4  # val canvas 4 holds two "6" and one "1": semantic vs instance masks differ
INSTANCE_COLOURS = ("#e41a1c", "#00c8ff", "#4daf4a", "#ffd92f", "#f781bf")  # far from each other


def figure_vision_tasks() -> bytes:
    """PNG: classification, semantic segmentation, detection and instance segmentation of one canvas."""
    image, target = digit_canvas(VISION_TASKS_CANVAS)
    boxes, labels, masks = target["boxes"], target["labels"].tolist(), target["masks"].numpy()  # [K,4], [K], [K,H,W]
    rgb = to_rgb_uint8(image)
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    axes = fig.subplots(1, 4)

    # classification: one label for the whole image (that of the largest digit), no location
    largest = int(box_area(boxes).argmax())
    show_image(axes[0], rgb)
    axes[0].set_title(f"图像分类 (classification)\n“{labels[largest]}”：整张图只有一个标签", fontsize=10)

    # semantic segmentation: a class per pixel; both 6s get the same colour, instances are not told apart
    semantic = np.full(rgb.shape, 40, dtype=np.uint8)
    for label, mask in zip(labels, masks):
        semantic[mask] = _rgb255(PALETTE[label])
    show_image(axes[1], semantic)
    legend = [Patch(color=PALETTE[c], label=f"类别 {c}") for c in sorted(set(labels))]
    legend.append(Patch(color=(40 / 255,) * 3, label="背景"))
    axes[1].legend(handles=legend, loc="lower left", fontsize=7, framealpha=0.8)
    axes[1].set_title("语义分割 (semantic segmentation)\n每个像素一个类别，不区分个体", fontsize=10)

    # detection: a box and a class per object
    show_image(axes[2], rgb)
    draw_boxes(axes[2], boxes, labels=[str(c) for c in labels], colors=[PALETTE[c] for c in labels])
    axes[2].set_title("目标检测 (object detection)\n每个物体一个框 + 类别", fontsize=10)

    # instance segmentation: a mask per object, two objects of one class get two colours
    overlay = rgb.astype(np.float64) * 0.45
    instance_colours = [INSTANCE_COLOURS[i % len(INSTANCE_COLOURS)] for i in range(len(labels))]
    for colour, mask in zip(instance_colours, masks):
        overlay[mask] = 0.25 * overlay[mask] + 0.75 * np.asarray(_rgb255(colour), dtype=np.float64)
    show_image(axes[3], overlay.round().astype(np.uint8))
    draw_boxes(axes[3], boxes, labels=[f"{c} #{i + 1}" for i, c in enumerate(labels)], colors=instance_colours,
               linewidth=0.0)
    axes[3].set_title("实例分割 (instance segmentation)\n每个物体一个掩码，同类也分开", fontsize=10)
    return _png(fig)


def _rgb255(colour: str) -> tuple[int, int, int]:
    r, g, b = matplotlib.colors.to_rgb(colour)
    return round(r * 255), round(g * 255), round(b * 255)


def box_pair_with_iou(target: float, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two integer xyxy boxes (float64 [1, 4] each) whose IoU (our ``box_iou``) is close to ``target``.

    kind "diagonal" / "horizontal" shifts box B away from A, "inside" shrinks B about A's centre. The
    shift or scale is found by bisection on ``box_iou`` itself, then rounded to whole pixels.
    """
    box_a = torch.tensor([[10.0, 10.0, 90.0, 70.0]], dtype=torch.float64)
    size = box_a[:, 2:] - box_a[:, :2]  # [1, 2]

    def box_b(s: float) -> torch.Tensor:
        if kind == "inside":
            centre = (box_a[:, :2] + box_a[:, 2:]) / 2
            half = size * (1 - s) / 2
            return torch.cat([centre - half, centre + half], dim=1)
        step = size * s * (torch.tensor([1.0, 0.6], dtype=torch.float64) if kind == "diagonal"
                           else torch.tensor([1.0, 0.0], dtype=torch.float64))
        return box_a + torch.cat([step, step], dim=1)

    low, high = 0.0, 1.0  # IoU falls from 1 to 0 as s grows
    for _ in range(50):
        middle = (low + high) / 2
        if float(box_iou(box_a, box_b(middle))[0, 0]) > target:
            low = middle
        else:
            high = middle
    return box_a, box_b(low).round()


IOU_EXAMPLES = ((0.3, "diagonal"), (0.53, "horizontal"), (0.73, "inside"), (0.93, "diagonal"))


def figure_iou_examples() -> bytes:
    """SVG: four box pairs with IoU about 0.3, 0.5, 0.7 and 0.9, each computed by ``box_iou``."""
    fig = Figure(figsize=(12, 3.4), layout="constrained")
    axes = fig.subplots(1, len(IOU_EXAMPLES))
    for ax, (target, kind) in zip(axes, IOU_EXAMPLES):
        box_a, box_b = box_pair_with_iou(target, kind)
        iou = float(box_iou(box_a, box_b)[0, 0])
        x1, y1 = torch.max(box_a[0, :2], box_b[0, :2]).tolist()
        x2, y2 = torch.min(box_a[0, 2:], box_b[0, 2:]).tolist()
        inter = max(x2 - x1, 0) * max(y2 - y1, 0)
        union = float(box_area(box_a)[0] + box_area(box_b)[0]) - inter
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, color="#9467bd", alpha=0.35, linewidth=0))
        draw_boxes(ax, torch.cat([box_a, box_b]), labels=["A", "B"], colors=[PALETTE[0], PALETTE[1]])
        ax.set_xlim(0, 140)
        ax.set_ylim(100, 0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"IoU = {inter:.0f} / {union:.0f} = {iou:.3f}\n{iou_verdict(iou)}", fontsize=10)
    fig.suptitle("交并比 IoU = 交集面积 / 并集面积（紫色 = 交集）", fontsize=11)
    return _svg(fig)


SELECTIVE_SEARCH_CANVAS = 3  # val canvas 3 holds four digits
SELECTIVE_SEARCH_SHOWN = 40


def figure_selective_search(strategy: str = "fast", shown: int = SELECTIVE_SEARCH_SHOWN) -> bytes:
    """PNG: the top ``shown`` selective-search proposals on a photo (chelsea) and on a digit canvas."""
    from PIL import Image
    from skimage import data

    photo = Image.fromarray(data.chelsea())
    photo.thumbnail((300, 300), Image.LANCZOS)  # 300 x 451 -> 200 x 300: a second, not ten
    canvas, target = digit_canvas(SELECTIVE_SEARCH_CANVAS)
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.5, 1]})
    for ax, image, gt_boxes in ((axes[0], np.asarray(photo), None), (axes[1], to_rgb_uint8(canvas), target["boxes"])):
        start = time.perf_counter()
        proposals = selective_search(image, strategy=strategy, max_proposals=None)  # [N, 4] xyxy, best first
        seconds = time.perf_counter() - start
        show_image(ax, image)
        colours = [PALETTE[i % len(PALETTE)] for i in range(min(shown, len(proposals)))]
        draw_boxes(ax, proposals[:shown], colors=colours, linewidth=1.0)
        title = (f"{image.shape[1]}×{image.shape[0]} 像素：{len(proposals)} 个候选框，用时 {seconds:.2f} s\n"
                 f"显示排名前 {min(shown, len(proposals))} 个")
        if gt_boxes is not None:
            recall = proposal_recall(proposals, gt_boxes, 0.5)
            title += f"；全部候选框对 {len(gt_boxes)} 个数字的召回率 (IoU ≥ 0.5) = {recall:.0%}"
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"选择性搜索 (selective search, “{strategy}” 策略)", fontsize=11)
    return _png(fig)


BOX_TRANSFORM_PROPOSAL = (20.0, 30.0, 80.0, 70.0)
BOX_TRANSFORM_TARGET = (35.0, 20.0, 110.0, 90.0)


def figure_box_transform() -> bytes:
    """SVG: a proposal P, a target G, the transform t = encode_boxes(P, G) with its numbers, and decode."""
    proposal = torch.tensor([BOX_TRANSFORM_PROPOSAL], dtype=torch.float64)
    target = torch.tensor([BOX_TRANSFORM_TARGET], dtype=torch.float64)
    tx, ty, tw, th = encode_boxes(proposal, target)[0].tolist()
    decoded = decode_boxes(encode_boxes(proposal, target), proposal)[0].tolist()
    px, py, pw, ph = _centre_size(BOX_TRANSFORM_PROPOSAL)
    gx, gy, gw, gh = _centre_size(BOX_TRANSFORM_TARGET)

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_boxes, ax_text = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
    draw_boxes(ax_boxes, torch.cat([proposal, target]), labels=["候选框 P (proposal)", "目标框 G (target)"],
               colors=[PALETTE[0], PALETTE[2]])
    draw_boxes(ax_boxes, [decoded], colors="black", linestyle=":", linewidth=1.2)
    ax_boxes.plot([px, gx], [py, gy], "o", color="black", markersize=4)
    ax_boxes.annotate("", xy=(gx, gy), xytext=(px, py), arrowprops={"arrowstyle": "->", "color": "black"})
    ax_boxes.text(gx + 2, gy + 3, "decode(t, P)\n（黑色虚线，与 G 重合）", fontsize=8)
    ax_boxes.set_xlim(0, 125)
    ax_boxes.set_ylim(100, 0)
    ax_boxes.set_aspect("equal")
    ax_boxes.grid(True, alpha=0.3)
    ax_boxes.set_title("P、G 及其中心（x 向右，y 向下，单位：像素）", fontsize=10)

    lines = [
        rf"P: $p_x={px:g},\ p_y={py:g},\ p_w={pw:g},\ p_h={ph:g}$",
        rf"G: $g_x={gx:g},\ g_y={gy:g},\ g_w={gw:g},\ g_h={gh:g}$",
        "",
        rf"$t_x = (g_x - p_x)/p_w = ({gx:g} - {px:g})/{pw:g} = {tx:.4f}$",
        rf"$t_y = (g_y - p_y)/p_h = ({gy:g} - {py:g})/{ph:g} = {ty:.4f}$",
        rf"$t_w = \ln(g_w/p_w) = \ln({gw:g}/{pw:g}) = {tw:.4f}$",
        rf"$t_h = \ln(g_h/p_h) = \ln({gh:g}/{ph:g}) = {th:.4f}$",
        "",
        r"decode: $b_x = p_x + p_w t_x,\ b_y = p_y + p_h t_y,\ b_w = p_w e^{t_w},\ b_h = p_h e^{t_h}$",
        "decode_boxes(t, P) = [" + ", ".join(f"{v:.1f}" for v in decoded) + "] = G",
    ]
    ax_text.axis("off")
    for i, line in enumerate(lines):
        ax_text.text(0.0, 1.0 - i * 0.1, line, fontsize=10, va="top", transform=ax_text.transAxes)
    ax_text.set_title("encode_boxes(P, G) 的变换 t = (tx, ty, tw, th)", fontsize=10, loc="left")
    return _svg(fig)


def _centre_size(box) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    return x1 + 0.5 * (x2 - x1), y1 + 0.5 * (y2 - y1), x2 - x1, y2 - y1


NMS_CANVAS = 5  # val canvas 5 holds an "8" and a "4", side by side
NMS_THRESHOLD = 0.7  # the lecture's example threshold


def nms_example(canvas_index: int = NMS_CANVAS, copies: int = 4, jitter: float = 0.08, seed: int = 0):
    """A canvas and overlapping scored boxes around its digits, like a detector's raw output.

    Returns (image float32 [3, H, W], boxes float64 [N, 4] xyxy, scores float64 [N], gt boxes [K, 4]).
    """
    image, target = digit_canvas(canvas_index)
    rng = np.random.default_rng(seed)
    boxes, source = jitter_boxes(target["boxes"].numpy(), copies, jitter, rng, image.shape[-1])
    gt = target["boxes"].double()
    iou = box_iou(torch.from_numpy(boxes), gt)[torch.arange(len(boxes)), torch.from_numpy(source)]  # [N]
    scores = np.clip(0.3 + 0.6 * iou.numpy() + rng.normal(0.0, 0.05, size=len(boxes)), 0.01, 0.99)
    return image, torch.from_numpy(boxes), torch.from_numpy(scores), gt


def figure_nms(threshold: float = NMS_THRESHOLD) -> bytes:
    """SVG: overlapping scored boxes on a canvas before and after our ``nms`` (suppressed boxes dashed)."""
    image, boxes, scores, _ = nms_example()
    keep = nms(boxes, scores, threshold)  # [K] indices, best first
    suppressed = torch.ones(len(boxes), dtype=torch.bool)
    suppressed[keep] = False

    fig = Figure(figsize=(10, 5.2), layout="constrained")
    before, after = fig.subplots(1, 2)
    show_image(before, image)
    draw_boxes(before, boxes, scores=scores, linewidth=1.2, fontsize=6,
               colors=[PALETTE[i % len(PALETTE)] for i in range(len(boxes))])
    before.set_title(f"NMS 之前：{len(boxes)} 个重叠的打分框", fontsize=10)
    show_image(after, image)
    draw_boxes(after, boxes[suppressed], colors="#ff4040", linestyle="--", linewidth=1.2)
    draw_boxes(after, boxes[keep], scores=scores[keep], colors="#2ca02c", linewidth=2.0, fontsize=7)
    after.set_title(f"NMS 之后（IoU > {threshold:g} 即抑制）：保留 {len(keep)} 个（实线），"
                    f"抑制 {int(suppressed.sum())} 个（虚线）", fontsize=10)
    return _svg(fig)


RCNN_FIGURE_CANVAS = 3  # a test canvas with several digits


def figure_rcnn_pipeline(index: int = RCNN_FIGURE_CANVAS) -> bytes:
    """PNG: the shipped R-CNN on one test canvas, step by step (proposals, warped crops, boxes, NMS)."""
    from lectures_code.detection.rcnn import detect, proposals_for, warp_regions
    from lectures_code.registry import load_pretrained

    model = load_pretrained("rcnn")
    image, target = DigitCanvases("test", size=index + 1, canvas_size=128, seed=0)[index]
    proposals = torch.as_tensor(proposals_for(image), dtype=torch.float32)  # [N, 4] xyxy, ranked
    with torch.no_grad():
        crops = warp_regions(image, proposals[:12], model.crop_size)  # [12, 3, S, S]
        probabilities = model(crops)[0].softmax(dim=1)  # [12, 1 + C]
        before = detect(model, image, proposals, score_threshold=0.5, nms_threshold=1.0)  # IoU > 1: no NMS
        after = detect(model, image, proposals, score_threshold=0.5, nms_threshold=0.5)

    fig = Figure(figsize=(15, 4.6), layout="constrained")
    left, middle, right = fig.subfigures(1, 3, width_ratios=[3, 4, 3])
    ax = left.subplots()
    show_image(ax, image)
    draw_boxes(ax, proposals[:60], colors=[PALETTE[i % len(PALETTE)] for i in range(60)], linewidth=0.8)
    ax.set_title(f"① Selective Search：{len(proposals)} 个候选框（画出前 60）", fontsize=10)
    middle.suptitle(f"② 前 12 个候选框裁剪并缩放到 {model.crop_size}×{model.crop_size}，CNN 给出类别概率", fontsize=10)
    for i, crop_ax in enumerate(middle.subplots(3, 4).flat):
        show_image(crop_ax, crops[i])
        best = int(probabilities[i].argmax())
        name = "背景" if best == 0 else f"数字 {best - 1}"
        crop_ax.set_title(f"{name} {float(probabilities[i, best]):.2f}", fontsize=7)
        crop_ax.set_xticks([]), crop_ax.set_yticks([])
    ax = right.subplots()
    show_image(ax, image)
    draw_boxes(ax, before["boxes"], colors="#ff7f0e", linewidth=0.8, alpha=0.6)
    draw_boxes(ax, target["boxes"], colors="white", linestyle="--", linewidth=1.2)
    draw_boxes(ax, after["boxes"], labels=[str(int(v)) for v in after["labels"]], scores=after["scores"],
               colors="#2ca02c", linewidth=2.0, fontsize=7)
    ax.set_title(f"③ 框回归后分数 ≥ 0.5：{len(before['boxes'])} 个（橙）\n"
                 f"④ 按类 NMS 后：{len(after['boxes'])} 个（绿）；白色虚线为真实框", fontsize=10)
    return _png(fig)


PR_DATASET_SIZE = 40
PR_SEED = 0


def canvas_ground_truth(size: int = PR_DATASET_SIZE, single_class: bool = False) -> dict:
    """COCO ground truth (boxes only) of the first ``size`` val canvases (seed 0), a fresh copy per call.

    ``single_class`` relabels every digit as category 1 "digit" (a one-class detection problem).
    """
    return copy.deepcopy(_canvas_ground_truth(size, single_class))


@lru_cache(maxsize=4)
def _canvas_ground_truth(size: int, single_class: bool) -> dict:
    gt = to_coco(DigitCanvases("val", size=size, canvas_size=128, seed=0))
    for ann in gt["annotations"]:
        ann.pop("segmentation")  # boxes only: keeps the dict small
        if single_class:
            ann["category_id"] = 1
    if single_class:
        gt["categories"] = [{"id": 1, "name": "digit", "supercategory": "digit"}]
    return gt


def figure_pr_curve() -> bytes:
    """SVG: one class's precision-recall curves from ``coco_evaluate`` on synthetic detections.

    The 101-point interpolated curves at IoU 0.5 and 0.75 (AP in the legend) and the raw precision steps.
    """
    gt = canvas_ground_truth()
    detections = synthetic_detections(gt, seed=PR_SEED)
    result = coco_evaluate(gt, detections)
    counts = np.bincount([a["category_id"] for a in gt["annotations"]])
    category = int(counts.argmax())  # the class with the most ground-truth boxes
    name = next(c["name"] for c in gt["categories"] if c["id"] == category)

    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    recall_points = result["recall_thresholds"]
    for threshold, colour in ((0.5, PALETTE[0]), (0.75, PALETTE[3])):
        curve = result["pr_curves"][category][threshold]  # [101]
        recall, precision, num_gt = precision_recall_points(gt, detections, category, threshold)
        ax.step(recall, precision, where="post", color=colour, alpha=0.35, linewidth=1.0,
                label=f"原始 precision（IoU {threshold:g}，{len(recall)} 个检测）")
        ax.plot(recall_points, curve, color=colour, linewidth=2.0,
                label=f"101 点插值（IoU {threshold:g}）：AP = {curve.mean():.3f}")
    ap = result["per_class_ap"][category]["AP"]
    ax.set_xlabel("召回率 recall")
    ax.set_ylabel("精确率 precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(f"数字 “{name}” 的 PR 曲线：{num_gt} 个真值框，{PR_DATASET_SIZE} 张画布；"
                 f"COCO AP@[.5:.95] = {ap:.3f}", fontsize=10)
    return _svg(fig)

AP_EXAMPLE_LABELS_BELOW = {"d1", "d2", "d6"}


def figure_ap_example() -> bytes:
    """SVG: the worked AP example: its boxes (left) and its precision-recall curve, three ways (right).

    Every plotted number comes from ``lectures_code.lecture13.ap_example`` (exact fractions).
    """
    from lectures_code.lecture13 import ap_example as ex

    steps = ex.walk_detections()
    fig = Figure(figsize=(10.0, 4.6), layout="constrained")
    ax_boxes, ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.0, 1.25]})

    width, height = ex.IMAGE_SIZE
    ax_boxes.add_patch(Rectangle((0, 0), width, height, facecolor="#f4f4f4", edgecolor="#999999"))
    for name, (x1, y1, x2, y2) in ex.GROUND_TRUTH.items():
        ax_boxes.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="black",
                                     linewidth=2.2, linestyle="--"))
        ax_boxes.text(x1 + 2, y2 - 3, name, fontsize=11, fontweight="bold", va="bottom")
    for step in steps:
        x1, y1, x2, y2 = next(d[2] for d in ex.DETECTIONS if d[0] == step.name)
        colour = PALETTE[2] if step.matched_gt else PALETTE[3]
        ax_boxes.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.6))
        below = step.name in AP_EXAMPLE_LABELS_BELOW  # keeps overlapping boxes' labels apart
        ax_boxes.text(x1 + 1, y2 + 1 if below else y1 - 1, f"{step.name} {step.score:.2f}", fontsize=8,
                      color=colour, va="top" if below else "bottom")
    ax_boxes.set_xlim(-5, width + 5)
    ax_boxes.set_ylim(height + 14, -12)  # image coordinates: y down
    ax_boxes.set_aspect("equal")
    ax_boxes.set_xticks([])
    ax_boxes.set_yticks([])
    ax_boxes.set_title("真实框 A、B、C（黑色虚线）；检测框与分数\n（IoU ≥ 0.5 时绿色为 TP，红色为 FP）", fontsize=10)

    recall = [float(s.recall) for s in steps]
    precision = [float(s.precision) for s in steps]
    env = [float(p) for p in ex.envelope(steps)]
    # all-point area: one rectangle per recall step, height = the envelope there
    previous = 0.0
    for r, p in zip(recall, env):
        if r > previous:
            ax.fill_between([previous, r], [p, p], color=PALETTE[0], alpha=0.15, linewidth=0)
            ax.plot([previous, r], [p, p], color=PALETTE[0], linewidth=2.2, zorder=3)
            previous = r
    ax.plot([], [], color=PALETTE[0], linewidth=2.2,
            label=f"插值后的曲线（包络）；阴影面积 = 全点 AP = {float(ex.ap_all_points(steps)):.3f}")
    ax.plot(recall, precision, "o--", color="#555555", linewidth=1.0, markersize=6,
            label="每个检测之后的 (召回率, 精确率)")
    for step, r, p in zip(steps, recall, precision):
        ax.annotate(step.name, (r, p), textcoords="offset points", xytext=(6, -3), fontsize=9)
    coco = [float(ex.precision_at(steps, Fraction(i, 100))) for i in range(101)]
    ax.plot([i / 100 for i in range(101)], coco, ".", color=PALETTE[1], markersize=2.5, zorder=4,
            label=f"COCO 的 101 个点：AP = {float(ex.ap_coco101(steps)):.3f}")
    voc = [float(ex.precision_at(steps, Fraction(i, 10))) for i in range(11)]
    ax.plot([i / 10 for i in range(11)], voc, "^", color=PALETTE[3], markersize=7, fillstyle="none", zorder=5,
            label=f"VOC2007 的 11 个点：AP = {float(ex.ap_voc07(steps)):.3f}")
    ax.set_xlabel("召回率 recall")
    ax.set_ylabel("精确率 precision")
    ax.set_xlim(-0.02, 1.05)
    ax.set_ylim(0, 1.1)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("PR 曲线（IoU 阈值 0.5）与三种 AP", fontsize=10)
    return _svg(fig)


def figure_sliding_window_counts() -> bytes:
    """SVG: how many windows a sliding-window detector must classify, against the image size (log y)."""
    sides = np.unique(np.geomspace(16, 1024, 60).round().astype(int)).tolist()
    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    ax = fig.subplots()
    ax.plot(sides, [count_all_windows(n, n) for n in sides], color=PALETTE[3], linewidth=2,
            label="所有大小的窗口  H(H+1)/2 · W(W+1)/2")
    for window, colour in ((100, PALETTE[0]), (32, PALETTE[2])):
        ax.plot(sides, [count_windows(n, n, window, window) or np.nan for n in sides], color=colour,
                linewidth=2, label=f"固定 {window}×{window} 窗口  (W−w+1)(H−h+1)")
    lecture = count_all_windows(600, 800)
    ax.plot([np.sqrt(600 * 800)], [lecture], "o", color="black")
    ax.annotate(f"800×600 图像：{lecture:,}\n≈ {lecture / 1e8:.0f} 亿个窗口",
                xy=(np.sqrt(600 * 800), lecture), xytext=(90, 3e10), fontsize=9,
                arrowprops={"arrowstyle": "->", "color": "black"})
    ax.axhline(2000, color="gray", linestyle="--", linewidth=1)
    ax.text(18, 2600, "选择性搜索：约 2000 个候选框", fontsize=9, color="gray")
    ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xlabel("图像边长 n（n×n 图像；800×600 画在 √(800·600) 处）")
    ax.set_ylabel("窗口数量")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("滑动窗口为什么不可行：窗口数随图像大小爆炸", fontsize=10)
    return _svg(fig)


FIGURES = {
    "lecture13-rcnn-pipeline.png": figure_rcnn_pipeline,
    "lecture13-vision-tasks.png": figure_vision_tasks,
    "lecture13-iou-examples.svg": figure_iou_examples,
    "lecture13-selective-search.png": figure_selective_search,
    "lecture13-box-transform.svg": figure_box_transform,
    "lecture13-nms.svg": figure_nms,
    "lecture13-pr-curve.svg": figure_pr_curve,
    "lecture13-ap-example.svg": figure_ap_example,
    "lecture13-sliding-window-counts.svg": figure_sliding_window_counts,
}
