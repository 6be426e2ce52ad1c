"""The readable RoI Pool / RoI Align loops against the vectorized ops and torchvision.ops (the oracle).

Pool: exact equality. Align: float64, atol 1e-10. Random fractional boxes, boxes partly (or wholly) outside
the map, both ``aligned`` modes, sampling_ratio 1, 2 and -1 (adaptive), scales 1, 1/4, 1/8, 1/16.
"""

from __future__ import annotations

import pytest
import torch

from lectures_code.lecture14.roi_teaching import (
    bilinear_interpolate,
    roi_align_sample_points,
    roi_align_simple,
    roi_pool_bins,
    roi_pool_simple,
    round_half_away_from_zero,
)
from lectures_code.ops.roi_align import roi_align
from lectures_code.ops.roi_pool import roi_pool

tv_ops = pytest.importorskip("torchvision.ops")

SCALES = [1.0, 0.25, 0.125, 1 / 16]


def random_boxes(k: int, h: int, w: int, scale: float, g: torch.Generator) -> torch.Tensor:
    """[k, 4] float64 xyxy boxes in image pixels: corners from 3 cells before the map to 3 cells past it."""
    corners = torch.rand(k, 4, generator=g, dtype=torch.float64) * torch.tensor([w, h, w, h]) * 1.3 - 3
    top_left, bottom_right = corners[:, :2], corners[:, 2:]
    boxes = torch.cat([torch.minimum(top_left, bottom_right), torch.maximum(top_left, bottom_right)], 1)
    return boxes / scale


def one_of_each(seed: int, k: int = 6):
    g = torch.Generator().manual_seed(seed)
    c = 2
    h, w = (int(v) for v in torch.randint(2, 14, (2,), generator=g))
    feature = torch.randn(c, h, w, generator=g, dtype=torch.float64)
    scale = SCALES[seed % len(SCALES)]
    boxes = random_boxes(k, h, w, scale, g)
    if seed % 2:  # corners on multiples of 0.5 cell: every snap is a tie that must round away from zero
        boxes = (boxes * scale * 2).round() / 2 / scale
    return feature, boxes, scale


@pytest.mark.parametrize("output_size", [1, 2, (3, 2), 5])
@pytest.mark.parametrize("seed", range(8))
def test_roi_pool_simple_equals_vectorized_and_torchvision(device, seed, output_size):
    feature, boxes, scale = one_of_each(seed)
    feature, boxes = feature.to(device), boxes.to(device)
    ours = torch.stack([roi_pool_simple(feature, box * scale, output_size) for box in boxes])  # [K, C, h, w]
    vectorized = roi_pool(feature[None], [boxes], output_size, scale)
    reference = tv_ops.roi_pool(feature[None], [boxes], output_size, scale)
    assert ours.device == reference.device and ours.dtype == reference.dtype
    assert torch.equal(ours, reference), f"max abs diff {(ours - reference).abs().max()}"
    assert torch.equal(ours, vectorized)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [1, 2, -1])
@pytest.mark.parametrize("seed", range(6))
def test_roi_align_simple_equals_vectorized_and_torchvision(device, seed, sampling_ratio, aligned):
    feature, boxes, scale = one_of_each(seed, k=5)
    feature, boxes = feature.to(device), boxes.to(device)
    output_size = [1, 2, (2, 3)][seed % 3]
    ours = torch.stack([roi_align_simple(feature, box * scale, output_size, sampling_ratio, aligned)
                        for box in boxes])
    vectorized = roi_align(feature[None], [boxes], output_size, scale, sampling_ratio, aligned)
    reference = tv_ops.roi_align(feature[None], [boxes], output_size, scale, sampling_ratio, aligned)
    assert ours.device == reference.device and ours.dtype == reference.dtype
    torch.testing.assert_close(ours, reference, atol=1e-10, rtol=0)
    torch.testing.assert_close(ours, vectorized, atol=1e-10, rtol=0)


@pytest.mark.parametrize("aligned", [False, True])
def test_edge_boxes(aligned):
    """Zero-size, whole-map, far outside, exactly on borders, and tiny boxes, for both ops."""
    g = torch.Generator().manual_seed(1)
    feature = torch.randn(3, 6, 7, generator=g, dtype=torch.float64)
    boxes = torch.tensor([
        [2.0, 2.0, 2.0, 2.0],  # zero size (aligned=True, adaptive grid: no samples at all)
        [0.0, 0.0, 7.0, 6.0],  # the whole map
        [-20.0, -20.0, -15.0, -12.0],  # entirely outside: RoI Pool bins are empty, RoI Align reads zeros
        [6.5, 5.5, 9.0, 8.0],  # past the bottom-right corner
        [-1.0, -1.0, 0.5, 0.5],  # on the -1 border
        [3.2, 1.1, 3.3, 1.15],  # tiny
        [1.5, 2.5, 4.5, 3.5],  # every coordinate a .5 tie
    ], dtype=torch.float64)
    for output_size in (1, 2, 3):
        pool = torch.stack([roi_pool_simple(feature, box, output_size) for box in boxes])
        assert torch.equal(pool, tv_ops.roi_pool(feature[None], [boxes], output_size, 1.0))
        for sampling_ratio in (-1, 1, 2):
            align = torch.stack([roi_align_simple(feature, box, output_size, sampling_ratio, aligned) for box in boxes])
            reference = tv_ops.roi_align(feature[None], [boxes], output_size, 1.0, sampling_ratio, aligned)
            torch.testing.assert_close(align, reference, atol=1e-10, rtol=0)


