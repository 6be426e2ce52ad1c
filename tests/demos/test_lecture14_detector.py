"""Lecture 14 detector demo: the detections shown are the detector's own, found with the reader's thresholds;
sketches work; bad input gives a message, never an exception.

Oracles: each model's own eval ``forward`` / ``fcos_detect`` (the demo re-runs the stages to show
proposals and anchors, and must give the same detections), torchvision.ops.box_iou for the matching,
and the ground truth of the test canvases.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from PIL import Image

from lectures_code import checkpoints
from lectures_code.data.digit_canvases import load_mnist_subset, split_pool
from lectures_code.demos import lecture14_detector as demo
from lectures_code.detection.fcos import fcos_detect

tv_ops = pytest.importorskip("torchvision.ops")

BAD = "**输入有误：**"
MISSING = "**缺少模型文件 (missing checkpoint)：**"
SHIPPED_ALWAYS = ("Faster R-CNN", "FCOS")  # checkpoints in the repository today


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models are tiny: on a shared 2-core machine a second intra-op thread mostly waits for the first."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(source="canvas", sketch=None, index=0, upload=None, detector="Faster R-CNN", score=0.3, nms=0.5,
        max_detections=100, show_proposals=False, num_proposals=20, show_cells=False, level=0, x=64, y=64):
    return demo.run_detector(source, sketch, index, upload, detector, score, nms, max_detections, show_proposals,
                             num_proposals, show_cells, level, x, y)


def need(detector: str) -> None:
    if detector not in demo.shipped_detectors():
        pytest.skip(f"{demo.DETECTORS[detector].checkpoint}.pt is not shipped yet")


def canvas(index: int):
    return demo._test_canvases()[index]  # the demo's own DigitCanvases("test", size=200)


def row_boxes(rows) -> torch.Tensor:
    return torch.tensor([row[3:7] for row in rows], dtype=torch.float32).reshape(-1, 4)


def test_demo_builds_with_its_elem_ids():
    built = demo.build_demo()
    ids = {block.elem_id for block in built.blocks.values() if getattr(block, "elem_id", None)}
    assert {"det14-source", "det14-sketch", "det14-index", "det14-upload", "det14-model", "det14-score",
            "det14-nms", "det14-max", "det14-show-proposals", "det14-proposals", "det14-show-cells", "det14-level",
            "det14-x", "det14-y", "det14-run", "det14-plot", "det14-info", "det14-table"} <= ids


def test_only_shipped_detectors_are_offered(monkeypatch):
    assert set(SHIPPED_ALWAYS) <= set(demo.shipped_detectors()) <= set(demo.DETECTORS)
    sums = checkpoints.read_sums()
    monkeypatch.setattr(checkpoints, "read_sums", lambda *a: {k: v for k, v in sums.items() if k != "fcos_digits.pt"})
    assert "FCOS" not in demo.shipped_detectors()
    figure, info, rows = run(detector="FCOS")
    assert figure is None and rows == [] and info.startswith(MISSING) and "fcos_digits.pt" in info


@pytest.mark.parametrize("detector", list(demo.DETECTORS))
@pytest.mark.parametrize("index", [0, 2])
def test_finds_the_ground_truth_digits(detector, index):
    need(detector)
    figure, info, rows = run(index=index, detector=detector, score=0.5)
    assert isinstance(figure, Figure) and "ms" in info and "真实框" in info, info
    _, target = canvas(index)
    iou = tv_ops.box_iou(target["boxes"], row_boxes(rows))  # [G, D]
    labels = torch.tensor([row[1] for row in rows])
    for g, digit in enumerate(target["labels"].tolist()):
        same_digit = labels == digit
        assert same_digit.any() and iou[g][same_digit].max() > 0.5, f"digit {digit} at {target['boxes'][g]} missed"
    for row, ious in zip(rows, iou.T.tolist()):  # the IoU column is the best ground-truth IoU of a match
        assert row[7] == "—" or row[7] == pytest.approx(max(ious), abs=0.01)
    assert f"{len(target['labels'])}/{len(target['labels'])} 个真实框" in info


@pytest.mark.parametrize("detector", list(demo.DETECTORS))
def test_rows_equal_the_models_own_forward(detector):
    """At the model's default thresholds the demo's stage-by-stage run gives exactly its forward's output."""
    need(detector)
    spec = demo.DETECTORS[detector]
    model = demo._model(spec.checkpoint)
    image, _ = canvas(3)
    if detector == "FCOS":
        score, nms, max_detections = 0.05, 0.6, 100
        expected = fcos_detect(model, image[None])[0]
    else:
        score, nms, max_detections = model.score_threshold, model.nms_threshold, model.max_detections
        with torch.no_grad():
            if detector == "Fast R-CNN":
                from lectures_code.detection.rcnn import proposals_for

                expected = model(image[None], [proposals_for(image, "test", 3)])[0]
            else:
                expected = model(image[None])[0]
    _, info, rows = run(index=3, detector=detector, score=score, nms=nms, max_detections=max_detections)
    assert len(rows) == len(expected["scores"]) >= 1, info
    assert [row[1] for row in rows] == expected["labels"].tolist()
    np.testing.assert_allclose([row[2] for row in rows], expected["scores"].tolist(), atol=6e-4)
    np.testing.assert_allclose(row_boxes(rows), expected["boxes"], atol=0.06)


