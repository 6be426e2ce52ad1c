"""Mask R-CNN's two mask ops (Lecture 15): box -> M x M training target, and M x M prediction -> image.

``project_masks_on_boxes(gt_masks, boxes, matched_idxs, M)``: the training target of every positive
proposal. ``gt_masks`` [G, H, W] (bool, uint8 or float; the GT masks of one image), ``boxes`` [P, 4]
xyxy float proposals in image pixels, ``matched_idxs`` [P] int64 (which GT each proposal matched).
Returns float [P, M, M] in ``boxes``' dtype: the matched GT mask cut out along the proposal and
resampled by RoI Align, i.e. ``roi_align(gt_masks[:, None], rois, (M, M), 1.0)`` (adaptive sampling,
aligned=False). The targets stay soft (fractions in [0, 1] along the mask's edge): Mask R-CNN feeds
them to binary cross-entropy without thresholding.

How: on a single channel RoI Align factorizes. Bin (i, j) averages bilinear samples over a grid of
points (y_a, x_b), and a bilinear sample is a product of a weight along y and one along x (with
torchvision's border rules, also products: see ``roi_align.linear_taps``), so the bin's value is
``sum_{r, c} rows[i, r] * mask[r, c] * cols[j, c]`` with rows[i, r] = the mean over the bin's y samples
of their weight on row r (cols likewise): the target of proposal p is ``rows_p @ mask @ cols_p^T``.
The weights come from ``roi_align``'s own sampling (``sample_coords``, ``linear_taps``); the matrix
products replace its gather of every sample's 4 cells, which for one channel and the large boxes of
Mask R-CNN's training proposals is 10-30x faster (tested equal to ``roi_align`` and torchvision).

``paste_masks_in_image(masks, boxes, img_shape, padding=1)``: the inverse at test time. ``masks``
[N, 1, M, M] float (probabilities of the predicted class), ``boxes`` [N, 4] xyxy float detections,
``img_shape`` (H, W). Returns [N, 1, H, W] in ``masks``' dtype, the probabilities (threshold them
yourself, e.g. > 0.5), zero outside each box. Steps, as ``torchvision.models.detection.roi_heads``:
1. pad each mask by ``padding`` zeros on every side and grow its box by the same factor
   (M + 2 padding) / M about its centre, so that the mask's border fades out instead of being cut;
2. truncate the grown box to int64 (towards zero) and treat it as pixel-inclusive: it covers
   w = x2 - x1 + 1 columns (at least 1), rows likewise;
3. resize the padded mask to h x w (bilinear, ``align_corners=False``, as ``F.interpolate``) and write
   it at rows y1.., columns x1.., clipped to the image.

Both ops equal torchvision's functions of the same names (tested to 1e-10 in float64, 1e-5 in
float32, CPU and CUDA). One deliberate difference: a box lying wholly outside the image (more than
about a pixel past the left or top edge, or past the right or bottom edge) pastes nothing here, while
torchvision's slicing with negative indices raises a RuntimeError ("The expanded size of the
tensor ...") for such a box.

How ``paste_masks_in_image`` is vectorized: bilinear resizing is separable, so the pasted image of mask
n is ``Wy_n @ mask_n @ Wx_n^T`` with Wy_n [H, M+2p] holding, for every image row, the (at most two)
weights of the mask rows it reads (all zero for rows outside the box) and Wx_n [W, M+2p] likewise for
columns: two batched matrix products for all masks, no loop over masks and no [H, W] temporaries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lectures_code.ops.roi_align import linear_taps, sample_coords
from lectures_code.ops.roi_pool import ceil_long, groups_by_key, true_divide


# --8<-- [start:roi_align_weights]
def roi_align_weights(start: Tensor, end: Tensor, bins: int, size: int) -> Tensor:
    """RoI Align along one axis as a matrix [K, bins, size]: row b holds the weights with which bin b of
    box k reads cells 0 .. size - 1 (aligned=False, adaptive sampling, spatial scale 1), the mean of its
    samples' bilinear weights. ``start``, ``end``: [K] float box edges in cells."""
    length = (end - start).clamp(min=1)  # aligned=False: a box is at least one cell wide
    bin_size = true_divide(length, bins)  # [K]
    grid = ceil_long(bin_size)  # [K] samples per bin, about one per cell
    weights = start.new_zeros(len(start), bins, size)
    for (g,), idx in groups_by_key(grid[:, None]):  # one iteration per distinct grid size
        g = int(g)
        cell, weight = linear_taps(sample_coords(start[idx], bin_size[idx], bins, g), size)  # [k, bins, g, 2]
        weights[idx] = weights[idx].scatter_add_(2, cell.flatten(2), weight.flatten(2) / g)
    return weights
