"""Lecture 13 demo: the two trained detectors (single-object and R-CNN) on a digit canvas or an upload.

One handler, :func:`run_detector`, returns (matplotlib Figure or None, Markdown message, table rows):
the image with the predicted boxes, "digit score" tags and optionally the top selective-search
proposals, a summary, and one row per detection. The shipped checkpoints are loaded once
(hash-checked) and kept. Uploaded images are converted to RGB and resized to 128x128, the size the
detectors were trained on. Bad input never raises: the handler answers with a message.
"""

from __future__ import annotations

import logging
import math
import time
from functools import lru_cache

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure

from lectures_code import registry
from lectures_code.data.digit_canvases import DigitCanvases
from lectures_code.demos.common import BadInput, image_file, int_in_range
from lectures_code.demos.lecture13_selective_search import read_upload
from lectures_code.detection.rcnn import proposals_for
from lectures_code.plotting.boxes import detection_figure

logger = logging.getLogger(__name__)

CANVAS = 128
NUM_TEST_CANVASES = 200  # the slider picks one of the first 200 test canvases
DETECTORS = {entry.title: entry for entry in registry.MODELS.values() if entry.lecture == 13}  # name -> entry
MAX_SHOWN_PROPOSALS = 300
TABLE_HEADERS = ["#", "数字 (digit)", "分数 (score)", "x1", "y1", "x2", "y2"]


@lru_cache(maxsize=len(DETECTORS))
def _model(name: str):
    return registry.load_pretrained(name)  # hash-checked once, then kept


@lru_cache(maxsize=1)
def _test_canvases() -> DigitCanvases:
    return DigitCanvases("test", size=NUM_TEST_CANVASES)


def _number_in_range(value, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{name} 必须是数字（收到 {value!r}）") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise BadInput(f"{name} 必须在 {low:g} 到 {high:g} 之间（收到 {value}）")
    return number


def load_image(source: str, index, upload) -> tuple[torch.Tensor, str, dict | None, int | None]:
    """-> (float image [3, 128, 128] in [0, 1], description, ground truth or None, test index or None)."""
    if source == "upload":
        uploaded = read_upload(upload)  # checked before decoding; the file is removed once read
        if uploaded is None:
            raise BadInput("请先上传一张图片（PNG 或 JPEG），或改选“测试画布”")
        image, (width, height) = uploaded
        image = image.resize((CANVAS, CANVAS), resample=3)  # bicubic; the detectors only know 128x128
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1).contiguous()
        return pixels, f"上传的图片（{width}×{height}，缩放到 {CANVAS}×{CANVAS}）", None, None
    if source != "canvas":
        raise BadInput(f"未知的图片来源 {source!r}")
    index = int_in_range(index, "测试画布编号", 0, NUM_TEST_CANVASES - 1)
    image, target = _test_canvases()[index]
    return image, f"测试画布 #{index}（{len(target['labels'])} 个数字）", target, index


def _figure(image, result, proposals, target) -> Figure:
    figure, _ = detection_figure(image, result, proposals, target)
    figure.tight_layout(pad=0.2)
    return figure


def run_detector(source, index, upload, detector, score_threshold, nms_threshold, show_proposals):
    """(image source "canvas"/"upload", canvas index, uploaded file, detector name, score threshold,
    NMS IoU threshold, how many proposals to draw) -> (Figure or None, Markdown, table rows)."""
    try:
        if not isinstance(detector, str) or detector not in DETECTORS:
            raise BadInput(f"未知的检测器 {detector!r}，可选：{', '.join(DETECTORS)}")
        score_threshold = _number_in_range(score_threshold, "分数阈值", 0.0, 1.0)
        nms_threshold = _number_in_range(nms_threshold, "NMS IoU 阈值", 0.0, 1.0)
        show_proposals = int_in_range(show_proposals, "显示的候选框数", 0, MAX_SHOWN_PROPOSALS)
        image, description, target, test_index = load_image(source, index, upload)
    except BadInput as err:
        return None, f"**输入有误：** {err}", []
    try:
        return _run(image, description, target, test_index, detector, score_threshold, nms_threshold,
                    show_proposals)
    except FileNotFoundError as err:
        return None, f"**缺少模型文件：** {err}", []
    except Exception as err:  # a reader sees a message, never a traceback
        logger.exception("lecture13 detector demo failed")
        return None, f"**出错了：** {type(err).__name__}（请换一组输入再试）", []