def _untrained(detector: str):
    torch.manual_seed(0)
    return demo.DETECTORS[detector].build().eval()


@pytest.mark.parametrize("detector", list(demo.DETECTORS))
def test_the_demo_runs_the_models_inference_api(detector, monkeypatch):
    """For every detector (shipped or not) the demo's run equals the model's own eval forward, with a freshly
    initialised model whose thresholds are set to unusual values (so the demo must pass the reader's on)."""
    model = _untrained(detector)
    model.score_threshold, model.nms_threshold, model.max_detections = 0.004, 0.35, 17
    for attribute in ("topk_candidates", "topk_per_level"):
        if hasattr(model, attribute):
            setattr(model, attribute, 60)  # fewer boxes for the NMS of an untrained single-stage model
    image, target = canvas(2)
    jitter = torch.randn(30, 4, generator=torch.Generator().manual_seed(0)) * 4
    proposals = (target["boxes"].repeat(8, 1)[:30] + jitter).clamp(0, 128)  # stand-in for Selective Search
    monkeypatch.setattr(demo, "proposals_for", lambda *args, **kwargs: proposals)
    spec = demo.DETECTORS[detector]
    run_ = demo.run_model(spec, model, image, 0.004, 0.35, 17, True, 2)
    with torch.no_grad():
        expected = model(image[None], [proposals])[0] if detector == "Fast R-CNN" else model(image[None])[0]
    assert len(expected["boxes"]) == 17
    for key in ("boxes", "scores", "labels"):
        torch.testing.assert_close(run_.detections[key], expected[key])
    if spec.cells == "anchors":
        generated = torch.cat([level.anchors for level in run_.levels])
        assert sum(level.grid[0] * level.grid[1] * level.per_cell for level in run_.levels) == len(generated)
    if spec.proposals:
        assert run_.proposals.ndim == 2 and run_.proposals.shape[1] == 4


@pytest.fixture()
def fresh_models():
    demo._model.cache_clear()
    yield
    demo._model.cache_clear()