# --8<-- [end:roi_align_weights]


# --8<-- [start:project_masks]
def project_masks_on_boxes(gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor, M: int) -> Tensor:
    """Mask R-CNN training targets [P, M, M]: GT mask ``matched_idxs[p]`` seen through proposal ``boxes[p]``
    (= ``roi_align(gt_masks[:, None], rois, (M, M), 1.0)[:, 0]``, computed as two matrix products)."""
    if gt_masks.dim() != 3:
        raise ValueError(f"gt_masks must be [G, H, W], got shape {list(gt_masks.shape)}")
    if boxes.dim() != 2 or boxes.shape[1] != 4 or not boxes.is_floating_point():
        raise ValueError(f"boxes must be a float [P, 4] xyxy tensor, got {boxes.dtype} {list(boxes.shape)}")
    if matched_idxs.shape != boxes.shape[:1]:
        raise ValueError(f"matched_idxs must be [P] = [{boxes.shape[0]}], got {list(matched_idxs.shape)}")
    if len(matched_idxs) and not (0 <= int(matched_idxs.min()) and int(matched_idxs.max()) < len(gt_masks)):
        raise ValueError(f"matched_idxs must index the {len(gt_masks)} GT masks")
    _, height, width = gt_masks.shape
    x1, y1, x2, y2 = boxes.unbind(1)  # [P] each
    rows = roi_align_weights(y1, y2, M, height)  # [P, M, H]
    cols = roi_align_weights(x1, x2, M, width)  # [P, M, W]
    targets = boxes.new_zeros(len(boxes), M, M)
    for gt in matched_idxs.unique().tolist():  # the proposals of one GT mask share its crop
        p = torch.nonzero(matched_idxs == gt)[:, 0]
        # only the rows and columns these proposals read (their weights are 0 elsewhere)
        r0, r1 = support(rows[p], height)
        c0, c1 = support(cols[p], width)
        crop = gt_masks[gt, r0:r1, c0:c1].to(boxes.dtype)
        targets[p] = rows[p, :, r0:r1] @ crop @ cols[p, :, c0:c1].transpose(1, 2)  # [n, M, h] [h, w] [n, w, M]
    return targets


def support(weights: Tensor, size: int) -> tuple[int, int]:
    """The range [first, last + 1) of cells that ``weights`` [..., size] give a nonzero weight ((0, 0) if none)."""
    used = torch.nonzero(weights.ne(0).flatten(0, -2).any(0))[:, 0]
    return (int(used[0]), int(used[-1]) + 1) if len(used) else (0, 0)
# --8<-- [end:project_masks]


def expand_boxes(boxes: Tensor, scale: float) -> Tensor:
    """xyxy boxes [N, 4] grown by ``scale`` about their centres (same operations as torchvision)."""
    if not boxes.is_floating_point():
        boxes = boxes.to(torch.get_default_dtype())
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
    y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return torch.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], dim=1)


