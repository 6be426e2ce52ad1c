"""Faster R-CNN from scratch on DigitCanvases (Ren, He, Girshick, Sun; NeurIPS 2015), Lecture 14.

Boxes are xyxy in image pixels (x2/y2 exclusive, the DigitCanvases convention; no "+1" anywhere).
Inside the detector class 0 is background and 1..10 are the digits 0..9; everything returned to a
user (the detections of :class:`FasterRCNN` in eval mode) uses the digit 0..9 again.

One network, two stages, trained jointly with four losses:

1. Backbone: a small CNN, stride 8, so a 128x128 canvas gives a 16x16 feature map with 128 channels.
2. Region proposal network (:class:`RPNHead`): a 3x3 conv, then per anchor one objectness logit and
   four deltas (tx, ty, tw, th) with weights (1, 1, 1, 1). Anchors come from :class:`AnchorGenerator`,
   sizes 16..64 px and aspect ratios (h / w) 1, 2 and 4, since digits are upright and 20-64 px tall.
   Training targets: ``rpn_targets`` (our matcher at 0.7 / 0.3 with low-quality matches) and
   ``sample_positive_negative`` (256 anchors per image, at most 50% positive).
3. Proposal selection (:func:`select_proposals`): decode, clip to the image, drop tiny boxes, keep the
   top-k by objectness before NMS, NMS at 0.7, keep the top-k after (300 training / 100 testing;
   torchvision uses 2000 / 1000 on 800-px images, far more than a 128-px canvas with <= 4 digits needs).
   Proposals are detached: the box head does not backpropagate into the proposal coordinates.
4. Box head (:class:`BoxHead`): our ``roi_align`` (7x7, sampling ratio 2, aligned=False, as
   torchvision's Faster R-CNN) on the shared feature map, two fully connected layers, 11 class logits
   and class-specific deltas (10 x 4, weights (10, 10, 5, 5)). Training targets: the ground-truth
   boxes are appended to the proposals, then the matcher at 0.5 / 0.5 without low-quality matches and
   the sampler (128 proposals per image, at most 25% positive; torchvision samples 512).
5. Losses (:func:`faster_rcnn_losses`): RPN objectness BCE, RPN smooth-L1 (beta 1/9), box-head
   cross-entropy, box-head smooth-L1 (beta 1/9); each regression loss is summed over the sampled
   positives and divided by the number of sampled examples, as torchvision does.
6. Inference (:func:`faster_rcnn_inference`): softmax, decode one box per class, clip, score >= 0.05,
   per-class NMS (``batched_nms``) at 0.5, top 100 per image.

The shared loop (``lectures_code.training.fit``) trains it: in train mode ``forward(images, targets)``
returns the four losses. ``lectures train faster-rcnn`` (the registry entry "faster-rcnn") is the recipe.
``predict`` is the inference API: detections, plus the RPN proposals behind them.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lectures_code.data.digit_canvases import NUM_CLASSES
from lectures_code.detection.anchors import AnchorGenerator, AnchorLevel
from lectures_code.detection.backbones import small_backbone
from lectures_code.detection.inference import inference_settings
from lectures_code.detection.matcher import match_boxes
from lectures_code.detection.rpn_targets import rpn_targets
from lectures_code.detection.sampler import sample_positive_negative
from lectures_code.ops.box_coding import decode_boxes, encode_boxes
from lectures_code.ops.boxes import box_iou
from lectures_code.ops.nms import batched_nms, nms
from lectures_code.ops.roi_align import roi_align

RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # Fast R-CNN's box-head weights: targets of about unit variance
ANCHOR_SIZES = (16, 24, 32, 48, 64)
ANCHOR_RATIOS = (1.0, 2.0, 4.0)  # h / w: digits are upright, a "1" is up to ~5x taller than wide
STRIDE = 8
SMOOTH_L1_BETA = 1 / 9


# --8<-- [start:rpn_head]
class RPNHead(nn.Module):
    """3x3 conv shared by all anchors of a location, then 1x1 convs: K objectness logits and K x 4 deltas.

    Input features [B, C, h, w]; outputs objectness [B, h * w * K] and deltas [B, h * w * K, 4], rows
    in the anchors' order (location-major, then the K shapes: see ``anchors.py``).
    """

    def __init__(self, channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.objectness = nn.Conv2d(channels, num_anchors, 1)
        self.deltas = nn.Conv2d(channels, num_anchors * 4, 1)
        for layer in (self.conv, self.objectness, self.deltas):  # torchvision's initialisation
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = F.relu(self.conv(features))  # [B, C, h, w]
        logits = self.objectness(hidden)  # [B, K, h, w]
        deltas = self.deltas(hidden)  # [B, K * 4, h, w]
        batch, k, h, w = logits.shape
        # [B, K, h, w] -> [B, h, w, K]: anchor (y, x, k) is row (y * w + x) * K + k.
        logits = logits.permute(0, 2, 3, 1).reshape(batch, h * w * k)
        deltas = deltas.view(batch, k, 4, h, w).permute(0, 3, 4, 1, 2).reshape(batch, h * w * k, 4)
        return logits, deltas
# --8<-- [end:rpn_head]


# --8<-- [start:select_proposals]
@torch.no_grad()
def select_proposals(
    anchors: torch.Tensor,
    objectness: torch.Tensor,
    deltas: torch.Tensor,
    image_size: tuple[int, int],
    pre_nms_top_n: int,
    post_nms_top_n: int,
    nms_threshold: float = 0.7,
    min_size: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The RPN's proposals for ONE image: decode, clip, drop tiny, top-k, NMS, top-k.

    Args:
        anchors: [A, 4] xyxy anchors.
        objectness: [A] logits.
        deltas: [A, 4] predicted (tx, ty, tw, th), weights (1, 1, 1, 1).
        image_size: (H, W) in pixels; boxes are clipped to [0, W] x [0, H].
        pre_nms_top_n: keep this many highest-scoring anchors before NMS.
        post_nms_top_n: keep this many proposals after NMS.
        nms_threshold: NMS IoU threshold (Faster R-CNN: 0.7, so proposals may still overlap a lot).
        min_size: drop boxes narrower or lower than this (pixels) after clipping.

    Returns:
        proposals float32 [P, 4] xyxy (P <= post_nms_top_n), objectness probabilities float32 [P],
        sorted by decreasing score; both detached.
    """
    if anchors.ndim != 2 or anchors.shape[1] != 4 or deltas.shape != anchors.shape \
            or objectness.shape != anchors[:, 0].shape:
        raise ValueError(f"need anchors [A, 4], objectness [A], deltas [A, 4], got {tuple(anchors.shape)}, "
                         f"{tuple(objectness.shape)}, {tuple(deltas.shape)}")
    height, width = image_size
    objectness = objectness.detach().float()
    # Top-k first: decoding and NMS on all A anchors would cost far more than on the best few.
    top = objectness.topk(min(pre_nms_top_n, objectness.numel())).indices  # [k]
    boxes = decode_boxes(deltas.detach().float()[top], anchors[top].float(), RPN_WEIGHTS)  # [k, 4]
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    scores = objectness[top].sigmoid()
    big_enough = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    boxes, scores = boxes[big_enough], scores[big_enough]
    keep = nms(boxes, scores, nms_threshold)[:post_nms_top_n]  # indices in decreasing score order
    return boxes[keep], scores[keep]