def test_worked_example_from_the_notes():
    # A 10 x 10 map with value 10 * row + col; box [1.4, 1.6, 4.5, 4.4] pooled to 2 x 2 (detection-semantics.md).
    feature = (10 * torch.arange(10.0)[:, None] + torch.arange(10.0))[None].double()
    box = [1.4, 1.6, 4.5, 4.4]
    assert roi_pool_simple(feature, box, 2)[0].tolist() == [[33, 35], [43, 45]]
    snapped, rows, cols = roi_pool_bins(box, 2, 10, 10)
    assert snapped == (1, 2, 5, 4)  # 4.5 rounds away from zero to 5
    assert rows == [(2, 4), (3, 5)] and cols == [(1, 4), (3, 6)]  # neighbouring bins share a row / column


def test_round_half_away_from_zero_is_c_round():
    cases = {0.5: 1, 1.5: 2, 2.5: 3, -0.5: -1, -2.5: -3, 0.49999999999999994: 0, 2.4999: 2, -2.4999: -2,
             3.0: 3, -3.0: -3, 0.0: 0, 7.6: 8, -7.6: -8}
    for v, expected in cases.items():
        assert round_half_away_from_zero(v) == expected, v
    assert round(2.5) == 2  # why Python's round will not do


def test_sample_points_are_those_of_the_vectorized_op():
    """A one-hot feature map recovers each sample's bilinear weights: the points must agree with roi_align."""
    box, output_size, sampling_ratio = (1.3, 0.6, 5.9, 4.2), (2, 3), 2
    region, ys, xs = roi_align_sample_points(box, output_size, sampling_ratio, aligned=True)
    assert region == pytest.approx((0.8, 0.1, 5.4, 3.7))
    assert [len(v) for v in ys] == [2, 2] and [len(v) for v in xs] == [2, 2, 2]
    # The samples sit at the (iy + 0.5) / grid fractions of each bin.
    bin_h, bin_w = (3.7 - 0.1) / 2, (5.4 - 0.8) / 3
    assert ys[1][0] == pytest.approx(0.1 + bin_h + 0.25 * bin_h)
    assert xs[2][1] == pytest.approx(0.8 + 2 * bin_w + 0.75 * bin_w)
    # Adaptive grid: ceil(bin size) samples per axis.
    _, ys, xs = roi_align_sample_points((0.0, 0.0, 7.0, 2.5), 2, -1, aligned=False)
    assert [len(v) for v in ys] == [2, 2] and [len(v) for v in xs] == [4, 4]


def test_bilinear_interpolate_matches_roi_align_on_a_point():
    # A 1 x 1 bin with 1 x 1 sampling reads exactly one bilinear sample, at the centre of the box.
    g = torch.Generator().manual_seed(3)
    feature = torch.randn(2, 5, 6, generator=g, dtype=torch.float64)
    for y, x in [(0.0, 0.0), (1.25, 2.75), (4.0, 5.0), (4.6, 5.9), (-0.5, -0.9), (-1.2, 2.0), (5.2, 1.0)]:
        box = torch.tensor([[x - 0.5, y - 0.5, x + 0.5, y + 0.5]], dtype=torch.float64)
        expected = tv_ops.roi_align(feature[None], [box], 1, 1.0, 1, False)[0, :, 0, 0]
        torch.testing.assert_close(bilinear_interpolate(feature, y, x), expected, atol=1e-12, rtol=0)


def test_bad_input_raises():
    feature = torch.zeros(1, 4, 4)
    with pytest.raises(TypeError):
        roi_pool_simple(torch.zeros(4, 4), (0, 0, 1, 1), 2)
    with pytest.raises(TypeError):
        roi_align_simple(torch.zeros(1, 4, 4, dtype=torch.long), (0, 0, 1, 1), 2)
    with pytest.raises(ValueError):
        roi_pool_simple(feature, (0, 0, 1), 2)
    with pytest.raises(ValueError):
        roi_align_simple(feature, (0, 0, float("nan"), 1), 2)
    with pytest.raises(ValueError):
        roi_pool_simple(feature, (0, 0, 1, 1), 0)
    with pytest.raises(TypeError):
        roi_align_simple(feature, (0, 0, 1, 1), 2, sampling_ratio=1.5)
