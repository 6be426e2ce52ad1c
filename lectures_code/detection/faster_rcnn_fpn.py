"""Faster R-CNN with a Feature Pyramid Network (Lin, Dollár, Girshick, He, Hariharan, Belongie; CVPR 2017).

Lecture 14. The detector of ``faster_rcnn.py`` (read it first), with its single stride-8 feature map
replaced by a pyramid, as in torchvision's ``fasterrcnn_resnet50_fpn`` scaled down to 128-px digit
canvases. Boxes are xyxy in image pixels (x2/y2 exclusive, no "+1"); inside the detector class 0 is
background and 1..10 the digits 0..9; what a user gets back uses the digits 0..9.

What changes with the pyramid (everything else is imported from ``faster_rcnn.py``):

1. Features (``PyramidBackbone`` in ``backbones.py``): the single-level model's CNN (``small_backbone``,
   C3, stride 8, 128 channels) grows two stride-2 stages, C4 (stride 16) and C5 (stride 32); the
   ``FeaturePyramid`` (lateral 1x1 convs, nearest-neighbour top-down upsampling, 3x3 output convs)
   turns [C3, C4, C5] into [P3, P4, P5], 128 channels each: 16x16, 8x8 and 4x4 maps for a 128-px canvas.
   No P6: torchvision adds one (``LastLevelMaxPool``) for objects up to ~800 px; here it would be a 2x2
   map with 128-px anchors, twice the largest digit (64 px), so it would only ever learn "background".
2. Anchors: ONE size per level, 16 / 32 / 64 px on P3 / P4 / P5 (torchvision: 32..512 on P2..P6), each
   with aspect ratios (h / w) 1, 2, 4 as in ``faster_rcnn.py`` (digits are upright): 3 anchors per
   location, 16*16*3 + 8*8*3 + 4*4*3 = 1008 anchors instead of the single-level model's 3840.
   Small digits are found on the fine map, large ones on the coarse map, by the SAME ``RPNHead``
   (its weights are shared across levels, as in the paper: every level has the same 128 channels).
   Anchor matching (``rpn_targets``) and sampling run over the anchors of all levels together.
3. Proposal selection (:func:`select_proposals_per_level`): the top-k anchors by objectness PER LEVEL
   (so the ~800 fine-level anchors do not crowd out the coarse ones), decode, clip, drop tiny boxes,
   NMS at 0.7 within each level (``batched_nms`` with the level as the class, as torchvision), then the
   best ``post_nms_top_n`` over all levels.
4. Multi-scale RoI Align (:func:`multiscale_roi_align`): each proposal is pooled (7x7, sampling ratio 2)
   from ONE level, ``k = floor(k0 + log2(sqrt(w h) / s0))`` clamped to [3, 5] (``map_rois_to_levels``,
   the FPN paper's eq. 1). torchvision uses s0 = 224, k0 = 4 (an ImageNet-sized box goes to P4, stride
   16), which would send every digit (sqrt(w h) = 10..64 px) to P3. We use s0 = 48, k0 = 4: a box goes
   to the coarsest level on which it still spans at least ~3 cells (sqrt(w h) / stride >= 3). Boxes
   under 48 px (about 80% of the digits) are pooled from P3, the big ones (48..64 px, 3..4 cells on P4)
   from P4; nothing reaches P5 (it would need 96 px). Pooling a box that spans fewer cells would
   interpolate 7x7 bins out of a 1-2 cell patch: too blurry to tell a 3 from an 8.
5. Box head, targets, the four losses and inference: ``BoxHead``, ``box_head_targets``,
   ``faster_rcnn_losses`` and ``faster_rcnn_inference`` of ``faster_rcnn.py``, unchanged.

The shared loop trains it (registry entry "faster-rcnn-fpn": ``lectures train faster-rcnn-fpn``);
``predict`` returns the detections and the proposals, ``propose`` the proposals with their levels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from torch import Tensor

from lectures_code.data.digit_canvases import NUM_CLASSES
from lectures_code.detection.anchors import AnchorGenerator, AnchorLevel
from lectures_code.detection.backbones import PyramidBackbone
from lectures_code.detection.faster_rcnn import (
    RPN_WEIGHTS,
    BoxHead,
    RPNHead,
    box_head_targets,
    detections_per_image,
    faster_rcnn_losses,
)
from lectures_code.detection.inference import inference_settings
from lectures_code.detection.rpn_targets import rpn_targets
from lectures_code.detection.sampler import sample_positive_negative
from lectures_code.ops.box_coding import decode_boxes
from lectures_code.ops.nms import batched_nms
from lectures_code.ops.roi_align import map_rois_to_levels, roi_align

STRIDES = (8, 16, 32)  # P3, P4, P5
LEVELS = (3, 4, 5)  # k = log2(stride), the FPN paper's level numbers
ANCHOR_SIZES = (16, 32, 64)  # one size per level, 2 cells of its map (torchvision: 32..512 on P2..P6)
ANCHOR_RATIOS = (1.0, 2.0, 4.0)  # h / w: digits are upright, a "1" is up to ~5x taller than wide
ROI_CANONICAL_SCALE = 48  # a 48-px box is pooled from level 4 (see the module docstring)
ROI_CANONICAL_LEVEL = 4


# --8<-- [start:select_proposals_per_level]
@torch.no_grad()
def select_proposals_per_level(
    anchors: Tensor,
    objectness: Tensor,
    deltas: Tensor,
    num_anchors_per_level: Sequence[int],
    image_size: tuple[int, int],
    pre_nms_top_n: int,
    post_nms_top_n: int,
    nms_threshold: float = 0.7,
    min_size: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """The RPN's proposals for ONE image from the anchors of several pyramid levels.

    As torchvision's ``RegionProposalNetwork.filter_proposals``: per level keep the ``pre_nms_top_n``
    anchors with the highest objectness; decode them (weights 1, 1, 1, 1), clip to the image, drop
    boxes narrower or lower than ``min_size``; NMS within each level (a fine-level and a coarse-level
    box of the same digit do not suppress each other); keep the best ``post_nms_top_n`` of all levels.

    Args:
        anchors: [A, 4] xyxy anchors of all levels, level after level.
        objectness: [A] logits; deltas: [A, 4] predicted (tx, ty, tw, th).
        num_anchors_per_level: anchors of each level, summing to A.
        image_size: (H, W) in pixels.
        pre_nms_top_n: anchors kept PER LEVEL before NMS; post_nms_top_n: proposals kept in all.

    Returns:
        proposals float32 [P, 4] xyxy, objectness probabilities float32 [P] (decreasing), and the index
        (0, 1, ...) of the level each proposal came from, int64 [P]; all detached.
    """
    if anchors.ndim != 2 or anchors.shape[1] != 4 or deltas.shape != anchors.shape \
            or objectness.shape != anchors[:, 0].shape:
        raise ValueError(f"need anchors [A, 4], objectness [A], deltas [A, 4], got {tuple(anchors.shape)}, "
                         f"{tuple(objectness.shape)}, {tuple(deltas.shape)}")
    if sum(num_anchors_per_level) != len(anchors):
        raise ValueError(f"num_anchors_per_level {list(num_anchors_per_level)} does not sum to {len(anchors)}")
    height, width = image_size
    objectness = objectness.detach().float()
    top, levels, first = [], [], 0
    for level, count in enumerate(num_anchors_per_level):
        # Per-level top-k: ~75% of the anchors sit on P3, a global top-k could starve P4 and P5.
        best = objectness[first:first + count].topk(min(pre_nms_top_n, count)).indices + first  # [k_l]
        top.append(best)
        levels.append(torch.full_like(best, level))
        first += count
    top, levels = torch.cat(top), torch.cat(levels)  # [k]
    boxes = decode_boxes(deltas.detach().float()[top], anchors[top].float(), RPN_WEIGHTS)  # [k, 4]
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    scores = objectness[top].sigmoid()
    big_enough = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    boxes, scores, levels = boxes[big_enough], scores[big_enough], levels[big_enough]
    keep = batched_nms(boxes, scores, levels, nms_threshold)[:post_nms_top_n]  # decreasing score
    return boxes[keep], scores[keep], levels[keep]
# --8<-- [end:select_proposals_per_level]


def pyramid_levels(features: Sequence[Tensor], image_size: tuple[int, int]) -> list[int]:
    """Level k of each feature map, stride 2^k, as torchvision's ``MultiScaleRoIAlign`` infers it:
    k = -round(log2(map height / image height))."""
    return [-round(math.log2(feature.shape[-2] / image_size[0])) for feature in features]


# --8<-- [start:multiscale_roi_align]
def multiscale_roi_align(
    features: Sequence[Tensor],
    boxes: Sequence[Tensor],
    image_size: tuple[int, int],
    output_size: int = 7,
    sampling_ratio: int = 2,
    canonical_scale: float = ROI_CANONICAL_SCALE,
    canonical_level: int = ROI_CANONICAL_LEVEL,
) -> Tensor:
    """RoI Align of every box from ONE pyramid level, chosen by its size (FPN eq. 1).

    Equal to ``torchvision.ops.MultiScaleRoIAlign(names, output_size, sampling_ratio, canonical_scale=...,
    canonical_level=...)`` on the same maps. Level k = floor(canonical_level + log2(sqrt(w h) /
    canonical_scale)), clamped to the levels present; then ``roi_align`` (aligned=False) on that level's
    map with spatial scale 1 / 2^k.

    Args:
        features: L maps [N, C, H_l, W_l], finest first, each half the size of the previous one.
        boxes: N tensors [R_i, 4], xyxy image pixels, the dtype and device of the maps.
        image_size: (H, W) of the (padded) input images, to infer each map's stride.

    Returns:
        [sum R_i, C, output_size, output_size], boxes in input order (image 0's first).
    """
    if not isinstance(features, (list, tuple)) or not features:
        raise TypeError("features must be a non-empty list of [N, C, H, W] tensors")
    if any(f.ndim != 4 or f.shape[:2] != features[0].shape[:2] for f in features):
        raise ValueError(f"feature maps must be [N, C, H, W] with equal N and C, got "
                         f"{[tuple(f.shape) for f in features]}")
    if not isinstance(boxes, (list, tuple)) or len(boxes) != features[0].shape[0]:
        raise ValueError(f"need a list of {features[0].shape[0]} box tensors, one per image")
    levels = pyramid_levels(features, image_size)  # e.g. [3, 4, 5]
    rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])  # [R, 5]
    target = map_rois_to_levels(rois[:, 1:], levels[0], levels[-1], canonical_scale, canonical_level)  # [R]
    channels = features[0].shape[1]
    result = features[0].new_zeros(len(rois), channels, output_size, output_size)  # [R, C, 7, 7]
    for level, feature in zip(levels, features):
        chosen = torch.where(target == level)[0]
        result[chosen] = roi_align(feature, rois[chosen], output_size, 2.0 ** -level, sampling_ratio)
    return result
# --8<-- [end:multiscale_roi_align]


class FasterRCNNFPN(nn.Module):
    """Faster R-CNN + FPN: pyramid backbone, one RPN head shared by P3-P5, multi-scale RoI Align box head.

    ``forward(images, targets)`` in train mode returns the dict of the four losses {"loss_objectness",
    "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}; ``forward(images)`` in eval mode returns
    one dict per image {"boxes" float32 [D, 4] xyxy, "scores" float32 [D], "labels" int64 [D] digits 0..9}.
    :meth:`predict` takes the reader's thresholds and also returns the proposals; :meth:`propose` gives the
    proposals with their pyramid levels; :meth:`anchor_levels` the anchors of P3-P5.

    Args:
        images: float [B, 3, H, W] in [0, 1] (H, W multiples of 32).
        targets: list of B dicts with "boxes" float [G, 4] xyxy and "labels" int64 [G] digits 0..9.
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        channels: int = 128,
        anchor_sizes: tuple | list = ANCHOR_SIZES,
        anchor_ratios: tuple | list = ANCHOR_RATIOS,
        rpn_pre_nms_top_n: tuple | list = (300, 150),
        rpn_post_nms_top_n: tuple | list = (300, 100),
        rpn_batch_size_per_image: int = 256,
        box_batch_size_per_image: int = 128,
        roi_canonical_scale: float = ROI_CANONICAL_SCALE,
        roi_canonical_level: int = ROI_CANONICAL_LEVEL,
        score_threshold: float = 0.05,
        nms_threshold: float = 0.5,
        max_detections: int = 100,
    ):
        super().__init__()
        if len(anchor_sizes) != len(STRIDES):
            raise ValueError(f"need one anchor size per level {STRIDES}, got {anchor_sizes!r}")
        self.num_classes = num_classes
        self.anchor_generator = AnchorGenerator(tuple((size,) for size in anchor_sizes), tuple(anchor_ratios))
        self.backbone = PyramidBackbone(channels)
        self.rpn_head = RPNHead(channels, len(anchor_ratios))  # shared by all levels
        self.box_head = BoxHead(channels, num_classes)
        self.rpn_pre_nms_top_n = tuple(rpn_pre_nms_top_n)  # (training, testing), per level
        self.rpn_post_nms_top_n = tuple(rpn_post_nms_top_n)  # (training, testing), in all
        self.rpn_batch_size_per_image = rpn_batch_size_per_image
        self.box_batch_size_per_image = box_batch_size_per_image
        self.roi_canonical_scale = roi_canonical_scale
        self.roi_canonical_level = roi_canonical_level
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_detections = max_detections

    def _check(self, images: Tensor, targets: list[dict] | None) -> None:
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a float [B, 3, H, W] tensor, "
                             f"got {getattr(images, 'shape', type(images))}")
        if not images.is_floating_point():
            raise TypeError(f"images must be floating point in [0, 1], got {images.dtype}")
        if images.shape[2] % STRIDES[-1] or images.shape[3] % STRIDES[-1]:
            raise ValueError(f"image height and width must be multiples of {STRIDES[-1]}, "
                             f"got {tuple(images.shape[2:])}")
        if self.training:
            if targets is None or len(targets) != len(images):
                raise ValueError("in train mode, forward needs one target dict per image")
            for target in targets:
                boxes, labels = target["boxes"], target["labels"]
                if boxes.ndim != 2 or boxes.shape[1] != 4 or labels.shape != (boxes.shape[0],):
                    raise ValueError(f"target boxes must be [G, 4] and labels [G], got {tuple(boxes.shape)}, "
                                     f"{tuple(labels.shape)}")

    def _rpn(self, images: Tensor) -> tuple:
        """Features, per-image proposals (boxes, scores, level index), and what the RPN loss needs."""
        image_size = tuple(images.shape[-2:])
        features = self.backbone(images - 0.5)  # [P3, P4, P5], [B, C, H / s, W / s] each
        per_level = [self.rpn_head(feature) for feature in features]  # the same head on every level
        objectness = torch.cat([logits for logits, _ in per_level], dim=1)  # [B, A]
        rpn_deltas = torch.cat([deltas for _, deltas in per_level], dim=1)  # [B, A, 4]
        num_anchors_per_level = [logits.shape[1] for logits, _ in per_level]
        anchors = self.anchor_generator(image_size, [f.shape[-2:] for f in features], torch.float32,
                                        images.device)  # [A, 4], level after level
        mode = 0 if self.training else 1
        proposals = [select_proposals_per_level(anchors, objectness[i], rpn_deltas[i], num_anchors_per_level,
                                                image_size, self.rpn_pre_nms_top_n[mode],
                                                self.rpn_post_nms_top_n[mode])
                     for i in range(len(images))]
        return features, proposals, anchors, objectness, rpn_deltas

    def _pool(self, features: list[Tensor], boxes: list[Tensor], image_size: tuple[int, int]) -> Tensor:
        return multiscale_roi_align([f.float() for f in features], boxes, image_size, 7, 2,
                                    self.roi_canonical_scale, self.roi_canonical_level)  # [R, C, 7, 7]

    @torch.no_grad()
    def propose(self, images: Tensor) -> list[dict[str, Tensor]]:
        """The RPN's proposals (eval settings), one dict per image: "boxes" float32 [P, 4] xyxy, "scores"
        float32 [P] objectness probabilities (decreasing), "levels" int64 [P] pyramid level k (3 = P3) of
        the anchor it came from, "roi_levels" int64 [P] the level its RoI features are pooled from."""
        was_training = self.training
        self.eval()
        try:
            self._check(images, None)
            _, proposals, *_ = self._rpn(images)
        finally:
            self.train(was_training)
        return [{"boxes": boxes, "scores": scores, "levels": levels + LEVELS[0],
                 "roi_levels": map_rois_to_levels(boxes, LEVELS[0], LEVELS[-1], self.roi_canonical_scale,
                                                  self.roi_canonical_level)}
                for boxes, scores, levels in proposals]

    @torch.no_grad()
    def predict(self, images: Tensor, score_threshold: float | None = None, nms_threshold: float | None = None,
                max_detections: int | None = None) -> list[dict[str, Tensor]]:
        """Detections of a batch (eval mode): one dict per image {"boxes" float32 [D, 4] xyxy, "scores" float32
        [D] descending, "labels" int64 [D] digits 0..9, "proposals" float32 [P, 4] the RPN's proposals by
        decreasing objectness, "proposal_scores" float32 [P]}. None thresholds: the model's own."""
        score_threshold, nms_threshold, max_detections = inference_settings(
            self, score_threshold, nms_threshold, max_detections)
        self._check(images, None)
        image_size = tuple(images.shape[-2:])
        features, proposals, *_ = self._rpn(images)
        boxes = [p for p, _, _ in proposals]
        class_logits, box_deltas = self.box_head(self._pool(features, boxes, image_size))
        detections = detections_per_image(class_logits, box_deltas, boxes, image_size, score_threshold,
                                          nms_threshold, max_detections)
        return [d | {"proposals": p, "proposal_scores": s} for d, (p, s, _) in zip(detections, proposals)]

    def anchor_levels(self, image_size: tuple[int, int] = (128, 128)) -> list[AnchorLevel]:
        """The anchors the RPN scores on P3, P4, P5 for an image of ``image_size``."""
        return self.anchor_generator.levels(image_size, STRIDES, next(self.parameters()).device)

    def forward(self, images: Tensor, targets: list[dict] | None = None):
        if not self.training:  # eval: the detections with the model's thresholds (torchvision's contract)
            return [{k: d[k] for k in ("boxes", "scores", "labels")} for d in self.predict(images)]
        self._check(images, targets)
        image_size = tuple(images.shape[-2:])
        features, proposals, anchors, objectness, rpn_deltas = self._rpn(images)
        proposals = [boxes for boxes, _, _ in proposals]

        rpn_parts, head_parts = [], []
        for i, target in enumerate(targets):
            gt_boxes = target["boxes"].to(device=images.device, dtype=torch.float32)
            gt_labels = target["labels"].to(images.device)
            labels, box_targets = rpn_targets(anchors, gt_boxes)  # [A], [A, 4]: all levels matched together
            positive, negative = sample_positive_negative(labels, self.rpn_batch_size_per_image, 0.5)
            sampled = torch.where(positive | negative)[0]
            rpn_parts.append((objectness[i, sampled], rpn_deltas[i, sampled], labels[sampled], box_targets[sampled]))
            head_parts.append(box_head_targets(proposals[i], gt_boxes, gt_labels, self.box_batch_size_per_image, 0.25))
        class_logits, box_deltas = self.box_head(self._pool(features, [p[0] for p in head_parts], image_size))
        rpn_objectness, rpn_sampled_deltas, rpn_labels, rpn_box_targets = (torch.cat(x) for x in zip(*rpn_parts))
        return faster_rcnn_losses(
            rpn_objectness.float(), rpn_sampled_deltas.float(), rpn_labels, rpn_box_targets,
            class_logits.float(), box_deltas.float(), torch.cat([p[1] for p in head_parts]),
            torch.cat([p[2] for p in head_parts]))

    def config(self) -> dict:
        """Constructor arguments as plain types (what the shipped checkpoint's metadata stores)."""
        return {"num_classes": self.num_classes, "channels": self.rpn_head.conv.in_channels,
                "anchor_sizes": [sizes[0] for sizes in self.anchor_generator.sizes],
                "anchor_ratios": list(self.anchor_generator.aspect_ratios[0]),
                "rpn_pre_nms_top_n": list(self.rpn_pre_nms_top_n), "rpn_post_nms_top_n": list(self.rpn_post_nms_top_n),
                "rpn_batch_size_per_image": self.rpn_batch_size_per_image,
                "box_batch_size_per_image": self.box_batch_size_per_image,
                "roi_canonical_scale": self.roi_canonical_scale, "roi_canonical_level": self.roi_canonical_level,
                "score_threshold": self.score_threshold, "nms_threshold": self.nms_threshold,
                "max_detections": self.max_detections}
