"""RoI Pool (Fast R-CNN, Lecture 14): crop a box out of a feature map and max-pool it to a fixed grid.

Input feature map ``input`` [N, C, H, W] (float). Boxes are xyxy in image pixels, either a
Tensor[K, 5] of rows (batch_index, x1, y1, x2, y2) or a list of N Tensors [L_i, 4] (one per image),
in the dtype and on the device of ``input``. ``spatial_scale`` maps image pixels to feature-map
cells (1/16 for a stride-16 backbone). The result is [K, C, out_h, out_w].

Semantics are exactly those of ``torchvision.ops.roi_pool`` (its CPU and CUDA kernels agree):

1. snap the box to whole cells: ``round(x * spatial_scale)`` with C's ``round`` = half AWAY from
   zero (``torch.round`` rounds half to even, so 2.5 would become 2 instead of 3);
2. the snapped box covers ``roi_w = max(x2 - x1 + 1, 1)`` cells (both end cells included; a
   malformed box still covers one cell); ``bin_w = roi_w / out_w`` in the input's dtype;
3. bin ``p`` covers the cells ``[floor(p * bin_w), ceil((p + 1) * bin_w)) + x1``, clipped to
   ``[0, W]``. Because of floor/ceil, neighbouring bins can share a row or column of cells;
4. each bin outputs the max of its cells, or 0 if the clipped bin is empty. The maximum starts at
   ``-FLT_MAX``, so a bin whose values are all <= -FLT_MAX outputs -FLT_MAX.

The gradient w.r.t. ``input`` goes to the cell that won each bin (the first one in row-major
order among ties), exactly like torchvision's backward. The snapped box coordinates are integers,
so there is no gradient w.r.t. the boxes: that is the flaw RoI Align fixes.

Differences from torchvision, on purpose: a batch index outside ``[0, N)`` raises ``ValueError``
(torchvision reads out of bounds). NaN inputs are not supported: torchvision's max skips NaN cells,
here a NaN cell may win.

Vectorized: every bin of a box fits in a window of ``win_h x win_w`` cells (its largest bin).
The flat indices of the window cells, bin after bin (cells outside the bin replaced by a padding
row), go to one ``embedding_bag(mode="max")`` call, which takes the per-channel max of each bin
without materializing the gathered [cells, C] values. Boxes are grouped by window size to build
the index lists (one Python iteration per distinct size, never per box or bin).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

FLT_MAX = torch.finfo(torch.float32).max


def boxes_to_rois(input: Tensor, boxes: Tensor | Sequence[Tensor]) -> Tensor:
    """Validate ``input`` [N, C, H, W] and ``boxes``; return the rois [K, 5] (batch_index, x1, y1, x2, y2).

    ``boxes`` is a Tensor[K, 5] or a list of N Tensors [L_i, 4] (image i gets batch index i), in
    ``input``'s floating dtype and on its device. Raises TypeError / ValueError on bad input.
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    if not input.is_floating_point():
        raise TypeError(f"input must be floating point, got dtype {input.dtype}")
    if input.dim() != 4:
        raise ValueError(f"input must have shape [N, C, H, W], got {list(input.shape)}")
    if input.shape[2] == 0 or input.shape[3] == 0:
        raise ValueError(f"input feature maps must not be empty, got {list(input.shape)}")
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(
                f"a boxes tensor must have shape [K, 5] (batch_index, x1, y1, x2, y2), got {list(boxes.shape)}"
            )
        rois = boxes
    elif isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            if not isinstance(b, Tensor) or b.dim() != 2 or b.shape[1] != 4:
                shape = list(b.shape) if isinstance(b, Tensor) else type(b).__name__
                raise ValueError(f"boxes[{i}] must be a Tensor of shape [L, 4] (x1, y1, x2, y2), got {shape}")
        if len(boxes) == 0:
            rois = input.new_zeros(0, 5)
        else:
            batch_index = [torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)]
            rois = torch.cat([torch.cat(batch_index), torch.cat(list(boxes))], dim=1)
    else:
        raise TypeError(f"boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}")
    if rois.dtype != input.dtype:
        raise TypeError(f"boxes must have the dtype of input ({input.dtype}), got {rois.dtype}")
    if rois.device != input.device:
        raise ValueError(f"boxes are on {rois.device} but input is on {input.device}")
    if len(rois) and not bool(((rois[:, 0] >= 0) & (rois[:, 0] < input.shape[0])).all()):
        raise ValueError(f"batch indices (first column of boxes) must lie in [0, {input.shape[0] - 1}]")
    return rois


def output_hw(output_size: int | Sequence[int]) -> tuple[int, int]:
    """``output_size`` as (out_h, out_w): an int means a square grid."""
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"output_size must be a positive int or a pair (h, w) of them, got {output_size!r}")
    return size


