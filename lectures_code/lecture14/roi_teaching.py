"""RoI Pool and RoI Align written to be read (Lecture 14): one box, plain Python loops over the bins.

These are the versions the notes print. The vectorized ops used everywhere else are
:func:`lectures_code.ops.roi_pool.roi_pool` and :func:`lectures_code.ops.roi_align.roi_align`;
the tests check that both give the same numbers as these loops (and as ``torchvision.ops``).

Conventions:

- ``feature`` is ONE feature map [C, H, W] (float, any device); the result is [C, out_h, out_w].
- ``box`` is ONE box (x1, y1, x2, y2), xyxy, already in FEATURE-MAP coordinates: the image-pixel box times
  ``spatial_scale`` (a stride-16 backbone: ``box_in_pixels / 16``). Any sequence of 4 numbers or a
  Tensor[4]; it may be fractional and may stick out of the map.
- Cell (row r, column c) of the map is the value ``feature[:, r, c]``. RoI Pool thinks of it as the square
  [c, c + 1] x [r, r + 1]; RoI Align's bilinear sampling puts its value AT the point (x = c, y = r).
- ``output_size`` is an int (square grid) or (out_h, out_w).

The box arithmetic runs on Python floats (float64), like torchvision's kernels for a float64 feature map,
so for float64 input the results equal ``torchvision.ops.roi_pool`` / ``roi_align`` (pool exactly, align to
rounding). For float32 input torchvision does the bin arithmetic in float32, which can move a bin edge
that falls exactly on a cell border; the vectorized ops reproduce that, these loops do not try to.

The helpers :func:`roi_pool_bins` and :func:`roi_align_sample_points` return the snapped cells and the
sample coordinates that the two functions use, for the figures and the demo to draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def _check(feature: Tensor, box, output_size) -> tuple[tuple[float, float, float, float], int, int]:
    """Validate the inputs; return the box as 4 Python floats and (out_h, out_w)."""
    if not isinstance(feature, Tensor) or not feature.is_floating_point() or feature.dim() != 3:
        shape = list(feature.shape) if isinstance(feature, Tensor) else type(feature).__name__
        raise TypeError(f"feature must be a float Tensor [C, H, W], got {shape}")
    if feature.shape[1] == 0 or feature.shape[2] == 0:
        raise ValueError(f"feature must not be empty, got shape {list(feature.shape)}")
    values = box.detach().cpu().tolist() if isinstance(box, Tensor) else list(box)
    if len(values) != 4:
        raise ValueError(f"box must be 4 numbers (x1, y1, x2, y2), got {box!r}")
    box = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in box):
        raise ValueError(f"box coordinates must be finite, got {box}")
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"output_size must be a positive int or a pair (h, w) of them, got {output_size!r}")
    return box, size[0], size[1]


def round_half_away_from_zero(v: float) -> int:
    """C's ``round``: 2.5 -> 3, -2.5 -> -3 (Python's ``round`` gives 2 and -2: half to even)."""
    whole = math.trunc(v)
    if abs(v - whole) >= 0.5:
        whole += 1 if v > 0 else -1
    return whole


# --8<-- [start:roi_pool_simple]
def roi_pool_bins(
    box: Sequence[float] | Tensor, output_size: int | Sequence[int], height: int, width: int
) -> tuple[tuple[int, int, int, int], list[tuple[int, int]], list[tuple[int, int]]]:
    """Where RoI Pool looks: the snapped box and, per bin row / column, its range of cells.

    Args:
        box: (x1, y1, x2, y2) in feature-map coordinates (image pixels times spatial_scale).
        output_size: int or (out_h, out_w).
        height, width: the feature map's H and W (the bins are clipped to the map).

    Returns:
        ``snapped``: the box snapped to whole cells (x1, y1, x2, y2), ints, x2 / y2 INCLUSIVE (the last cell
        column / row of the box); ``rows``: out_h pairs (first row, one past the last row) and ``cols``:
        out_w pairs (first column, one past the last). Bin (i, j) is ``rows[i] x cols[j]``; it is empty when
        a pair has first == last (the bin lies outside the map).
    """
    feature = torch.empty(1, height, width)  # only for the checks
    (x1, y1, x2, y2), out_h, out_w = _check(feature, box, output_size)

    # 1. Snap: every coordinate goes to the nearest whole cell. This is the rounding RoI Align removes.
    x1, y1, x2, y2 = (round_half_away_from_zero(v) for v in (x1, y1, x2, y2))

    # 2. Split the snapped box into bins. It covers x2 - x1 + 1 cells (both end cells count). A bin is
    #    usually not a whole number of cells: floor its start and ceil its end, so neighbouring bins
    #    may share a row or a column of cells.
    def split(start: int, end: int, bins: int, size: int) -> list[tuple[int, int]]:
        bin_size = max(end - start + 1, 1) / bins
        ranges = []
        for p in range(bins):
            lo = math.floor(p * bin_size) + start
            hi = math.ceil((p + 1) * bin_size) + start
            ranges.append((min(max(lo, 0), size), min(max(hi, 0), size)))  # clip to the map
        return ranges

    return (x1, y1, x2, y2), split(y1, y2, out_h, height), split(x1, x2, out_w, width)


def roi_pool_simple(feature: Tensor, box: Sequence[float] | Tensor, output_size: int | Sequence[int]) -> Tensor:
    """RoI Pool of one box: snap it to the grid, cut it into bins, take the max of each bin.

    Args:
        feature: [C, H, W] float feature map.
        box: (x1, y1, x2, y2) in feature-map coordinates (image pixels times spatial_scale).
        output_size: int or (out_h, out_w).

    Returns:
        [C, out_h, out_w] in ``feature``'s dtype and device; an empty bin (outside the map) gives 0.
    """
    _, out_h, out_w = _check(feature, box, output_size)
    c, h, w = feature.shape
    _, rows, cols = roi_pool_bins(box, output_size, h, w)
    out = feature.new_zeros(c, out_h, out_w)
    for i, (row_lo, row_hi) in enumerate(rows):
        for j, (col_lo, col_hi) in enumerate(cols):
            if row_lo < row_hi and col_lo < col_hi:
                out[:, i, j] = feature[:, row_lo:row_hi, col_lo:col_hi].amax(dim=(1, 2))  # [C]
    return out
    # --8<-- [end:roi_pool_simple]


# --8<-- [start:bilinear_interpolate]
def bilinear_interpolate(feature: Tensor, y: float, x: float) -> Tensor:
    """The value [C] of the feature map at the real-valued point (x, y), with torchvision's border rules.

    Cell (r, c) holds the value at the point (x = c, y = r); in between, blend the 4 surrounding cells.
    A point more than one cell outside the map reads 0; a point in the last cell's outer half reads that
    cell alone.
    """
    _, h, w = feature.shape
    if y < -1 or y > h or x < -1 or x > w:
        return feature.new_zeros(feature.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)  # [-1, 0] reads row / column 0
    y_low, x_low = int(y), int(x)  # y >= 0: int() is floor
    if y_low >= h - 1:  # at or past the last row: nothing below to blend with
        y_low = y_high = h - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= w - 1:
        x_low = x_high = w - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low  # how far past the low cell: the high cell's share
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * feature[:, y_low, x_low] + hy * lx * feature[:, y_low, x_high]
            + ly * hx * feature[:, y_high, x_low] + ly * lx * feature[:, y_high, x_high])
    # --8<-- [end:bilinear_interpolate]


# --8<-- [start:roi_align_simple]
def roi_align_sample_points(
    box: Sequence[float] | Tensor,
    output_size: int | Sequence[int],
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> tuple[tuple[float, float, float, float], list[list[float]], list[list[float]]]:
    """Where RoI Align samples: the region it divides into bins and the sample coordinates of each bin.

    Args:
        box: (x1, y1, x2, y2) in feature-map coordinates (image pixels times spatial_scale).
        output_size: int or (out_h, out_w).
        sampling_ratio: samples per bin along each axis; <= 0: adaptive, ceil(bin size) (~1 per cell).
        aligned: shift the box by -0.5 cell, so that a pixel border maps onto a cell border.

    Returns:
        ``region``: (x1, y1, x2, y2) of the sampled region in the coordinates of
        :func:`bilinear_interpolate` (cell c at x = c); ``ys``: out_h lists, the y of every sample row of bin
        row i; ``xs``: out_w lists, the x of every sample column. Bin (i, j) averages the grid of points
        ``(x, y) for y in ys[i] for x in xs[j]``.
    """
    feature = torch.empty(1, 1, 1)  # only for the checks
    (x1, y1, x2, y2), out_h, out_w = _check(feature, box, output_size)

    # 1. No snapping. ``aligned`` moves the box by half a cell: a pixel border at x * scale = 0 is the
    #    left EDGE of cell 0, whose value sits at its centre, x = 0 in bilinear coordinates.
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = x1 - offset, y1 - offset, x2 - offset, y2 - offset
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # the legacy behaviour: a box is at least one cell wide and high
        roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)

    # 2. Equal bins of real-valued size, each with a regular grid of grid_h x grid_w sample points.
    bin_h, bin_w = roi_h / out_h, roi_w / out_w
    grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / out_h)
    grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / out_w)
    ys = [[y1 + i * bin_h + (iy + 0.5) * bin_h / grid_h for iy in range(grid_h)] for i in range(out_h)]
    xs = [[x1 + j * bin_w + (ix + 0.5) * bin_w / grid_w for ix in range(grid_w)] for j in range(out_w)]
    return (x1, y1, x1 + roi_w, y1 + roi_h), ys, xs


def roi_align_simple(
    feature: Tensor,
    box: Sequence[float] | Tensor,
    output_size: int | Sequence[int],
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoI Align of one box: no snapping; each bin is the average of bilinear samples at regular points.

    Args:
        feature: [C, H, W] float feature map.
        box: (x1, y1, x2, y2) in feature-map coordinates (image pixels times spatial_scale).
        output_size: int or (out_h, out_w).
        sampling_ratio: samples per bin along each axis; <= 0: adaptive, ceil(bin size).
        aligned: shift the box by -0.5 cell (Detectron2); False is the Mask R-CNN paper's version.

    Returns:
        [C, out_h, out_w] in ``feature``'s dtype and device.
    """
    _, out_h, out_w = _check(feature, box, output_size)
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, int):
        raise TypeError(f"sampling_ratio must be an int, got {type(sampling_ratio).__name__}")
    _, ys, xs = roi_align_sample_points(box, output_size, sampling_ratio, aligned)
    out = feature.new_zeros(feature.shape[0], out_h, out_w)
    for i in range(out_h):
        for j in range(out_w):
            total = feature.new_zeros(feature.shape[0])  # [C]
            for y in ys[i]:
                for x in xs[j]:
                    total += bilinear_interpolate(feature, y, x)
            # A point outside the map read 0 but still counts; an empty grid (zero-size box) gives 0.
            out[:, i, j] = total / max(len(ys[i]) * len(xs[j]), 1)
    return out
    # --8<-- [end:roi_align_simple]
