"""Lecture 14 figures: valid files, quick, deterministic, and drawn from the right numbers.

Oracle: torchvision.ops.roi_pool / roi_align on the same feature map.
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

from lectures_code.figures import lecture14 as figures_lecture14
from lectures_code.figures.lecture14 import (
    FIGURES,
    ROI_BOX,
    ROI_CANVAS,
    canvas_feature_map,
    draw_roi_comparison,
)

tv_ops = pytest.importorskip("torchvision.ops")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def warm_mnist():
    # The first DigitCanvases item loads the MNIST digits (seconds); figures are timed after that.
    figures_lecture14.digit_canvas(ROI_CANVAS)


def test_figure_names():
    assert set(FIGURES) == {"lecture14-roi-pool-vs-align.png", "lecture14-feature-projection.svg"}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_is_a_valid_file_quick_and_deterministic(name):
    start = time.perf_counter()
    data = FIGURES[name]()
    seconds = time.perf_counter() - start
    assert isinstance(data, bytes) and 1000 < len(data) < 2_000_000
    assert seconds < 8.0, f"{name} took {seconds:.1f} s (budget ~3 s on a free core)"
    if name.endswith(".png"):
        assert data.startswith(PNG_SIGNATURE)
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.width >= 400 and image.height >= 200
            assert np.asarray(image.convert("L")).std() > 10  # a real picture, not a blank canvas
    else:
        root = ET.fromstring(data)
        assert root.tag.endswith("svg")
        assert b"<dc:date>" not in data
    assert FIGURES[name]() == data


def test_feature_map_is_a_stride_average():
    image, _ = figures_lecture14.digit_canvas(ROI_CANVAS)
    for stride in (4, 8, 16):
        feature = canvas_feature_map(image, stride)
        assert feature.shape == (1, 128 // stride, 128 // stride) and feature.dtype == torch.float64
        assert float(feature.max()) == pytest.approx(1.0) and float(feature.min()) >= 0
    # Cells inside the digit's box are brighter than the average cell: the digit lights up.
    feature = canvas_feature_map(image, 8)[0]
    x1, y1, x2, y2 = (int(v // 8) for v in ROI_BOX)
    assert feature[y1:y2, x1:x2].mean() > 2 * feature.mean()
    with pytest.raises(ValueError):
        canvas_feature_map(image[0], 8)


@pytest.mark.parametrize("stride,output_size,sampling_ratio,aligned",
                         [(8, 2, 2, True), (16, 3, -1, False), (4, 7, 1, True)])
def test_drawn_outputs_are_torchvision_values(stride, output_size, sampling_ratio, aligned):
    image, _ = figures_lecture14.digit_canvas(ROI_CANVAS)
    fig = Figure()
    drawn = draw_roi_comparison(fig, image, ROI_BOX, stride, output_size, sampling_ratio, aligned)
    boxes = [torch.tensor([ROI_BOX], dtype=torch.float64)]
    feature = drawn["feature"][None]
    pool = tv_ops.roi_pool(feature, boxes, output_size, 1 / stride)[0, 0]
    align = tv_ops.roi_align(feature, boxes, output_size, 1 / stride, sampling_ratio, aligned)[0, 0]
    assert torch.equal(drawn["pool"], pool)
    torch.testing.assert_close(drawn["align"], align, atol=1e-10, rtol=0)
    # The output panels print the same numbers.
    for title, expected in (("RoI Pool 输出", pool), ("RoI Align 输出", align)):
        (ax,) = [ax for ax in fig.axes if ax.get_title().startswith(title)]
        shown = np.zeros((output_size, output_size))
        for text in ax.texts:
            c, r = text.get_position()
            shown[int(r), int(c)] = float(text.get_text())
        np.testing.assert_allclose(shown, expected.numpy(), atol=0.0051)
