"""RoI Align (Mask R-CNN, Lecture 14): bilinear sampling of a box on a fixed grid, no snapping.

Input feature map ``input`` [N, C, H, W] (float). Boxes are xyxy in image pixels, either a
Tensor[K, 5] of rows (batch_index, x1, y1, x2, y2) or a list of N Tensors [L_i, 4] (one per image),
in the dtype and on the device of ``input``. ``spatial_scale`` maps image pixels to feature-map
coordinates (1/16 for a stride-16 backbone). The result is [K, C, out_h, out_w].

Semantics are those of ``torchvision.ops.roi_align`` (tested to 1e-10 in float64):

1. box edges in feature-map coordinates: ``x * spatial_scale - offset`` with offset 0.5 when
   ``aligned`` (a pixel's center sits at its index + 0.5) and 0 otherwise; with
   ``aligned=False`` the box width and height are clamped to >= 1 (the legacy behaviour);
2. the box is cut into out_h x out_w bins; each bin is averaged over a grid_h x grid_w grid of
   sample points, ``grid = sampling_ratio`` if > 0 else ``ceil(roi_h / out_h)`` (adaptive: about
   one sample per feature-map cell), at ``y = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h``;
3. each sample is a bilinear interpolation of the 4 neighbouring cells, with torchvision's rules
   at the border: a sample with y < -1 or y > H (x < -1 or x > W) reads 0 but still counts in the
   average; y in [-1, 0] reads row 0; y >= H - 1 reads row H - 1;
4. the average divides by ``max(grid_h * grid_w, 1)`` (an empty grid gives 0).

Unlike RoI Pool nothing is rounded, so the output is a smooth function of the box coordinates:
``roi_align`` is differentiable w.r.t. ``input`` AND w.r.t. the box coordinates (torchvision's op
gives no gradient to the boxes). The box gradient is that of the formulas above; it is undefined at
the few points where they jump: a sample crossing -1 or H (it starts or stops reading 0), the
adaptive grid size changing, and the clamps (width clamped to 1, coordinates clamped to 0 or
snapped to H - 1, where the box gradient is 0).

Vectorized: the bilinear interpolation is separable (linear in y times linear in x), so a bin
reads ``grid_h * 2 x grid_w * 2`` cells with weights ``weight_y * weight_x / (grid_h * grid_w)``.
The flat cell indices and weights of all bins, bin after bin, go to one ``F.embedding_bag`` call
(mode "sum" with per-sample weights), which gathers and sums them in one kernel. The adaptive grid
differs per box, so boxes are grouped by their (grid_h, grid_w) to build the index lists (one
Python iteration per distinct grid, never per box or bin).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lectures_code.ops.roi_pool import (
    boxes_to_rois,
    ceil_long,
    check_scale,
    groups_by_key,
    output_hw,
    true_divide,
)


# --8<-- [start:bilinear]
def linear_taps(coord: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """One axis of torchvision's bilinear interpolation: which 2 cells a sample reads, and how much.

    ``coord`` [...] holds sample coordinates along an axis of ``size`` cells (cell i is at i).
    Returns ``index`` [..., 2] (int64, low and high cell) and ``weight`` [..., 2] (coord's dtype,
    differentiable w.r.t. ``coord``). The 2-D weights of the 4 neighbours are products
    ``weight_y[a] * weight_x[b]``.
    """
    # More than one cell outside the map: the sample reads 0 (it still counts in the average).
    inside = (coord >= -1) & (coord <= size)
    coord = torch.where(coord <= 0, torch.zeros_like(coord), coord)  # [-1, 0] reads cell 0
    low = coord.detach().long()  # coord >= 0 here: truncation is floor, as the kernel's int cast
    at_end = low >= size - 1  # past the last cell: read it alone (no cell size - 1 + 1 to blend in)
    low = low.clamp(min=0, max=size - 1)  # (min: a far-away sample, read with weight 0)
    high = (low + 1).clamp(max=size - 1)
    frac = torch.where(at_end, torch.zeros_like(coord), coord - low)  # distance to the low cell
    weight = torch.stack([1 - frac, frac], dim=-1) * inside[..., None]
    return torch.stack([low, high], dim=-1), weight


# --8<-- [end:bilinear]


def sample_coords(start: Tensor, bin_size: Tensor, bins: int, grid: int) -> Tensor:
    """Sample coordinates [k, bins, grid] along one axis, from the box start [k] and bin size [k].

    Bin p, sample i: ``start + p * bin_size + (i + 0.5) * bin_size / grid``, evaluated in this order
    and in the boxes' dtype, like torchvision's kernel (a sample exactly at -1 or at the map's edge
    must land on the same side).
    """
    p = torch.arange(bins, device=start.device, dtype=start.dtype)[:, None]  # [bins, 1]
    i = torch.arange(grid, device=start.device, dtype=start.dtype)  # [grid]
    bin_size = bin_size[:, None, None]  # [k, 1, 1]
    return start[:, None, None] + p * bin_size + true_divide((i + 0.5) * bin_size, grid)


def roi_align(
    input: Tensor,
    boxes: Tensor | Sequence[Tensor],
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoI Align with average pooling, equal to ``torchvision.ops.roi_align``.

    Args:
        input: [N, C, H, W] float feature maps.
        boxes: xyxy boxes in image pixels: Tensor[K, 5] rows (batch_index, x1, y1, x2, y2), or a
            list of N Tensors [L_i, 4]; same dtype and device as ``input``.
        output_size: int or (out_h, out_w), the number of bins.
        spatial_scale: feature-map cells per image pixel (e.g. 1/16).
        sampling_ratio: samples per bin along each axis; <= 0 means adaptive, ceil(roi_h / out_h).
        aligned: shift the box by -0.5 cell so that a box edge on a pixel border samples correctly
            (Detectron2); False is the legacy Mask R-CNN behaviour (also clamps the box to >= 1 cell).

    Returns:
        [K, C, out_h, out_w] tensor in ``input``'s dtype, differentiable w.r.t. ``input`` and w.r.t.
        the box coordinates (away from the points listed in the module docstring).
    """
    rois = boxes_to_rois(input, boxes)
    out_h, out_w = output_hw(output_size)
    spatial_scale = check_scale(spatial_scale)
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, int):
        raise TypeError(f"sampling_ratio must be an int, got {type(sampling_ratio).__name__}")
    if not isinstance(aligned, bool):
        raise TypeError(f"aligned must be a bool, got {type(aligned).__name__}")
    n, c, h, w = input.shape
    k = rois.shape[0]
    if k == 0:
        # Slicing keeps the result attached to the graph, like torchvision's empty output.
        return input.reshape(-1)[:0].reshape(0, c, out_h, out_w) + rois.sum() * 0

    # --8<-- [start:roi_align_sampling]
    batch = rois[:, 0].detach().long()  # [K], C++ truncates the float index
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, 1:] * spatial_scale - offset).unbind(1)  # [K] each, feature-map coordinates
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1), roi_h.clamp(min=1)
    bin_w, bin_h = true_divide(roi_w, out_w), true_divide(roi_h, out_h)  # [K]
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full_like(batch, sampling_ratio)
    else:  # about one sample per cell; a box with no extent (aligned=True) gets no samples
        grid_h, grid_w = ceil_long(bin_h.detach()).clamp(min=0), ceil_long(bin_w.detach()).clamp(min=0)

    # The cells and weights of every bin, bin after bin. Boxes are grouped by grid size only to build
    # these lists with tensor ops (one iteration per distinct grid).
    cell_parts, weight_parts, bag_size_parts, box_parts = [], [], [], []
    for (gh, gw), idx in groups_by_key(torch.stack([grid_h, grid_w], 1)):
        gh, gw = int(gh), int(gw)
        bag_size_parts.append(torch.full((len(idx) * out_h * out_w,), gh * gw * 4, device=input.device))
        box_parts.append(idx)
        if gh * gw == 0:  # a zero-size box with aligned=True and an adaptive grid: no samples, output 0
            continue
        y_index, y_weight = linear_taps(sample_coords(y1[idx], bin_h[idx], out_h, gh), h)  # [k, out_h, gh, 2]
        x_index, x_weight = linear_taps(sample_coords(x1[idx], bin_w[idx], out_w, gw), w)  # [k, out_w, gw, 2]
        # A bin reads (grid point iy, its row a) x (grid point ix, its column b): gh*2 * gw*2 cells.
        row_start = (batch[idx, None, None, None] * h + y_index) * w  # [k, out_h, gh, 2]
        # cell, weight: [k, out_h, out_w, gh, 2, gw, 2]
        cell = row_start[:, :, None, :, :, None, None] + x_index[:, None, :, None, None, :, :]
        y_weight = y_weight / (gh * gw)  # the average over the grid, folded into the (small) y factor
        weight = y_weight[:, :, None, :, :, None, None] * x_weight[:, None, :, None, None, :, :]
        cell_parts.append(cell.flatten())
        weight_parts.append(weight.flatten())
    bag_size = torch.cat(bag_size_parts)

    # Channels last, so that a cell is a row of C values.
    # contiguous(): for N = 1 the reshape would be a strided view, and embedding_bag reads those ~30x slower
    cells = input.permute(0, 2, 3, 1).contiguous().view(n * h * w, c)  # [N*H*W, C]
    # embedding_bag(mode="sum") computes out[bin] = sum_s weight[bin, s] * cells[cell[bin, s]]: gather
    # and weighted sum in one kernel, without materializing the gathered [samples, C] values. It is
    # differentiable w.r.t. the cells (input) and the weights (box coordinates).
    out = F.embedding_bag(
        torch.cat(cell_parts) if cell_parts else bag_size.new_zeros(0),
        cells,
        torch.cumsum(bag_size, 0) - bag_size,  # where each bin's list starts
        mode="sum",
        per_sample_weights=torch.cat(weight_parts) if weight_parts else cells.new_zeros(0),
    )
    out = out.view(k, out_h, out_w, c)  # boxes in group order
    if len(box_parts) > 1:
        out = out[torch.argsort(torch.cat(box_parts))]  # back to the order of the boxes
    # --8<-- [end:roi_align_sampling]

    return out.permute(0, 3, 1, 2).contiguous()  # [K, C, out_h, out_w]