@pytest.mark.parametrize("detector", ["Faster R-CNN + FPN", "Fast R-CNN", "RetinaNet"])
def test_a_detector_appears_once_its_checkpoint_ships(detector, tmp_path, monkeypatch, fresh_models):
    """An (untrained) checkpoint saved with SHA256SUMS in the checkpoint folder is offered, loaded
    (hash-checked) and run end to end; without it the detector is not offered."""
    spec = demo.DETECTORS[detector]
    monkeypatch.setattr(checkpoints, "CHECKPOINT_DIR", tmp_path)
    monkeypatch.setenv(checkpoints.HOME_ENV, str(tmp_path / "home"))
    assert demo.shipped_detectors() == []
    model = _untrained(detector)
    checkpoints.save_checkpoint(model.state_dict(), {"config": model.config()}, tmp_path / f"{spec.checkpoint}.pt")
    assert demo.shipped_detectors() == [detector]
    figure, info, rows = run(index=2, detector=detector, score=0.3, show_proposals=True, show_cells=True, level=1)
    assert isinstance(figure, Figure) and info.startswith(f"**{detector}**"), info
    assert ("灰色细框" in info) == bool(spec.proposals) and ("锚框 (anchors)" in info) == (spec.cells == "anchors")
    (tmp_path / f"{spec.checkpoint}.pt").write_bytes(b"tampered")
    demo._model.cache_clear()
    figure, info, rows = run(index=2, detector=detector)
    assert figure is None and "checksum mismatch" in info


@pytest.mark.parametrize("detector", SHIPPED_ALWAYS)
def test_thresholds_act_inside_the_detector(detector):
    _, _, loose = run(index=3, detector=detector, score=0.05, nms=1.0)
    _, _, strict = run(index=3, detector=detector, score=0.05, nms=0.3)
    _, _, confident = run(index=3, detector=detector, score=0.6, nms=0.3)
    _, _, one = run(index=3, detector=detector, score=0.05, nms=0.3, max_detections=1)
    assert len(loose) >= len(strict) >= len(confident) >= 1 and len(one) == 1
    assert all(row[2] >= 0.6 for row in confident)
    assert [row[1:7] for row in confident] == [row[1:7] for row in strict[:len(confident)]]  # a subset: the top
    assert one[0][1:7] == strict[0][1:7]
    # NMS at 1.0 keeps same-digit boxes that overlap a lot: only possible if 1.0 reached the NMS itself
    boxes, labels = row_boxes(loose), torch.tensor([row[1] for row in loose])
    iou = tv_ops.box_iou(boxes, boxes).fill_diagonal_(0)
    assert (iou[labels[:, None] == labels[None, :]] > 0.5).any()
    strict_boxes, strict_labels = row_boxes(strict), torch.tensor([row[1] for row in strict])
    strict_iou = tv_ops.box_iou(strict_boxes, strict_boxes).fill_diagonal_(0)
    assert not (strict_iou[strict_labels[:, None] == strict_labels[None, :]] > 0.3 + 1e-6).any()


def _sketch_with_digit(digit_index: int, dark_on_light: bool) -> tuple[np.ndarray, list[float]]:
    """A 384x384 RGB sketch with one test-pool MNIST digit pasted as 150x150 strokes; its box in 128-px units."""
    images, _ = load_mnist_subset()
    digit = np.asarray(Image.fromarray(images[digit_index]).resize((150, 150), Image.BILINEAR))
    ink = 255 - digit if dark_on_light else digit
    sketch = np.full((384, 384, 3), 255 if dark_on_light else 0, np.uint8)
    sketch[90:240, 130:280] = ink[:, :, None]
    rows, cols = np.nonzero(digit > 127)
    box = [(130 + cols.min()) / 3, (90 + rows.min()) / 3, (130 + cols.max() + 1) / 3, (90 + rows.max() + 1) / 3]
    return sketch, box


@pytest.mark.parametrize("detector", SHIPPED_ALWAYS)
@pytest.mark.parametrize("k, dark_on_light", [(0, True), (1, False)])
def test_a_sketched_digit_is_detected(detector, k, dark_on_light):
    _, labels = load_mnist_subset()
    digit_index = int(split_pool("test")[k * 311])
    sketch, box = _sketch_with_digit(digit_index, dark_on_light)
    value = {"background": None, "layers": [], "composite": sketch}  # what gr.Sketchpad passes
    figure, info, rows = run(source="sketch", sketch=value, detector=detector, score=0.3)
    assert isinstance(figure, Figure) and rows, info
    assert ("invert" in info) == dark_on_light
    best = max(rows, key=lambda row: row[2])
    assert tv_ops.box_iou(torch.tensor([box]), row_boxes([best]))[0, 0] > 0.5
    assert best[1] == labels[digit_index]


