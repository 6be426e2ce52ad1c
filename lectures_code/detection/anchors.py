"""Anchor boxes for a region proposal network (Lecture 14, Faster R-CNN).

An anchor is a fixed reference box placed at every position of a CNN feature map. The RPN does not
predict boxes from nothing: for each anchor it predicts an objectness score and a transform
(tx, ty, tw, th) of that anchor (see ``box_coding.py``). With K anchor shapes per position and an
H x W feature map, the image gets H * W * K anchors.

All boxes are xyxy in input-image pixels, with no "+1" convention. The layout is exactly that of
``torchvision.models.detection.anchor_utils.AnchorGenerator`` (the tests use it as the oracle):

- aspect ratio = height / width; a shape of size s and ratio r has h = s * sqrt(r), w = s / sqrt(r),
  so its area stays s * s;
- the K = len(aspect_ratios) * len(sizes) shapes of a level are ordered ratio-major, then size;
- a base (zero-centred) anchor is round([-w, -h, w, h] / 2), rounded half to even (torch.round):
  size 32 with ratios (0.5, 1, 2) gives [-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23];
- the anchor centres of a level with stride s are (x * s, y * s) for x in arange(W), y in arange(H):
  the top-left corner of each feature-map cell, NOT its centre (no half-stride offset);
- anchors are ordered location-major (row y, then column x), then shape: anchor k at cell (y, x)
  is row (y * W + x) * K + k, the same order as flattening an RPN head output [K, H, W]
  permuted to [H, W, K];
- the stride of a level is image_size // feature_map_size (integer division, per axis);
- with several levels (FPN) the levels are concatenated in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


def _as_pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, Tensor):
        value = value.tolist()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    if len(value) != 2:
        raise ValueError(f"{name} must be one number or a pair (height, width), got {value!r}")
    return int(value[0]), int(value[1])


# --8<-- [start:anchors]
def base_anchors(
    sizes: Sequence[float],
    aspect_ratios: Sequence[float],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Tensor:
    """The K = len(aspect_ratios) * len(sizes) anchor shapes of one level, centred at (0, 0).

    Args:
        sizes: anchor sizes s (sqrt of the area) in pixels, e.g. (32,) or (128, 256, 512).
        aspect_ratios: ratios r = height / width, e.g. (0.5, 1.0, 2.0).
        dtype: floating dtype to compute (and return) in.
        device: device of the result.

    Returns:
        [K, 4] xyxy boxes round([-w, -h, w, h] / 2), ratio-major then size.
    """
    if len(sizes) == 0 or len(aspect_ratios) == 0:
        raise ValueError("need at least one size and one aspect ratio")
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be floating point, got {dtype}")
    scales = torch.as_tensor(sizes, dtype=dtype, device=device)  # [S]
    ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)  # [R]
    if scales.dim() != 1 or ratios.dim() != 1 or (scales <= 0).any() or (ratios <= 0).any():
        raise ValueError(f"sizes and aspect_ratios must be flat and positive, got {sizes!r}, {aspect_ratios!r}")

    # h / w = r and h * w = s * s  =>  h = s * sqrt(r), w = s / sqrt(r).
    h_ratios = torch.sqrt(ratios)  # [R]
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)  # [R * S], ratio-major
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    # Rounding to whole pixels is torchvision's (and Detectron's) choice; torch.round is half-to-even.
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()  # [K, 4]


def grid_anchors(base: Tensor, grid_size, stride) -> Tensor:
    """Copy the K base anchors to every cell of an H x W feature map.

    Args:
        base: [K, 4] zero-centred xyxy anchors from :func:`base_anchors`.
        grid_size: (H, W) of the feature map.
        stride: image pixels per feature-map cell, an int or (stride_h, stride_w).

    Returns:
        [H * W * K, 4] xyxy anchors, dtype and device of ``base``; row (y * W + x) * K + k is base
        anchor k shifted to the centre (x * stride_w, y * stride_h).
    """
    if not isinstance(base, Tensor) or base.dim() != 2 or base.shape[1] != 4:
        raise ValueError(f"base must be a [K, 4] tensor, got {getattr(base, 'shape', type(base))}")
    grid_h, grid_w = _as_pair(grid_size, "grid_size")
    stride_h, stride_w = _as_pair(stride, "stride")
    if grid_h < 0 or grid_w < 0:
        raise ValueError(f"grid_size must be non-negative, got {(grid_h, grid_w)}")

    # Integer centres, as torchvision: exact for any grid, then one cast when added to the base.
    xs = torch.arange(grid_w, dtype=torch.int64, device=base.device) * stride_w  # [W]
    ys = torch.arange(grid_h, dtype=torch.int64, device=base.device) * stride_h  # [H]
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")  # [H, W] each: row-major = y, then x
    cx, cy = cx.reshape(-1), cy.reshape(-1)  # [H * W]
    shifts = torch.stack((cx, cy, cx, cy), dim=1)  # [H * W, 4]
    return (shifts[:, None, :] + base[None, :, :]).reshape(-1, 4)  # [H * W * K, 4]
# --8<-- [end:anchors]


@dataclass
class AnchorLevel:
    """The anchors of one feature-map level (what a figure or a demo shows of a detector).

    anchors [H * W * K, 4] xyxy (location-major, then the K shapes), grid (H, W), stride in pixels,
    per_cell = K.
    """

    anchors: Tensor
    grid: tuple[int, int]
    stride: int
    per_cell: int

    def cell_of(self, x: float, y: float) -> tuple[int, int]:
        """(row, column) of the cell whose anchors are centred nearest above-left of pixel (x, y)."""
        grid_h, grid_w = self.grid
        return min(max(int(y) // self.stride, 0), grid_h - 1), min(max(int(x) // self.stride, 0), grid_w - 1)

    def anchors_at(self, row: int, column: int) -> Tensor:
        """The K anchors [K, 4] of cell (row, column), all centred at (column * stride, row * stride)."""
        first = (row * self.grid[1] + column) * self.per_cell
        return self.anchors[first:first + self.per_cell]


class AnchorGenerator:
    """Anchors of one or more feature-map levels (one level per FPN stage).

    ``AnchorGenerator(sizes, aspect_ratios)(image_size, feature_map_sizes)`` returns ONE [A_total, 4]
    xyxy tensor. In a batch every image is padded to the same ``image_size``, so every image gets
    these same anchors (torchvision returns a list holding this tensor once per image).

    Args:
        sizes: one tuple of sizes per level, e.g. ((32,), (64,), (128,)). A flat tuple (32, 64, 128)
            means one size per level, as in torchvision.
        aspect_ratios: one tuple of h / w ratios per level; a flat tuple is used for every level.
    """

    def __init__(
        self,
        sizes: Sequence = ((128, 256, 512),),
        aspect_ratios: Sequence = ((0.5, 1.0, 2.0),),
    ) -> None:
        if len(sizes) == 0:
            raise ValueError("need at least one level of sizes")
        if not isinstance(sizes[0], (list, tuple)):
            sizes = tuple((s,) for s in sizes)
        if not isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = (tuple(aspect_ratios),) * len(sizes)
        if len(sizes) != len(aspect_ratios):
            raise ValueError(f"got {len(sizes)} levels of sizes but {len(aspect_ratios)} of aspect ratios")
        self.sizes = tuple(tuple(s) for s in sizes)
        self.aspect_ratios = tuple(tuple(r) for r in aspect_ratios)

    def num_anchors_per_location(self) -> list[int]:
        """K of each level: len(aspect_ratios) * len(sizes)."""
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def __call__(
        self,
        image_size,
        feature_map_sizes: Sequence,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """Anchors of all levels for a (padded) image.

        Args:
            image_size: (H, W) of the padded input batch, in pixels.
            feature_map_sizes: one (H_l, W_l) per level, in the order of ``sizes``.
            dtype, device: of the result (the feature maps' dtype and device, in a detector).

        Returns:
            [sum_l H_l * W_l * K_l, 4] xyxy anchors, level after level.
        """
        if len(feature_map_sizes) != len(self.sizes):
            raise ValueError(f"got {len(feature_map_sizes)} feature maps for {len(self.sizes)} anchor levels")
        image_h, image_w = _as_pair(image_size, "image_size")
        per_level = []
        for level_sizes, level_ratios, grid in zip(self.sizes, self.aspect_ratios, feature_map_sizes):
            grid_h, grid_w = _as_pair(grid, "feature map size")
            if grid_h <= 0 or grid_w <= 0:
                raise ValueError(f"feature map sizes must be positive, got {(grid_h, grid_w)}")
            stride = (image_h // grid_h, image_w // grid_w)
            # torchvision builds the base anchors once in float32 and casts them; do the same so
            # float64 and float16 anchors agree with it bit for bit.
            base = base_anchors(level_sizes, level_ratios, torch.float32, device).to(dtype)
            per_level.append(grid_anchors(base, (grid_h, grid_w), stride))
        return torch.cat(per_level)

    def levels(self, image_size, strides: Sequence[int], device: torch.device | str = "cpu") -> list[AnchorLevel]:
        """The anchors of every level as :class:`AnchorLevel`, for feature maps of ``image_size // stride``."""
        image_h, image_w = _as_pair(image_size, "image_size")
        grids = [(image_h // s, image_w // s) for s in strides]
        anchors = self(image_size, grids, torch.float32, device)
        counts = [h * w * k for (h, w), k in zip(grids, self.num_anchors_per_location())]
        return [AnchorLevel(level, grid, stride, k) for level, grid, stride, k
                in zip(anchors.split(counts), grids, strides, self.num_anchors_per_location())]