def map_rois_to_levels(
    boxes: Tensor | Sequence[Tensor],
    k_min: int,
    k_max: int,
    canonical_scale: int = 224,
    canonical_level: int = 4,
    eps: float = 1e-6,
) -> Tensor:
    """The FPN level of each box (FPN paper, eq. 1), as ``MultiScaleRoIAlign`` picks it.

    ``k = floor(canonical_level + log2(sqrt(area) / canonical_scale) + eps)``, clamped to
    ``[k_min, k_max]``: a 224 x 224 box goes to level 4 (stride 16), each halving of its side one
    level finer. ``boxes`` is a Tensor[K, 4] or a list of Tensor[L_i, 4], xyxy, float, all in image
    pixels. Returns the level k itself, int64 [K] (torchvision's ``LevelMapper`` returns k - k_min).
    """
    if isinstance(boxes, (list, tuple)):
        if not boxes:
            raise ValueError("boxes must not be an empty list")
        boxes = torch.cat(list(boxes))
    if not isinstance(boxes, Tensor):
        raise TypeError(f"boxes must be a Tensor[K, 4] or a list of them, got {type(boxes).__name__}")
    if not boxes.is_floating_point():
        raise TypeError(f"boxes must be floating point, got dtype {boxes.dtype}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [K, 4], got {list(boxes.shape)}")
    if k_min > k_max:
        raise ValueError(f"k_min ({k_min}) must be <= k_max ({k_max})")
    # --8<-- [start:map_rois_to_levels]
    side = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))  # [K], sqrt of the area
    level = torch.floor(canonical_level + torch.log2(side / canonical_scale) + torch.tensor(eps, dtype=side.dtype))
    return level.clamp(min=k_min, max=k_max).long()  # a zero-area box: log2(0) = -inf -> k_min
    # --8<-- [end:map_rois_to_levels]
