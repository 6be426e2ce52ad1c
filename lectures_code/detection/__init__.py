"""Lectures 13-14 · object detection, from scratch. Boxes are xyxy in pixels unless stated.

The pure tensor ops (boxes, box coding, NMS, RoI Pool / Align, losses) are in ``lectures_code.ops`` and
the metrics (COCO AP, VOC AP) in ``lectures_code.metrics``; their names are re-exported here as before.

Where boxes come from (Lecture 13)
    sliding_window.py   how many windows a sliding-window detector would have to classify
    selective_search.py region proposals by hierarchical grouping (Uijlings et al.)
Assigning training targets
    anchors.py          AnchorGenerator, AnchorLevel: anchor boxes of each feature-map level
    matcher.py          match_boxes: IoU thresholds with low-quality matches
    sampler.py          sample_positive_negative: fixed-size minibatches with a share of positives
    rcnn_targets.py     R-CNN's proposal labels (>= 0.5 / < 0.3) and crop-and-warp
    rpn_targets.py      the RPN's anchor labels and box targets
    fcos_targets.py     FCOS's points, scale ranges, center sampling, centerness
Networks
    backbones.py        conv_block, small_backbone, Backbone (C3-C5), FeaturePyramid, PyramidBackbone
    single_object.py    classification + box regression for one object per image (Lecture 13)
    rcnn.py             R-CNN: Selective Search + per-region CNN (Lecture 13)
    fast_rcnn.py        Fast R-CNN: one backbone pass + RoI Align head
    faster_rcnn.py      Faster R-CNN: RPN + RoI Align head, four losses
    faster_rcnn_fpn.py  Faster R-CNN on a feature pyramid (per-level proposals, multi-scale RoI Align)
    retinanet.py        RetinaNet: anchors + FPN + focal loss (single stage)
    fcos.py             FCOS: anchor-free, (l, t, r, b) + centerness (single stage)
Using them
    inference.py        what every ``model.predict(images, score_threshold, nms_threshold, max_detections)``
                        checks; two-stage detectors also return their proposals
    evaluation.py       COCO AP of a detector on the test canvases, one canvas at a time

Every detector trains with the shared loop (``lectures_code.training.fit``): in train mode its forward
returns a dict of losses. The registry (``lectures_code.registry``) names each one's data, recipe and
checkpoint: ``lectures train fcos``, ``lectures_code.registry.load_pretrained("fcos")``.
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
