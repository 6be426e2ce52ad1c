"""Lecture 15 · image segmentation.

The operations live with the other tensor functions and are re-exported here, so that a reader of the
Lecture 15 page finds them under one name:

    in-network upsampling   lectures_code/ops/upsample.py   conv_transpose1d/2d, convolution_matrix,
                                                            bed_of_nails, max_unpool2d, interpolate,
                                                            fcn_bilinear_kernel
    Mask R-CNN's masks      lectures_code/ops/masks.py      project_masks_on_boxes, paste_masks_in_image
    metrics                 lectures_code/metrics/           mean_iou, foreground_iou, panoptic_quality,
                                                            coco_evaluate(..., iou_type="segm" | "keypoints")

The segmentation models (FCN, U-Net, Mask R-CNN, keypoints, panoptic) will be one file each in this folder.
"""

from lectures_code.metrics.coco_eval import coco_evaluate
from lectures_code.metrics.segmentation import (
    confusion_matrix,
    foreground_iou,
    mean_iou,
    panoptic_counts,
    panoptic_quality,
)
from lectures_code.ops.masks import paste_masks_in_image, project_masks_on_boxes
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
    "bed_of_nails",
    "coco_evaluate",
    "confusion_matrix",
    "conv_transpose1d",
    "conv_transpose2d",
    "convolution_matrix",
    "fcn_bilinear_kernel",
    "foreground_iou",
    "interpolate",
    "max_unpool2d",
    "mean_iou",
    "panoptic_counts",
    "panoptic_quality",
    "paste_masks_in_image",
    "project_masks_on_boxes",
]
