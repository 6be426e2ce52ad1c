"""Lecture 14 demo: RoI Pool vs RoI Align on the same box and the same feature map.

One handler, :func:`roi_playground`, returns (matplotlib Figure or None, Markdown message). The box is
xyxy in image pixels on a 128 x 128 DigitCanvases image; the feature map is that image's "ink" averaged
over stride x stride blocks (``figures_lecture14.canvas_feature_map``), for spatial_scale 1/4, 1/8 or 1/16.
The figure shows the box, RoI Pool's snapped cells and bins, RoI Align's sample points, and both outputs
with their values, computed by ``roi_pool`` / ``roi_align``. Bad input never raises: the handler answers
with a message.
"""

from __future__ import annotations

import logging
import math

import gradio as gr
from matplotlib.figure import Figure

from lectures_code.demos.common import BadInput, int_in_range
from lectures_code.figures.lecture13 import digit_canvas
from lectures_code.figures.lecture14 import ROI_BOX, ROI_CANVAS, draw_roi_comparison
from lectures_code.lecture14.roi_teaching import roi_align_sample_points, roi_pool_bins

logger = logging.getLogger(__name__)

CANVAS_SIZE = 128  # DigitCanvases images are 128 x 128: the box sliders run over 0..128
SCALES = {"1/4": 4, "1/8": 8, "1/16": 16}  # spatial_scale -> stride
SAMPLING_RATIOS = (-1, 1, 2, 4)
OUTPUT_SIZES = (2, 7)


def _failed(err: Exception) -> tuple[None, str]:
    if isinstance(err, BadInput):
        return None, f"**输入有误：** {err}"
    logger.exception("lecture14 demo handler failed")
    return None, f"**出错了：** {type(err).__name__}（请换一组输入再试）"


def _coordinate(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{name} 必须是数字（收到 {value!r}）") from None
    if not math.isfinite(number):
        raise BadInput(f"{name} 必须是有限的数（收到 {value}）")
    if not 0 <= number <= CANVAS_SIZE:
        raise BadInput(f"{name} 必须在 0 到 {CANVAS_SIZE} 之间（收到 {number:g}）")
    return number


def _stride(scale) -> int:
    """"1/8" (or the number 0.125) -> 8."""
    if isinstance(scale, str) and scale.strip() in SCALES:
        return SCALES[scale.strip()]
    try:
        number = float(scale)
    except (TypeError, ValueError):
        number = float("nan")
    for stride in SCALES.values():
        if number == 1 / stride:
            return stride
    raise BadInput(f"spatial_scale 只能是 {' / '.join(SCALES)}（收到 {scale!r}）")


def roi_playground(x1, y1, x2, y2, scale, output_size, sampling_ratio, aligned):
    """Box (xyxy pixels), spatial scale, output size, sampling ratio, aligned -> (Figure, Markdown)."""
    try:
        box = [_coordinate(v, f"框的 {name}") for v, name in zip((x1, y1, x2, y2), ("x1", "y1", "x2", "y2"))]
        if box[2] <= box[0] or box[3] <= box[1]:
            shown = ", ".join(f"{v:g}" for v in box)
            raise BadInput(f"需要 x1 < x2 且 y1 < y2（xyxy：左上角、右下角），收到 [{shown}]")
        stride = _stride(scale)
        output_size = int_in_range(output_size, "输出大小", *OUTPUT_SIZES)
        sampling_ratio = int_in_range(sampling_ratio, "sampling_ratio", -1, max(SAMPLING_RATIOS))
        if sampling_ratio not in SAMPLING_RATIOS:
            raise BadInput(f"sampling_ratio 只能是 {', '.join(map(str, SAMPLING_RATIOS))}（收到 {sampling_ratio}）")
        if not isinstance(aligned, bool):
            raise BadInput(f"aligned 必须是 True 或 False（收到 {aligned!r}）")

        image, _ = digit_canvas(ROI_CANVAS)
        fig = Figure(figsize=(12, 7.6), layout="constrained")
        drawn = draw_roi_comparison(fig, image, box, stride, output_size, sampling_ratio, aligned)
        pool, align = drawn["pool"], drawn["align"]
        _, h, w = drawn["feature"].shape
        projected = [v / stride for v in box]
        (sx1, sy1, sx2, sy2), _, _ = roi_pool_bins(projected, output_size, h, w)
        _, ys, xs = roi_align_sample_points(projected, output_size, sampling_ratio, aligned)
        difference = float((pool - align).abs().max())
        message = "\n".join([
            f"**max |RoI Pool − RoI Align| = {difference:.4f}**（{output_size}×{output_size} 输出，逐格比较）",
            f"- 特征图 {h}×{w}（stride {stride}），框 × 1/{stride} = [{', '.join(f'{v:g}' for v in projected)}]",
            f"- RoI Pool 输出：四边取整到列 {sx1}..{sx2}、行 {sy1}..{sy2}，每个 bin 取最大值；"
            f"均值 {float(pool.mean()):.4f}（`roi_pool`）",
            f"- RoI Align 输出：不取整，每个 bin {len(ys[0])}×{len(xs[0])} 个双线性采样点取平均；"
            f"均值 {float(align.mean()):.4f}（`roi_align`，sampling_ratio={sampling_ratio}，aligned={aligned}）",
        ])
        return fig, message
    except Exception as err:  # no traceback may reach the reader
        return _failed(err)


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="Lecture 14 · RoI Pool vs RoI Align", analytics_enabled=False) as demo:
        gr.Markdown("## Lecture 14 · RoI Pool 与 RoI Align\n"
                    "框是图像上的 xyxy 像素坐标；特征图是数字画布的“墨迹”按 stride 平均"
                    "（stride = 1 / spatial_scale）。")
        with gr.Row():
            with gr.Column():
                sliders = [gr.Slider(0, CANVAS_SIZE, value=value, step=1, label=name, elem_id=f"roi-{name}")
                           for name, value in zip(("x1", "y1", "x2", "y2"), ROI_BOX)]
                scale = gr.Radio(list(SCALES), value="1/8", label="spatial_scale", elem_id="roi-scale")
                size = gr.Slider(*OUTPUT_SIZES, value=2, step=1, label="输出大小 (output_size)", elem_id="roi-size")
                sampling = gr.Radio(list(SAMPLING_RATIOS), value=2, label="sampling_ratio（-1 = 自适应）",
                                    elem_id="roi-sampling")
                aligned = gr.Checkbox(value=True, label="aligned（框平移 −0.5 格）", elem_id="roi-aligned")
                info = gr.Markdown(elem_id="roi-info")
            with gr.Column(scale=3):
                plot = gr.Plot(label="RoI Pool vs RoI Align", elem_id="roi-plot")
        inputs = [*sliders, scale, size, sampling, aligned]
        # One API endpoint; the controls' events run the same handler (well under a second) and share its limit.
        demo.load(roi_playground, inputs, [plot, info], api_name="roi_playground", concurrency_id="roi",
                  concurrency_limit=2)
        for control in inputs:
            control.change(roi_playground, inputs, [plot, info], api_visibility="private", concurrency_id="roi",
                           concurrency_limit=2)
    return demo

