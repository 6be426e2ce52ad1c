"""Training targets of a region proposal network (Lecture 14, Faster R-CNN).

Every anchor of an image gets an objectness label and a regression target:

- match the anchors to the ground-truth boxes by IoU (``match_boxes`` with 0.7 / 0.3 and
  low-quality matches, so every ground truth gets at least its best anchors);
- label 1 (object) for a matched anchor, 0 (background) below 0.3, -1 (ignored) in between;
- regression target = ``encode_boxes(anchor, matched ground truth, weights=(1, 1, 1, 1))``; it is
  only used (in the loss) for anchors labelled 1.

Boxes are xyxy in image pixels. This reproduces torchvision's
``RegionProposalNetwork.assign_targets_to_anchors`` followed by ``box_coder.encode`` (the oracle),
including an image without ground truth: every anchor is background and the targets are encoded
against all-zero boxes (so tw, th = -inf; harmless, since no anchor is positive).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lectures_code.detection.matcher import BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS, match_boxes
from lectures_code.ops.box_coding import encode_boxes
from lectures_code.ops.boxes import box_iou


def _check(name: str, boxes: Tensor) -> None:
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(boxes).__name__}")
    if not boxes.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {boxes.dtype}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] (xyxy), got {list(boxes.shape)}")


# --8<-- [start:rpn_targets]
def rpn_targets(
    anchors: Tensor,
    gt_boxes: Tensor,
    fg_iou_thresh: float = 0.7,
    bg_iou_thresh: float = 0.3,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
) -> tuple[Tensor, Tensor]:
    """Objectness labels and box-regression targets of every anchor of one image.

    Args:
        anchors: [A, 4] xyxy anchors (floating point), e.g. from ``AnchorGenerator``.
        gt_boxes: [G, 4] xyxy ground-truth boxes, same device; G may be 0.
        fg_iou_thresh: IoU >= this is an object (1).
        bg_iou_thresh: IoU < this is background (0); in between is ignored (-1).
        weights: (wx, wy, ww, wh) of the box coder.

    Returns:
        labels: [A] float32 in {1, 0, -1}.
        regression_targets: [A, 4] (tx, ty, tw, th) of each anchor's matched ground truth, dtype of
            ``gt_boxes`` (float32 when G = 0).
    """
    _check("anchors", anchors)
    _check("gt_boxes", gt_boxes)
    num_anchors = anchors.shape[0]
    if gt_boxes.shape[0] == 0:
        labels = torch.zeros(num_anchors, dtype=torch.float32, device=anchors.device)
        matched_gt = torch.zeros(num_anchors, 4, dtype=torch.float32, device=anchors.device)
        return labels, encode_boxes(anchors, matched_gt, weights)

    matches = match_boxes(box_iou(gt_boxes, anchors), fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
    labels = (matches >= 0).to(torch.float32)  # [A]: 1 for every matched anchor
    labels[matches == BELOW_LOW_THRESHOLD] = 0.0
    labels[matches == BETWEEN_THRESHOLDS] = -1.0
    # Negative codes are clamped to ground truth 0 only to index safely; those rows are never used.
    matched_gt = gt_boxes[matches.clamp(min=0)]  # [A, 4]
    return labels, encode_boxes(anchors, matched_gt, weights)
# --8<-- [end:rpn_targets]
