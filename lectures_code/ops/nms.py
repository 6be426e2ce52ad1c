"""Non-maximum suppression (Lecture 13): keep the best box of every cluster of overlapping boxes.

Boxes are [N, 4] xyxy (no "+1"), scores [N]. Greedy NMS, exactly as taught and as
``torchvision.ops.nms`` computes it:

1. sort the boxes by score, highest first, with a *stable* sort: among equal scores the lower
   index comes first;
2. take the best remaining box and keep it;
3. drop every remaining box whose IoU with it is strictly greater than ``iou_threshold``
   (IoU == threshold is kept); go to 2.

The result is the int64 indices of the kept boxes, in descending score order.

Floating-point details that decide ties at the threshold (so that the indices equal torchvision's
bit for bit): the IoU is inter / (area_i + area_j - inter) in the boxes' dtype; the CPU kernel
compares it with the threshold as a float64 number, the CUDA kernel with the threshold rounded to
float32. With integer boxes of IoU exactly 1/10 at threshold 0.1 the two kernels disagree
(0.1f > 0.1 in float64), and we follow whichever device the boxes are on.

Differences from torchvision, on purpose:

- float16 / bfloat16 boxes are computed in float32 (torchvision's CPU kernel raises, its CUDA
  kernel rounds intermediate widths to float16); the result is torchvision's on the float32 boxes.
- ``iou_threshold`` must be >= 0: a negative one would make even disjoint boxes suppress each other.
- ``scores`` may have any real dtype (torchvision wants the dtype of the boxes); only their order
  matters.
- ``batched_nms`` uses the correct per-class loop when a coordinate is negative, where
  torchvision's coordinate-offset trick lets boxes of different classes suppress each other.

Two implementations, tested against each other and against torchvision:

- :func:`nms_simple` is the loop from the lecture, one vectorized IoU row per kept box. It is the
  one to read, but it runs one Python iteration per kept box (thousands at 10k boxes).
- :func:`nms` gives the same indices faster. Only boxes that overlap can suppress each other, so
  it first finds the few pairs with IoU > threshold, then runs the greedy pass over that short
  list of pairs in plain Python. To find the pairs without comparing all N^2 of them, it sorts the
  boxes by their left edge x1: box p can only reach IoU > t with a box q that starts after it if q
  starts before x2[p] - t * width[p] (the IoU is at most the part of p's width that q covers), a
  narrow band of the sorted list, and the IoU is computed densely on blocks that cover the bands.
  On the CPU a block holds fewer than 32768 IoUs, so every op runs on the calling thread (see
  ``boxes.py``). Time and memory grow with the band width and the number of pairs found: at worst
  (every box overlapping every other) that is N^2 / 2 pairs, like the N x N bit mask of the CUDA
  kernel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lectures_code.ops.boxes import block_numel, box_iou


def _check_inputs(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Validate; return the boxes in float32/float64 (half precision is upcast)."""
    if not isinstance(boxes, Tensor) or not isinstance(scores, Tensor):
        raise TypeError("boxes and scores must be torch.Tensor")
    if not boxes.is_floating_point():
        raise TypeError(f"boxes must be floating point, got dtype {boxes.dtype}")
    if scores.dtype == torch.bool or scores.is_complex():
        raise TypeError(f"scores must hold real numbers, got dtype {scores.dtype}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {list(boxes.shape)}")
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"scores must have shape [{boxes.shape[0]}], got {list(scores.shape)}")
    if boxes.device != scores.device:
        raise ValueError(f"boxes are on {boxes.device} but scores on {scores.device}")
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float)):
        raise TypeError(f"iou_threshold must be a number, got {type(iou_threshold).__name__}")
    if math.isnan(iou_threshold) or iou_threshold < 0:
        raise ValueError(f"iou_threshold must be >= 0, got {iou_threshold}")
    return boxes if boxes.dtype in (torch.float32, torch.float64) else boxes.float()


def _iou_cutoff(iou_threshold: float, dtype: torch.dtype, device: torch.device) -> float:
    """A number c, exact in ``dtype``, such that ``iou > c`` equals torchvision's test."""
    threshold = torch.tensor(float(iou_threshold), dtype=torch.float64)
    if device.type == "cuda":
        # The CUDA kernel receives the threshold as a C float.
        return float(threshold.float())
    if dtype == torch.float64:
        return float(threshold)
    # The CPU kernel compares a float IoU with a double threshold t. For a float x, x > t is the
    # same as x > (the largest float <= t), a number that a float32 comparison holds exactly.
    below = threshold.float()
    if below.double() > threshold:
        below = torch.nextafter(below, torch.tensor(-math.inf))
    return float(below)


