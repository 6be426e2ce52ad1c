"""Losses of single-stage detectors: sigmoid focal loss and the IoU family of box losses (Lecture 14).

- ``sigmoid_focal_loss``: the classification loss of RetinaNet and FCOS. Inputs are logits of any
  shape, one independent binary (sigmoid) classifier per class and location.
- ``generalized_box_iou`` ([N, 4] x [M, 4] -> [N, M] matrix) and the element-wise box losses
  ``generalized_box_iou_loss``, ``distance_box_iou_loss``, ``complete_box_iou_loss``
  ([N, 4] and [N, 4] -> [N], or [4] and [4] -> []). Every box is ``xyxy`` = (x1, y1, x2, y2)
  with x1 <= x2 and y1 <= y2, no "+1" pixel convention.

Two-stage detectors regress box *deltas* with smooth-L1 instead; torch already has it as
``F.smooth_l1_loss(input, target, beta)``: quadratic 0.5 x^2 / beta for |x| < beta, linear
|x| - 0.5 beta beyond. Faster R-CNN uses beta = 1/9 (see ``rcnn.py``), which makes it almost L1.

The formulas and the order of floating-point operations follow ``torchvision.ops`` (the tests use
it as the oracle, values AND gradients): float16/bfloat16/integer boxes are computed in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


# --8<-- [start:focal_loss]
def sigmoid_focal_loss(
    inputs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "none"
) -> Tensor:
    """Focal loss of RetinaNet (Lin et al., 2017): binary cross-entropy scaled by (1 - p_t)^gamma.

    Why: a dense detector scores ~10^4-10^5 locations x classes per image, and all but a handful
    are background ("class imbalance"). Most negatives are *easy*: the model already gives them
    p ~ 0. Each contributes a tiny cross-entropy, but there are so many that their sum drowns the
    few positives. With p_t = p for a positive (target 1) and 1 - p for a negative (target 0),
    the factor (1 - p_t)^gamma is ~0 for well-classified examples and ~1 for badly classified
    ones, so the loss concentrates on the hard ones.

    Tiny example, gamma = 2: an easy negative with p = 0.01 has p_t = 0.99, CE = -log 0.99 = 0.01,
    focal = 0.01 * 0.01^2 = 1e-6 (10^4 times smaller); a hard positive with p = 0.1 has
    p_t = 0.1, CE = 2.3, focal = 2.3 * 0.9^2 = 1.87 (barely changed). 10^5 easy negatives now
    weigh 0.1 in total instead of 1000.

    alpha_t = alpha for positives and 1 - alpha for negatives is an extra fixed class weight.
    alpha = 0.25 *down*-weights the positives: once gamma has silenced the easy negatives, the
    positives would otherwise dominate (the paper found 0.25 best with gamma = 2).

    Args:
        inputs: logits, any shape, floating point.
        targets: same shape and dtype, 1 for positives and 0 for negatives (soft labels work too).
        alpha: weight of the positives in [0, 1], or -1 for no weighting.
        gamma: focusing exponent >= 0; gamma = 0 with alpha = -1 is plain binary cross-entropy.
        reduction: ``"none"`` (same shape as ``inputs``), ``"mean"`` or ``"sum"`` (scalars).

    Returns:
        The loss, in the dtype of ``inputs``.
    """
    if not isinstance(inputs, Tensor) or not isinstance(targets, Tensor):
        raise TypeError("inputs and targets must be torch.Tensors")
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must be floating point logits, got dtype {inputs.dtype}")
    if inputs.shape != targets.shape:
        raise ValueError(f"inputs and targets must have the same shape, got {list(inputs.shape)} "
                         f"and {list(targets.shape)}")
    if not (0 <= alpha <= 1) and alpha != -1:
        raise ValueError(f"alpha must be in [0, 1] or -1 (no weighting), got {alpha}")
    _check_reduction(reduction)

    p = torch.sigmoid(inputs)
    # From the logits, not from p: log(sigmoid(x)) stays finite where p rounds to exactly 0 or 1.
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)  # probability given to the true label
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss

    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss
# --8<-- [end:focal_loss]


def _check_boxes(boxes: Tensor, name: str, pairwise: bool) -> Tensor:
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {boxes.dtype}")
    if boxes.shape[-1:] != (4,) or boxes.dim() > 2 or (pairwise and boxes.dim() != 2):
        shape = "[N, 4]" if pairwise else "[N, 4] or [4]"
        raise ValueError(f"{name} must have shape {shape}, got {list(boxes.shape)}")
    # Products of coordinates overflow float16 (max 65504): compute in float32, like torchvision.
    return boxes if boxes.dtype in (torch.float32, torch.float64) else boxes.float()


# --8<-- [start:giou]
def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Generalized IoU (Rezatofighi et al., 2019) of every box in ``boxes1`` with every box in ``boxes2``.

    GIoU = IoU - (area(C) - union) / area(C), where C is the smallest box enclosing both. It is
    in (-1, 1]: 1 for identical boxes, IoU for nested ones, and, unlike IoU, it keeps decreasing
    towards -1 as disjoint boxes move apart, so "how far off" is visible even at zero overlap.

    Args:
        boxes1: [N, 4] xyxy boxes.
        boxes2: [M, 4] xyxy boxes, same device.

    Returns:
        [N, M] GIoU, float64 for float64 input, float32 otherwise. No epsilon: two zero-area
        boxes at the same place give NaN (0 / 0).
    """
    boxes1 = _check_boxes(boxes1, "boxes1", pairwise=True)
    boxes2 = _check_boxes(boxes2, "boxes2", pairwise=True)
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])  # [N]
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])  # [M]

    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])  # [N, M, 2]
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])  # [N, M, 2]
    inter_wh = (bottom_right - top_left).clamp(min=0)  # disjoint -> 0, not negative
    inter = inter_wh[..., 0] * inter_wh[..., 1]  # [N, M]
    union = area1[:, None] + area2[None, :] - inter
    iou = inter / union

    # The enclosing box runs from the smaller top-left corner to the larger bottom-right one.
    enclose_wh = (torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
                  - torch.min(boxes1[:, None, :2], boxes2[None, :, :2])).clamp(min=0)  # [N, M, 2]
    enclose = enclose_wh[..., 0] * enclose_wh[..., 1]  # [N, M]
    return iou - (enclose - union) / enclose