# --8<-- [end:select_proposals]


# --8<-- [start:box_head]
class BoxHead(nn.Module):
    """Per-proposal head: RoI Align 7x7 features -> two FC layers -> class logits and class-specific deltas.

    Input: RoI features [R, C, 7, 7]. Output: logits [R, 1 + num_classes] (column 0 = background) and
    deltas [R, num_classes, 4], one (tx, ty, tw, th) per digit class, weights (10, 10, 5, 5).
    """

    def __init__(self, channels: int, num_classes: int, pooled: int = 7, hidden: int = 256):
        super().__init__()
        self.num_classes = num_classes
        self.fc1 = nn.Linear(channels * pooled * pooled, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.class_logits = nn.Linear(hidden, num_classes + 1)
        self.deltas = nn.Linear(hidden, num_classes * 4)
        nn.init.normal_(self.class_logits.weight, std=0.01)
        nn.init.normal_(self.deltas.weight, std=0.001)  # start from "keep the proposal as it is"
        nn.init.zeros_(self.class_logits.bias)
        nn.init.zeros_(self.deltas.bias)

    def forward(self, roi_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = F.relu(self.fc2(F.relu(self.fc1(roi_features.flatten(1)))))  # [R, hidden]
        return self.class_logits(hidden), self.deltas(hidden).view(-1, self.num_classes, 4)
# --8<-- [end:box_head]


def box_head_targets(
    proposals: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor, batch_size_per_image: int,
    positive_fraction: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sampled training proposals of one image with their class (0 = background, digit + 1) and box target.

    The ground-truth boxes are appended first: early in training the RPN proposes nothing useful, and
    the ground truth is the best possible positive. Matcher 0.5 / 0.5 without low-quality matches.
    Returns (proposals [S, 4], labels int64 [S], box_targets [S, 4] (zeros for background)).
    """
    proposals = torch.cat([proposals, gt_boxes.to(proposals.dtype)])  # [P + G, 4]
    matches = match_boxes(box_iou(gt_boxes, proposals), 0.5, 0.5, allow_low_quality_matches=False)  # [P + G]
    matched = matches.clamp(min=0)  # background rows index gt 0 only to stay in range; never used
    if len(gt_boxes) == 0:
        labels = torch.zeros(len(proposals), dtype=torch.int64, device=proposals.device)
        matched_boxes = torch.zeros_like(proposals)
    else:
        labels = torch.where(matches >= 0, gt_labels[matched] + 1, 0)
        matched_boxes = gt_boxes[matched].to(proposals.dtype)
    positive, negative = sample_positive_negative(labels, batch_size_per_image, positive_fraction)
    chosen = torch.where(positive | negative)[0]
    proposals, labels, matched_boxes = proposals[chosen], labels[chosen], matched_boxes[chosen]
    box_targets = torch.zeros_like(proposals)
    fg = labels > 0
    box_targets[fg] = encode_boxes(proposals[fg], matched_boxes[fg], BOX_WEIGHTS)
    return proposals, labels, box_targets


# --8<-- [start:faster_rcnn_losses]
def faster_rcnn_losses(
    rpn_objectness: torch.Tensor, rpn_deltas: torch.Tensor, rpn_labels: torch.Tensor, rpn_box_targets: torch.Tensor,
    class_logits: torch.Tensor, box_deltas: torch.Tensor, labels: torch.Tensor, box_targets: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The four losses of Faster R-CNN, over the sampled anchors and the sampled proposals of a batch.

    Args:
        rpn_objectness: [N] logits of the sampled anchors (all images concatenated).
        rpn_deltas: [N, 4] their predicted deltas; rpn_labels: [N] float 1 / 0; rpn_box_targets: [N, 4].
        class_logits: [R, 1 + C] of the sampled proposals; box_deltas: [R, C, 4];
        labels: [R] int64, 0 = background, c + 1 = digit c; box_targets: [R, 4] (weights 10, 10, 5, 5).

    Returns:
        {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}: scalar tensors.
    """
    loss_objectness = F.binary_cross_entropy_with_logits(rpn_objectness, rpn_labels)
    rpn_pos = rpn_labels > 0
    # Sum over positives / all sampled: a batch with few positives gets a small box loss, not a noisy one.
    loss_rpn_box = F.smooth_l1_loss(rpn_deltas[rpn_pos], rpn_box_targets[rpn_pos], beta=SMOOTH_L1_BETA,
                                    reduction="sum") / max(1, rpn_labels.numel())
    loss_classifier = F.cross_entropy(class_logits, labels)
    positive = torch.where(labels > 0)[0]  # [P]
    # Class-specific regression: only the 4 outputs of the proposal's true class are trained.
    deltas = box_deltas[positive, labels[positive] - 1]  # [P, 4]
    loss_box = F.smooth_l1_loss(deltas, box_targets[positive], beta=SMOOTH_L1_BETA,
                                reduction="sum") / max(1, labels.numel())
    return {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box,
            "loss_classifier": loss_classifier, "loss_box_reg": loss_box}
# --8<-- [end:faster_rcnn_losses]


# --8<-- [start:faster_rcnn_inference]
def faster_rcnn_inference(
    class_logits: torch.Tensor, box_deltas: torch.Tensor, proposals: torch.Tensor, image_size: tuple[int, int],
    score_threshold: float = 0.05, nms_threshold: float = 0.5, max_detections: int = 100,
) -> dict[str, torch.Tensor]:
    """Detections of ONE image from its proposals' head outputs.

    Args:
        class_logits: [P, 1 + C]; box_deltas: [P, C, 4] (weights 10, 10, 5, 5); proposals: [P, 4] xyxy.
        image_size: (H, W): boxes are clipped to the image.

    Returns:
        {"boxes": float32 [D, 4] xyxy, "scores": float32 [D] (descending), "labels": int64 [D] digits 0..C-1}.
    """
    num_classes = box_deltas.shape[1]
    height, width = image_size
    probabilities = class_logits.float().softmax(dim=1)  # [P, 1 + C]
    # One box per (proposal, class): each class moves the proposal its own way.
    boxes = decode_boxes(box_deltas.float().reshape(-1, 4), proposals.float().repeat_interleave(num_classes, dim=0),
                         BOX_WEIGHTS).view(-1, num_classes, 4)  # [P, C, 4]
    boxes[..., 0::2] = boxes[..., 0::2].clamp(0, width)
    boxes[..., 1::2] = boxes[..., 1::2].clamp(0, height)
    scores = probabilities[:, 1:]  # [P, C]: the background column is dropped
    labels = torch.arange(num_classes, device=scores.device).expand_as(scores)  # [P, C]
    boxes, scores, labels = boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
    keep = (scores >= score_threshold) & (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = batched_nms(boxes, scores, labels, nms_threshold)[:max_detections]  # sorted by score
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
# --8<-- [end:faster_rcnn_inference]


def detections_per_image(class_logits: torch.Tensor, box_deltas: torch.Tensor, proposals: list[torch.Tensor],
                         image_size: tuple[int, int], score_threshold: float, nms_threshold: float,
                         max_detections: int) -> list[dict[str, torch.Tensor]]:
    """:func:`faster_rcnn_inference` for each image of a batch whose proposals' head outputs were
    concatenated (class_logits [sum P_i, 1 + C], box_deltas [sum P_i, C, 4], proposals B x [P_i, 4])."""
    detections, first = [], 0
    for boxes in proposals:
        last = first + len(boxes)
        detections.append(faster_rcnn_inference(class_logits[first:last], box_deltas[first:last], boxes, image_size,
                                                score_threshold, nms_threshold, max_detections))
        first = last
    return detections


class FasterRCNN(nn.Module):
    """Faster R-CNN: backbone + RPN + RoI Align box head, trained end to end.

    ``forward(images, targets)`` in train mode returns the dict of the four losses;
    ``forward(images)`` in eval mode returns one dict per image {"boxes" float32 [D, 4] xyxy,
    "scores" float32 [D], "labels" int64 [D] digits 0..9}; :meth:`predict` takes the reader's thresholds
    and also returns the proposals; :meth:`anchor_levels` gives the anchors.

    Args:
        images: float [B, 3, H, W] in [0, 1] (H, W multiples of 8).
        targets: list of B dicts with "boxes" float [G, 4] xyxy and "labels" int64 [G] digits 0..9.
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        channels: int = 128,
        anchor_sizes: tuple | list = ANCHOR_SIZES,
        anchor_ratios: tuple | list = ANCHOR_RATIOS,
        rpn_pre_nms_top_n: tuple | list = (600, 300),
        rpn_post_nms_top_n: tuple | list = (300, 100),
        rpn_batch_size_per_image: int = 256,
        box_batch_size_per_image: int = 128,
        score_threshold: float = 0.05,
        nms_threshold: float = 0.5,
        max_detections: int = 100,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.anchor_generator = AnchorGenerator((tuple(anchor_sizes),), (tuple(anchor_ratios),))
        self.backbone = small_backbone(channels)
        self.rpn_head = RPNHead(channels, self.anchor_generator.num_anchors_per_location()[0])
        self.box_head = BoxHead(channels, num_classes)
        self.rpn_pre_nms_top_n = tuple(rpn_pre_nms_top_n)  # (training, testing)
        self.rpn_post_nms_top_n = tuple(rpn_post_nms_top_n)
        self.rpn_batch_size_per_image = rpn_batch_size_per_image
        self.box_batch_size_per_image = box_batch_size_per_image
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_detections = max_detections

    def _check(self, images: torch.Tensor, targets: list[dict] | None) -> None:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a float [B, 3, H, W] tensor, "
                             f"got {getattr(images, 'shape', type(images))}")
        if not images.is_floating_point():
            raise TypeError(f"images must be floating point in [0, 1], got {images.dtype}")
        if images.shape[2] % STRIDE or images.shape[3] % STRIDE:
            raise ValueError(f"image height and width must be multiples of {STRIDE}, got {tuple(images.shape[2:])}")
        if self.training:
            if targets is None or len(targets) != len(images):
                raise ValueError("in train mode, forward needs one target dict per image")
            for target in targets:
                boxes, labels = target["boxes"], target["labels"]
                if boxes.ndim != 2 or boxes.shape[1] != 4 or labels.shape != (boxes.shape[0],):
                    raise ValueError(f"target boxes must be [G, 4] and labels [G], got {tuple(boxes.shape)}, "
                                     f"{tuple(labels.shape)}")

    def _proposals(self, images: torch.Tensor):
        """Backbone features, RPN outputs, anchors and each image's proposals (boxes, objectness)."""
        image_size = tuple(images.shape[-2:])
        features = self.backbone(images - 0.5)  # [B, C, H / 8, W / 8]
        objectness, rpn_deltas = self.rpn_head(features)  # [B, A], [B, A, 4]
        anchors = self.anchor_generator(image_size, [features.shape[-2:]], torch.float32, images.device)  # [A, 4]
        mode = 0 if self.training else 1
        proposals = [select_proposals(anchors, objectness[i], rpn_deltas[i], image_size,
                                      self.rpn_pre_nms_top_n[mode], self.rpn_post_nms_top_n[mode])
                     for i in range(len(images))]
        return features, objectness, rpn_deltas, anchors, proposals

    @torch.no_grad()
    def predict(self, images: torch.Tensor, score_threshold: float | None = None, nms_threshold: float | None = None,
                max_detections: int | None = None) -> list[dict[str, torch.Tensor]]:
        """Detections of a batch (eval mode): one dict per image {"boxes" float32 [D, 4] xyxy, "scores" float32
        [D] descending, "labels" int64 [D] digits 0..9, "proposals" float32 [P, 4] the RPN's proposals by
        decreasing objectness, "proposal_scores" float32 [P]}. None thresholds: the model's own."""
        score_threshold, nms_threshold, max_detections = inference_settings(
            self, score_threshold, nms_threshold, max_detections)
        self._check(images, None)
        features, _, _, _, proposals = self._proposals(images)
        boxes = [p for p, _ in proposals]
        class_logits, box_deltas = self.box_head(roi_align(features.float(), boxes, 7, 1 / STRIDE, 2))
        detections = detections_per_image(class_logits, box_deltas, boxes, tuple(images.shape[-2:]),
                                          score_threshold, nms_threshold, max_detections)
        return [d | {"proposals": p, "proposal_scores": s} for d, (p, s) in zip(detections, proposals)]

    @torch.no_grad()
    def rpn_objectness(self, images: torch.Tensor) -> torch.Tensor:
        """The RPN's objectness probability of every anchor, float32 [B, h, w, K] (location, then anchor shape)."""
        self._check(images, None)
        features = self.backbone(images - 0.5)  # [B, C, h, w]
        logits, _ = self.rpn_head(features)  # [B, h * w * K], location-major
        return logits.float().sigmoid().view(len(images), features.shape[-2], features.shape[-1], -1)

    def anchor_levels(self, image_size: tuple[int, int] = (128, 128)) -> list[AnchorLevel]:
        """The anchors the RPN scores, for an image of ``image_size``: one level, stride 8."""
        return self.anchor_generator.levels(image_size, (STRIDE,), next(self.parameters()).device)

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None):
        if not self.training:  # eval: the detections with the model's thresholds (torchvision's contract)
            return [{k: d[k] for k in ("boxes", "scores", "labels")} for d in self.predict(images)]
        self._check(images, targets)
        features, objectness, rpn_deltas, anchors, proposals = self._proposals(images)
        proposals = [boxes for boxes, _ in proposals]

        rpn_parts, head_parts = [], []
        for i, target in enumerate(targets):
            gt_boxes = target["boxes"].to(device=images.device, dtype=torch.float32)
            gt_labels = target["labels"].to(images.device)
            labels, box_targets = rpn_targets(anchors, gt_boxes)  # [A], [A, 4]
            positive, negative = sample_positive_negative(labels, self.rpn_batch_size_per_image, 0.5)
            sampled = torch.where(positive | negative)[0]
            rpn_parts.append((objectness[i, sampled], rpn_deltas[i, sampled], labels[sampled], box_targets[sampled]))
            head_parts.append(box_head_targets(proposals[i], gt_boxes, gt_labels, self.box_batch_size_per_image, 0.25))
        sampled_proposals = [part[0] for part in head_parts]
        roi_features = roi_align(features.float(), sampled_proposals, 7, 1 / STRIDE, 2)  # [R, C, 7, 7]
        class_logits, box_deltas = self.box_head(roi_features)
        rpn_objectness, rpn_sampled_deltas, rpn_labels, rpn_box_targets = (torch.cat(x) for x in zip(*rpn_parts))
        return faster_rcnn_losses(
            rpn_objectness.float(), rpn_sampled_deltas.float(), rpn_labels, rpn_box_targets,
            class_logits.float(), box_deltas.float(), torch.cat([p[1] for p in head_parts]),
            torch.cat([p[2] for p in head_parts]))

    def config(self) -> dict:
        """Constructor arguments as plain types (what the shipped checkpoint's metadata stores)."""
        return {"num_classes": self.num_classes, "channels": self.rpn_head.conv.in_channels,
                "anchor_sizes": list(self.anchor_generator.sizes[0]),
                "anchor_ratios": list(self.anchor_generator.aspect_ratios[0]),
                "rpn_pre_nms_top_n": list(self.rpn_pre_nms_top_n), "rpn_post_nms_top_n": list(self.rpn_post_nms_top_n),
                "rpn_batch_size_per_image": self.rpn_batch_size_per_image,
                "box_batch_size_per_image": self.box_batch_size_per_image, "score_threshold": self.score_threshold,
                "nms_threshold": self.nms_threshold, "max_detections": self.max_detections}
