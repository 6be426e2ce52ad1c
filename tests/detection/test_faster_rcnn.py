"""Faster R-CNN: head layout, proposal selection, losses, inference format, training, shipped checkpoint and its AP."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder, Matcher
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import box_iou as tv_box_iou
from torchvision.ops import clip_boxes_to_image, remove_small_boxes
from torchvision.ops import nms as tv_nms

from lectures_code.data.digit_canvases import render_canvases
from lectures_code.detection.faster_rcnn import (
    BOX_WEIGHTS,
    FasterRCNN,
    RPNHead,
    box_head_targets,
    faster_rcnn_losses,
    select_proposals,
)

LOSS_NAMES = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}


@pytest.fixture(scope="module")
def canvases():
    return render_canvases("train", 4, seed=0)


def _batch(canvases, device, n=2):
    images, targets = canvases
    return (images[:n].to(device).float() / 255,
            [{k: v.to(device) for k, v in t.items()} for t in targets[:n]])


# ---------------------------------------------------------------------------------------------
# RPN head and proposals


def test_rpn_head_layout_matches_torchvision():
    torch.manual_seed(0)
    head = RPNHead(8, 6)
    features = torch.randn(2, 8, 5, 7)
    logits, deltas = head(features)
    hidden = torch.relu(head.conv(features))
    tv_logits, tv_deltas = concat_box_prediction_layers([head.objectness(hidden)], [head.deltas(hidden)])  # oracle
    torch.testing.assert_close(logits.reshape(-1, 1), tv_logits)
    torch.testing.assert_close(deltas.reshape(-1, 4), tv_deltas)


@pytest.mark.parametrize("seed", range(6))
def test_select_proposals_matches_torchvision_steps(seed):
    g = torch.Generator().manual_seed(seed)
    num_anchors = 500
    centres = torch.rand(num_anchors, 2, generator=g) * 140 - 6
    sizes = torch.rand(num_anchors, 2, generator=g) * 60 + 4
    anchors = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)
    objectness = torch.randn(num_anchors, generator=g)
    deltas = torch.randn(num_anchors, 4, generator=g) * 0.3
    if seed == 0:
        deltas[:20, 2:] = -8.0  # shrink some boxes below min_size: they must be removed
    boxes, scores = select_proposals(anchors, objectness, deltas, (96, 128), pre_nms_top_n=300, post_nms_top_n=50)

    # Oracle: torchvision's RPN filter_proposals steps, one image, one level.
    top = objectness.topk(300).indices
    ref = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(deltas[top], anchors[top])
    ref = clip_boxes_to_image(ref, (96, 128))
    ref_scores = objectness[top].sigmoid()
    keep = remove_small_boxes(ref, 1.0)
    ref, ref_scores = ref[keep], ref_scores[keep]
    keep = tv_nms(ref, ref_scores, 0.7)[:50]
    torch.testing.assert_close(boxes, ref[keep])
    torch.testing.assert_close(scores, ref_scores[keep])

    assert len(boxes) <= 50
    assert bool((boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= 128).all())
    assert bool((boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= 96).all())
    assert bool((scores[:-1] >= scores[1:]).all())  # sorted by decreasing objectness
    iou = tv_box_iou(boxes, boxes).fill_diagonal_(0)
    assert bool((iou <= 0.7 + 1e-6).all())


def test_select_proposals_rejects_bad_shapes():
    with pytest.raises(ValueError):
        select_proposals(torch.zeros(5, 4), torch.zeros(4), torch.zeros(5, 4), (10, 10), 10, 10)


# ---------------------------------------------------------------------------------------------
# Losses


@pytest.mark.parametrize("seed", range(4))
def test_box_head_loss_matches_torchvision(seed):
    g = torch.Generator().manual_seed(seed)
    num, classes = 40, 10
    class_logits = torch.randn(num, classes + 1, generator=g)
    box_deltas = torch.randn(num, classes, 4, generator=g)
    labels = torch.randint(0, classes + 1, (num,), generator=g)
    box_targets = torch.randn(num, 4, generator=g)
    rpn = (torch.randn(30, generator=g), torch.randn(30, 4, generator=g),
           torch.randint(0, 2, (30,), generator=g).float(), torch.randn(30, 4, generator=g))
    losses = faster_rcnn_losses(*rpn, class_logits, box_deltas, labels, box_targets)
    # torchvision's box head predicts a (background) box for class 0 too; it is never trained.
    with_background = torch.cat([torch.zeros(num, 1, 4), box_deltas], dim=1).reshape(num, -1)
    ref_cls, ref_box = fastrcnn_loss(class_logits, with_background, [labels], [box_targets])  # oracle
    torch.testing.assert_close(losses["loss_classifier"], ref_cls)
    torch.testing.assert_close(losses["loss_box_reg"], ref_box)
    # RPN: torchvision's compute_loss formulas, written out.
    objectness, deltas, rpn_labels, rpn_targets = rpn
    pos = rpn_labels > 0
    ref_rpn_box = torch.nn.functional.smooth_l1_loss(deltas[pos], rpn_targets[pos], beta=1 / 9, reduction="sum") / 30
    torch.testing.assert_close(losses["loss_rpn_box_reg"], ref_rpn_box)
    torch.testing.assert_close(losses["loss_objectness"],
                               torch.nn.functional.binary_cross_entropy_with_logits(objectness, rpn_labels))


@pytest.mark.parametrize("seed", range(5))
def test_box_head_targets_follow_iou(seed):
    g = torch.Generator().manual_seed(seed)
    gt = torch.tensor([[10.0, 10, 40, 50], [60, 20, 90, 80], [30, 70, 70, 120]])
    gt_labels = torch.tensor([3, 0, 7])
    jitter = torch.randn(300, 4, generator=g) * 8
    proposals = (gt.repeat(100, 1) + jitter).clamp(0, 128)
    proposals[:, 2:] = torch.maximum(proposals[:, 2:], proposals[:, :2] + 2)
    torch.manual_seed(seed)
    sampled, labels, box_targets = box_head_targets(proposals, gt, gt_labels, 64, 0.25)
    assert len(sampled) == 64 and int((labels > 0).sum()) == 16  # plenty of both: exactly 25% positive
    # Oracle: torchvision's box-head Matcher (0.5 / 0.5, no low-quality matches) on the same boxes.
    matches = Matcher(0.5, 0.5, allow_low_quality_matches=False)(tv_box_iou(gt, sampled))
    expected = torch.where(matches >= 0, gt_labels[matches.clamp(min=0)] + 1, 0)
    assert torch.equal(labels, expected)
    fg = labels > 0
    decoded = BoxCoder(BOX_WEIGHTS).decode_single(box_targets[fg], sampled[fg])
    torch.testing.assert_close(decoded, gt[matches[fg]], atol=1e-3, rtol=0)
    assert bool((box_targets[~fg] == 0).all())
    # The ground-truth boxes are candidates too: with every proposal far away they are the positives.
    far = torch.tensor([[0.0, 0, 4, 4], [120, 120, 127, 127]])
    sampled, labels, _ = box_head_targets(far, gt, gt_labels, 64, 0.25)
    assert sorted(labels[labels > 0].tolist()) == [1, 4, 8] and len(sampled) == 5
    # No ground truth: everything is background.
    _, labels, _ = box_head_targets(far, gt[:0], gt_labels[:0], 64, 0.25)
    assert bool((labels == 0).all())


def test_forward_returns_four_finite_losses(canvases, device):
    torch.manual_seed(0)
    model = FasterRCNN().to(device).train()
    images, targets = _batch(canvases, device)
    losses = model(images, targets)
    assert set(losses) == LOSS_NAMES
    for name, value in losses.items():
        value = float(value.detach())
        assert math.isfinite(value) and value >= 0, name
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.rpn_head.parameters())
    assert all(p.grad is not None for p in model.box_head.parameters())


def test_bad_input_raises(canvases):
    model = FasterRCNN().train()
    images, targets = _batch(canvases, "cpu")
    with pytest.raises(ValueError, match="target"):
        model(images)
    with pytest.raises(ValueError):
        model(images[:, :2], targets)
    with pytest.raises(TypeError):
        model.eval()(images.to(torch.uint8))
    with pytest.raises(ValueError):
        model.eval()(images[..., :100])
