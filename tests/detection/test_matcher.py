"""match_boxes against torchvision's Matcher (the oracle)."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection._utils import Matcher

from lectures_code.detection.matcher import match_boxes
from lectures_code.ops.boxes import box_iou

# (high, low, allow_low_quality_matches): RPN, Fast R-CNN box head, RetinaNet, and a degenerate one.
SETTINGS = [(0.7, 0.3, True), (0.5, 0.5, False), (0.5, 0.4, True), (0.7, 0.3, False), (0.5, 0.5, True)]


def random_iou(num_gt, num_pred, g, quantize, dtype, device):
    # A random ceiling per GT, so that many GTs have their best IoU below every high threshold
    # and the low-quality rule has work to do.
    ceiling = torch.rand(num_gt, 1, generator=g, dtype=torch.float64) * 0.8 + 0.2
    iou = torch.rand(num_gt, num_pred, generator=g, dtype=torch.float64) * ceiling
    if quantize:
        # Few distinct values: many ties, within a row (several best predictions per GT), within a
        # column (several best GTs per prediction) and exactly at the thresholds 0.3 / 0.4 / 0.5 / 0.7.
        iou = torch.round(iou * quantize) / quantize
    return iou.to(dtype=dtype, device=device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("high, low, low_quality", SETTINGS)
@pytest.mark.parametrize("quantize", [0, 20, 10, 3])
@pytest.mark.parametrize("seed", range(8))
def test_random_matrices(device, dtype, high, low, low_quality, quantize, seed):
    g = torch.Generator().manual_seed(seed)
    num_gt = int(torch.randint(1, 12, (1,), generator=g))
    num_pred = int(torch.randint(1, 60, (1,), generator=g))
    iou = random_iou(num_gt, num_pred, g, quantize, dtype, device)
    ref = Matcher(high, low, low_quality)(iou.clone())
    ours = match_boxes(iou, high, low, low_quality)
    assert ours.dtype == torch.int64 and ours.shape == (num_pred,) and ours.device == iou.device
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


@pytest.mark.parametrize("high, low, low_quality", SETTINGS)
@pytest.mark.parametrize("seed", range(5))
def test_real_boxes(device, high, low, low_quality, seed):
    # IoUs of real anchor-like boxes: sparse matrices with many exact zeros (ties at 0).
    g = torch.Generator().manual_seed(seed)

    def boxes(n):
        xy = torch.randint(0, 200, (n, 2), generator=g).double()
        wh = torch.randint(4, 80, (n, 2), generator=g).double()
        return torch.cat([xy, xy + wh], 1).to(device)

    iou = box_iou(boxes(6), boxes(400))
    ref = Matcher(high, low, low_quality)(iou.clone())
    torch.testing.assert_close(match_boxes(iou, high, low, low_quality), ref, rtol=0, atol=0)


def test_low_quality_rule_by_hand(device):
    # GT 0's best prediction is p0 (0.4, tied with p2); p2's own best GT is GT 1 (0.45).
    # GT 1's best is p1 (0.6). Without the rule everything is background / ignored.
    iou = torch.tensor([[0.4, 0.1, 0.4, 0.2], [0.0, 0.6, 0.45, 0.25]], device=device)
    without = match_boxes(iou, 0.7, 0.3, allow_low_quality_matches=False)
    with_rule = match_boxes(iou, 0.7, 0.3, allow_low_quality_matches=True)
    assert without.tolist() == [-2, -2, -2, -1]
    assert with_rule.tolist() == [0, 1, 1, -1]
    torch.testing.assert_close(with_rule, Matcher(0.7, 0.3, True)(iou.clone()), rtol=0, atol=0)


def test_thresholds_are_inclusive_at_high_and_low(device):
    iou = torch.tensor([[0.7, 0.3, 0.69999, 0.29999]], device=device, dtype=torch.float64)
    ours = match_boxes(iou, 0.7, 0.3, False)
    assert ours.tolist() == [0, -2, -2, -1]
    torch.testing.assert_close(ours, Matcher(0.7, 0.3, False)(iou.clone()), rtol=0, atol=0)


def test_nan_like_torchvision(device):
    # Two zero-area boxes have IoU NaN; NaN wins the max and is neither < low nor >= low.
    iou = torch.tensor([[float("nan"), 0.8, 0.1], [0.2, 0.1, float("nan")]], device=device)
    for setting in SETTINGS:
        torch.testing.assert_close(match_boxes(iou, *setting), Matcher(*setting)(iou.clone()), rtol=0, atol=0)


def test_empty(device):
    # torchvision raises on an empty matrix; we return "all background" / nothing instead.
    for shape in [(0, 5), (3, 0), (0, 0)]:
        iou = torch.zeros(shape, device=device)
        with pytest.raises(ValueError):
            Matcher(0.7, 0.3, True)(iou)
        ours = match_boxes(iou, 0.7, 0.3, True)
        assert ours.dtype == torch.int64 and ours.device == iou.device
        assert ours.tolist() == [-1] * shape[1]


def test_does_not_modify_input(device):
    iou = torch.rand(4, 50, generator=torch.Generator().manual_seed(0)).to(device)
    before = iou.clone()
    match_boxes(iou, 0.7, 0.3, True)
    torch.testing.assert_close(iou, before, rtol=0, atol=0)


def test_bad_input():
    with pytest.raises(ValueError):
        match_boxes(torch.zeros(3), 0.7, 0.3)
    with pytest.raises(TypeError):
        match_boxes(torch.zeros(2, 3, dtype=torch.int64), 0.7, 0.3)
    with pytest.raises(ValueError):
        match_boxes(torch.zeros(2, 3), 0.3, 0.7)
