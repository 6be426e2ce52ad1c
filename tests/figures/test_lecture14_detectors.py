"""Lecture 14 figures of the trained detectors: valid files, every shipped detector drawn, right numbers.

Oracles: torchvision's AnchorGenerator + Matcher for the anchor figure's positive count; the JSON
records for the speed/accuracy points.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest
import torch
from PIL import Image

from lectures_code import registry, results
from lectures_code.figures import FIGURES as ALL_FIGURES
from lectures_code.figures import lecture14_detectors as figures_detectors
from lectures_code.figures.lecture14_detectors import DETECTORS, FIGURES, canvas_with_sizes, detect, test_canvases

tv_detection = pytest.importorskip("torchvision.models.detection")


def test_every_figure_is_registered_for_the_site():
    assert set(FIGURES) <= set(ALL_FIGURES)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_is_a_valid_file(name):
    data = FIGURES[name]()
    if name.endswith(".png"):
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG" and image.width > 400 and image.height > 200
    else:
        assert ET.fromstring(data).tag.endswith("svg")


def test_example_canvas_has_digits_of_different_sizes():
    _, target = test_canvases()[canvas_with_sizes()]
    heights = target["boxes"][:, 3] - target["boxes"][:, 1]
    assert len(heights) >= 3 and heights.max() / heights.min() > 1.5


def test_the_figures_show_every_registry_detector():
    assert [entry.name for entry in DETECTORS] == [n for n, e in registry.MODELS.items() if e.task == "detection"]


@pytest.mark.parametrize("name", [entry.name for entry in DETECTORS])
def test_detect_finds_the_digits_of_a_test_canvas(name):
    image, target = test_canvases()[0]
    result = detect(name, image)
    assert set(result) >= {"boxes", "scores", "labels"}
    confident = result["scores"] >= 0.5
    iou = torch.zeros(0)
    if confident.any():
        from torchvision.ops import box_iou

        iou = box_iou(target["boxes"].float(), result["boxes"][confident].float())
    # every ground-truth digit is found by a confident box of the right class
    for g, label in enumerate(target["labels"].tolist()):
        assert iou.numel() and any(iou[g, d] > 0.5 and result["labels"][confident][d] == label
                                   for d in range(iou.shape[1])), f"{name} misses digit {label} on test canvas 0"


def test_anchor_figure_shows_the_anchors_and_positives_torchvision_finds():
    from torchvision.ops import box_iou

    from lectures_code.detection.faster_rcnn import ANCHOR_RATIOS, ANCHOR_SIZES, STRIDE

    image, target = test_canvases()[canvas_with_sizes()]
    gt = target["boxes"].float()
    anchors, positive = figures_detectors.positive_anchors(gt, image.shape[-1])
    generator = tv_detection.anchor_utils.AnchorGenerator((ANCHOR_SIZES,), (ANCHOR_RATIOS,))
    images = tv_detection.image_list.ImageList(image[None], [tuple(image.shape[-2:])])
    feature = torch.zeros(1, 1, image.shape[-2] // STRIDE, image.shape[-1] // STRIDE)
    tv_anchors = generator(images, [feature])[0]
    matched = tv_detection._utils.Matcher(0.7, 0.3, allow_low_quality_matches=True)(box_iou(gt, tv_anchors))
    torch.testing.assert_close(anchors, tv_anchors)
    assert positive.tolist() == torch.where(matched >= 0)[0].tolist()


def test_speed_accuracy_points_come_from_the_records():
    points = {p["name"]: p for p in figures_detectors.speed_accuracy_points()}
    assert set(points) == {entry.title for entry in DETECTORS}
    for entry in DETECTORS:
        file_name, key = entry.record
        assert points[entry.title]["ap"] == results.read(file_name)[key]["test"]["AP"]
    assert points["R-CNN"]["ms"] > points["FCOS"]["ms"]  # external proposals cost far more than one network