def _run(image, description, target, test_index, detector, score_threshold, nms_threshold, show_proposals):
    entry = DETECTORS[detector]
    model = _model(entry.name)
    two_stage = entry.proposals == "Selective Search"
    start = time.perf_counter()
    proposals = None
    if two_stage or show_proposals > 0:
        # test canvases read their proposals from the cache; an upload runs selective search now
        proposals = proposals_for(image, "test", test_index) if test_index is not None else proposals_for(image)
    search_seconds = time.perf_counter() - start
    start = time.perf_counter()
    if two_stage:  # the inference API with the reader's thresholds
        found = model.predict(image[None], [proposals], score_threshold=score_threshold,
                              nms_threshold=nms_threshold)[0]
    else:  # one box per image: the score threshold only decides whether it is shown
        found = model.predict(image[None])[0]
        found = {key: value[found["scores"] >= score_threshold] for key, value in found.items()}
    result = {key: found[key] for key in ("boxes", "scores", "labels")}
    model_seconds = time.perf_counter() - start
    result["boxes"] = result["boxes"].clamp(0, CANVAS)
    shown = proposals[:show_proposals] if proposals is not None and show_proposals > 0 else None

    rows = [[i + 1, int(label), round(float(score), 3), *(round(float(v), 1) for v in box)]
            for i, (box, score, label) in enumerate(zip(result["boxes"], result["scores"], result["labels"]))]
    lines = [f"**{detector}** · {description}",
             f"- 检测到 **{len(rows)}** 个数字（分数 ≥ {score_threshold:g}）；白色虚线是真实框" if target is not None
             else f"- 检测到 **{len(rows)}** 个数字（分数 ≥ {score_threshold:g}）"]
    if two_stage:
        lines.append(f"- {len(proposals)} 个 selective-search 候选框（{search_seconds * 1000:.0f} ms）→ "
                     f"裁剪缩放到 {model.crop_size}×{model.crop_size} → CNN 打分 + 回归 → "
                     f"按类 NMS（IoU > {nms_threshold:g} 的被抑制），"
                     f"{model_seconds * 1000:.0f} ms")
    else:
        lines.append("- 单目标检测器总是只输出一个框（分类 + 框回归），所以 NMS 阈值对它不起作用；"
                     "图里有多个数字时它只能找到其中一个")
    if shown is not None:
        lines.append(f"- 灰色细框：排名最前的 {len(shown)} 个候选框")
    return _figure(image, result, shown, target), "\n".join(lines), rows


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="Lecture 13 · 训练好的检测器", analytics_enabled=False) as demo:
        gr.Markdown("## Lecture 13 · 单目标检测器与 R-CNN\n"
                    "两个在数字画布上从零训练的检测器。选一张测试画布或上传图片（会转成 RGB 并缩放到 128×128），"
                    "调整分数阈值与 NMS 阈值。")
        with gr.Row():
            with gr.Column(scale=1):
                source = gr.Radio([("测试画布", "canvas"), ("上传图片", "upload")], value="canvas",
                                  label="图片来源", elem_id="det-source")
                index = gr.Slider(0, NUM_TEST_CANVASES - 1, value=0, step=1, label="测试画布编号",
                                  elem_id="det-index")
                upload = image_file(label="上传图片（PNG / JPEG）", type="filepath", file_count="single",
                                    elem_id="det-upload")
                detector = gr.Radio(list(DETECTORS), value="R-CNN", label="检测器", elem_id="det-model")
                score = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label="分数阈值 (score threshold)",
                                  elem_id="det-score")
                nms_iou = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="NMS IoU 阈值", elem_id="det-nms")
                proposals = gr.Slider(0, MAX_SHOWN_PROPOSALS, value=0, step=1, label="显示的候选框数",
                                      elem_id="det-proposals")
                button = gr.Button("检测 (detect)", variant="primary", elem_id="det-run")
            with gr.Column(scale=2):
                info = gr.Markdown(elem_id="det-info")
                plot = gr.Plot(label="检测结果", elem_id="det-plot")
                table = gr.Dataframe(headers=TABLE_HEADERS, label="检测列表", interactive=False, elem_id="det-table")
        inputs = [source, index, upload, detector, score, nms_iou, proposals]
        # A canvas takes ~0.1 s, an upload's Selective Search ~0.1 s more: two at once, all events sharing it.
        events = dict(concurrency_id="detect", concurrency_limit=2)
        button.click(run_detector, inputs, [plot, info, table], api_name="detect", **events)
        for slider in (index, score, nms_iou, proposals):
            slider.release(run_detector, inputs, [plot, info, table], api_visibility="private", **events)
        detector.change(run_detector, inputs, [plot, info, table], api_visibility="private", **events)
    return demo