# --8<-- [start:resize_weights]
def resize_weights(start: Tensor, end: Tensor, size: Tensor, length: int, source: int, dtype) -> Tensor:
    """Bilinear weights [N, length, source] that resize a line of ``source`` values to ``size[n]`` values
    and write them at positions ``start[n]``, ``start[n] + 1``, ... of a line of ``length`` (only those in
    [start, end) and in the line; every other row of the result is 0).

    ``start``, ``end``, ``size``: int64 [N]. Output position p reads resized value i = p - start, whose
    source coordinate is (i + 0.5) * source / size - 0.5 (``F.interpolate``, ``align_corners=False``),
    clamped at 0: weight 1 - f on its floor and f on the next value (the last value alone at the end).
    """
    position = torch.arange(length, device=start.device)  # [L]
    i = position - start[:, None]  # [N, L] index into the resized line
    written = (position >= start[:, None]) & (position < end[:, None])  # [N, L]
    # [N], input_size / output_size as F.interpolate computes it (``source / tensor`` would multiply by
    # the reciprocal, which rounds differently)
    ratio = torch.full(size.shape, source, dtype=dtype, device=size.device) / size.to(dtype)
    # ratio * (i + 0.5) - 0.5 rounded once (the kernels compile it to a fused multiply-add): exact in
    # float64 for a float32 ratio, then rounded to float32
    wide = torch.float64 if dtype in (torch.float32, torch.float16, torch.bfloat16) else dtype
    coord = (ratio.to(wide)[:, None] * (i.to(wide) + 0.5) - 0.5).to(dtype).clamp(min=0)  # [N, L]
    low = coord.long().clamp(max=source - 1)  # coord >= 0: truncation is floor
    high = low + (low < source - 1).long()
    frac = (coord - low.to(dtype)).clamp(0, 1)  # weight of the high value
    weights = torch.zeros(start.shape[0], length, source, dtype=dtype, device=start.device)
    weights.scatter_add_(2, low[..., None], ((1 - frac) * written)[..., None])
    weights.scatter_add_(2, high[..., None], (frac * written)[..., None])
    return weights
# --8<-- [end:resize_weights]


def paste_masks_in_image(masks: Tensor, boxes: Tensor, img_shape, padding: int = 1) -> Tensor:
    """Paste N mask predictions [N, 1, M, M] into their boxes [N, 4] (xyxy) on an image of ``img_shape``
    = (H, W): probabilities [N, 1, H, W] in ``masks``' dtype (see the module docstring for the steps)."""
    if masks.dim() != 4 or masks.shape[1] != 1:
        raise ValueError(f"masks must be [N, 1, M, M], got shape {list(masks.shape)}")
    if not masks.is_floating_point():
        raise TypeError(f"masks must be floating point (probabilities), got {masks.dtype}")
    if boxes.dim() != 2 or boxes.shape != (masks.shape[0], 4):
        raise ValueError(f"boxes must be [N, 4] = [{masks.shape[0]}, 4], got {list(boxes.shape)}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding!r}")
    height, width = (int(v) for v in img_shape)
    if height < 0 or width < 0:
        raise ValueError(f"img_shape must be (H, W) >= 0, got {tuple(img_shape)}")
    n = masks.shape[0]
    if n == 0:
        return masks.new_zeros((0, 1, height, width))
    if not torch.isfinite(masks).all():
        # the matrix products below would spread a NaN over its whole row and column
        raise ValueError("masks must be finite")

    # --8<-- [start:paste_masks]
    # 1. Pad the mask with zeros and grow the box by the same factor, so the border fades to 0.
    scale = float(masks.shape[-1] + 2 * padding) / masks.shape[-1]
    padded = F.pad(masks[:, 0], (padding,) * 4)  # [N, Mh + 2p, Mw + 2p]
    x1, y1, x2, y2 = expand_boxes(boxes, scale).to(torch.int64).unbind(1)  # [N] each, truncated to ints

    # 2. The box covers x1..x2 inclusive: the mask is resized to w = x2 - x1 + 1 columns (at least 1)
    #    and written at columns [x1, x2 + 1), clipped to the image; rows likewise.
    w, h = (x2 - x1 + 1).clamp(min=1), (y2 - y1 + 1).clamp(min=1)
    rows = resize_weights(y1, y2 + 1, h, height, padded.shape[1], masks.dtype)  # [N, H, Mh + 2p]
    cols = resize_weights(x1, x2 + 1, w, width, padded.shape[2], masks.dtype)  # [N, W, Mw + 2p]

    # 3. Separable bilinear resize and paste in one go: image_n = rows_n @ padded_n @ cols_n^T.
    pasted = torch.bmm(rows, torch.bmm(padded, cols.transpose(1, 2)))  # [N, H, W]
    # --8<-- [end:paste_masks]
    return pasted[:, None]
