"""Lecture 14 demo: the trained detectors (Faster R-CNN, FCOS, ...) on a sketch, a test canvas or an upload.

One handler, :func:`run_detector`, returns (matplotlib Figure or None, Markdown message, table rows):
the 128 x 128 input the detector saw, with the detections ("digit score" tags), optionally the
two-stage detector's proposals and, for the chosen feature-map cell, every anchor of an anchor-based
detector or the point and predicted box of FCOS; a summary (time in ms, ground truth and IoU on a
test canvas); one table row per detection. Boxes are xyxy in pixels of the 128 x 128 input.

The detectors are the Lecture 14 entries of the model registry (``lectures_code/registry.py``); one is
offered only when its checkpoint is shipped, so a detector appears once it is trained. The demo runs
each through its inference API, ``model.predict`` (with the reader's score threshold, NMS IoU threshold
and maximum number of detections: they act inside the detector, not as a filter applied afterwards),
and shows what the models' own methods give: the proposals behind two-stage detections, the anchors of
a cell (``anchor_levels``), FCOS's points (``point_levels``). No stage of a model is re-implemented here.

Sketches: the Sketchpad gives black strokes on white; a light background is detected and the image
inverted to light strokes on dark (both occur in DigitCanvases), padded to a square and resized.
Bad input never raises: the handler answers with a message.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from lectures_code import checkpoints, registry
from lectures_code.data.digit_canvases import DigitCanvases
from lectures_code.demos.common import BadInput, checked_sketchpad, image_file, int_in_range
from lectures_code.demos.lecture13_selective_search import read_upload
from lectures_code.detection.anchors import AnchorLevel
from lectures_code.detection.rcnn import proposals_for
from lectures_code.ops.boxes import box_iou
from lectures_code.plotting import draw_boxes
from lectures_code.plotting.boxes import detection_figure

logger = logging.getLogger(__name__)

CANVAS = 128  # every shipped detector was trained on 128 x 128 DigitCanvases images
NUM_TEST_CANVASES = 200  # the slider picks one of the first 200 test canvases
MAX_DETECTIONS = 100
MAX_SHOWN_PROPOSALS = 100
MAX_LEVEL = 4  # P3..P7 at most
MIN_SIDE, MAX_SIDE = 8, 4096  # a sketch array outside these sides is refused
BLANK_RANGE = 0.04  # grey max - min below this: nothing drawn / a plain black or white image
TABLE_HEADERS = ["#", "数字 (digit)", "分数 (score)", "x1", "y1", "x2", "y2", "IoU（真实框）"]
SOURCES = ("sketch", "canvas", "upload")


# ----------------------------------------------------------------------------------------------------
# The detectors: the registry's Lecture 14 entries, run through their inference API

DETECTORS = {entry.title: entry for entry in registry.MODELS.values() if entry.lecture == 14}  # name -> entry
DEFAULT_DETECTOR = "Faster R-CNN"  # the lecture's centre piece; the list itself follows the lecture's order


@dataclass
class Run:
    """detections {"boxes" float32 [D, 4] xyxy, "scores" float32 [D] descending, "labels" int64 [D] digits};
    proposals float32 [P, 4] xyxy (two-stage only: RPN's by decreasing objectness, Selective Search's in
    its own order); the anchor or point levels of the model (only when asked for)."""

    detections: dict
    proposals: torch.Tensor | None = None
    levels: list = field(default_factory=list)  # AnchorLevel or PointLevel, one per feature-map level
    note: str = ""  # e.g. how long Selective Search took


@torch.no_grad()
def run_model(entry, model, image: torch.Tensor, score_threshold: float, nms_threshold: float, max_detections: int,
              want_levels: bool, test_index: int | None = None) -> Run:
    """``model.predict`` on one image float [3, H, W] in [0, 1] with the reader's thresholds; Fast R-CNN gets
    its Selective Search proposals here so that a test canvas can read them from the cache."""
    settings = {"score_threshold": score_threshold, "nms_threshold": nms_threshold, "max_detections": max_detections}
    note = ""
    if entry.proposals == "Selective Search":
        start = time.perf_counter()
        found = proposals_for(image.cpu(), "test", test_index) if test_index is not None else proposals_for(image.cpu())
        search_ms = (time.perf_counter() - start) * 1000
        result = model.predict(image[None], [found], **settings)[0]
        cached = "（测试画布：读缓存）" if test_index is not None else ""
        note = (f"其中 Selective Search {search_ms:.0f} ms{cached}，{len(result['proposals'])} 个候选框"
                if len(result["proposals"]) else "Selective Search 没有找到候选框")
    else:
        result = model.predict(image[None], **settings)[0]
    levels = []
    if want_levels and entry.cells == "anchors":
        levels = model.anchor_levels(tuple(image.shape[-2:]))
    elif want_levels and entry.cells == "points":
        levels = model.point_levels(image)
    detections = {key: result[key] for key in ("boxes", "scores", "labels")}
    return Run(detections, result.get("proposals"), levels, note)


def shipped_detectors() -> list[str]:
    """Display names of the detectors whose checkpoint is present and listed in SHA256SUMS."""
    shipped = {entry.name for entry in registry.shipped()}
    return [title for title, entry in DETECTORS.items() if entry.name in shipped]


@lru_cache(maxsize=len(DETECTORS))
def _model(name: str):
    """Load a shipped model once (hash-checked, ``weights_only=True``), then keep it."""
    return registry.load_pretrained(name)


@lru_cache(maxsize=1)
def _test_canvases() -> DigitCanvases:
    return DigitCanvases("test", size=NUM_TEST_CANVASES)


# ----------------------------------------------------------------------------------------------------
# Input checks


def _threshold(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{name} 必须是 0 到 1 之间的数字（收到 {value!r}）") from None
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise BadInput(f"{name} 必须在 0 到 1 之间（收到 {value}）")
    return number


def _as_bool(value, name: str) -> bool:
    if value is None or isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise BadInput(f"{name} 必须是 True 或 False（收到 {value!r}）")


def _grey(pixels: np.ndarray) -> np.ndarray:
    """uint8 or float [H, W], [H, W, 1/3/4] -> float [H, W] in [0, 1]; transparent pixels count as white."""
    if pixels.dtype == np.uint8:
        values = pixels.astype(np.float64) / 255
    elif np.issubdtype(pixels.dtype, np.floating) and pixels.dtype != np.float16:
        values = pixels.astype(np.float64)
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            raise BadInput("画板图像的浮点像素值必须在 0 到 1 之间（wrong mode）")
    else:
        raise BadInput(f"画板图像的像素类型不对（wrong mode）：需要 uint8 或 0–1 的浮点数，收到 {pixels.dtype}")
    if values.ndim == 2:
        return values
    channels = values.shape[2]
    if channels == 1:
        return values[:, :, 0]
    grey = values[:, :, :3] @ np.array([0.299, 0.587, 0.114]) if channels in (3, 4) else values[:, :, 0]
    if channels == 4:  # the Sketchpad's composite is flattened on white: do the same
        alpha = values[:, :, 3]
        grey = grey * alpha + (1 - alpha)
    return grey


def sketch_to_image(sketch) -> tuple[torch.Tensor, str]:
    """A Sketchpad value (dict with "composite", or an image array / PIL image) -> (float [3, 128, 128], note).

    Light background (dark strokes) is inverted to light strokes on dark; a non-square drawing is padded
    with the background to a square before it is resized.
    """
    if isinstance(sketch, BadInput):  # the Sketchpad refused the image before decoding it
        raise sketch
    if isinstance(sketch, dict):
        sketch = sketch.get("composite")
    if sketch is None:
        raise BadInput("画板是空的（empty sketch）：请先用画笔写几个数字")
    if isinstance(sketch, Image.Image):
        sketch = np.asarray(sketch.convert("RGBA"))
    if not isinstance(sketch, np.ndarray):
        raise BadInput(f"无法识别画板的内容（wrong mode）：收到 {type(sketch).__name__}")
    if sketch.ndim not in (2, 3) or (sketch.ndim == 3 and sketch.shape[2] not in (1, 3, 4)):
        raise BadInput(f"画板图像的形状不对（wrong mode）：需要 [H, W] 或 [H, W, 1/3/4]，收到 {list(sketch.shape)}")
    height, width = sketch.shape[:2]
    if min(height, width) < MIN_SIDE or max(height, width) > MAX_SIDE:
        raise BadInput(f"画板尺寸不对（wrong size）：{width}×{height}，每边需在 {MIN_SIDE} 到 {MAX_SIDE} 像素之间")
    grey = _grey(sketch)  # [H, W] in [0, 1]
    if grey.max() - grey.min() < BLANK_RANGE:
        shade = "全白" if grey.mean() > 0.5 else "全黑"
        raise BadInput(f"画板是空的（empty sketch，{shade}）：请先用画笔写几个数字")
    notes = []
    if np.median(grey) > 0.5:  # mostly light: dark strokes on a light background
        grey = 1 - grey
        notes.append("已反色为黑底白字 / invert")
    if height != width:  # pad with the background so the digits keep their shape
        side = max(height, width)
        padded = np.full((side, side), float(np.median(grey)))
        top, left = (side - height) // 2, (side - width) // 2
        padded[top:top + height, left:left + width] = grey
        grey = padded
        notes.append("补边成正方形")
    pixels = Image.fromarray((grey * 255).round().astype(np.uint8)).resize((CANVAS, CANVAS), Image.LANCZOS)
    values = torch.from_numpy(np.asarray(pixels, dtype=np.float32) / 255)  # [128, 128]
    notes.append(f"缩放到 {CANVAS}×{CANVAS}" if (height, width) != (CANVAS, CANVAS) else "")
    note = "，".join(n for n in notes if n)
    return values.expand(3, -1, -1).contiguous(), f"手绘（{width}×{height}{'，' + note if note else ''}）"


def load_image(source, sketch, index, upload) -> tuple[torch.Tensor, str, dict | None, int | None]:
    """-> (float image [3, 128, 128] in [0, 1], description, ground truth {"boxes", "labels"} or None,
    test canvas index or None)."""
    if source == "sketch":
        image, description = sketch_to_image(sketch)
        return image, description, None, None
    if source == "upload":
        uploaded = read_upload(upload)  # RGB, checked before decoding; the file is removed once read
        if uploaded is None:
            raise BadInput("请先上传一张图片（PNG 或 JPEG），或改选“测试画布”或“手绘”")
        picture, (width, height) = uploaded
        picture = picture.resize((CANVAS, CANVAS), resample=Image.BICUBIC)
        pixels = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255).permute(2, 0, 1).contiguous()
        grey = pixels.mean(0)
        if float(grey.max() - grey.min()) < BLANK_RANGE:
            raise BadInput("图片几乎是纯色的（全黑或全白，blank image）：上面没有可检测的数字")
        shape = "，宽高比改变" if width != height else ""
        return pixels, f"上传的图片（{width}×{height}，缩放到 {CANVAS}×{CANVAS}{shape}）", None, None
    if source != "canvas":
        raise BadInput(f"未知的图片来源 {source!r}，可选：{', '.join(SOURCES)}")
    index = int_in_range(index, "测试画布编号", 0, NUM_TEST_CANVASES - 1)
    image, target = _test_canvases()[index]
    return image, f"测试画布 #{index}（{len(target['labels'])} 个数字）", target, index


# ----------------------------------------------------------------------------------------------------
# The handler


def run_detector(source, sketch, index, upload, detector, score_threshold, nms_threshold, max_detections,
                 show_proposals=False, num_proposals=20, show_cells=False, level=0, cell_x=64, cell_y=64):
    """(image source "sketch"/"canvas"/"upload", Sketchpad value, test canvas index, uploaded file, detector
    name, score threshold, NMS IoU threshold, max detections, show proposals?, how many, show anchors /
    points?, feature level, cell position x, y in pixels) -> (Figure or None, Markdown, table rows)."""
    try:
        if not isinstance(detector, str) or detector not in DETECTORS:
            raise BadInput(f"未知的检测器 {detector!r}，可选：{', '.join(DETECTORS)}")
        score_threshold = _threshold(score_threshold, "分数阈值 (score threshold)")
        nms_threshold = _threshold(nms_threshold, "NMS IoU 阈值 (NMS IoU threshold)")
        max_detections = int_in_range(max_detections, "最多检测数 (max detections)", 1, MAX_DETECTIONS)
        show_proposals = _as_bool(show_proposals, "显示候选框 (show proposals)")
        num_proposals = int_in_range(num_proposals, "候选框数 (proposals)", 1, MAX_SHOWN_PROPOSALS)
        show_cells = _as_bool(show_cells, "显示锚框 / 特征点 (show anchors / points)")
        level = int_in_range(level, "特征层 (level)", 0, MAX_LEVEL)
        cell = (int_in_range(cell_x, "位置 x", 0, CANVAS - 1), int_in_range(cell_y, "位置 y", 0, CANVAS - 1))
        image, description, target, test_index = load_image(source, sketch, index, upload)
    except BadInput as err:
        return None, f"**输入有误：** {err}", []
    spec = DETECTORS[detector]
    if detector not in shipped_detectors():
        return None, (f"**缺少模型文件 (missing checkpoint)：** {spec.checkpoint}.pt 还没有训练好或不在 "
                      f"SHA256SUMS 里；可用的检测器：{', '.join(shipped_detectors()) or '无'}"), []
    try:
        model = _model(spec.name)
        start = time.perf_counter()
        run = run_model(spec, model, image, score_threshold, nms_threshold, max_detections, show_cells, test_index)
        milliseconds = (time.perf_counter() - start) * 1000
    except FileNotFoundError as err:
        return None, f"**缺少模型文件 (missing checkpoint)：** {err}", []
    except checkpoints.CheckpointError as err:
        return None, f"**模型文件校验失败 (checksum mismatch)：** {err}", []
    except Exception as err:  # a reader sees a message, never a traceback
        logger.exception("lecture14 detector demo failed")
        return None, f"**出错了：** {type(err).__name__}（请换一组输入再试）", []
    try:
        options = (score_threshold, nms_threshold, max_detections, show_proposals, num_proposals, show_cells,
                   level, cell)
        return _report(image, description, target, detector, spec, run, milliseconds, *options)
    except Exception as err:
        logger.exception("lecture14 detector demo could not draw its result")
        return None, f"**出错了：** {type(err).__name__}（请换一组输入再试）", []


def match_to_ground_truth(detections: dict, target: dict) -> list[tuple[int, float] | None]:
    """Greedy matching in score order (as COCO at IoU 0.5, ignoring the class): for each detection
    (gt index, IoU) of the unmatched ground-truth box it overlaps most with IoU >= 0.5, else None."""
    if len(detections["boxes"]) == 0 or len(target["boxes"]) == 0:
        return [None] * len(detections["boxes"])
    ious = box_iou(detections["boxes"].float().cpu(), target["boxes"].float())  # [D, G]
    taken, matches = set(), []
    for row in ious:  # detections are sorted by decreasing score
        order = [g for g in row.argsort(descending=True).tolist() if g not in taken and row[g] >= 0.5]
        if order:
            taken.add(order[0])
            matches.append((order[0], float(row[order[0]])))
        else:
            matches.append(None)
    return matches


def _report(image, description, target, detector, spec, run, milliseconds, score_threshold, nms_threshold,
            max_detections, show_proposals, num_proposals, show_cells, level, cell):
    result = {key: value.detach().cpu() for key, value in run.detections.items()}
    matches = match_to_ground_truth(result, target) if target is not None else [None] * len(result["boxes"])
    rows = []
    for i, (box, score, label, match) in enumerate(zip(result["boxes"], result["scores"], result["labels"], matches)):
        iou = "—" if match is None else round(match[1], 3)
        rows.append([i + 1, int(label), round(float(score), 3), *(round(float(v), 1) for v in box), iou])

    lines = [f"**{detector}** · {description}",
             f"- 检测到 **{len(rows)}** 个数字（分数阈值 {score_threshold:g}，NMS IoU 阈值 {nms_threshold:g}，"
             f"最多 {max_detections} 个），用时 **{milliseconds:.1f} ms**（CPU，含全部阶段"
             f"{'；' + run.note if run.note else ''}）",
             f"- {spec.summary}"]
    if target is not None:
        truth = "、".join(f"{int(label)} [{', '.join(f'{v:g}' for v in box.tolist())}]"
                         for box, label in zip(target["boxes"], target["labels"]))
        found = {m[0]: (m[1], int(result["labels"][i]) == int(target["labels"][m[0]]))
                 for i, m in enumerate(matches) if m is not None}
        correct = sum(ok for _, ok in found.values())
        lines.append(f"- 真实框（白色虚线）：{truth}")
        lines.append(f"- IoU ≥ 0.5 匹配到 {len(found)}/{len(target['boxes'])} 个真实框，其中数字也对的 {correct} 个；"
                     "表格最后一列是每个匹配上的检测框与其真实框的 IoU")
    shown_proposals = None
    if show_proposals:
        if spec.proposals and run.proposals is not None:
            shown_proposals = run.proposals[:num_proposals].detach().cpu()
            rank = "得分最高" if spec.proposals == "RPN" else "排在最前"
            lines.append(f"- 灰色细框：{spec.proposals} {rank}的 {len(shown_proposals)} 个候选框"
                         f"（共 {len(run.proposals)} 个）")
        else:
            lines.append(f"- {detector} 是单阶段检测器，没有候选框 (proposals)")
    cell_drawing = None
    if show_cells:
        cell_drawing, line = _cell_overlay(run, level, cell)
        lines.append(line)
    return _figure(image, result, shown_proposals, target, cell_drawing), "\n".join(lines), rows


def _cell_overlay(run: Run, level: int, cell: tuple[int, int]):
    """What to draw for the chosen level and pixel position: (drawing dict, Markdown line)."""
    levels = run.levels
    if not levels:
        return None, "- 这个检测器没有可显示的锚框或特征点"
    note = ""
    if level >= len(levels):
        note = f"（只有 {len(levels)} 层，改用第 {len(levels) - 1} 层）"
        level = len(levels) - 1
    chosen = levels[level]
    grid_h, grid_w = chosen.grid
    col, row = min(cell[0] // chosen.stride, grid_w - 1), min(cell[1] // chosen.stride, grid_h - 1)
    centre = (col * chosen.stride, row * chosen.stride)  # anchors and FCOS points sit at (x * s, y * s)
    if isinstance(chosen, AnchorLevel):
        anchors = chosen.anchors_at(row, col).detach().cpu()
        name = f"第 {level} 层（P{level + 3}，" if len(levels) > 1 else "特征图（"
        line = (f"- 青色虚线：{name}stride {chosen.stride}，{grid_h}×{grid_w}）格子 (行 {row}, 列 {col}) "
                f"的全部 {chosen.per_cell} 个锚框 (anchors)，中心 {centre}{note}")
        return {"anchors": anchors, "centre": centre}, line
    index = row * grid_w + col
    points = chosen.points.detach().cpu()
    box = chosen.boxes[index].detach().cpu()
    score, label = float(chosen.scores[index]), int(chosen.labels[index])
    line = (f"- 青色点：第 {level} 层（P{level + 3}，stride {chosen.stride}，{grid_h}×{grid_w}）的全部特征点；"
            f"选中的点 {centre} 预测的框（青色虚线）：数字 {label}，分数 {score:.3f}{note}")
    return {"points": points, "centre": centre, "box": box, "label": label, "score": score}, line


def _figure(image, result, proposals, target, cell_drawing) -> Figure:
    figure, ax = detection_figure(image, result, proposals, target)
    if cell_drawing is not None:
        if "anchors" in cell_drawing:
            draw_boxes(ax, cell_drawing["anchors"], colors="cyan", linestyle="--", linewidth=1.0)
        else:
            ax.scatter(cell_drawing["points"][:, 0], cell_drawing["points"][:, 1], s=3, c="cyan", alpha=0.6)
            draw_boxes(ax, cell_drawing["box"], labels=[cell_drawing["label"]], scores=[cell_drawing["score"]],
                       colors="cyan", linestyle="--", linewidth=1.2, fontsize=8, text_inside=True)
        ax.plot(*cell_drawing["centre"], marker="+", color="cyan", markersize=12, markeredgewidth=2)
        ax.set_xlim(0, CANVAS)
        ax.set_ylim(CANVAS, 0)  # anchors may stick out of the image: keep the image's frame
    figure.tight_layout(pad=0.2)
    return figure


# ----------------------------------------------------------------------------------------------------
# The page


def _control_updates(detector):
    """Visibility and labels of the proposal / anchor controls for one detector."""
    spec = DETECTORS.get(detector) if isinstance(detector, str) else None
    proposals = spec.proposals if spec is not None else ""
    cells = spec.cells if spec is not None else ""
    proposal_label = (f"显示 {proposals} 候选框 (show {'RPN ' if proposals == 'RPN' else ''}proposals, top N)"
                      if proposals else "显示候选框 (show proposals)")
    cell_label = {"anchors": "显示所选格子的全部锚框 (show anchors)",
                  "points": "显示特征点与所选点的预测框 (show FCOS points)"}.get(cells, "显示锚框 (show anchors)")
    return (gr.update(visible=bool(proposals), label=proposal_label), gr.update(visible=bool(proposals)),
            gr.update(visible=bool(cells), label=cell_label), gr.update(visible=bool(cells)),
            gr.update(visible=bool(cells)), gr.update(visible=bool(cells)))


def build_demo() -> gr.Blocks:
    shipped = shipped_detectors()
    names = shipped or list(DETECTORS)  # with nothing shipped the handler explains what is missing
    default = DEFAULT_DETECTOR if DEFAULT_DETECTOR in names else names[0]
    proposal_box, proposal_count, cell_box, level_slider, x_slider, y_slider = _control_updates(default)
    with gr.Blocks(title="Lecture 14 · 训练好的检测器", analytics_enabled=False) as demo:
        gr.Markdown(f"## Lecture 14 · {' / '.join(names)}\n"
                    "在数字画布上从零训练的检测器。手写几个数字（黑字白底或白字黑底都行），或选一张测试画布，"
                    "或上传图片（会转成 RGB 并缩放到 128×128）。三个阈值直接传给检测器内部的推理函数。")
        with gr.Row():
            with gr.Column(scale=1):
                source = gr.Radio([("手绘 (sketch)", "sketch"), ("测试画布", "canvas"), ("上传图片", "upload")],
                                  value="canvas", label="图片来源", elem_id="det14-source")
                sketch = checked_sketchpad(type="numpy", image_mode="RGB", canvas_size=(384, 384), fixed_canvas=True,
                                           brush=gr.Brush(default_size=16, colors=["#000000"], color_mode="fixed"),
                                           label="手写数字（写大一些：每个数字占画板高度的 1/6 到 1/2）",
                                           elem_id="det14-sketch", max_pixels=MAX_SIDE * MAX_SIDE)
                index = gr.Slider(0, NUM_TEST_CANVASES - 1, value=0, step=1, label="测试画布编号",
                                  elem_id="det14-index")
                upload = image_file(label="上传图片（PNG / JPEG）", type="filepath", file_count="single",
                                    elem_id="det14-upload")
            with gr.Column(scale=1):
                detector = gr.Radio(names, value=default, label="检测器 (detector)", elem_id="det14-model")
                score = gr.Slider(0.0, 1.0, value=0.3, step=0.01, label="分数阈值 (score threshold)",
                                  elem_id="det14-score")
                nms_iou = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="NMS IoU 阈值 (NMS IoU threshold)",
                                    elem_id="det14-nms")
                max_det = gr.Slider(1, MAX_DETECTIONS, value=MAX_DETECTIONS, step=1,
                                    label="最多检测数 (max detections)", elem_id="det14-max")
                show_proposals = gr.Checkbox(value=False, label=proposal_box["label"],
                                             visible=proposal_box["visible"], elem_id="det14-show-proposals")
                num_proposals = gr.Slider(1, MAX_SHOWN_PROPOSALS, value=20, step=1, label="候选框数 N",
                                          visible=proposal_count["visible"], elem_id="det14-proposals")
                show_cells = gr.Checkbox(value=False, label=cell_box["label"], visible=cell_box["visible"],
                                         elem_id="det14-show-cells")
                level = gr.Slider(0, 2, value=0, step=1, label="特征层 (level)：0 = stride 8，1 = 16，2 = 32",
                                  visible=level_slider["visible"], elem_id="det14-level")
                cell_x = gr.Slider(0, CANVAS - 1, value=64, step=1, label="所选格子：x（像素）",
                                   visible=x_slider["visible"], elem_id="det14-x")
                cell_y = gr.Slider(0, CANVAS - 1, value=64, step=1, label="所选格子：y（像素）",
                                   visible=y_slider["visible"], elem_id="det14-y")
                button = gr.Button("检测 (detect)", variant="primary", elem_id="det14-run")
        with gr.Row():
            with gr.Column(scale=1):
                plot = gr.Plot(label="检测结果", elem_id="det14-plot")
            with gr.Column(scale=1):
                info = gr.Markdown(elem_id="det14-info")
                table = gr.Dataframe(headers=TABLE_HEADERS, label="检测列表", interactive=False,
                                     elem_id="det14-table")
        inputs = [source, sketch, index, upload, detector, score, nms_iou, max_det, show_proposals, num_proposals,
                  show_cells, level, cell_x, cell_y]
        outputs = [plot, info, table]
        # One API endpoint per handler; every other event runs the same handler and shares its limit. A detector
        # run is 0.1-0.5 s on a CPU: two at once (two cores); more would only split the same cores.
        events = dict(concurrency_id="detect", concurrency_limit=2, api_visibility="private")
        button.click(run_detector, inputs, outputs, api_name="detect", concurrency_id="detect", concurrency_limit=2)
        for slider in (index, score, nms_iou, max_det, num_proposals, level, cell_x, cell_y):
            slider.release(run_detector, inputs, outputs, **events)
        for toggle in (show_proposals, show_cells, source):
            toggle.input(run_detector, inputs, outputs, **events)
        detector.change(_control_updates, detector, [show_proposals, num_proposals, show_cells, level, cell_x, cell_y],
                        api_name="control_updates", concurrency_limit=4).then(run_detector, inputs, outputs, **events)
    return demo