# --8<-- [start:nms_simple]
def nms_simple(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS as taught: one loop iteration per kept box. Same result as :func:`nms`.

    Args:
        boxes: [N, 4] xyxy boxes, floating point.
        scores: [N] scores, same device.
        iou_threshold: boxes with IoU > iou_threshold with a kept box are discarded.

    Returns:
        [K] int64 indices of the kept boxes, highest score first.
    """
    boxes = _check_inputs(boxes, scores, iou_threshold)
    cutoff = _iou_cutoff(iou_threshold, boxes.dtype, boxes.device)

    # Stable: equal scores stay in index order, so the lower index wins a tie.
    remaining = torch.sort(scores, descending=True, stable=True).indices  # [N]
    keep = []
    while remaining.numel() > 0:
        best, rest = remaining[0], remaining[1:]
        keep.append(best)
        iou = box_iou(boxes[best][None], boxes[rest])[0]  # [len(rest)]
        remaining = rest[~(iou > cutoff)]  # IoU == threshold survives; so does NaN
    if not keep:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    return torch.stack(keep)
# --8<-- [end:nms_simple]


# --8<-- [start:nms]
def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression, equal to ``torchvision.ops.nms`` index for index.

    Args:
        boxes: [N, 4] xyxy boxes, floating point (float16/bfloat16 are computed in float32).
        scores: [N] scores, same device; any real dtype.
        iou_threshold: a box is discarded if its IoU with a kept, higher-scoring box is
            strictly greater than this (>= 0).

    Returns:
        [K] int64 indices of the kept boxes, highest score first (ties: lower index first).
    """
    boxes = _check_inputs(boxes, scores, iou_threshold)
    n = boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices  # [N]
    cutoff = _iou_cutoff(iou_threshold, boxes.dtype, boxes.device)

    # Every pair (a, b) with a ranked before b and IoU > threshold: "a, if kept, removes b".
    coords = boxes.T.contiguous().index_select(1, order)  # [4, N]: rows x1, y1, x2, y2, by score
    first, second = _suppressing_pairs(coords, cutoff)  # [P], [P], first < second

    # The greedy pass over ranks 0..N-1 needs, for each rank, the ranks it removes: sort the
    # pairs by their first element; rank r's list starts after the pairs of ranks < r.
    removes = second.index_select(0, torch.argsort(first, stable=True)).tolist()
    start = [0] + torch.bincount(first, minlength=n).cumsum(0).tolist()

    removed = [False] * n
    kept_ranks = []
    for rank in range(n):
        if removed[rank]:
            continue
        kept_ranks.append(rank)
        for other in removes[start[rank] : start[rank + 1]]:
            removed[other] = True
    return order.index_select(0, torch.tensor(kept_ranks, dtype=torch.int64, device=order.device))


def _suppressing_pairs(coords: Tensor, cutoff: float) -> tuple[Tensor, Tensor]:
    """All pairs i < j of boxes (``coords`` [4, N]: rows x1, y1, x2, y2, sorted by score) with IoU > cutoff >= 0."""
    # Sorted by x1, box p can only reach IoU > cutoff with a later box q (x1[q] >= x1[p]) if q starts
    # early enough: IoU <= inter / area[p] <= (x2[p] - x1[q]) * height[p] / area[p], so
    # x1[q] < x2[p] - cutoff * width[p]. These q's form a band p+1 .. band_end[p]-1 of the sorted list.
    by_x1 = torch.sort(coords[0], stable=True).indices  # [N]
    x1, y1, x2, y2 = coords.index_select(1, by_x1)  # 4 x [N], sorted by x1
    area = (x2 - x1) * (y2 - y1)
    # The cutoff lowered by 0.1% and the reach rounded up: rounding in the float IoU never loses a pair.
    reach = torch.nextafter(x2 - cutoff * (1 - 1e-3) * (x2 - x1), x2.new_tensor(math.inf))  # [N]
    # (On the CPU 128 boxes at a time: torch.searchsorted splits 200 or more queries over threads.)
    queries = reach.split(128) if reach.device.type == "cpu" else [reach]
    band_end = torch.cat([torch.searchsorted(x1, part, side="left") for part in queries]).tolist()  # [N]

    # The IoU is computed densely on blocks (rows p0..p1-1, columns p0..end-1) that cover the bands.
    blocks = _band_blocks(band_end, block_numel(coords.device))
    steps = torch.arange(max(p1 - p0 for p0, p1, _ in blocks), device=coords.device)
    col_after_row = steps[:, None] < steps  # each pair once, never a box with itself
    x1_col, y1_col, x2_col, y2_col, area_col = (v[:, None] for v in (x1, y1, x2, y2, area))  # [N, 1]
    rows_found, cols_found = [], []
    for p0, p1, end in blocks:
        if end - p0 < 2:
            continue  # no column after any row
        rows, cols = slice(p0, p1), slice(p0, end)
        w = torch.min(x2_col[rows], x2[cols]) - torch.max(x1_col[rows], x1[cols])  # [rows, cols]
        h = torch.min(y2_col[rows], y2[cols]) - torch.max(y1_col[rows], y1[cols])  # [rows, cols]
        inter = w.clamp_(min=0).mul_(h.clamp_(min=0))
        union = (area_col[rows] + area[cols]).sub_(inter)
        found = inter.div_(union) > cutoff  # [rows, cols]
        square = min(p1, end) - p0  # where the columns are the rows themselves
        found[:, :square] &= col_after_row[: p1 - p0, :square]
        r, q = found.nonzero(as_tuple=True)
        rows_found.append(r + p0)
        cols_found.append(q + p0)
    if not rows_found:
        empty = torch.empty(0, dtype=torch.int64, device=coords.device)
        return empty, empty
    a = by_x1.index_select(0, torch.cat(rows_found))  # back to score ranks
    b = by_x1.index_select(0, torch.cat(cols_found))
    return torch.minimum(a, b), torch.maximum(a, b)


def _band_blocks(band_end: list[int], max_numel: int) -> list[tuple[int, int, int]]:
    """Cut rows 0..N-1 into blocks (p0, p1, end): rows p0..p1-1 against columns p0..end-1.

    ``end`` covers the band of every row in the block; each block takes as many rows as keep it
    within ``max_numel`` elements (at least one row), so narrow bands get tall blocks.
    """
    blocks, p0, end = [], 0, 0
    for p, row_end in enumerate(band_end):
        if p > p0 and (p + 1 - p0) * (max(end, row_end) - p0) > max_numel:
            blocks.append((p0, p, end))  # row p does not fit: it starts the next block
            p0, end = p, row_end
        elif row_end > end:
            end = row_end
    blocks.append((p0, len(band_end), end))
    return blocks
# --8<-- [end:nms]


# --8<-- [start:batched_nms]
def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each class: boxes with different labels never suppress each other.

    Follows ``torchvision.ops.batched_nms`` including its choice of method:

    - small inputs (boxes.numel() <= 4000 on CPU, <= 100000 on other devices) use the
      coordinate-offset trick: shift every box by label * (max coordinate + 1) so that classes
      land in disjoint regions, then run one NMS;
    - larger inputs run NMS once per class.

    Deliberate difference: the offset trick assumes coordinates >= 0. With a negative coordinate,
    shifted boxes of different classes can still overlap (e.g. [-60,-60,-20,-20] of class 1 and
    [-40,-40,10,10] of class 0 at threshold 0.1: torchvision keeps only one). There we always use
    the per-class loop, which gives the correct answer.

    Args:
        boxes: [N, 4] xyxy boxes, floating point.
        scores: [N] scores.
        labels: [N] integer class of each box.
        iou_threshold: as in :func:`nms`.

    Returns:
        [K] int64 indices of the kept boxes, highest score first (stable among equal scores).
    """
    boxes = _check_inputs(boxes, scores, iou_threshold)
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.is_complex():
        raise TypeError("labels must be an integer torch.Tensor")
    if labels.shape != scores.shape or labels.device != boxes.device:
        raise ValueError(f"labels must have shape [{boxes.shape[0]}] and live on {boxes.device}")
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)

    small = boxes.numel() <= (4000 if boxes.device.type == "cpu" else 100_000)
    if small and bool(boxes.min() >= 0):
        offsets = labels.to(boxes.dtype) * (boxes.max() + 1)  # [N]
        return nms(boxes + offsets[:, None], scores, iou_threshold)

    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for label in torch.unique(labels):
        members = torch.nonzero(labels == label).squeeze(1)  # this class's boxes
        keep = nms(boxes.index_select(0, members), scores.index_select(0, members), iou_threshold)
        keep_mask.index_fill_(0, members.index_select(0, keep), True)
    kept = torch.nonzero(keep_mask).squeeze(1)  # in index order: equal scores stay in index order
    return kept.index_select(0, torch.sort(scores.index_select(0, kept), descending=True, stable=True).indices)
# --8<-- [end:batched_nms]
