"""Pure tensor functions in the style of ``torchvision.ops``: one op family a file, no model, no state.

Every function takes and returns tensors on any device, states its formats and shapes in its
docstring, and is tested against the reference library (torchvision) on random and edge inputs.
Nothing here imports another part of ``lectures_code``.

    boxes.py        box_area, box_iou, box_convert (xyxy / xywh / cxcywh)
    box_coding.py   encode_boxes / decode_boxes: (tx, ty, tw, th) and back
    nms.py          nms, batched_nms, nms_simple (greedy, equal to torchvision index for index)
    roi_pool.py     roi_pool: Fast R-CNN's RoI max pooling
    roi_align.py    roi_align (bilinear, Mask R-CNN), map_rois_to_levels (FPN eq. 1)
    losses.py       sigmoid_focal_loss, generalized_box_iou, generalized_box_iou_loss
    masks.py        project_masks_on_boxes (Mask R-CNN's mask targets), paste_masks_in_image
    upsample.py     conv_transpose1d/2d, convolution_matrix, bed_of_nails, max_unpool2d, interpolate,
                    fcn_bilinear_kernel: Lecture 15's in-network upsampling
"""

from lectures_code.ops.box_coding import decode_boxes, encode_boxes
from lectures_code.ops.boxes import box_area, box_convert, box_iou
from lectures_code.ops.losses import generalized_box_iou, generalized_box_iou_loss, sigmoid_focal_loss
from lectures_code.ops.masks import paste_masks_in_image, project_masks_on_boxes
from lectures_code.ops.nms import batched_nms, nms, nms_simple
from lectures_code.ops.roi_align import map_rois_to_levels, roi_align
from lectures_code.ops.roi_pool import roi_pool
from lectures_code.ops.upsample import (
    bed_of_nails,
    conv_transpose1d,
    conv_transpose2d,
    convolution_matrix,
    fcn_bilinear_kernel,
    interpolate,
    max_unpool2d,
)

__all__ = [
    "batched_nms",
    "bed_of_nails",
    "conv_transpose1d",
    "conv_transpose2d",
    "convolution_matrix",
    "fcn_bilinear_kernel",
    "interpolate",
    "max_unpool2d",
    "box_area",
    "box_convert",
    "box_iou",
    "decode_boxes",
    "encode_boxes",
    "generalized_box_iou",
    "generalized_box_iou_loss",
    "map_rois_to_levels",
    "nms",
    "nms_simple",
    "paste_masks_in_image",
    "project_masks_on_boxes",
    "roi_align",
    "roi_pool",
    "sigmoid_focal_loss",
]
