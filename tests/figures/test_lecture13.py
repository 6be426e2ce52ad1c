"""Lecture 13 figures and drawing helpers: valid files, fast, deterministic, and drawn from correct numbers.

Oracles: torchvision.ops.box_iou for the IoU examples, pycocotools' COCOeval for the precision-recall
points that figure_pr_curve plots.
"""

from __future__ import annotations

import io
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from lectures_code.figures import lecture13 as figures
from lectures_code.figures.lecture13 import (
    FIGURES,
    IOU_EXAMPLES,
    box_pair_with_iou,
    canvas_ground_truth,
    iou_verdict,
    jitter_boxes,
    precision_recall_points,
    synthetic_detections,
)
from lectures_code.plotting import draw_boxes, show_image, to_rgb_uint8

tv_ops = pytest.importorskip("torchvision.ops")
pycocotools_coco = pytest.importorskip("pycocotools.coco")
pycocotools_eval = pytest.importorskip("pycocotools.cocoeval")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def warm_mnist():
    # The first DigitCanvases item loads the 5,000 MNIST digits (seconds); figures are timed after that.
    figures.digit_canvas(0)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_is_a_valid_file_and_quick(name):
    start = time.perf_counter()
    data = FIGURES[name]()
    seconds = time.perf_counter() - start
    assert isinstance(data, bytes) and len(data) > 1000
    assert seconds < 8.0, f"{name} took {seconds:.1f} s (budget ~3 s on a free core)"
    assert len(data) < 2_000_000, f"{name} is {len(data)} bytes"
    if name.endswith(".png"):
        assert data.startswith(PNG_SIGNATURE)
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.width >= 400 and image.height >= 200
            # a real picture, not a blank canvas
            assert np.asarray(image.convert("L")).std() > 10
    else:
        assert name.endswith(".svg")
        root = ET.fromstring(data)
        assert root.tag.endswith("svg")
        assert b"<dc:date>" not in data  # no build date: the same figure gives the same bytes


@pytest.mark.parametrize("name", ["lecture13-iou-examples.svg", "lecture13-nms.svg", "lecture13-pr-curve.svg",
                                  "lecture13-vision-tasks.png", "lecture13-ap-example.svg"])
def test_figures_are_deterministic(name):
    assert FIGURES[name]() == FIGURES[name]()


def test_figure_names_match_functions():
    assert set(FIGURES) == {
        "lecture13-vision-tasks.png", "lecture13-iou-examples.svg", "lecture13-selective-search.png",
        "lecture13-box-transform.svg", "lecture13-nms.svg", "lecture13-pr-curve.svg",
        "lecture13-sliding-window-counts.svg", "lecture13-rcnn-pipeline.png", "lecture13-ap-example.svg",
    }
    assert all(callable(f) for f in FIGURES.values())


def test_iou_example_pairs_hit_their_targets():
    verdicts = []
    for target, kind in IOU_EXAMPLES:
        box_a, box_b = box_pair_with_iou(target, kind)
        iou = float(tv_ops.box_iou(box_a, box_b)[0, 0])
        assert abs(iou - target) < 0.03, (target, kind, iou)
        assert torch.equal(box_b, box_b.round())  # whole pixels, as annotated
        verdicts.append(iou_verdict(iou))
    # one example per band of the lecture's rule of thumb: < 0.5, > 0.5, > 0.7, > 0.9
    assert len(set(verdicts)) == 4


@pytest.mark.parametrize("iou, expected", [(0.3, "< 0.5"), (0.5, "< 0.5"), (0.51, "> 0.5"), (0.7, "> 0.5"),
                                           (0.71, "> 0.7"), (0.9, "> 0.7"), (0.95, "> 0.9"), (1.0, "> 0.9")])
def test_iou_verdict_bands(iou, expected):
    assert expected in iou_verdict(iou)


def test_jitter_boxes_stay_inside_and_valid():
    rng = np.random.default_rng(0)
    gt = np.array([[10.0, 20.0, 50.0, 60.0], [0.0, 0.0, 128.0, 128.0]])
    boxes, source = jitter_boxes(gt, 7, 0.3, rng, 128.0)
    assert boxes.shape == (14, 4) and source.tolist() == [0] * 7 + [1] * 7
    assert (boxes >= 0).all() and (boxes <= 129).all()
    assert (boxes[:, 2:] - boxes[:, :2] >= 1).all()
    assert not np.allclose(boxes[:7], gt[0])


