"""Boxes: area, IoU and format conversion (Lecture 13).

Every box here is a row of 4 numbers. The default format is ``xyxy`` = (x1, y1, x2, y2), the
top-left and bottom-right corners, in pixels, with NO "+1" pixel convention: a box
[0, 0, 10, 10] has width 10 and area 100. The other formats are ``xywh`` = (x1, y1, w, h) and
``cxcywh`` = (center x, center y, w, h).

The semantics follow ``torchvision.ops`` exactly (the tests use it as the oracle):

- IoU = intersection / union, with no epsilon: two zero-area boxes give NaN (0 / 0), a
  zero-area box against a normal one gives 0.
- An inverted box such as [10, 10, 0, 0] has a positive "area" (-10 * -10 = 100) but an IoU of 0
  with everything, because its intersection is clamped at 0.
- float16 / bfloat16 boxes are computed (and returned) in float32, int8/int16/uint8 in int32, so
  products of coordinates do not overflow. IoU of integer boxes is float32.

Speed on a busy machine: PyTorch runs a CPU op on the calling thread when it has fewer than
``GRAIN_SIZE`` elements and splits a bigger one over its intra-op threads. The split pays off on an
idle machine, but every split op then waits until each of its threads gets a core: with other
processes running that can take a scheduler time slice (milliseconds) per op, more than the op
itself. So the CPU ops here and in ``nms.py`` / ``roi_pool.py`` work in blocks of fewer than
``GRAIN_SIZE`` elements, on one thread like torchvision's C++ kernels (and with temporaries that stay
in the cache); on a GPU they use big blocks (few kernel launches).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")

# PyTorch's CPU kernels split an op over threads from this many elements on (at::internal::GRAIN_SIZE).
GRAIN_SIZE = 32768


def block_numel(device: torch.device) -> int:
    """Most elements per block of work: fewer than ``GRAIN_SIZE`` on the CPU (one thread), 2**24 on a GPU."""
    return GRAIN_SIZE - 1 if device.type == "cpu" else 1 << 24


def row_blocks(rows: int, row_numel: int, device: torch.device) -> Iterator[slice]:
    """Consecutive slices of ``rows`` rows (``row_numel`` elements each) of at most ``block_numel`` elements.

    A block holds at least one row, so rows of ``GRAIN_SIZE`` elements or more get a block each.
    """
    step = max(1, block_numel(device) // max(row_numel, 1))
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


def _check_boxes(boxes: Tensor, name: str = "boxes") -> None:
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {boxes.dtype}")
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape [N, 4], got {list(boxes.shape)}")


def _upcast(t: Tensor) -> Tensor:
    # Products of coordinates overflow float16 (max 65504) and int16, so widen small dtypes.
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.int()


# --8<-- [start:box_iou]
def box_area(boxes: Tensor) -> Tensor:
    """Area of each box.

    Args:
        boxes: [N, 4] xyxy boxes, any real dtype.

    Returns:
        [N] areas (x2 - x1) * (y2 - y1); float16/bfloat16 come back as float32.
    """
    _check_boxes(boxes)
    boxes = _upcast(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every box in ``boxes1`` with every box in ``boxes2``.

    Args:
        boxes1: [N, 4] xyxy boxes.
        boxes2: [M, 4] xyxy boxes, same device.

    Returns:
        [N, M] IoU matrix: float64 for float64 input, float32 otherwise. NaN where both boxes have
        zero area. N = 0 gives a (0, M) tensor.
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    area1 = box_area(boxes1)  # [N]
    area2 = box_area(boxes2)  # [M]
    x1a, y1a, x2a, y2a = boxes1[:, :, None].unbind(1)  # 4 x [N, 1]
    x1b, y1b, x2b, y2b = boxes2.T  # 4 x [M]
    n, m = len(boxes1), len(boxes2)
    dtype = torch.promote_types(area1.dtype, area2.dtype)  # integer boxes: inter / union is float
    iou = boxes1.new_empty(n, m, dtype=dtype if dtype.is_floating_point else torch.get_default_dtype())

    # A block of rows at a time, small enough for one thread (see the module docstring).
    for rows in row_blocks(n, m, boxes1.device):
        # The intersection runs from the larger left edge to the smaller right edge (same for y).
        # Disjoint boxes give a negative width or height: clamp it so they intersect in 0, not < 0.
        inter_w = _upcast(torch.min(x2a[rows], x2b) - torch.max(x1a[rows], x1b)).clamp_(min=0)  # [rows, M]
        inter_h = _upcast(torch.min(y2a[rows], y2b) - torch.max(y1a[rows], y1b)).clamp_(min=0)  # [rows, M]
        inter = inter_w.mul_(inter_h)  # in place: the [rows, M] temporaries dominate the run time
        union = (area1[rows, None] + area2).sub_(inter)  # [rows, M]
        iou[rows] = inter / union
    return iou
# --8<-- [end:box_iou]


# --8<-- [start:box_convert]
def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert [N, 4] boxes between ``"xyxy"``, ``"xywh"`` and ``"cxcywh"``.

    Args:
        boxes: [N, 4] boxes in ``in_fmt``.
        in_fmt, out_fmt: one of ``"xyxy"``, ``"xywh"``, ``"cxcywh"``.

    Returns:
        [N, 4] boxes in ``out_fmt``, a copy even when the formats agree. Same dtype, except that
        integer boxes converted to or from ``cxcywh`` become float (halving is not exact).
    """
    _check_boxes(boxes)
    for fmt in (in_fmt, out_fmt):
        if fmt not in BOX_FORMATS:
            raise ValueError(f"unknown box format {fmt!r}: use one of {BOX_FORMATS}")
    if in_fmt == out_fmt:
        return boxes.clone()

    # Go through xyxy, the format every other op uses.
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":
        x1, y1, x2, y2 = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        x1, y1, x2, y2 = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
    else:
        x1, y1, x2, y2 = a, b, c, d

    if out_fmt == "xywh":
        return torch.stack((x1, y1, x2 - x1, y2 - y1), dim=-1)
    if out_fmt == "cxcywh":
        return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)
    return torch.stack((x1, y1, x2, y2), dim=-1)
# --8<-- [end:box_convert]