def test_sketch_forms_and_padding():
    sketch, _ = _sketch_with_digit(int(split_pool("test")[0]), dark_on_light=True)
    light_on_dark, _ = _sketch_with_digit(int(split_pool("test")[0]), dark_on_light=False)
    expected, _ = demo.sketch_to_image(light_on_dark)  # no inversion needed
    assert expected.shape == (3, 128, 128) and expected.dtype == torch.float32
    transparent = np.dstack([np.zeros_like(sketch), 255 - sketch[:, :, :1]])  # black strokes on nothing
    for value in (sketch, np.dstack([sketch, np.full(sketch.shape[:2], 255, np.uint8)]), sketch[:, :, 0],
                  sketch[:, :, :1], Image.fromarray(sketch), sketch.astype(np.float32) / 255, transparent):
        image, note = demo.sketch_to_image(value)
        torch.testing.assert_close(image, expected, atol=1 / 255, rtol=0)
        assert "invert" in note
    figure, info, rows = run(source="sketch", sketch=sketch[:, 40:340])  # not square: padded, not stretched
    assert isinstance(figure, Figure) and "补边" in info and rows


def test_upload_is_converted_and_resized(tmp_path):
    image, _ = canvas(0)
    big = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    big = np.kron(big, np.ones((2, 2, 1), dtype=np.uint8))  # 256x256
    for name, array in [("rgb.png", big), ("grey.png", big[:, :, 0]),
                        ("rgba.png", np.dstack([big, np.full(big.shape[:2], 255, np.uint8)]))]:
        Image.fromarray(array).save(tmp_path / name)
        figure, info, rows = run(source="upload", upload=str(tmp_path / name), detector="FCOS")
        assert isinstance(figure, Figure) and "256×256" in info and "128×128" in info and rows, info


def _patches(figure, colour):
    return [p for p in figure.axes[0].patches if to_rgba(p.get_edgecolor())[:3] == to_rgba(colour)[:3]]


def test_anchors_of_the_chosen_cell_are_drawn():
    figure, info, _ = run(index=1, show_cells=True, level=0, x=45, y=70)
    model = demo._model("faster_rcnn_digits")
    sizes, ratios = model.anchor_generator.sizes[0], model.anchor_generator.aspect_ratios[0]
    anchors = _patches(figure, "cyan")
    assert len(anchors) == len(sizes) * len(ratios) and "行 8, 列 5" in info
    for patch in anchors:  # every anchor is centred on the cell's top-left corner (5 * 8, 8 * 8)
        assert patch.get_x() + patch.get_width() / 2 == pytest.approx(40, abs=0.5)
        assert patch.get_y() + patch.get_height() / 2 == pytest.approx(64, abs=0.5)
    shapes = [min(ratios, key=lambda r: abs(p.get_height() / p.get_width() - r)) for p in anchors]
    assert all(abs(p.get_height() / p.get_width() - r) < 0.25 for p, r in zip(anchors, shapes))
    assert sorted(shapes) == sorted(r for r in ratios for _ in sizes)  # every (size, ratio) once
    areas = sorted(p.get_width() * p.get_height() for p in anchors)
    expected = sorted(s * s for s in sizes for _ in ratios)
    np.testing.assert_allclose(areas, expected, rtol=0.12)  # corners are rounded to whole pixels
    _, single_level, _ = run(index=1, show_cells=True, level=2)
    assert "只有 1 层" in single_level


def test_fcos_points_and_proposals_are_drawn():
    figure, info, _ = run(index=1, detector="FCOS", show_cells=True, level=1, x=70, y=20)
    assert "P4" in info and "stride 16" in info and "(64, 16)" in info
    points = figure.axes[0].collections[0].get_offsets()
    assert len(points) == 8 * 8
    figure, info, _ = run(index=1, show_proposals=True, num_proposals=25)
    assert "25 个候选框" in info and len(_patches(figure, "#bbbbbb")) == 25


