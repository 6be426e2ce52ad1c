"""Lectures 13-14 · object detection, from scratch. One op per file; boxes are xyxy unless stated.

    boxes.py            box_area, box_iou, box_convert
    box_coding.py       encode_boxes / decode_boxes: (tx, ty, tw, th) and back
    nms.py              nms, batched_nms (greedy, equal to torchvision index for index)
    coco_eval.py        coco_evaluate: the 12 COCO numbers, equal to pycocotools
    voc_ap.py           voc_ap: PASCAL VOC 2007 11-point and 2010+ AP
    sliding_window.py   how many windows a sliding-window detector would have to classify
    selective_search.py region proposals by hierarchical grouping (Uijlings et al.)
    rcnn_targets.py     R-CNN proposal labels (>= 0.5 / < 0.3) and crop-and-warp
    single_object.py    classification + box regression for one object per image
    rcnn.py             R-CNN trained on the digit canvases
    roi_pool.py, roi_align.py   Lecture 14's RoI feature cropping (roi_teaching.py: the loop versions)
    anchors.py, matcher.py, sampler.py, rpn_targets.py   Faster R-CNN's RPN building blocks
    losses.py, fcos_targets.py  focal loss, GIoU losses, FCOS target assignment
    fast_rcnn.py        Fast R-CNN: Selective Search proposals + one backbone pass + RoI Align head
    faster_rcnn.py      Faster R-CNN: RPN + RoI Align head, four losses
    faster_rcnn_fpn.py  Faster R-CNN on a feature pyramid (per-level proposals, multi-scale RoI Align)
    retinanet.py        RetinaNet: anchors + FPN + focal loss (single stage)
    fcos.py             FCOS: anchor-free, (l, t, r, b) + centerness (single stage)
    training_cli.py     what the detectors' training commands share (arguments, records, checkpoints)
    visualize.py, figures*.py   drawing boxes; the figures of the notes

The detectors are imported from their own modules (``from lectures_code.detection.fcos import FCOS``);
their shipped weights load with ``lectures_code.checkpoints.load_pretrained("fcos_digits")``.
"""

from lectures_code.detection.anchors import AnchorGenerator, base_anchors, grid_anchors
from lectures_code.detection.fcos_targets import assign_fcos_targets, centerness_target
from lectures_code.detection.matcher import match_boxes
from lectures_code.detection.rcnn_targets import crop_and_warp, label_proposals
from lectures_code.detection.rpn_targets import rpn_targets
from lectures_code.detection.sampler import sample_positive_negative
from lectures_code.detection.selective_search import proposal_recall, selective_search
from lectures_code.detection.sliding_window import count_all_windows, count_windows, enumerate_windows
from lectures_code.metrics.coco_eval import coco_evaluate, format_stats
from lectures_code.metrics.voc_ap import voc_ap
from lectures_code.ops.box_coding import decode_boxes, encode_boxes
from lectures_code.ops.boxes import box_area, box_convert, box_iou
from lectures_code.ops.losses import generalized_box_iou, generalized_box_iou_loss, sigmoid_focal_loss
from lectures_code.ops.nms import batched_nms, nms, nms_simple
from lectures_code.ops.roi_align import map_rois_to_levels, roi_align
from lectures_code.ops.roi_pool import roi_pool

__all__ = [
    "AnchorGenerator",
    "assign_fcos_targets",
    "base_anchors",
    "centerness_target",
    "generalized_box_iou",
    "generalized_box_iou_loss",
    "grid_anchors",
    "match_boxes",
    "rpn_targets",
    "sample_positive_negative",
    "sigmoid_focal_loss",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "coco_evaluate",
    "count_all_windows",
    "count_windows",
    "crop_and_warp",
    "decode_boxes",
    "encode_boxes",
    "enumerate_windows",
    "format_stats",
    "label_proposals",
    "nms",
    "nms_simple",
    "map_rois_to_levels",
    "proposal_recall",
    "roi_align",
    "roi_pool",
    "selective_search",
    "voc_ap",
]
