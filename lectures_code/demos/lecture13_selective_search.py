"""Lecture 13 demo: selective-search region proposals on a bundled photo, a digit canvas or an upload.

The handler returns (matplotlib Figure or None, Markdown message). Uploads are checked before they are
decoded (file size, image header, pixel count), converted to RGB (grey, palette and RGBA images too) and
downscaled to at most MAX_SIDE pixels on the long side, so one request stays within a few seconds; the
uploaded file is deleted once read (``read_upload``), the two detector demos read their uploads the same way.
Proposals are xyxy boxes in pixels of the (downscaled) image.
"""

from __future__ import annotations

import logging
import os
import time

import gradio as gr
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from lectures_code.demos.common import MAX_UPLOAD_BYTES, UPLOADS, BadInput, image_file, int_in_range, open_image_header
from lectures_code.detection.selective_search import selective_search
from lectures_code.figures.lecture13 import digit_canvas
from lectures_code.plotting import PALETTE, draw_boxes, show_image, to_rgb_uint8

logger = logging.getLogger(__name__)

MAX_SIDE = 500  # long side after downscaling: "fast" takes about 1-3 s at this size on one CPU core
MIN_SIDE = 8
MAX_FILE_BYTES = MAX_UPLOAD_BYTES
MAX_PIXELS = 40_000_000  # refused from the header alone, before any pixel is decoded
MAX_PROPOSALS = 2000
STRATEGIES = ("single", "fast")  # "quality" runs 80 hierarchies: minutes, not seconds


def _skimage(name: str):
    def load() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()

    return load


BUNDLED = {
    "猫 (chelsea)": _skimage("chelsea"),
    "宇航员 (astronaut)": _skimage("astronaut"),
    "咖啡 (coffee)": _skimage("coffee"),
    "数字画布 (digit canvas)": lambda: to_rgb_uint8(digit_canvas(3)[0]),
}


def _upload_path(upload) -> str | None:
    """The path of the one uploaded file, None when nothing was uploaded, or BadInput."""
    if upload is None or (isinstance(upload, str) and upload == ""):
        return None
    if isinstance(upload, (list, tuple)):
        if len(upload) != 1:
            raise BadInput("请只上传一个文件")
        upload = upload[0]
    path = upload if isinstance(upload, (str, os.PathLike)) else getattr(upload, "path", None) or getattr(
        upload, "name", None)
    if not isinstance(path, (str, os.PathLike)):
        raise BadInput(f"无法识别上传的文件（收到 {type(upload).__name__}）")
    return os.fspath(path)


def read_upload(upload) -> tuple[Image.Image, tuple[int, int]] | None:
    """The uploaded image as :func:`load_upload` gives it, None when nothing was uploaded, or BadInput.

    A file in Gradio's upload folder is decoded once and then deleted; the result is kept for the next
    events with the same upload (``common.UPLOADS``).
    """
    path = _upload_path(upload)
    return None if path is None else UPLOADS.read(path, load_upload)


def load_upload(path: str) -> tuple[Image.Image, tuple[int, int]]:
    """Open an uploaded image safely: (RGB PIL image, long side at most MAX_SIDE, its (width, height) in the
    file), or BadInput. Size, format and pixel count are checked from the file and its header before any
    pixel is decoded; a JPEG is decoded at a reduced size directly (1/2, 1/4 or 1/8, never below MAX_SIDE).
    """
    image = open_image_header(path, MAX_FILE_BYTES, MAX_PIXELS)
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise BadInput(f"图片太小（{width}×{height}），每边至少 {MIN_SIDE} 像素")
    try:
        image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a reduced size directly
        image.load()
        return downscale(_to_rgb(image)), (width, height)
    except Exception:
        raise BadInput("图片文件已损坏或不完整，无法解码") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # transparent pixels become white, as a viewer would show them
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    elif image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit / float grey: stretch to 0..255 instead of clipping everything to white
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
        image = Image.fromarray(scaled.round().astype(np.uint8))
    return image.convert("RGB")


def downscale(image: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    """Shrink so that the long side is at most ``max_side`` (aspect ratio kept); never enlarges."""
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.LANCZOS)
    return image


