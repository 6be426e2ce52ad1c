"""Evaluation metrics, each equal to its reference implementation (tested against it).

    coco_eval.py    coco_evaluate: the COCO numbers of boxes, masks ("segm") and keypoints, = pycocotools
    rle.py          COCO run-length encoding of masks: encode / decode / compress, area, bbox, IoU, merge
    voc_ap.py       voc_ap: PASCAL VOC 2007 11-point and VOC 2010+ area-under-the-curve AP
    segmentation.py confusion_matrix -> mean_iou / foreground_iou / pixel_accuracy;
                    panoptic_counts -> panoptic_quality (PQ = SQ x RQ)
"""

from lectures_code.metrics.coco_eval import (
    COCO_KEYPOINT_SIGMAS,
    KEYPOINT_STAT_NAMES,
    STAT_NAMES,
    coco_evaluate,
    coco_oks,
    format_stats,
    named_stats,
)
from lectures_code.metrics.rle import (
    rle_area,
    rle_compress,
    rle_decode,
    rle_decompress,
    rle_encode,
    rle_iou,
    rle_merge,
    rle_to_bbox,
)
from lectures_code.metrics.segmentation import (
    PanopticCounts,
    PanopticScores,
    confusion_matrix,
    foreground_iou,
    iou_per_class,
    mean_iou,
    panoptic_counts,
    panoptic_quality,
    pixel_accuracy,
)
from lectures_code.metrics.voc_ap import voc_ap

__all__ = [
    "COCO_KEYPOINT_SIGMAS",
    "KEYPOINT_STAT_NAMES",
    "STAT_NAMES",
    "coco_oks",
    "rle_area",
    "rle_compress",
    "rle_decode",
    "rle_decompress",
    "rle_encode",
    "rle_iou",
    "rle_merge",
    "rle_to_bbox",
    "PanopticCounts",
    "PanopticScores",
    "coco_evaluate",
    "confusion_matrix",
    "foreground_iou",
    "format_stats",
    "iou_per_class",
    "mean_iou",
    "named_stats",
    "panoptic_counts",
    "panoptic_quality",
    "pixel_accuracy",
    "voc_ap",
]