def test_synthetic_detections_are_seeded_and_thresholded():
    gt = canvas_ground_truth(10)
    a, b = synthetic_detections(gt, seed=3), synthetic_detections(gt, seed=3)
    assert a == b and a != synthetic_detections(gt, seed=4)
    image_ids = {im["id"] for im in gt["images"]}
    category_ids = {c["id"] for c in gt["categories"]}
    for d in a:
        assert d["image_id"] in image_ids and d["category_id"] in category_ids
        assert 0 < d["score"] < 1 and d["bbox"][2] > 0 and d["bbox"][3] > 0
    kept = synthetic_detections(gt, seed=3, score_threshold=0.6)
    assert kept == [d for d in a if d["score"] >= 0.6]


def test_canvas_ground_truth_is_a_fresh_copy():
    gt = canvas_ground_truth(5, single_class=True)
    gt["annotations"].clear()
    again = canvas_ground_truth(5, single_class=True)
    assert again["annotations"] and {a["category_id"] for a in again["annotations"]} == {1}


@pytest.mark.parametrize("seed, single_class, jitter", [(0, False, 0.15), (1, False, 0.3), (2, True, 0.2),
                                                        (3, True, 0.05)])
def test_raw_pr_points_interpolate_to_pycocotools_curve(seed, single_class, jitter, pycocotools_evaluate):
    gt = canvas_ground_truth(15, single_class=single_class)
    detections = synthetic_detections(gt, seed=seed, jitter=jitter, false_positives_per_image=2.0)
    reference = pycocotools_evaluate(gt, detections).eval["precision"]
    thresholds = np.linspace(0.5, 0.95, 10)
    category_ids = sorted(c["id"] for c in gt["categories"])
    for k, category in enumerate(category_ids):
        for t in (0, 5, 9):
            recall, precision, num_gt = precision_recall_points(gt, detections, category, thresholds[t])
            expected = reference[t, :, k, 0, -1]
            if num_gt == 0:
                assert (expected == -1).all()
                continue
            # the envelope of the raw points, read at 101 recall points, is COCO's interpolated curve
            envelope = np.maximum.accumulate(precision[::-1])[::-1]
            at = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
            ours = np.where(at < len(recall), envelope[np.minimum(at, len(recall) - 1)], 0.0)
            np.testing.assert_allclose(ours, expected, atol=1e-9)


def test_to_rgb_uint8_accepts_every_form():
    chw = torch.rand(3, 5, 7)
    hwc = to_rgb_uint8(chw)
    assert hwc.shape == (5, 7, 3) and hwc.dtype == np.uint8
    np.testing.assert_array_equal(hwc, (chw.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert (to_rgb_uint8(grey) == grey[:, :, None]).all()
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    assert to_rgb_uint8(rgba).shape == (2, 2, 3)
    with pytest.raises(ValueError):
        to_rgb_uint8(np.zeros((2, 2, 5)))
    with pytest.raises(TypeError):
        to_rgb_uint8(np.zeros((2, 2, 3), dtype=bool))


@pytest.mark.parametrize("as_tensor", [False, True])
def test_draw_boxes_places_rectangles_exactly(as_tensor, device):
    if not as_tensor and device != "cpu":
        pytest.skip("numpy input lives on the CPU")
    fig = Figure()
    ax = fig.subplots()
    show_image(ax, np.zeros((40, 60, 3), dtype=np.uint8))
    assert ax.get_xlim() == (0, 60) and ax.get_ylim() == (40, 0)
    boxes = [[1.0, 2.0, 11.0, 22.0], [30.5, 0.0, 60.0, 40.0]]
    if as_tensor:
        boxes = torch.tensor(boxes, device=device)
    patches = draw_boxes(ax, boxes, labels=["a", 3], scores=[0.5, 0.25], linestyle="--")
    assert len(patches) == 2
    assert patches[0].get_xy() == (1.0, 2.0) and patches[0].get_width() == 10 and patches[0].get_height() == 20
    assert patches[1].get_xy() == (30.5, 0.0) and patches[1].get_linestyle() == "--"
    assert {t.get_text() for t in ax.texts} == {"a 0.50", "3 0.25"}
    assert draw_boxes(ax, np.zeros((0, 4))) == []
    with pytest.raises(ValueError):
        draw_boxes(ax, [[1, 2, 3]])
    with pytest.raises(ValueError):
        draw_boxes(ax, boxes, labels=["only one"])
