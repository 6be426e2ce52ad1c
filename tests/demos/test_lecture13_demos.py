"""Lecture 13 demo handlers: right numbers for good input, a message (never an exception) for bad input.

Oracles: torchvision.ops (box_iou, nms) and pycocotools' COCOeval (the AP shown in the mAP tab).
"""

from __future__ import annotations

import io
import math
import re
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from lectures_code.demos import lecture13_boxes as boxes_demo
from lectures_code.demos import lecture13_selective_search as ss_demo
from lectures_code.detection.selective_search import selective_search
from lectures_code.figures.lecture13 import canvas_ground_truth, synthetic_detections
from lectures_code.ops.boxes import box_iou
from lectures_code.ops.nms import nms

tv_ops = pytest.importorskip("torchvision.ops")
pycocotools_coco = pytest.importorskip("pycocotools.coco")
pycocotools_eval = pytest.importorskip("pycocotools.cocoeval")

BAD = "**输入有误：**"


def _collect_elem_ids(demo) -> set[str]:
    return {block.elem_id for block in demo.blocks.values() if getattr(block, "elem_id", None)}


def test_demos_build_with_their_elem_ids():
    ids = _collect_elem_ids(boxes_demo.build_demo())
    expected = {f"iou-{box}-{axis}" for box in "ab" for axis in ("x1", "y1", "x2", "y2")}
    expected |= {"iou-value", "iou-plot", "nms-seed", "nms-threshold", "nms-step", "nms-plot", "nms-info",
                 "map-seed", "map-iou", "map-score-threshold", "map-jitter", "map-plot", "map-value"}
    assert expected <= ids
    assert {"ss-image-choice", "ss-upload", "ss-strategy", "ss-count", "ss-run", "ss-plot", "ss-info"} <= \
        _collect_elem_ids(ss_demo.build_demo())


# ----------------------------------------------------------------------------------------------
# IoU tab


def test_iou_shown_equals_box_iou_on_random_boxes():
    rng = np.random.default_rng(0)
    for _ in range(40):
        corners = rng.integers(0, 201, size=(2, 2, 2))  # box, corner pair, (x or y)
        a = np.concatenate([corners[0].min(0), corners[0].max(0)])  # x1, y1, x2, y2
        b = np.concatenate([corners[1].min(0), corners[1].max(0)])
        if (a[2:] <= a[:2]).any() or (b[2:] <= b[:2]).any():
            continue
        figure, message = boxes_demo.iou_playground(*a.tolist(), *b.tolist())
        assert isinstance(figure, Figure), message
        shown = float(re.search(r"IoU = ([0-9.]+)", message).group(1))
        box_a, box_b = torch.from_numpy(a[None]).double(), torch.from_numpy(b[None]).double()
        expected = float(tv_ops.box_iou(box_a, box_b)[0, 0])
        assert shown == pytest.approx(expected, abs=5e-5)
        ours = float(box_iou(box_a, box_b)[0, 0])
        assert f"{ours:.4f}" in message


def test_iou_message_shows_intersection_and_union():
    _, message = boxes_demo.iou_playground(0, 0, 10, 10, 5, 0, 15, 10)
    assert "IoU = 0.3333" in message and "= 50" in message and "100 + 100 − 50 = 150" in message
    _, disjoint = boxes_demo.iou_playground(0, 0, 10, 10, 20, 20, 30, 30)
    assert "IoU = 0.0000" in disjoint


@pytest.mark.parametrize("args, message", [
    ((50, 0, 10, 10, 0, 0, 10, 10), "x1 < x2"),  # x2 < x1
    ((0, 0, 10, 10, 0, 30, 10, 20), "y1 < y2"),  # y2 < y1
    ((0, 0, 0, 10, 0, 0, 10, 10), "x1 < x2"),  # zero width
    ((math.nan, 0, 10, 10, 0, 0, 10, 10), "有限"),
    ((0, 0, math.inf, 10, 0, 0, 10, 10), "有限"),
    ((0, 0, 10, 10, None, 0, 10, 10), "必须是数字"),
    ((0, 0, 10, 10, "abc", 0, 10, 10), "必须是数字"),
    ((0, 0, 10, 250, 0, 0, 10, 10), "0 到 200"),
    ((-5, 0, 10, 10, 0, 0, 10, 10), "0 到 200"),
])
def test_iou_bad_input_gives_a_message(args, message):
    figure, text = boxes_demo.iou_playground(*args)
    assert figure is None and text.startswith(BAD) and message in text


# ----------------------------------------------------------------------------------------------
# NMS tab