def test_models_are_loaded_once():
    assert demo._model("fcos_digits") is demo._model("fcos_digits")


def _blank(tmp_path, value):
    path = tmp_path / f"blank{value}.png"
    Image.fromarray(np.full((64, 64, 3), value, np.uint8)).save(path)
    return str(path)


@pytest.mark.parametrize("kwargs, message", [
    ({"source": "sketch", "sketch": None}, "empty sketch"),
    ({"source": "sketch", "sketch": {"background": None, "layers": [], "composite": None}}, "empty sketch"),
    ({"source": "sketch", "sketch": np.full((384, 384, 3), 255, np.uint8)}, "empty sketch"),
    ({"source": "sketch", "sketch": np.zeros((384, 384, 3), np.uint8)}, "全黑"),
    ({"source": "sketch", "sketch": np.zeros((64, 64, 5), np.uint8)}, "wrong mode"),
    ({"source": "sketch", "sketch": np.zeros((64, 64), np.int32)}, "wrong mode"),
    ({"source": "sketch", "sketch": np.full((64, 64), np.nan)}, "wrong mode"),
    ({"source": "sketch", "sketch": "a drawing"}, "wrong mode"),
    ({"source": "sketch", "sketch": np.zeros((4, 4, 3), np.uint8)}, "wrong size"),
    ({"source": "sketch", "sketch": np.zeros((5000, 64), np.uint8)}, "wrong size"),
    ({"source": "upload", "upload": None}, "请先上传"),
    ({"source": "camera"}, "未知的图片来源"),
    ({"index": -1}, "测试画布编号"),
    ({"index": 200}, "测试画布编号"),
    ({"index": 2.5}, "测试画布编号"),
    ({"detector": "YOLO"}, "未知的检测器"),
    ({"score": math.nan}, "分数阈值"),
    ({"score": 1.5}, "分数阈值"),
    ({"score": -0.1}, "分数阈值"),
    ({"score": "abc"}, "分数阈值"),
    ({"score": None}, "分数阈值"),
    ({"nms": math.nan}, "NMS IoU 阈值"),
    ({"nms": 1.01}, "NMS IoU 阈值"),
    ({"nms": -1}, "NMS IoU 阈值"),
    ({"max_detections": 0}, "max detections"),
    ({"max_detections": 101}, "max detections"),
    ({"max_detections": 2.5}, "max detections"),
    ({"max_detections": math.inf}, "max detections"),
    ({"num_proposals": 0}, "候选框数"),
    ({"level": 9}, "特征层"),
    ({"x": 128}, "位置 x"),
    ({"show_cells": "yes"}, "show anchors"),
])
def test_bad_input_gives_a_message(kwargs, message):
    figure, info, rows = run(**kwargs)
    assert figure is None and rows == [] and info.startswith(BAD) and message in info, info


@pytest.mark.parametrize("value", [0, 255])
def test_blank_upload_gives_a_message(tmp_path, value):
    figure, info, rows = run(source="upload", upload=_blank(tmp_path, value))
    assert figure is None and rows == [] and info.startswith(BAD) and "blank image" in info


def test_missing_or_corrupt_checkpoint_gives_a_message(monkeypatch):
    def missing(name):
        raise FileNotFoundError(f"checkpoint {name}.pt not found")

    monkeypatch.setattr(demo, "_model", missing)
    figure, info, rows = run()
    assert figure is None and rows == [] and info.startswith(MISSING)

    def corrupt(name):
        raise checkpoints.CheckpointError(f"SHA-256 of {name}.pt differs")

    monkeypatch.setattr(demo, "_model", corrupt)
    figure, info, rows = run(detector="FCOS")
    assert figure is None and rows == [] and "checksum mismatch" in info
    monkeypatch.setattr(checkpoints, "read_sums", lambda *a: {})
    figure, info, rows = run()
    assert figure is None and rows == [] and info.startswith(MISSING) and "faster_rcnn_digits.pt" in info