def check_scale(spatial_scale: float) -> float:
    if isinstance(spatial_scale, bool) or not isinstance(spatial_scale, (int, float)):
        raise TypeError(f"spatial_scale must be a number, got {type(spatial_scale).__name__}")
    if not (math.isfinite(spatial_scale) and spatial_scale > 0):
        raise ValueError(f"spatial_scale must be a finite number > 0, got {spatial_scale}")
    return float(spatial_scale)


def groups_by_key(keys: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
    """Group box indices by equal rows of ``keys`` [K, D]; yields (key [D], box indices [k]).

    One Python iteration per distinct key (e.g. per window size), never per box.
    """
    unique_keys, group_of_box = torch.unique(keys, dim=0, return_inverse=True)
    for g, key in enumerate(unique_keys):
        yield key, torch.nonzero(group_of_box == g).squeeze(1)


def true_divide(x: Tensor, divisor: float) -> Tensor:
    """``x / divisor``, correctly rounded on every device.

    PyTorch's CUDA kernel divides by a Python number by multiplying with its reciprocal, which is
    not correctly rounded: in float32, 7 * (1 / 3) = 2.3333335 but 7 / 3 = 2.3333333, and
    ceil(3 * 2.3333335) = 8 picks one cell too many. torchvision's kernels divide, so we divide by
    a tensor, which gets true division on CPU and CUDA alike.
    """
    return x / torch.full_like(x, divisor)


def ceil_long(x: Tensor) -> Tensor:
    """``ceil(x)`` as int64. (``x.long()`` truncates toward zero like C's int cast; ``torch.ceil``,
    ``floor`` and ``trunc`` would do as well, but their CPU kernels always start a parallel region,
    which costs milliseconds on a busy machine.)"""
    whole = x.long()
    return whole + (whole.to(x.dtype) < x).long()


def round_half_away_from_zero(x: Tensor) -> Tensor:
    """C's ``round`` as int64. (Not floor(x + 0.5): in float32, 0.49999997 + 0.5 rounds up to 1.0.)"""
    whole = x.long()  # toward zero
    away = (x - whole.to(x.dtype)).abs() >= 0.5
    return whole + away.long() * x.sign().long()


class BinMax(torch.autograd.Function):
    """Per-channel max of each bin's cells (``embedding_bag(mode="max")``), with a one-scatter backward.

    Forward: ``cells`` [M, C], ``indices`` [S] (the bins' cell lists, back to back, ``padding`` = skip),
    ``offsets`` [B] (where each bin's list starts) -> [B, C]; an empty bin gives 0. The backward sends
    each bin's gradient to the cell that won it (``embedding_bag``'s argmax: the first maximum), in one
    ``scatter_add_`` over all bins and channels; autograd's own ``embedding_bag`` backward loops over bins.
    """

    @staticmethod
    def forward(ctx, cells: Tensor, indices: Tensor, offsets: Tensor, padding: int) -> Tensor:
        out, _, _, argmax = torch.ops.aten._embedding_bag(
            cells, indices, offsets, False, 2, False, None, False, padding)  # mode 2 = max
        if ctx.needs_input_grad[0]:
            # An empty bin (only padding) reports argmax 0 on the CPU, -1 on CUDA; send its gradient to the
            # padding row instead, which is dropped.
            lengths = torch.diff(offsets, append=offsets.new_tensor([indices.numel()]))  # [B]
            bin_of_index = torch.repeat_interleave(torch.arange(len(offsets), device=offsets.device), lengths)  # [S]
            real_cells = torch.zeros_like(offsets).index_add_(0, bin_of_index, (indices != padding).long())  # [B]
            argmax[real_cells == 0] = padding
            ctx.save_for_backward(argmax)
            ctx.num_cells = cells.shape[0]
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (argmax,) = ctx.saved_tensors  # [B, C]: the cell that won bin b in channel c
        grad_cells = grad_out.new_zeros(ctx.num_cells, grad_out.shape[1])  # [M, C]
        return grad_cells.scatter_add_(0, argmax, grad_out), None, None, None


def roi_pool(
    input: Tensor,
    boxes: Tensor | Sequence[Tensor],
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
) -> Tensor:
    """RoI max pooling, equal to ``torchvision.ops.roi_pool``.

    Args:
        input: [N, C, H, W] float feature maps.
        boxes: xyxy boxes in image pixels: Tensor[K, 5] rows (batch_index, x1, y1, x2, y2), or a
            list of N Tensors [L_i, 4]; same dtype and device as ``input``.
        output_size: int or (out_h, out_w), the number of bins.
        spatial_scale: feature-map cells per image pixel (e.g. 1/16).

    Returns:
        [K, C, out_h, out_w] tensor in ``input``'s dtype, differentiable w.r.t. ``input`` (each bin's
        gradient goes to its argmax cell).
    """
    rois = boxes_to_rois(input, boxes)
    out_h, out_w = output_hw(output_size)
    spatial_scale = check_scale(spatial_scale)
    n, c, h, w = input.shape
    k = rois.shape[0]
    if k == 0:
        # Slicing keeps the result attached to ``input``'s graph, like torchvision's empty output.
        return input.reshape(-1)[:0].reshape(0, c, out_h, out_w)

    # --8<-- [start:roi_pool]
    rois = rois.detach()  # snapping to whole cells makes the box coordinates non-differentiable
    batch = rois[:, 0].long()  # [K], C++ truncates the float index
    x1, y1, x2, y2 = round_half_away_from_zero(rois[:, 1:] * spatial_scale).unbind(1)  # [K] each

    def bin_edges(start: Tensor, end: Tensor, bins: int, size: int) -> tuple[Tensor, Tensor]:
        """First and one-past-last cell [K, bins] of every bin, along one axis."""
        length = (end - start + 1).clamp(min=1)  # [K], both end cells count
        bin_size = true_divide(length.to(input.dtype), bins)  # in the input's dtype, like the kernel
        p = torch.arange(bins, device=input.device, dtype=input.dtype)
        lo = (p * bin_size[:, None]).long() + start[:, None]  # floor: the product is >= 0
        hi = ceil_long((p + 1) * bin_size[:, None]) + start[:, None]
        return lo.clamp(0, size), hi.clamp(0, size)  # a bin may end up empty: lo == hi

    row_lo, row_hi = bin_edges(y1, y2, out_h, h)  # [K, out_h]
    col_lo, col_hi = bin_edges(x1, x2, out_w, w)  # [K, out_w]
    # Every bin of box k fits in a window of win_h x win_w cells.
    win_h = (row_hi - row_lo).amax(dim=1).clamp(min=1)  # [K]
    win_w = (col_hi - col_lo).amax(dim=1).clamp(min=1)  # [K]

    # Channels last, so that a cell is a row of C values, plus an all-zero row to pad bins with.
    padding = n * h * w
    cells = input.new_empty(n * h * w + 1, c)  # [N*H*W + 1, C]
    cells[:padding].view(n, h, w, c).copy_(input.permute(0, 2, 3, 1))
    cells[padding] = 0

    # The cells of every bin, bin after bin, each bin's cells in row-major order. Boxes are grouped
    # by window size only to build these lists with tensor ops (one iteration per distinct size).
    cell_parts, bag_size_parts, box_parts = [], [], []
    for (wh, ww), idx in groups_by_key(torch.stack([win_h, win_w], 1)):
        rows = row_lo[idx, :, None] + torch.arange(int(wh), device=input.device)  # [k, out_h, wh]
        cols = col_lo[idx, :, None] + torch.arange(int(ww), device=input.device)  # [k, out_w, ww]
        row_start = (batch[idx, None, None] * h + rows) * w  # [k, out_h, wh]
        cell = row_start[:, :, None, :, None] + cols[:, None, :, None, :]  # [k, out_h, out_w, wh, ww] flat index
        # The window is as big as the box's largest bin: cells outside a bin read the padding row.
        inside = (rows < row_hi[idx, :, None])[:, :, None, :, None] & (cols < col_hi[idx, :, None])[:, None, :, None, :]
        cell_parts.append(torch.where(inside, cell, padding).flatten())
        bag_size_parts.append(torch.full((len(idx) * out_h * out_w,), int(wh * ww), device=input.device))
        box_parts.append(idx)
    bag_size = torch.cat(bag_size_parts)

    # embedding_bag(mode="max") takes the per-channel max over each bin's cells, skipping the
    # padding (the first maximum wins ties), without materializing the gathered [cells, C] values.
    # Its backward sends the gradient to that cell, like torchvision's argmax. An empty bin
    # (all padding) outputs 0.
    offsets = torch.cumsum(bag_size, 0) - bag_size  # where each bin's list starts
    out = BinMax.apply(cells, torch.cat(cell_parts), offsets, padding)
    out = out.view(k, out_h, out_w, c)  # boxes in group order
    if len(box_parts) > 1:
        out = out[torch.argsort(torch.cat(box_parts))]  # back to the order of the boxes
    # torchvision's max starts at -FLT_MAX: a bin of values all <= -FLT_MAX outputs -FLT_MAX, no gradient.
    out = torch.where(out > -FLT_MAX, out, torch.tensor(-FLT_MAX, dtype=out.dtype, device=out.device))
    return out.permute(0, 3, 1, 2).contiguous()  # [K, C, out_h, out_w]
    # --8<-- [end:roi_pool]
