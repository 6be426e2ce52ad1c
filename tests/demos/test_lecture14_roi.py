"""Lecture 14 demo handler: the right numbers for good input, a message (never an exception) for bad input.

Oracle: torchvision.ops.roi_pool / roi_align on the demo's feature map.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from lectures_code.demos import lecture14_roi as demo
from lectures_code.figures.lecture13 import digit_canvas
from lectures_code.figures.lecture14 import ROI_CANVAS, canvas_feature_map

tv_ops = pytest.importorskip("torchvision.ops")

BAD = "**输入有误：**"


def shown_grid(fig: Figure, title: str, size: int) -> np.ndarray:
    (ax,) = [ax for ax in fig.axes if ax.get_title().startswith(title)]
    grid = np.full((size, size), np.nan)
    for text in ax.texts:
        c, r = text.get_position()
        grid[int(r), int(c)] = float(text.get_text())
    return grid


def test_demo_builds_with_its_elem_ids():
    blocks = demo.build_demo().blocks.values()
    ids = {block.elem_id for block in blocks if getattr(block, "elem_id", None)}
    assert {"roi-x1", "roi-y1", "roi-x2", "roi-y2", "roi-scale", "roi-size", "roi-sampling", "roi-aligned",
            "roi-plot", "roi-info"} <= ids


@pytest.mark.parametrize("seed", range(5))
def test_shown_values_equal_torchvision(seed):
    rng = np.random.default_rng(seed)
    x1, x2 = sorted(rng.choice(129, size=2, replace=False).tolist())
    y1, y2 = sorted(rng.choice(129, size=2, replace=False).tolist())
    scale = ["1/4", "1/8", "1/16"][seed % 3]
    stride = {"1/4": 4, "1/8": 8, "1/16": 16}[scale]
    output_size = int(rng.integers(2, 8))
    sampling_ratio = [-1, 1, 2, 4][seed % 4]
    aligned = bool(seed % 2)
    fig, message = demo.roi_playground(x1, y1, x2, y2, scale, output_size, sampling_ratio, aligned)
    assert isinstance(fig, Figure), message
    assert "RoI Pool" in message and "RoI Align" in message

    image, _ = digit_canvas(ROI_CANVAS)
    feature = canvas_feature_map(image, stride)[None]  # [1, 1, h, w]
    boxes = [torch.tensor([[x1, y1, x2, y2]], dtype=torch.float64)]
    pool = tv_ops.roi_pool(feature, boxes, output_size, 1 / stride)[0, 0].numpy()
    align = tv_ops.roi_align(feature, boxes, output_size, 1 / stride, sampling_ratio, aligned)[0, 0].numpy()
    np.testing.assert_allclose(shown_grid(fig, "RoI Pool 输出", output_size), pool, atol=0.0051)
    np.testing.assert_allclose(shown_grid(fig, "RoI Align 输出", output_size), align, atol=0.0051)
    difference = float(re.search(r"RoI Align\| = ([0-9.]+)", message).group(1))
    assert difference == pytest.approx(np.abs(pool - align).max(), abs=5e-5)
    assert f"{pool.mean():.4f}" in message and f"{align.mean():.4f}" in message


def test_default_controls_work():
    fig, message = demo.roi_playground(*demo.ROI_BOX, "1/8", 2, 2, True)
    assert isinstance(fig, Figure) and "max |RoI Pool − RoI Align|" in message


@pytest.mark.parametrize("args", [
    (50, 10, 40, 30, "1/8", 2, 2, True),  # x2 <= x1
    (10, 30, 40, 30, "1/8", 2, 2, True),  # y2 <= y1
    (float("nan"), 10, 40, 30, "1/8", 2, 2, True),
    (10, 10, float("inf"), 30, "1/8", 2, 2, True),
    (-5, 10, 40, 30, "1/8", 2, 2, True),
    (10, 10, 140, 30, "1/8", 2, 2, True),
    (None, 10, 40, 30, "1/8", 2, 2, True),
    ("abc", 10, 40, 30, "1/8", 2, 2, True),
    (10, 10, 40, 30, "1/3", 2, 2, True),
    (10, 10, 40, 30, None, 2, 2, True),
    (10, 10, 40, 30, "1/8", 1, 2, True),
    (10, 10, 40, 30, "1/8", 8, 2, True),
    (10, 10, 40, 30, "1/8", 2.5, 2, True),
    (10, 10, 40, 30, "1/8", 2, 3, True),
    (10, 10, 40, 30, "1/8", 2, float("nan"), True),
    (10, 10, 40, 30, "1/8", 2, 2, "yes"),
])
def test_bad_input_gives_a_message(args):
    fig, message = demo.roi_playground(*args)
    assert fig is None and message.startswith(BAD)