def propose(choice, upload, strategy, count):
    """(bundled image name, uploaded file or None, strategy, proposals to show) -> (Figure, Markdown)."""
    try:
        if not isinstance(strategy, str) or strategy not in STRATEGIES:
            raise BadInput(f"未知的策略 {strategy!r}，可选：{', '.join(STRATEGIES)}")
        count = int_in_range(count, "显示的候选框数", 1, MAX_PROPOSALS)
        uploaded = read_upload(upload)
        if uploaded is not None:
            (image, original), source = uploaded, "上传的图片"
        else:
            if not isinstance(choice, str) or choice not in BUNDLED:
                raise BadInput(f"未知的图片 {choice!r}，可选：{', '.join(BUNDLED)}")
            image, source = Image.fromarray(BUNDLED[choice]()), choice
            original = image.size
        image = downscale(image)
        rgb = np.asarray(image, dtype=np.uint8)  # [H, W, 3]

        start = time.perf_counter()
        proposals = selective_search(rgb, strategy=strategy, max_proposals=MAX_PROPOSALS)  # [N, 4] xyxy
        seconds = time.perf_counter() - start
        shown = proposals[:count]

        fig = Figure(figsize=(7, 7 * rgb.shape[0] / rgb.shape[1] + 0.6), layout="constrained")
        ax = fig.subplots()
        show_image(ax, rgb)
        draw_boxes(ax, shown, colors=[PALETTE[i % len(PALETTE)] for i in range(len(shown))],
                   linewidth=1.5 if len(shown) <= 50 else 0.7)
        ax.set_title(f"{len(proposals)} 个候选框（显示前 {len(shown)} 个），用时 {seconds:.2f} s", fontsize=10)
        resized = f"（由 {original[0]}×{original[1]} 缩小）" if image.size != original else ""
        message = "\n".join([
            f"**{len(proposals)} 个候选框，用时 {seconds:.2f} 秒**（策略 “{strategy}”）",
            f"- 图片：{source}，{rgb.shape[1]}×{rgb.shape[0]} 像素{resized}",
            f"- 显示排名最前的 {len(shown)} 个（大区域通常排在前面）；最多保留 {MAX_PROPOSALS} 个",
        ])
        return fig, message
    except BadInput as err:
        return None, f"**输入有误：** {err}"
    except Exception as err:  # no traceback may reach the reader
        logger.exception("selective search demo failed")
        return None, f"**出错了：** {type(err).__name__}（请换一张图片再试）"


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="Lecture 13 · 选择性搜索", analytics_enabled=False) as demo:
        gr.Markdown("## Lecture 13 · 选择性搜索 (selective search) 候选框\n"
                    f"选一张图片或上传自己的（会缩小到长边 ≤ {MAX_SIDE} 像素），选择策略和显示的候选框数。")
        with gr.Row():
            with gr.Column():
                choice = gr.Radio(list(BUNDLED), value="猫 (chelsea)", label="内置图片", elem_id="ss-image-choice")
                upload = image_file(label="或上传图片（优先使用上传的）", type="filepath", file_count="single",
                                    elem_id="ss-upload")
                strategy = gr.Radio(list(STRATEGIES), value="fast",
                                    label="策略 (single: 1 个层次；fast: 8 个层次)", elem_id="ss-strategy")
                count = gr.Slider(1, MAX_PROPOSALS, value=50, step=1, label="显示的候选框数", elem_id="ss-count")
                button = gr.Button("生成候选框 (run)", variant="primary", elem_id="ss-run")
                info = gr.Markdown(elem_id="ss-info")
            with gr.Column(scale=2):
                plot = gr.Plot(label="候选框", elem_id="ss-plot")
        inputs = [choice, upload, strategy, count]
        # 1-3 s of CPU each: two at once, so one slow upload leaves a slot for everyone else; more would only
        # share the same cores. The page load runs the same handler, so it shares the limit.
        button.click(propose, inputs, [plot, info], api_name="propose", concurrency_id="propose",
                     concurrency_limit=2)
        demo.load(propose, inputs, [plot, info], api_visibility="private", concurrency_id="propose",
                  concurrency_limit=2)
    return demo
