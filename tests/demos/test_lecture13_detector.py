"""Lecture 13 detector demo handler: the detections shown are the detector's, bad input gives a message."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from lectures_code.data.digit_canvases import DigitCanvases
from lectures_code.demos import lecture13_detector as demo
from lectures_code.detection.rcnn import detect, proposals_for
from lectures_code.detection.single_object import predict_single_object
from lectures_code.registry import load_pretrained

BAD = "**输入有误：**"
RCNN_NAME, SINGLE_NAME = "R-CNN", "单目标检测器 (single-object)"


def run(source="canvas", index=0, upload=None, detector=RCNN_NAME, score=0.5, nms=0.5, proposals=0):
    return demo.run_detector(source, index, upload, detector, score, nms, proposals)


def test_demo_builds_with_its_elem_ids():
    built = demo.build_demo()
    ids = {block.elem_id for block in built.blocks.values() if getattr(block, "elem_id", None)}
    assert {"det-source", "det-index", "det-upload", "det-model", "det-score", "det-nms", "det-proposals",
            "det-run", "det-info", "det-plot", "det-table"} <= ids


@pytest.mark.parametrize("index", [0, 7])
def test_rcnn_rows_are_the_detections(index):
    figure, info, rows = run(index=index, score=0.3, nms=0.4)
    assert isinstance(figure, Figure) and "检测到" in info
    image, _ = DigitCanvases("test", size=index + 1)[index]
    expected = detect(load_pretrained("rcnn_digits"), image, proposals_for(image, "test", index),
                      score_threshold=0.3, nms_threshold=0.4)
    assert len(rows) == len(expected["scores"]) >= 1
    for row, box, score, label in zip(rows, expected["boxes"], expected["scores"], expected["labels"]):
        assert len(row) == len(demo.TABLE_HEADERS)
        assert row[1] == int(label) and row[2] == pytest.approx(float(score), abs=1e-3)
        assert row[3:] == pytest.approx(box.tolist(), abs=0.06)


def test_thresholds_change_the_result():
    _, _, loose = run(index=3, score=0.05, nms=1.0)
    _, _, strict = run(index=3, score=0.05, nms=0.1)
    _, _, confident = run(index=3, score=0.99, nms=0.5)
    assert len(loose) > len(strict) >= 1
    assert all(row[2] >= 0.99 for row in confident)


def test_single_object_gives_at_most_one_box():
    figure, info, rows = run(index=2, detector=SINGLE_NAME, score=0.0, proposals=20)
    assert isinstance(figure, Figure) and len(rows) == 1 and "只输出一个框" in info
    image, _ = DigitCanvases("test", size=3)[2]
    expected = predict_single_object(load_pretrained("single_object_digits"), image[None])
    assert rows[0][1] == int(expected["labels"][0])
    _, _, none = run(index=2, detector=SINGLE_NAME, score=1.0)
    assert len(none) <= 1


def test_models_are_loaded_once():
    assert demo._model("rcnn_digits") is demo._model("rcnn_digits")


def _save(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)
    return str(path)


def test_upload_is_resized_to_the_canvas(tmp_path):
    image, _ = DigitCanvases("test", size=1)[0]
    big = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    big = np.kron(big, np.ones((2, 2, 1), dtype=np.uint8))  # 256x256
    figure, info, rows = run(source="upload", upload=_save(tmp_path / "canvas.png", big), score=0.5)
    assert isinstance(figure, Figure) and "256×256" in info and len(rows) >= 1
    grey = _save(tmp_path / "grey.png", big[:, :, 0])
    rgba = _save(tmp_path / "rgba.png", np.dstack([big, np.full(big.shape[:2], 255, np.uint8)]))
    for path in (grey, rgba):
        figure, info, _ = run(source="upload", upload=path)
        assert isinstance(figure, Figure), info
    jpeg = tmp_path / "canvas.jpg"
    Image.fromarray(big).save(jpeg, quality=90)
    figure, info, _ = run(source="upload", upload=str(jpeg), detector=SINGLE_NAME)
    assert isinstance(figure, Figure), info


def test_bad_uploads_give_messages(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as handle:  # sparse: no 21 MB written to disk
        handle.truncate(21 * 1024 * 1024)
    broken = tmp_path / "broken.png"
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(good)
    broken.write_bytes(good.read_bytes()[:60])
    for path, message in [(text, "无法识别为图片"), (empty, "空的"), (huge, "文件太大"), (broken, "")]:
        figure, info, rows = run(source="upload", upload=str(path))
        assert figure is None and rows == [] and info.startswith(BAD) and message in info, info
    figure, info, _ = run(source="upload", upload=None)
    assert figure is None and "请先上传" in info


@pytest.mark.parametrize("kwargs, message", [
    ({"index": -1}, "测试画布编号"),
    ({"index": 10_000}, "测试画布编号"),
    ({"index": 2.5}, "测试画布编号"),
    ({"index": None}, "测试画布编号"),
    ({"detector": "YOLO"}, "未知的检测器"),
    ({"score": "abc"}, "分数阈值"),
    ({"score": math.nan}, "分数阈值"),
    ({"score": 1.5}, "分数阈值"),
    ({"nms": -0.1}, "NMS IoU 阈值"),
    ({"proposals": 10_000}, "显示的候选框数"),
    ({"source": "camera"}, "未知的图片来源"),
])
def test_bad_input_gives_a_message(kwargs, message):
    figure, info, rows = run(**kwargs)
    assert figure is None and rows == [] and info.startswith(BAD) and message in info


def test_missing_checkpoint_gives_a_message(monkeypatch):
    def missing(name):
        raise FileNotFoundError(f"checkpoint {name}.pt not found")

    monkeypatch.setattr(demo, "_model", missing)
    figure, info, rows = run()
    assert figure is None and "缺少模型文件" in info and rows == []


def test_proposals_are_drawn():
    figure, info, _ = run(index=1, proposals=25)
    assert "25 个候选框" in info
    patches = figure.axes[0].patches
    assert len(patches) >= 25 + 1  # proposals + ground truth + detections
