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

Vectorized: the feature map is copied channels last, so that a cell is a row of C values. Bins of
the same size (bin_h x bin_w cells) are handled together: the flat indices of their cells select
[bins, cells, C] values in one ``index_select``, and one ``amax`` over the cells axis, vectorized over
the channels, gives their max (one Python iteration per distinct bin size and block, never per box or
bin). On the CPU a block holds fewer than 32768 values, so every op runs on the calling thread (see
``boxes.py``: no waiting for a second core on a busy machine) and its temporaries stay in the cache.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from lectures_code.ops.boxes import row_blocks

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
    """Group box indices by equal rows of ``keys`` [K, D] (integers >= 0); yields (key [D], box indices [k]).

    One Python iteration per distinct key (e.g. per window size), never per box. Each row is folded into
    one integer (mixed radix) and the integers sorted, which is much faster than ``torch.unique(dim=0)``.
    """
    if len(keys) == 0:
        return
    folded = torch.zeros_like(keys[:, 0])
    for column in keys.unbind(1):
        folded = folded * (int(column.max()) + 1) + column  # [K]
    order = torch.argsort(folded, stable=True)  # [K], each group in index order
    _, counts = torch.unique_consecutive(folded.index_select(0, order), return_counts=True)
    for idx in order.split(counts.tolist()):
        yield keys[idx[0]], idx


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
    """Per-channel max over the cells of each bin, with torchvision's RoI Pool rules and gradient.

    Forward: ``input`` [N, C, H, W], ``bins`` [K * out_h * out_w, 5] int64 rows (image, row_lo, row_hi,
    col_lo, col_hi) of half-open cell ranges inside the map, box after box, bins row-major ->
    [K, C, out_h, out_w]. An empty bin gives 0; one whose values are all <= -FLT_MAX gives -FLT_MAX
    (torchvision's max starts there). Backward: each bin's gradient goes to its first maximum in row-major
    order (none for those two cases), like torchvision's argmax.

    The feature map is copied channels last, so that a cell is a row of C values. Bins of the same height
    and width are gathered together as [bins, cells, C], a block of them at a time (one thread, see
    ``boxes.py``), and reduced over the cells axis, vectorized over the channels.
    """

    @staticmethod
    def forward(ctx, input: Tensor, bins: Tensor, out_h: int, out_w: int) -> Tensor:
        n, c, h, w = input.shape
        k = len(bins) // (out_h * out_w)
        cells = input.new_empty(n, h, w, c)  # channels last
        for i in range(n):
            for rows in row_blocks(h, w * c, input.device):
                cells[i, rows] = input[i, :, rows].permute(1, 2, 0)
        cells = cells.view(n * h * w, c)  # [N*H*W, C], one row per cell

        image, row_lo, row_hi, col_lo, col_hi = bins.unbind(1)  # [B] each
        top_left = (image * h + row_lo) * w + col_lo  # [B], flat index of each bin's first cell
        with_argmax = ctx.needs_input_grad[0]
        no_cell = n * h * w  # the argmax of a bin without gradient: a padding row, dropped in backward
        # Cell indices are kept as floats (exact below 2**24), which saves conversions in the loop below.
        index_dtype = torch.float32 if no_cell < 2**24 else torch.float64

        # Bins sorted by size: best[s] (and first[s], the cell it came from) belong to bin order[s].
        best = input.new_empty(len(bins), c)  # [B, C]
        first = torch.empty(len(bins), c, dtype=index_dtype, device=input.device) if with_argmax else None
        order, start = [], 0
        for (bin_h, bin_w), group in groups_by_key(torch.stack([row_hi - row_lo, col_hi - col_lo], 1)):
            bin_h, bin_w = int(bin_h), int(bin_w)
            order.append(group)
            end = start + len(group)  # this group's rows: best[start:end]
            if bin_h == 0 or bin_w == 0:  # an empty bin outputs 0 and gets no gradient
                best[start:end] = 0
                if with_argmax:
                    first[start:end] = no_cell
                start = end
                continue
            # The cells of a bin_h x bin_w bin in row-major order, as offsets from its first cell.
            size = bin_h * bin_w
            steps_y, steps_x = (torch.arange(steps, device=input.device) for steps in (bin_h, bin_w))
            offsets = (steps_y[:, None] * w + steps_x).view(-1)  # [size]
            last = int(offsets[-1])
            countdown = (last + 1 - offsets).to(index_dtype)[:, None]  # [size, 1], largest for the first cell
            group_top_left = top_left.index_select(0, group)  # [bins]
            group_cells = (group_top_left[:, None] + offsets).view(-1)  # [bins * size], bin after bin
            past_last = (group_top_left + last + 1).to(index_dtype)[:, None]  # [bins, 1]: first = past_last - countdown
            for part in row_blocks(len(group), size * c, input.device):
                rows = slice(start + part.start, start + part.stop)
                values = cells.index_select(0, group_cells[part.start * size : part.stop * size])
                values = values.view(-1, size, c)  # [b, size, C]
                torch.amax(values, dim=1, out=best[rows])  # [b, C]
                if with_argmax:
                    # The first cell (row-major: the smallest offset) that reaches the max has the largest
                    # countdown. (Tensor.max(dim) would give it too, but always splits over threads; a float
                    # 0/1 mask is several times faster than a bool one.)
                    reaches = torch.eq(values, best[rows, None], out=torch.empty_like(values, dtype=index_dtype))
                    countdown_of_first = reaches.mul_(countdown).amax(dim=1).clamp_(min=1)  # (1: a NaN max)
                    torch.sub(past_last[part], countdown_of_first, out=first[rows])  # [b, C], flat cell index
            start = end
        order = torch.cat(order)
        rank = torch.argsort(order)  # rank[b]: where bin b is in best

        # Back to box order and [K, C, out_h, out_w]; the max never goes below -FLT_MAX.
        per_box = out_h * out_w
        out = input.new_empty(k, c, out_h, out_w)
        for boxes in row_blocks(k, per_box * c, input.device):
            box_bins = best.index_select(0, rank[boxes.start * per_box : boxes.stop * per_box])
            torch.clamp(box_bins.view(-1, out_h, out_w, c).permute(0, 3, 1, 2), min=-FLT_MAX, out=out[boxes])
        if with_argmax:
            ctx.save_for_backward(first, rank, out)
            ctx.shapes = (n, c, h, w, per_box)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        first, rank, out = ctx.saved_tensors  # first[rank[b]]: per channel, the cell that won bin b
        n, c, h, w, per_box = ctx.shapes
        no_cell = n * h * w
        grad_cells = grad_out.new_empty(n * h * w + 1, c)  # [N*H*W + 1, C], the last row for "no cell"
        for rows in row_blocks(len(grad_cells), c, grad_out.device):
            grad_cells[rows] = 0
        for boxes in row_blocks(len(grad_out), per_box * c, grad_out.device):
            box_bins = slice(boxes.start * per_box, boxes.stop * per_box)
            winner = first.index_select(0, rank[box_bins]).long()  # [b, C], bins row-major
            if float(out[boxes].min()) <= -FLT_MAX:  # no cell wins a bin whose values are all <= -FLT_MAX
                below = out[boxes].permute(0, 2, 3, 1).reshape(-1, c) <= -FLT_MAX
                winner.masked_fill_(below, no_cell)
            grad_bins = grad_out[boxes].permute(0, 2, 3, 1).reshape(-1, c)  # [b, C]
            grad_cells.scatter_add_(0, winner, grad_bins)
        grad_input = grad_out.new_empty(n, c, h, w)
        grad_map = grad_cells[:-1].view(n, h, w, c)
        for i in range(n):
            for channels in row_blocks(c, h * w, grad_out.device):
                grad_input[i, channels] = grad_map[i, :, :, channels].permute(2, 0, 1)
        return grad_input, None, None, None


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

    # Bin (i, j) of box k is the rectangle of cells rows [row_lo, row_hi) x columns [col_lo, col_hi).
    shape = (k, out_h, out_w)
    bins = torch.stack(
        [
            batch[:, None, None].expand(shape),
            row_lo[:, :, None].expand(shape),
            row_hi[:, :, None].expand(shape),
            col_lo[:, None, :].expand(shape),
            col_hi[:, None, :].expand(shape),
        ],
        dim=-1,
    ).view(k * out_h * out_w, 5)
    return BinMax.apply(input, bins, out_h, out_w)  # [K, C, out_h, out_w]: the max of each bin, per channel
    # --8<-- [end:roi_pool]