@pytest.mark.parametrize("seed", range(8))
def test_nms_trace_keeps_what_nms_keeps(seed):
    _, boxes, scores = boxes_demo.nms_boxes(seed)
    for threshold in (0.0, 0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        steps = boxes_demo.nms_trace(boxes, scores, threshold)
        kept = [s["picked"] for s in steps]
        assert kept == nms(boxes, scores, threshold).tolist() == tv_ops.nms(boxes, scores, threshold).tolist()
        # every box is picked or suppressed exactly once
        handled = kept + [j for s in steps for j in s["suppressed"]]
        assert sorted(handled) == list(range(len(boxes)))
        for s in steps:
            assert all(v > threshold for v in s["ious"])


def test_nms_trace_on_ties_and_exact_threshold():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]], dtype=torch.float64)
    scores = torch.tensor([0.5, 0.5, 0.9, 0.1], dtype=torch.float64)
    for threshold in (0.0, 1 / 3, 0.5, 1.0):  # IoU of box 0 and box 2 is exactly 1/3
        kept = [s["picked"] for s in boxes_demo.nms_trace(boxes, scores, threshold)]
        assert kept == tv_ops.nms(boxes, scores, threshold).tolist()


@pytest.mark.parametrize("seed, threshold", [(0, 0.7), (3, 0.5), (4, 0.8), (11, 0.0), (7, 1.0)])
def test_nms_final_step_equals_nms(seed, threshold):
    _, boxes, scores = boxes_demo.nms_boxes(seed)
    expected = nms(boxes, scores, threshold).tolist()
    figure, message = boxes_demo.nms_playground(seed, threshold, boxes_demo.NMS_MAX_STEPS)
    assert isinstance(figure, Figure), message
    shown = re.search(r"最终保留：(\[[0-9, ]*\])", message).group(1)
    assert shown == str(expected)
    assert f"第 {len(expected)} / {len(expected)} 步" in message


def test_nms_intermediate_steps():
    _, boxes, scores = boxes_demo.nms_boxes(3)
    expected = nms(boxes, scores, 0.5).tolist()
    _, start = boxes_demo.nms_playground(3, 0.5, 0)
    assert "已保留：[]" in start and "最终保留" not in start
    for step in range(1, len(expected)):
        figure, message = boxes_demo.nms_playground(3, 0.5, step)
        assert figure is not None
        assert f"已保留：{expected[:step]}" in message
        assert f"分数最高的 #{expected[step - 1]}" in message


@pytest.mark.parametrize("args, message", [
    ((0, -0.1, 1), "IoU 阈值"),
    ((0, 1.5, 1), "IoU 阈值"),
    ((0, math.nan, 1), "IoU 阈值"),
    ((0, "x", 1), "IoU 阈值"),
    ((0, 0.5, -1), "步数"),
    ((0, 0.5, 2.5), "步数"),
    ((0, 0.5, 999), "步数"),
    ((-1, 0.5, 1), "随机种子"),
    ((None, 0.5, 1), "随机种子"),
])
def test_nms_bad_input_gives_a_message(args, message):
    figure, text = boxes_demo.nms_playground(*args)
    assert figure is None and text.startswith(BAD) and message in text


# ----------------------------------------------------------------------------------------------
# mAP tab


@pytest.mark.parametrize("seed, iou, score, jitter", [(0, 0.5, 0.0, 0.15), (1, 0.75, 0.3, 0.2), (2, 0.95, 0.0, 0.05),
                                                      (5, 0.6, 0.5, 0.4)])
def test_map_value_equals_pycocotools(seed, iou, score, jitter, pycocotools_evaluate):
    figure, message = boxes_demo.map_playground(seed, iou, score, jitter)
    assert isinstance(figure, Figure), message
    shown = float(re.search(r"AP@[0-9.]+ = ([0-9.]+)", message).group(1))
    gt = canvas_ground_truth(boxes_demo.MAP_IMAGES, single_class=True)
    detections = synthetic_detections(gt, seed=seed, jitter=jitter, score_threshold=score)
    t = int(np.argmin(np.abs(np.linspace(0.5, 0.95, 10) - iou)))
    expected = pycocotools_evaluate(gt, detections).eval["precision"][t, :, 0, 0, -1].mean()
    assert shown == pytest.approx(expected, abs=5e-4)


def test_map_score_threshold_above_every_score_gives_zero_ap():
    figure, message = boxes_demo.map_playground(0, 0.5, 1.0, 0.1)
    assert figure is not None and "AP@0.50 = 0.000" in message and "0 个检测" in message


