"""Match predictions (anchors or proposals) to ground-truth boxes by IoU (Lecture 14, Faster R-CNN).

Given an IoU matrix between G ground-truth boxes and P predictions, every prediction gets the index
of its best ground truth if that IoU is high enough, or a negative code:

- best IoU >= high           -> the index of that ground truth (0 .. G-1): a positive;
- low <= best IoU < high     -> -2 (BETWEEN_THRESHOLDS): ignored in training;
- best IoU < low             -> -1 (BELOW_LOW_THRESHOLD): background.

With ``allow_low_quality_matches`` a ground truth that no prediction reaches ``high`` for still gets
a match: for each ground truth, every prediction tied at that ground truth's maximum IoU is
matched, but to ITS OWN best ground truth (which may be another one). Settings in torchvision:
RPN 0.7 / 0.3 with low-quality matches, Fast R-CNN box head 0.5 / 0.5 without, RetinaNet 0.5 / 0.4
with. The rules are exactly those of ``torchvision.models.detection._utils.Matcher`` (the oracle),
including ties: the best ground truth of a prediction is the first (lowest index) among equals,
and a NaN IoU propagates through the max, so that prediction keeps the NaN's index (NaN is
neither < low nor >= low).

Difference from torchvision: it raises ValueError on an empty matrix. Here G = 0 makes every
prediction background (-1) and P = 0 gives an empty result, which is what a detector does with an
image without objects (torchvision's RPN and RoI heads special-case it before calling the Matcher).
"""

from __future__ import annotations

import torch
from torch import Tensor

BELOW_LOW_THRESHOLD = -1
BETWEEN_THRESHOLDS = -2


# --8<-- [start:matcher]
def match_boxes(
    iou_matrix: Tensor,
    high: float,
    low: float,
    allow_low_quality_matches: bool = False,
) -> Tensor:
    """Matched ground-truth index of every prediction, or -1 (background) / -2 (ignored).

    Args:
        iou_matrix: [G, P] floating-point IoU (or any quality) of ground truth g with prediction p.
        high: IoU >= high is a match.
        low: IoU < low is background; [low, high) is ignored. Needs low <= high.
        allow_low_quality_matches: also match, for each ground truth, its highest-IoU predictions
            (all ties), each to its own best ground truth.

    Returns:
        [P] int64 on the device of ``iou_matrix``: index in [0, G), -1 or -2.
    """
    if not isinstance(iou_matrix, Tensor) or iou_matrix.dim() != 2:
        raise ValueError(f"iou_matrix must be a [G, P] tensor, got {getattr(iou_matrix, 'shape', type(iou_matrix))}")
    if not iou_matrix.is_floating_point():
        raise TypeError(f"iou_matrix must be floating point, got {iou_matrix.dtype}")
    if low > high:
        raise ValueError(f"low ({low}) must be <= high ({high})")
    num_gt, num_pred = iou_matrix.shape
    if num_gt == 0 or num_pred == 0:
        return torch.full((num_pred,), BELOW_LOW_THRESHOLD, dtype=torch.int64, device=iou_matrix.device)

    # Best ground truth of every prediction (the first one among ties).
    best_iou, best_gt = iou_matrix.max(dim=0)  # [P], [P]
    matches = best_gt.clone()
    matches[best_iou < low] = BELOW_LOW_THRESHOLD
    matches[(best_iou >= low) & (best_iou < high)] = BETWEEN_THRESHOLDS

    if allow_low_quality_matches:
        # Without this a ground truth whose best anchor has IoU 0.6 would get no positive at all.
        best_iou_per_gt = iou_matrix.max(dim=1).values  # [G]
        is_best_for_some_gt = (iou_matrix == best_iou_per_gt[:, None]).any(dim=0)  # [P], keeps ties
        # The prediction goes to its own best ground truth, not necessarily the one it is best for.
        matches = torch.where(is_best_for_some_gt, best_gt, matches)
    return matches
# --8<-- [end:matcher]