def generalized_box_iou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """1 - GIoU of matching pairs: ``boxes1[i]`` against ``boxes2[i]`` (symmetric in the two).

    Used by FCOS (and DETR) as the box regression loss. It lies in [0, 2): 0 for a perfect box,
    and it still has a gradient when the boxes do not overlap at all, where 1 - IoU is flat.

    Args:
        boxes1: [N, 4] or [4] xyxy boxes (e.g. predictions).
        boxes2: same shape, xyxy (e.g. ground truth).
        reduction: ``"none"`` ([N]), ``"mean"`` or ``"sum"`` (scalars; mean of nothing is 0).
        eps: added to the union and to area(C) so zero-area boxes give a finite loss.

    Returns:
        The loss, float64 for float64 input, float32 otherwise.
    """
    boxes1, boxes2, inter, union = _inter_union(boxes1, boxes2)
    _check_reduction(reduction)
    iou = inter / (union + eps)

    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    enclose = (torch.max(x2, x2g) - torch.min(x1, x1g)) * (torch.max(y2, y2g) - torch.min(y1, y1g))
    giou = iou - (enclose - union) / (enclose + eps)
    return _reduce(1 - giou, reduction)
# --8<-- [end:giou]


def _inter_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    # Element-wise intersection and union of matching pairs ([N] or []).
    boxes1 = _check_boxes(boxes1, "boxes1", pairwise=False)
    boxes2 = _check_boxes(boxes2, "boxes2", pairwise=False)
    if boxes1.shape != boxes2.shape:
        raise ValueError(f"boxes1 and boxes2 must have the same shape, got {list(boxes1.shape)} "
                         f"and {list(boxes2.shape)}")
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    inter_w = torch.min(x2, x2g) - torch.max(x1, x1g)
    inter_h = torch.min(y2, y2g) - torch.max(y1, y1g)
    # A mask rather than clamp(min=0): boxes that only touch get no gradient through the
    # intersection, exactly like torchvision's masked assignment.
    overlap = (inter_w > 0) & (inter_h > 0)
    inter = torch.where(overlap, inter_w * inter_h, torch.zeros_like(inter_w))
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    return boxes1, boxes2, inter, union


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        # 0 * sum() keeps the graph (and the dtype) when there is no box at all, instead of NaN.
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    if reduction == "sum":
        return loss.sum()
    return loss


def _distance_term(boxes1: Tensor, boxes2: Tensor, eps: float) -> Tensor:
    # Squared distance between the centers over the squared diagonal of the enclosing box.
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    diagonal_sq = (torch.max(x2, x2g) - torch.min(x1, x1g)) ** 2 + (torch.max(y2, y2g) - torch.min(y1, y1g)) ** 2 + eps
    centers_sq = ((x2 + x1) / 2 - (x1g + x2g) / 2) ** 2 + ((y2 + y1) / 2 - (y1g + y2g) / 2) ** 2
    return centers_sq / diagonal_sq


def distance_box_iou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """DIoU loss (Zheng et al., 2020): 1 - IoU + d^2 / c^2 of matching pairs.

    d is the distance between the two centers, c the diagonal of the enclosing box: the penalty
    pulls the centers together directly, which converges faster than GIoU's area term.

    Args and returns: as ``generalized_box_iou_loss``.
    """
    boxes1, boxes2, inter, union = _inter_union(boxes1, boxes2)
    _check_reduction(reduction)
    iou = inter / (union + eps)
    return _reduce(1 - iou + _distance_term(boxes1, boxes2, eps), reduction)


def complete_box_iou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """CIoU loss (Zheng et al., 2020): the DIoU loss + alpha * v, where v penalizes different aspect ratios.

    v = 4 / pi^2 * (atan(w_gt / h_gt) - atan(w / h))^2 and alpha = v / (1 - IoU + v), a weight
    treated as a constant (no gradient). ``boxes2`` is the ground truth here: the loss is not
    symmetric. As in torchvision, ``eps`` only enters alpha; the DIoU part always uses 1e-7.

    Args and returns: as ``generalized_box_iou_loss``.
    """
    boxes1, boxes2, inter, union = _inter_union(boxes1, boxes2)
    _check_reduction(reduction)
    iou = inter / (union + 1e-7)
    diou_loss = 1 - iou + _distance_term(boxes1, boxes2, 1e-7)

    w_pred, h_pred = boxes1[..., 2] - boxes1[..., 0], boxes1[..., 3] - boxes1[..., 1]
    w_gt, h_gt = boxes2[..., 2] - boxes2[..., 0], boxes2[..., 3] - boxes2[..., 1]
    v = (4 / (torch.pi**2)) * torch.pow(torch.atan(w_gt / h_gt) - torch.atan(w_pred / h_pred), 2)
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return _reduce(diou_loss + alpha * v, reduction)