@pytest.mark.parametrize("args, message", [
    ((0, 0.3, 0.0, 0.1), "IoU 阈值"),
    ((0, 0.72, 0.0, 0.1), "0.50, 0.55"),
    ((0, math.nan, 0.0, 0.1), "IoU 阈值"),
    ((0, 0.5, 1.5, 0.1), "分数阈值"),
    ((0, 0.5, -0.1, 0.1), "分数阈值"),
    ((0, 0.5, 0.0, -1), "抖动"),
    ((0, 0.5, 0.0, math.inf), "抖动"),
    ((10**6, 0.5, 0.0, 0.1), "随机种子"),
])
def test_map_bad_input_gives_a_message(args, message):
    figure, text = boxes_demo.map_playground(*args)
    assert figure is None and text.startswith(BAD) and message in text


# ----------------------------------------------------------------------------------------------
# Selective search demo


def _count(message: str) -> int:
    return int(re.search(r"\*\*(\d+) 个候选框", message).group(1))


def test_bundled_canvas_matches_selective_search():
    figure, message = ss_demo.propose("数字画布 (digit canvas)", None, "single", 7)
    assert isinstance(figure, Figure), message
    image = ss_demo.BUNDLED["数字画布 (digit canvas)"]()
    assert _count(message) == len(selective_search(image, strategy="single", max_proposals=ss_demo.MAX_PROPOSALS))
    assert "显示排名最前的 7 个" in message and "用时" in message
    assert len(figure.axes[0].patches) == 7


def _save(tmp_path, name: str, image: Image.Image, **kwargs) -> str:
    path = tmp_path / name
    image.save(path, **kwargs)
    return str(path)


def _photo(width: int, height: int) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea()).resize((width, height))


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "I;16", "LA"])
def test_upload_modes_are_converted(tmp_path, mode):
    image = _photo(96, 64)
    image = image.convert("I;16") if mode == "I;16" else image.convert(mode)
    path = _save(tmp_path, f"upload-{mode.replace(';', '')}.png", image)
    loaded, original = ss_demo.load_upload(path)
    assert original == (96, 64) and loaded.mode == "RGB" and loaded.size == (96, 64)
    figure, message = ss_demo.propose("猫 (chelsea)", path, "single", 5)
    assert figure is not None, message
    assert "上传的图片，96×64 像素" in message


def test_big_upload_is_downscaled(tmp_path):
    path = _save(tmp_path, "big.jpg", _photo(1200, 800), quality=85)
    figure, message = ss_demo.propose("猫 (chelsea)", path, "single", 10)
    assert figure is not None, message
    assert "500×333 像素（由 1200×800 缩小）" in message
    image, original = ss_demo.load_upload(path)
    assert original == (1200, 800) and max(ss_demo.downscale(image).size) == 500


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims width x height pixels (its data is far too short)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("content, message", [
    (b"this is not an image\n" * 10, "无法识别为图片"),
    (b"", "空的"),
    (_png_header(20000, 20000), "尺寸过大"),  # 400 M pixels: PIL's own bomb check
    (_png_header(8000, 8000), "尺寸过大"),  # 64 M pixels: our limit, from the header alone
    (_png_header(4, 300), "太小"),
    (_png_header(300, 200), "损坏"),  # a header without the pixels
])
def test_bad_uploads_give_a_message(tmp_path, content, message):
    path = tmp_path / "upload.bin"
    path.write_bytes(content)
    start = time.perf_counter()
    figure, text = ss_demo.propose("猫 (chelsea)", str(path), "fast", 10)
    assert figure is None and text.startswith(BAD) and message in text, text
    assert time.perf_counter() - start < 2.0  # refused before any heavy decoding


def test_truncated_and_oversized_files(tmp_path, monkeypatch):
    whole = io.BytesIO()
    _photo(200, 150).save(whole, format="PNG")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    _, text = ss_demo.propose("猫 (chelsea)", str(truncated), "single", 10)
    assert text.startswith(BAD) and "损坏" in text
    monkeypatch.setattr(ss_demo, "MAX_FILE_BYTES", 1000)
    full = tmp_path / "full.png"
    full.write_bytes(whole.getvalue())
    _, text = ss_demo.propose("猫 (chelsea)", str(full), "single", 10)
    assert text.startswith(BAD) and "文件太大" in text
    _, text = ss_demo.propose("猫 (chelsea)", str(tmp_path / "missing.png"), "single", 10)
    assert text.startswith(BAD) and "找不到" in text


@pytest.mark.parametrize("args, message", [
    (("猫 (chelsea)", None, "quality", 10), "未知的策略"),
    (("猫 (chelsea)", None, "fast", 0), "1 到 2000"),
    (("猫 (chelsea)", None, "fast", 2001), "1 到 2000"),
    (("猫 (chelsea)", None, "fast", math.nan), "整数"),
    (("狗", None, "fast", 10), "未知的图片"),
    ((None, None, "single", 10), "未知的图片"),
])
def test_bad_choices_give_a_message(args, message):
    figure, text = ss_demo.propose(*args)
    assert figure is None and text.startswith(BAD) and message in text
