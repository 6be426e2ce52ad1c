"""PASCAL VOC average precision (Lecture 13): area under a precision-recall curve, two ways.

Input: the precision-recall points of ONE class, obtained by sorting all its detections (over the
whole dataset) by descending score and walking down the list: recall[i] = TP_i / num_positives and
precision[i] = TP_i / (i + 1). How VOC decides that a detection is a TP (from the devkit; COCO differs):
- boxes are xyxy in pixel indices with inclusive ends, so widths and areas use "+1":
  w = x2 - x1 + 1, and IoU = inter / union on those +1 areas;
- a detection is a TP when its IoU with its highest-IoU GT is STRICTLY greater than 0.5 and that GT was
  not already taken (a second detection of a taken GT is a false positive; it does not try another GT);
- GTs marked "difficult" are left out of num_positives, and a detection whose best GT is difficult
  counts as neither TP nor FP.

Two ways to turn the curve into one number:
- VOC2007 ("11-point"): mean over t in {0, 0.1, ..., 1} of the best precision at recall >= t;
- VOC2010+ (default): exact area under the "precision envelope" (precision made non-increasing from
  the right), i.e. sum of recall steps times envelope precision.
"""

from __future__ import annotations

import numpy as np
import torch


def _as_1d_tensor(values, name: str) -> torch.Tensor:
    if not isinstance(values, torch.Tensor):
        values = torch.as_tensor(np.asarray(values, dtype=np.float64))
    if values.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(values.shape)}")
    if not values.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {values.dtype}")
    return values


# --8<-- [start:voc_ap]
def voc_ap(recall, precision, use_07_metric: bool = False) -> float:
    """VOC average precision of one class from its PR points (see module docstring).

    recall, precision: 1-D [N] float tensors (any device) or array-likes, in descending-score order
    (recall non-decreasing). Computed in the inputs' dtype (float64 for array-likes).
    use_07_metric: True for the VOC2007 11-point mean, False for the VOC2010+ area under the envelope.
    Returns a Python float; 0.0 for empty inputs. Precision is assumed >= 0.
    """
    recall, precision = _as_1d_tensor(recall, "recall"), _as_1d_tensor(precision, "precision")
    if recall.shape != precision.shape:
        raise ValueError(
            f"recall and precision differ in shape: {tuple(recall.shape)} vs {tuple(precision.shape)}"
        )
    precision = precision.to(device=recall.device, dtype=recall.dtype)
    if recall.numel() == 0:
        return 0.0
    if (recall[1:] < recall[:-1]).any():
        raise ValueError("recall must be non-decreasing (points in descending-score order)")
    if use_07_metric:
        # the same points as np.arange(0.0, 1.1, 0.1) (0.30000000000000004, ...)
        points = torch.arange(11, dtype=torch.float64).mul(0.1).to(device=recall.device, dtype=recall.dtype)
        reached = recall[None, :] >= points[:, None]  # [11, N]
        best = torch.where(reached, precision[None, :], torch.zeros_like(precision)).amax(dim=1)  # [11]
        return float((best / 11).sum())
    # sentinels: the curve starts at recall 0 and is extended to recall 1 with precision 0
    zero, one = recall.new_zeros(1), recall.new_ones(1)
    recall = torch.cat([zero, recall, one])  # [N + 2]
    precision = torch.cat([zero, precision, zero])
    envelope = precision.flip(0).cummax(0).values.flip(0)  # max precision at any recall >= this one
    steps = recall[1:] - recall[:-1]  # [N + 1]; zero where recall does not move
    return float((steps * envelope[1:]).sum())
# --8<-- [end:voc_ap]
