"""R-CNN training targets: label region proposals by IoU, and crop + warp each proposal to a fixed size.

Boxes are xyxy in continuous pixel coordinates: pixel (row r, column c) is the unit square
[c, c + 1) x [r, r + 1), its centre is (c + 0.5, r + 0.5). A box [x1, y1, x2, y2] covers
[x1, x2) x [y1, y2), so the integer box [0, 0, W, H] is the whole image (same convention as
``torch.nn.functional.interpolate(..., align_corners=False)`` and RoI Align with ``aligned=True``).

Labelling (Girshick et al. 2014, R-CNN): a proposal whose best IoU with a ground-truth box is >= 0.5 is
a positive of that box's class; < 0.3 is background; in between it is ignored (neutral). R-CNN used
0.5 to fine-tune the CNN and 0.3 as the negative threshold of its SVMs; putting both in one function
gives the usual three-way labelling. Labels: digit/class index + 1 for positives (0 is background),
-1 for ignored.
"""

from __future__ import annotations

import torch

from lectures_code.ops.boxes import box_iou

BACKGROUND = 0
IGNORE = -1


def _check_boxes(name: str, boxes: torch.Tensor) -> None:
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] (xyxy), got {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {boxes.dtype}")


# --8<-- [start:label_proposals]
def label_proposals(
    proposals: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    pos_iou: float = 0.5,
    neg_iou: float = 0.3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Assign every proposal a training label by its best IoU with the ground truth.

    Args:
        proposals: float [N, 4] xyxy.
        gt_boxes: float [M, 4] xyxy.
        gt_labels: int64 [M], class indices 0..C-1.
        pos_iou: IoU >= pos_iou -> positive.
        neg_iou: IoU < neg_iou -> background; in between -> ignored.

    Returns:
        labels int64 [N]: gt_labels[match] + 1 (positive), 0 (background) or -1 (ignored).
        matched_gt int64 [N]: index of the highest-IoU gt box (first one on ties), -1 if M == 0.
        max_iou float [N]: that IoU (0 where M == 0; a NaN IoU of two empty boxes counts as 0).
    """
    _check_boxes("proposals", proposals)
    _check_boxes("gt_boxes", gt_boxes)
    if gt_labels.ndim != 1 or gt_labels.shape[0] != gt_boxes.shape[0]:
        raise ValueError(f"gt_labels must have shape [{gt_boxes.shape[0]}], got {tuple(gt_labels.shape)}")
    if gt_labels.is_floating_point() or gt_labels.dtype == torch.bool:
        raise TypeError(f"gt_labels must be an integer tensor, got {gt_labels.dtype}")
    if not 0.0 <= neg_iou <= pos_iou <= 1.0:
        raise ValueError(f"need 0 <= neg_iou <= pos_iou <= 1, got neg_iou={neg_iou}, pos_iou={pos_iou}")
    num_proposals, device = proposals.shape[0], proposals.device

    if gt_boxes.shape[0] == 0:  # no objects: every proposal is background
        iou_dtype = torch.promote_types(proposals.dtype, torch.float32)
        return (
            torch.zeros(num_proposals, dtype=torch.int64, device=device),
            torch.full((num_proposals,), -1, dtype=torch.int64, device=device),
            torch.zeros(num_proposals, dtype=iou_dtype, device=device),
        )

    iou = box_iou(proposals, gt_boxes).nan_to_num(0.0)  # [N, M]
    matched_gt = iou.argmax(dim=1)  # [N]; argmax documents the first-index tie rule, max(dim) does not
    max_iou = iou.gather(1, matched_gt[:, None])[:, 0]  # [N]

    labels = gt_labels.to(device=device, dtype=torch.int64)[matched_gt] + 1  # [N]
    labels[max_iou < pos_iou] = IGNORE
    labels[max_iou < neg_iou] = BACKGROUND
    return labels, matched_gt, max_iou
# --8<-- [end:label_proposals]


# --8<-- [start:crop_and_warp]
def crop_and_warp(
    image: torch.Tensor, boxes: torch.Tensor, output_size: int | tuple[int, int] = (64, 64)
) -> torch.Tensor:
    """Crop every box out of ``image`` and warp it (anisotropic bilinear resize) to ``output_size``.

    Output pixel (i, j) of box [x1, y1, x2, y2] samples the image at the continuous point
    x = x1 + (j + 0.5) (x2 - x1) / out_w, y = y1 + (i + 0.5) (y2 - y1) / out_h, bilinearly between
    pixel centres. Inside the image but within half a pixel of its border the nearest edge row/column
    is used (like ``F.interpolate``); points outside [0, W] x [0, H] read 0, so boxes that stick
    out of the image are padded with zeros.

    Args:
        image: float [C, H, W].
        boxes: float [K, 4] xyxy, on the image's device, x2 >= x1 and y2 >= y1.
        output_size: out_h, out_w (an int means square).

    Returns:
        float [K, C, out_h, out_w] in the image's dtype.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        raise ValueError("image must be a [C, H, W] tensor")
    if not image.is_floating_point():
        raise TypeError(f"image must be floating point, got {image.dtype}")
    _check_boxes("boxes", boxes)
    if boxes.device != image.device:
        raise ValueError(f"boxes are on {boxes.device} but image is on {image.device}")
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if not (isinstance(out_h, int) and isinstance(out_w, int) and out_h >= 1 and out_w >= 1):
        raise ValueError(f"output_size must be positive ints, got {output_size}")
    if bool(((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any()):
        raise ValueError("boxes must satisfy x2 >= x1 and y2 >= y1")
    _, H, W = image.shape
    # Coordinates in at least float32 so that half-precision images still sample the right place.
    coord_dtype = torch.promote_types(image.dtype, torch.float32)
    boxes = boxes.to(coord_dtype)
    x1, y1, x2, y2 = boxes.unbind(dim=1)  # each [K]

    steps_x = torch.arange(out_w, dtype=coord_dtype, device=image.device) + 0.5  # [out_w]
    steps_y = torch.arange(out_h, dtype=coord_dtype, device=image.device) + 0.5  # [out_h]
    xs = x1[:, None] + steps_x * ((x2 - x1) / out_w)[:, None]  # [K, out_w] continuous coords
    ys = y1[:, None] + steps_y * ((y2 - y1) / out_h)[:, None]  # [K, out_h]

    def neighbours(coords: torch.Tensor, size: int):
        # Pixel centres sit at index + 0.5; clamping reproduces edge replication near the border.
        index = (coords - 0.5).clamp(0, size - 1)
        low = index.floor().long()
        high = (low + 1).clamp(max=size - 1)
        frac = (index - low).to(image.dtype)
        inside = ((coords >= 0) & (coords <= size)).to(image.dtype)
        return low, high, frac, inside

    x_lo, x_hi, fx, inside_x = neighbours(xs, W)  # each [K, out_w]
    y_lo, y_hi, fy, inside_y = neighbours(ys, H)  # each [K, out_h]

    def gather(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return image[:, rows[:, :, None], cols[:, None, :]]  # [C, K, out_h, out_w]

    fx, fy = fx[:, None, :], fy[:, :, None]  # [K, 1, out_w], [K, out_h, 1]
    top = gather(y_lo, x_lo) * (1 - fx) + gather(y_lo, x_hi) * fx
    bottom = gather(y_hi, x_lo) * (1 - fx) + gather(y_hi, x_hi) * fx
    crops = top * (1 - fy) + bottom * fy  # [C, K, out_h, out_w]
    crops = crops * (inside_y[:, :, None] * inside_x[:, None, :])  # zero padding outside the image
    return crops.permute(1, 0, 2, 3).contiguous()  # [K, C, out_h, out_w]
# --8<-- [end:crop_and_warp]
