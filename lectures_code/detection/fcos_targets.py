"""FCOS training targets for one image: which ground-truth box each feature-map point learns (Lecture 14).

FCOS (Tian et al., 2019) is anchor-free: every point of every feature-pyramid level is a
candidate, and a point that falls on an object regresses its distances (l, t, r, b) to the four
sides of that object's box. The rules, as in ``torchvision.models.detection.FCOS`` (the oracle):

1. Points. Level k has stride s (8, 16, 32, 64, 128 for P3-P7); its point (x, y) of an H x W map
   sits at (x * s, y * s) in the image, row-major (y outer, x inner), levels concatenated.
   (The paper puts it at the cell center, x * s + s // 2; torchvision uses the anchor centers.)
2. A point is a *candidate* for a box when it is
   - strictly inside the box: min(l, t, r, b) > 0, with l = x - x1, t = y - y1, r = x2 - x, b = y2 - y;
   - near its center ("center sampling"): max(|x - cx|, |y - cy|) < 1.5 s, so only points in the
     central region of the box learn it, not the ones on its edges (those give poor boxes);
   - on the right pyramid level for its size: 4 s < max(l, t, r, b) < 8 s, with the lower bound
     of the first level set to 0 and the upper bound of the last level to infinity. Large objects go to
     coarse levels and small ones to fine levels, so overlapping objects of different sizes rarely
     compete for the same point.
3. A point that is a candidate for several boxes takes the one with the smallest area (the
   biggest box is likely covered by other points elsewhere). A point with no candidate is background.

Boxes are ``xyxy`` = (x1, y1, x2, y2) in image pixels, no "+1" convention.

One deliberate difference from torchvision: it picks the smallest box as the argmax of
candidate * (1e8 - area). For float32 boxes, 1e8 - area rounds to a multiple of 8, so two candidate
boxes whose areas differ by less than ~8 px^2 tie and the first one wins, even if it is bigger (and
boxes of area >= 1e8 px^2 never match). We take the argmin of the areas themselves; float64 boxes,
or float32 areas that are not that close, give the same result as torchvision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

FCOS_STRIDES = (8, 16, 32, 64, 128)


class FCOSTargets(NamedTuple):
    """Targets of the P points of one image (all levels, in ``fcos_points`` order).

    points: [P, 2] (x, y) image coordinates of the points.
    strides: [P] stride of each point's level.
    matched_idxs: [P] int64 index of the assigned ground-truth box, -1 for background.
    box_targets: [P, 4] (l, t, r, b) distances in pixels to the assigned box; 0 for background.
        (torchvision's ``BoxLinearCoder`` divides them by the stride before regressing.)
    centerness: [P] centerness target in [0, 1]; 0 for background.
    """

    points: Tensor
    strides: Tensor
    matched_idxs: Tensor
    box_targets: Tensor
    centerness: Tensor


def fcos_points(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int] = FCOS_STRIDES,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor, list[int]]:
    """Image coordinates of every point of a feature pyramid.

    Args:
        feature_sizes: (H, W) of each level, finest first.
        strides: stride of each level (image pixels per feature-map cell), same length.
        dtype, device: of the returned tensors.

    Returns:
        points: [P, 2] (x * s, y * s), level by level, row-major within a level.
        point_strides: [P] the stride s of each point.
        num_points_per_level: H * W of each level, summing to P.
    """
    if len(feature_sizes) != len(strides) or len(strides) == 0:
        raise ValueError(f"need one stride per level, got {len(feature_sizes)} sizes and {len(strides)} strides")
    points, point_strides, num_points_per_level = [], [], []
    for (height, width), stride in zip(feature_sizes, strides):
        ys = torch.arange(height, dtype=dtype, device=device) * stride
        xs = torch.arange(width, dtype=dtype, device=device) * stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # [H, W] each
        points.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=1))  # [H*W, 2]
        point_strides.append(torch.full((height * width,), stride, dtype=dtype, device=device))
        num_points_per_level.append(height * width)
    return torch.cat(points), torch.cat(point_strides), num_points_per_level


# --8<-- [start:centerness]
def centerness_target(box_targets: Tensor) -> Tensor:
    """FCOS centerness of points from their (l, t, r, b) distances to their box.

    centerness = sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)): 1 at the box center, falling
    to 0 at its edges. FCOS predicts it next to the class scores and multiplies the two at test
    time, so the low-quality boxes predicted by off-center points rank lower in NMS.

    Args:
        box_targets: [..., 4] (l, t, r, b), all > 0 for a point inside its box.

    Returns:
        [...] centerness, same dtype.
    """
    left_right = box_targets[..., [0, 2]]
    top_bottom = box_targets[..., [1, 3]]
    return torch.sqrt(
        (left_right.min(dim=-1).values / left_right.max(dim=-1).values)
        * (top_bottom.min(dim=-1).values / top_bottom.max(dim=-1).values)
    )
# --8<-- [end:centerness]


def assign_fcos_targets(
    gt_boxes: Tensor,
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int] = FCOS_STRIDES,
    center_sampling_radius: float = 1.5,
) -> FCOSTargets:
    """Assign each point of the feature pyramid to a ground-truth box, or to background.

    Args:
        gt_boxes: [M, 4] xyxy ground-truth boxes of one image, floating point (M may be 0).
        feature_sizes: (H, W) of each pyramid level, finest first.
        strides: stride of each level; the scale ranges are (4 s, 8 s) with the first level
            starting at 0 and the last one open-ended.
        center_sampling_radius: a point must be within radius * s of the box center (Chebyshev).

    Returns:
        ``FCOSTargets`` (points, strides, matched_idxs, box_targets, centerness), all on the device
        of ``gt_boxes``, floats in its dtype.
    """
    if not isinstance(gt_boxes, Tensor):
        raise TypeError(f"gt_boxes must be a torch.Tensor, got {type(gt_boxes).__name__}")
    if not gt_boxes.is_floating_point():
        raise TypeError(f"gt_boxes must be floating point, got dtype {gt_boxes.dtype}")
    if gt_boxes.dim() != 2 or gt_boxes.shape[1] != 4:
        raise ValueError(f"gt_boxes must have shape [M, 4], got {list(gt_boxes.shape)}")
    points, point_strides, num_points_per_level = fcos_points(
        feature_sizes, strides, dtype=gt_boxes.dtype, device=gt_boxes.device
    )
    matched_idxs = match_points_to_boxes(points, point_strides, num_points_per_level, gt_boxes,
                                         center_sampling_radius)

    foreground = matched_idxs >= 0  # [P]
    if gt_boxes.shape[0] == 0:
        matched_boxes = gt_boxes.new_zeros(points.shape[0], 4)
    else:
        matched_boxes = gt_boxes[matched_idxs.clamp(min=0)]  # [P, 4]; background rows are dummies
    x, y = points.unbind(dim=1)  # [P] each
    box_targets = torch.stack((x - matched_boxes[:, 0], y - matched_boxes[:, 1],
                               matched_boxes[:, 2] - x, matched_boxes[:, 3] - y), dim=1)  # [P, 4] l, t, r, b
    box_targets = torch.where(foreground[:, None], box_targets, torch.zeros_like(box_targets))
    # Background rows would be 0 / 0 = NaN: compute only the foreground.
    centerness = torch.zeros_like(x)
    centerness[foreground] = centerness_target(box_targets[foreground])
    return FCOSTargets(points, point_strides, matched_idxs, box_targets, centerness)


# --8<-- [start:fcos_targets]
def match_points_to_boxes(
    points: Tensor,
    point_strides: Tensor,
    num_points_per_level: Sequence[int],
    gt_boxes: Tensor,
    center_sampling_radius: float = 1.5,
) -> Tensor:
    """The FCOS assignment rule: the index of the box each point learns, -1 for background.

    Args:
        points: [P, 2] (x, y) from ``fcos_points``.
        point_strides: [P] stride of each point's level.
        num_points_per_level: points per level (the first and last level have open scale ranges).
        gt_boxes: [M, 4] xyxy boxes.
        center_sampling_radius: in strides.

    Returns:
        [P] int64 indices into ``gt_boxes``, -1 where no box claims the point. Ties in area go to
        the lowest index.
    """
    num_points = points.shape[0]
    if sum(num_points_per_level) != num_points or point_strides.shape != (num_points,):
        raise ValueError(f"{num_points} points, but {sum(num_points_per_level)} in num_points_per_level "
                         f"and point_strides of shape {list(point_strides.shape)}")
    if gt_boxes.shape[0] == 0:
        return torch.full((num_points,), -1, dtype=torch.int64, device=points.device)

    # Center sampling: near the box center in both x and y, measured in strides of the point's level.
    gt_centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2  # [M, 2]
    center_dist = (points[:, None, :] - gt_centers[None, :, :]).abs().max(dim=2).values  # [P, M]
    candidate = center_dist < center_sampling_radius * point_strides[:, None]  # [P, M]

    # Distances (l, t, r, b) from every point to the four sides of every box.
    x, y = points[:, None, 0], points[:, None, 1]  # [P, 1]
    x1, y1, x2, y2 = gt_boxes[None].unbind(dim=2)  # [1, M]
    ltrb = torch.stack((x - x1, y - y1, x2 - x, y2 - y), dim=2)  # [P, M, 4]
    candidate &= ltrb.min(dim=2).values > 0  # strictly inside the box

    # Scale assignment: the farthest side must lie in (4 s, 8 s), open at both ends of the pyramid.
    lower = point_strides * 4
    upper = point_strides * 8
    lower[: num_points_per_level[0]] = 0
    upper[num_points - num_points_per_level[-1]:] = float("inf")
    max_side = ltrb.max(dim=2).values  # [P, M]
    candidate &= (max_side > lower[:, None]) & (max_side < upper[:, None])

    # Ambiguous point: the smallest box wins. min() returns the first index on ties.
    areas = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])  # [M]
    candidate_areas = torch.where(candidate, areas[None, :], torch.full_like(max_side, float("inf")))  # [P, M]
    min_area, matched_idxs = candidate_areas.min(dim=1)  # [P]
    matched_idxs[min_area == float("inf")] = -1
    return matched_idxs
# --8<-- [end:fcos_targets]
