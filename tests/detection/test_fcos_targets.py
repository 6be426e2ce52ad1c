"""FCOS target assignment against torchvision's FCOS (matching, box targets, centerness, losses)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.image_list import ImageList

from lectures_code.detection.fcos_targets import (
    FCOS_STRIDES,
    assign_fcos_targets,
    centerness_target,
    fcos_points,
    match_points_to_boxes,
)
from lectures_code.ops.losses import generalized_box_iou_loss, sigmoid_focal_loss

DTYPES = [torch.float32, torch.float64]
IMAGE_SIZE = (128, 256)  # (H, W): every level's stride divides it, so torchvision's strides are 8 ... 128
FEATURE_SIZES = [(IMAGE_SIZE[0] // s, IMAGE_SIZE[1] // s) for s in FCOS_STRIDES]
NUM_CLASSES = 3


class _Backbone(nn.Module):
    out_channels = 32  # FCOSHead's GroupNorm(32, C) needs C divisible by 32


@pytest.fixture(scope="module")
def model() -> FCOS:
    torch.manual_seed(0)
    return FCOS(_Backbone(), num_classes=NUM_CLASSES).eval()


def _torchvision_anchors(model: FCOS, dtype, device):
    images = ImageList(torch.zeros(1, 3, *IMAGE_SIZE, dtype=dtype, device=device), [IMAGE_SIZE])
    features = [torch.zeros(1, 32, h, w, dtype=dtype, device=device) for h, w in FEATURE_SIZES]
    anchors = model.anchor_generator(images, features)[0]  # [P, 4]
    return anchors, [h * w for h, w in FEATURE_SIZES]


def _torchvision_matched_idxs(model: FCOS, anchors, num_anchors_per_level, gt_boxes) -> torch.Tensor:
    # FCOS.compute_loss builds matched_idxs and hands them to head.compute_loss: intercept them there.
    captured = []
    head_loss = model.head.compute_loss
    model.head.compute_loss = lambda targets, outputs, anchors, matched_idxs: captured.extend(matched_idxs)
    try:
        labels = torch.zeros(len(gt_boxes), dtype=torch.int64, device=gt_boxes.device)
        model.compute_loss([{"boxes": gt_boxes, "labels": labels}], {}, [anchors], num_anchors_per_level)
    finally:
        model.head.compute_loss = head_loss
    return captured[0]


def _random_gt_boxes(num_boxes: int, generator: torch.Generator, dtype, device, grid: float = 0.0):
    # Log-uniform sizes from 4 to 400 px so that every pyramid level gets objects; centers anywhere.
    height, width = IMAGE_SIZE
    size = torch.exp(torch.empty(num_boxes, 2, dtype=torch.float64).uniform_(1.4, 6.0, generator=generator))
    center = torch.rand(num_boxes, 2, generator=generator, dtype=torch.float64) * torch.tensor([width, height])
    boxes = torch.cat((center - size / 2, center + size / 2), dim=1)
    if grid:
        boxes = (boxes / grid).round() * grid
    boxes = torch.cat((boxes, boxes[:2]))  # duplicates: the tie goes to the lower index
    return boxes.to(dtype=dtype, device=device)


def test_points_are_torchvision_anchor_centers(model, device):
    anchors, num_per_level = _torchvision_anchors(model, torch.float32, device)
    points, strides, num_points_per_level = fcos_points(FEATURE_SIZES, FCOS_STRIDES, device=device)
    assert num_points_per_level == num_per_level
    torch.testing.assert_close(points, (anchors[:, :2] + anchors[:, 2:]) / 2, rtol=0, atol=0)
    torch.testing.assert_close(strides, anchors[:, 2] - anchors[:, 0], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matching_equals_torchvision(model, device, dtype):
    anchors, num_per_level = _torchvision_anchors(model, dtype, device)
    num_foreground = 0
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        # Float64 boxes anywhere, and boxes on a 4-pixel grid (exact ties with the 1.5 s, 4 s, 8 s
        # thresholds and box edges; areas are multiples of 16, exact in torchvision's float32 trick).
        for grid in (0.0, 4.0):
            if dtype == torch.float32 and not grid:
                continue  # see test_float32_area_ties for what differs there
            gt_boxes = _random_gt_boxes(12, g, dtype, device, grid)
            expected = _torchvision_matched_idxs(model, anchors, num_per_level, gt_boxes)
            targets = assign_fcos_targets(gt_boxes, FEATURE_SIZES, FCOS_STRIDES)
            assert targets.matched_idxs.dtype == torch.int64
            torch.testing.assert_close(targets.matched_idxs, expected, rtol=0, atol=0)
            num_foreground += int((expected >= 0).sum())
    assert num_foreground > 500  # the test exercises real matches, not only background


def test_float32_area_ties(model, device):
    # torchvision ranks candidates by float32(1e8 - area), whose spacing is 8: areas 1003 and 1000
    # tie and it keeps the first box. We compare the areas themselves and take the smaller one.
    anchors, num_per_level = _torchvision_anchors(model, torch.float32, device)
    gt_boxes = torch.tensor([[4.0, 4.0, 44.0, 29.075], [4.0, 4.0, 44.0, 29.0]], device=device)  # areas 1003, 1000
    point = ((anchors[:, 0] + anchors[:, 2]) / 2 == 24) & ((anchors[:, 1] + anchors[:, 3]) / 2 == 16)
    assert _torchvision_matched_idxs(model, anchors, num_per_level, gt_boxes)[point].item() == 0
    assert _torchvision_matched_idxs(model, anchors.double(), num_per_level, gt_boxes.double())[point].item() == 1
    assert assign_fcos_targets(gt_boxes, FEATURE_SIZES).matched_idxs[point].item() == 1

    # On random float32 boxes, every disagreement is such a tie.
    for seed in range(20):
        gt_boxes = _random_gt_boxes(12, torch.Generator().manual_seed(seed), torch.float32, device)
        expected = _torchvision_matched_idxs(model, anchors, num_per_level, gt_boxes)
        ours = assign_fcos_targets(gt_boxes, FEATURE_SIZES).matched_idxs
        differ = ours != expected
        assert (ours[differ] >= 0).all() and (expected[differ] >= 0).all()
        areas = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
        assert (areas[ours[differ]] < areas[expected[differ]]).all()
        assert ((1e8 - areas[ours[differ]]) == (1e8 - areas[expected[differ]])).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_box_and_centerness_targets_equal_torchvision_head(model, device, dtype):
    model = model.to(device)
    anchors, num_per_level = _torchvision_anchors(model, dtype, device)
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        gt_boxes = _random_gt_boxes(12, g, dtype, device, grid=4.0)
        labels = torch.randint(NUM_CLASSES, (len(gt_boxes),), generator=g).to(device)
        ours = assign_fcos_targets(gt_boxes, FEATURE_SIZES, FCOS_STRIDES)
        foreground = ours.matched_idxs >= 0
        num_fg = int(foreground.sum())

        # Box targets: torchvision regresses (l, t, r, b) / stride.
        encoded = model.box_coder.encode(anchors, gt_boxes[ours.matched_idxs.clamp(min=0)])
        torch.testing.assert_close(ours.box_targets[foreground] / ours.strides[foreground, None], encoded[foreground])
        assert (ours.box_targets[~foreground] == 0).all() and (ours.centerness[~foreground] == 0).all()

        # Random head outputs; the real FCOSHead.compute_loss is the oracle for all three losses.
        num_points = anchors.shape[0]
        cls_logits = torch.randn(1, num_points, NUM_CLASSES, generator=g, dtype=torch.float64).to(dtype=dtype,
                                                                                                  device=device)
        bbox_regression = torch.rand(1, num_points, 4, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
        bbox_ctrness = torch.zeros(1, num_points, 1, dtype=dtype, device=device, requires_grad=True)
        outputs = {"cls_logits": cls_logits, "bbox_regression": bbox_regression, "bbox_ctrness": bbox_ctrness}
        expected = model.head.compute_loss([{"boxes": gt_boxes, "labels": labels}], outputs, [anchors],
                                           [ours.matched_idxs])

        # Centerness: with logits 0, d(BCE)/d(logit) = (0.5 - target) / num_fg recovers torchvision's target.
        (grad,) = torch.autograd.grad(expected["bbox_ctrness"], bbox_ctrness)
        torchvision_centerness = 0.5 - grad[0, :, 0] * max(1, num_fg)
        torch.testing.assert_close(ours.centerness[foreground], torchvision_centerness[foreground])

        one_hot = torch.zeros_like(cls_logits[0])
        one_hot[foreground, labels[ours.matched_idxs[foreground]]] = 1
        loss_cls = sigmoid_focal_loss(cls_logits[0], one_hot, reduction="sum") / max(1, num_fg)
        # Decode (l, t, r, b) / s predictions into boxes around each point.
        ltrb = bbox_regression[0, foreground] * ours.strides[foreground, None]
        xy = ours.points[foreground]
        pred_boxes = torch.cat((xy - ltrb[:, :2], xy + ltrb[:, 2:]), dim=1)
        loss_box = generalized_box_iou_loss(pred_boxes, gt_boxes[ours.matched_idxs[foreground]], reduction="sum")
        loss_ctr = F.binary_cross_entropy_with_logits(bbox_ctrness[0, foreground, 0], ours.centerness[foreground],
                                                      reduction="sum")
        torch.testing.assert_close(loss_cls, expected["classification"])
        torch.testing.assert_close(loss_box / max(1, num_fg), expected["bbox_regression"])
        torch.testing.assert_close(loss_ctr / max(1, num_fg), expected["bbox_ctrness"])


def test_no_boxes_and_single_level(model, device):
    anchors, num_per_level = _torchvision_anchors(model, torch.float32, device)
    empty = torch.zeros(0, 4, device=device)
    targets = assign_fcos_targets(empty, FEATURE_SIZES)
    expected = _torchvision_matched_idxs(model, anchors, num_per_level, empty)
    assert (targets.matched_idxs == -1).all() and (expected == -1).all()
    assert (targets.box_targets == 0).all() and (targets.centerness == 0).all()

    # One level: its scale range is open at both ends, so any box can claim its points.
    gt_boxes = torch.tensor([[0.0, 0.0, 256.0, 128.0]], device=device)
    targets = assign_fcos_targets(gt_boxes, [(16, 32)], [8])
    assert (targets.matched_idxs == 0).sum() == 9  # |d| < 1.5 s = 12 of (128, 64): x, y in 3 x 3 points
    assert targets.centerness.max() == 1  # the point at the box center


def test_rules_by_hand(device):
    # One level (stride 8, 4 x 4 points, x, y in {0, 8, 16, 24}), plus a coarser one so scale bounds apply.
    points, strides, num_per_level = fcos_points([(4, 4), (1, 1)], [8, 16], dtype=torch.float64, device=device)
    box = torch.tensor([[0.0, 0.0, 24.0, 24.0]], dtype=torch.float64, device=device)  # center (12, 12)
    matched = match_points_to_boxes(points, strides, num_per_level, box)
    # Strictly inside: x, y in {8, 16}; |d| = 4 < 12 for those; max side 16 < 64.
    inside = ((points[:, 0] == 8) | (points[:, 0] == 16)) & ((points[:, 1] == 8) | (points[:, 1] == 16))
    assert (matched[:16] == torch.where(inside[:16], 0, -1)).all()
    assert matched[16] == -1  # coarse level: the point (0, 0) is on the box corner, not inside

    # Center sampling is strict: at exactly 1.5 s = 12 from the center a point is rejected.
    box = torch.tensor([[-20.0, -20.0, 44.0, 20.0]], dtype=torch.float64, device=device)  # center (12, 0)
    matched = match_points_to_boxes(points, strides, num_per_level, box)
    assert matched[0] == -1 and matched[1] == 0  # (0, 0) at |dx| = 12; (8, 0) at |dx| = 4

    torch.testing.assert_close(centerness_target(torch.tensor([[1.0, 2.0, 4.0, 2.0]])), torch.tensor([0.5]))


def test_bad_input():
    with pytest.raises(TypeError):
        assign_fcos_targets(torch.zeros(2, 4, dtype=torch.int64), FEATURE_SIZES)
    with pytest.raises(ValueError):
        assign_fcos_targets(torch.zeros(2, 5), FEATURE_SIZES)
    with pytest.raises(ValueError):
        fcos_points([(2, 2)], [8, 16])
    points, strides, _ = fcos_points([(2, 2)], [8])
    with pytest.raises(ValueError):
        match_points_to_boxes(points, strides, [3], torch.zeros(1, 4))
