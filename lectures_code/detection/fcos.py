"""FCOS: a single-stage, anchor-free detector with a feature pyramid, from scratch (Lecture 14).

One network, one pass, no proposals: a small CNN backbone gives feature maps C3, C4, C5 (strides
8, 16, 32), a tiny FPN turns them into P3, P4, P5 (64 channels each), and one *shared* head reads
every point of every level and predicts

    class logits  [C]   one sigmoid per digit (focal loss),
    box           [4]   distances (l, t, r, b) from the point to the four box sides (GIoU loss),
    centerness    [1]   how central the point is in its box (BCE), used to rank boxes at test time.

Boxes are ``xyxy`` = (x1, y1, x2, y2) in image pixels (x2/y2 exclusive, as in ``DigitCanvases``).
Points are those of :func:`lectures_code.detection.fcos_targets.fcos_points`: point (x, y) of a
level with stride s sits at (x * s, y * s), as in torchvision.

Scale ranges. The canvases are 128x128 with digits 20-64 px, so the standard FCOS ranges
(max(l, t, r, b) in (4 s, 8 s): P3 0-64, P4 64-128, P5 128-inf) would put every digit on P3. We
halve them: P3 (0, 32], P4 (32, 64), P5 [64, inf) px, i.e. (2 s, 4 s) with open ends, so small
digits go to P3 and large ones to P4 (P5 learns only background and the rare very large box).
We reuse :func:`match_points_to_boxes` unchanged by giving it half strides (its ranges are
(4 s', 8 s') = (2 s, 4 s)) and twice the center-sampling radius (1.5 s = 3.0 s').

The backbone and FPN are in ``backbones.py``. The shared loop trains it (registry entry "fcos":
``lectures train fcos``): in train mode ``forward(images, targets)`` returns the three losses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from lectures_code.data.digit_canvases import NUM_CLASSES
from lectures_code.detection.backbones import Backbone, FeaturePyramid
from lectures_code.detection.fcos_targets import centerness_target, fcos_points, match_points_to_boxes
from lectures_code.detection.inference import inference_settings
from lectures_code.ops.losses import generalized_box_iou_loss, sigmoid_focal_loss
from lectures_code.ops.nms import batched_nms

STRIDES = (8, 16, 32)
SCALE_RANGES = ((0, 32), (32, 64), (64, math.inf))  # max(l, t, r, b) in pixels, per level (see module doc)
CENTER_SAMPLING_RADIUS = 1.5  # in strides of the point's level
PRIOR_PROBABILITY = 0.01


# --8<-- [start:fcos_head]
class FCOSHead(nn.Module):
    """Shared head: the same convolutions run on every pyramid level.

    Two towers of ``num_convs`` 3x3 convolutions (GroupNorm + ReLU): the classification tower ends
    in C logits, the regression tower in 4 box distances and 1 centerness logit (as in the improved
    FCOS and torchvision, centerness sits on the regression tower).

    - Class bias = -log((1 - pi) / pi) with pi = 0.01: at the start every point says "background"
      with probability 0.99. With bias 0 (p = 0.5) the ~10^3 background points x 10 classes would
      give a huge focal loss at step 1 and destabilize training.
    - Box distances are exp(scale_k * x) * s_k: positive, in units of the level's stride s_k (so one
      head serves all levels), with a learnable scale_k per level.
    """

    def __init__(self, channels: int = 64, num_classes: int = NUM_CLASSES, num_levels: int = 3, num_convs: int = 2):
        super().__init__()

        def tower() -> nn.Sequential:
            layers = []
            for _ in range(num_convs):
                layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(16, channels),
                           nn.ReLU(inplace=True)]
            return nn.Sequential(*layers)

        self.cls_tower, self.box_tower = tower(), tower()
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.box_distances = nn.Conv2d(channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(num_levels))
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY))

    def forward(self, features: list[Tensor], strides: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
        """features: [B, channels, H_k, W_k] per level. Returns, over the P = sum H_k W_k points (level by
        level, row-major, the order of ``fcos_points``): class logits [B, P, C], distances (l, t, r, b)
        in pixels [B, P, 4], centerness logits [B, P]."""
        cls_all, box_all, ctr_all = [], [], []
        for k, (feature, stride) in enumerate(zip(features, strides)):
            cls_feature, box_feature = self.cls_tower(feature), self.box_tower(feature)
            logits = self.cls_logits(cls_feature)  # [B, C, H, W]
            # clamp: exp of a large activation would overflow float16 / produce inf boxes
            distances = torch.exp((self.scales[k] * self.box_distances(box_feature)).float().clamp(max=8.0)) * stride
            centerness = self.centerness(box_feature)  # [B, 1, H, W]
            cls_all.append(logits.flatten(2).transpose(1, 2))  # [B, HW, C]
            box_all.append(distances.flatten(2).transpose(1, 2))  # [B, HW, 4]
            ctr_all.append(centerness.flatten(1))  # [B, HW]
        return torch.cat(cls_all, 1), torch.cat(box_all, 1), torch.cat(ctr_all, 1)
# --8<-- [end:fcos_head]


@dataclass
class PointLevel:
    """FCOS's predictions at every point of one level (what a demo shows): points [H * W, 2] (x, y), the
    predicted boxes [H * W, 4] xyxy, the best score over the classes [H * W] and its digit [H * W], the
    grid (H, W) and the stride."""

    points: Tensor
    boxes: Tensor
    scores: Tensor
    labels: Tensor
    grid: tuple[int, int]
    stride: int


class FCOS(nn.Module):
    """Backbone + FPN + shared head.

    ``forward(images, targets)`` in train mode returns the three losses of :func:`fcos_loss`
    {"classification", "bbox_regression", "bbox_ctrness"}; ``forward(images)`` in eval mode returns one
    dict per image {"boxes" float32 [D, 4] xyxy, "scores" float32 [D] descending, "labels" int64 [D]}.
    :meth:`predict` takes the reader's thresholds, :meth:`head_outputs` gives the raw outputs and
    :meth:`point_levels` every point's prediction.

    Args:
        images: float [B, 3, S, S] in [0, 1], S a multiple of 32.
        targets: B dicts with "boxes" float [M, 4] xyxy and "labels" int64 [M] in 0..C-1.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, fpn_channels: int = 64, num_convs: int = 2,
                 score_threshold: float = 0.05, topk_per_level: int = 1000, nms_threshold: float = 0.6,
                 max_detections: int = 100):
        super().__init__()
        self.num_classes = num_classes
        self.strides = STRIDES
        self.backbone = Backbone()
        self.fpn = FeaturePyramid(Backbone.channels, fpn_channels)
        self.head = FCOSHead(fpn_channels, num_classes, len(STRIDES), num_convs)
        self.fpn_channels, self.num_convs = fpn_channels, num_convs
        self.score_threshold, self.topk_per_level = score_threshold, topk_per_level
        self.nms_threshold, self.max_detections = nms_threshold, max_detections

    def config(self) -> dict:
        """Constructor arguments as plain types (what the shipped checkpoint's metadata stores)."""
        return {"num_classes": self.num_classes, "fpn_channels": self.fpn_channels, "num_convs": self.num_convs,
                "score_threshold": self.score_threshold, "topk_per_level": self.topk_per_level,
                "nms_threshold": self.nms_threshold, "max_detections": self.max_detections}

    def features(self, images: Tensor) -> list[Tensor]:
        """P3, P4, P5: [B, fpn_channels, S/8, S/8], [.., S/16, S/16], [.., S/32, S/32]."""
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {getattr(images, 'shape', type(images))}")
        if not images.is_floating_point():
            raise TypeError(f"images must be floating point in [0, 1], got {images.dtype}")
        if images.shape[-1] % 32 or images.shape[-2] % 32:
            raise ValueError(f"image height and width must be multiples of 32, got {tuple(images.shape[-2:])}")
        return self.fpn(self.backbone(images))

    def head_outputs(self, images: Tensor) -> dict:
        """Raw outputs for float images [B, 3, S, S]: "cls_logits" [B, P, C], "box_distances" [B, P, 4]
        (l, t, r, b in pixels, float32), "centerness_logits" [B, P], "points" [P, 2] (x, y), "point_strides"
        [P] and "num_points_per_level" (list of H_k * W_k)."""
        features = self.features(images)
        cls_logits, box_distances, centerness_logits = self.head(features, self.strides)
        points, point_strides, num_points_per_level = fcos_points(
            [f.shape[-2:] for f in features], self.strides, device=images.device)
        return {"cls_logits": cls_logits, "box_distances": box_distances, "centerness_logits": centerness_logits,
                "points": points, "point_strides": point_strides, "num_points_per_level": num_points_per_level}

    def forward(self, images: Tensor, targets: list[dict] | None = None):
        if not self.training:  # eval: the detections with the model's thresholds (torchvision's contract)
            return self.predict(images)
        if targets is None or len(targets) != len(images):
            raise ValueError("in train mode, forward needs one target dict per image")
        _, cls_loss, box_loss, centerness_loss = fcos_loss(self.head_outputs(images), targets)
        return {"classification": cls_loss, "bbox_regression": box_loss, "bbox_ctrness": centerness_loss}

    @torch.no_grad()
    def predict(self, images: Tensor, score_threshold: float | None = None, nms_threshold: float | None = None,
                max_detections: int | None = None) -> list[dict[str, Tensor]]:
        """Detections of a batch (eval mode), :func:`fcos_detect` with the given thresholds (None: the model's)."""
        score_threshold, nms_threshold, max_detections = inference_settings(
            self, score_threshold, nms_threshold, max_detections)
        return fcos_detect(self, images, score_threshold, self.topk_per_level, nms_threshold, max_detections)

    @torch.no_grad()
    def point_levels(self, image: Tensor) -> list[PointLevel]:
        """Every point's prediction for ONE image float [3, H, W]: its box and best score, level by level."""
        outputs = self.head_outputs(image[None].to(next(self.parameters()).device))
        scores = torch.sqrt(outputs["cls_logits"][0].float().sigmoid()
                            * outputs["centerness_logits"][0].float().sigmoid()[:, None])  # [P, C]
        best, labels = scores.max(dim=1)  # [P]
        boxes = distances_to_boxes(outputs["points"], outputs["box_distances"][0].float())  # [P, 4]
        levels, first = [], 0
        for stride, count in zip(self.strides, outputs["num_points_per_level"]):
            part = slice(first, first + count)
            grid = (image.shape[-2] // stride, image.shape[-1] // stride)
            levels.append(PointLevel(outputs["points"][part], boxes[part], best[part], labels[part], grid, stride))
            first += count
        return levels


def assign_targets(outputs: dict, gt_boxes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """FCOS targets of one image with this module's scale ranges (``SCALE_RANGES``, see the module doc).

    Args:
        outputs: the dict of :meth:`FCOS.head_outputs` (its points).
        gt_boxes: float [M, 4] xyxy.

    Returns:
        matched_idxs int64 [P] (-1 = background), box_targets [P, 4] (l, t, r, b; 0 for background),
        centerness [P] (0 for background).
    """
    points, point_strides = outputs["points"], outputs["point_strides"]
    # Half strides turn the rule's (4 s, 8 s) scale ranges into (2 s, 4 s); the doubled radius keeps
    # center sampling at 1.5 real strides.
    matched_idxs = match_points_to_boxes(points, point_strides / 2, outputs["num_points_per_level"],
                                         gt_boxes.to(points.dtype), 2 * CENTER_SAMPLING_RADIUS)
    foreground = matched_idxs >= 0
    box_targets = points.new_zeros(points.shape[0], 4)
    centerness = points.new_zeros(points.shape[0])
    if foreground.any():
        boxes = gt_boxes.to(points.dtype)[matched_idxs[foreground]]  # [F, 4]
        x, y = points[foreground].unbind(dim=1)
        box_targets[foreground] = torch.stack((x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y), 1)
        centerness[foreground] = centerness_target(box_targets[foreground])
    return matched_idxs, box_targets, centerness


def distances_to_boxes(points: Tensor, distances: Tensor) -> Tensor:
    """(x, y) points [..., 2] and (l, t, r, b) distances [..., 4] -> xyxy boxes [..., 4]."""
    return torch.cat((points - distances[..., :2], points + distances[..., 2:]), dim=-1)


# --8<-- [start:fcos_loss]
def fcos_loss(outputs: dict, targets: list[dict]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """FCOS loss of a batch: (total, classification, box, centerness), scalars.

    - classification: sigmoid focal loss (alpha 0.25, gamma 2) summed over all points and classes;
      a foreground point's target is the one-hot of its box's class, a background point's all zeros;
    - box: GIoU loss between predicted and ground-truth boxes, summed over foreground points;
    - centerness: binary cross-entropy of the centerness logit against the centerness target,
      summed over foreground points (background points have no box, so no centerness);
    each divided by max(1, number of foreground points in the batch), as in torchvision.

    Args:
        outputs: :meth:`FCOS.head_outputs` of B images.
        targets: B dicts with "boxes" float [M, 4] xyxy and "labels" int64 [M] in 0..C-1.
    """
    cls_logits = outputs["cls_logits"].float()  # [B, P, C]
    if len(targets) != cls_logits.shape[0]:
        raise ValueError(f"{cls_logits.shape[0]} images but {len(targets)} targets")
    cls_targets = torch.zeros_like(cls_logits)
    matched, box_targets, centerness_targets = [], [], []
    for i, target in enumerate(targets):
        matched_idxs, box_target, centerness = assign_targets(outputs, target["boxes"].to(cls_logits.device))
        foreground = matched_idxs >= 0
        cls_targets[i, foreground, target["labels"].to(cls_logits.device)[matched_idxs[foreground]]] = 1.0
        matched.append(matched_idxs)
        box_targets.append(box_target)
        centerness_targets.append(centerness)
    foreground = torch.stack(matched) >= 0  # [B, P]
    normalizer = max(1, int(foreground.sum()))

    cls_loss = sigmoid_focal_loss(cls_logits, cls_targets, reduction="sum") / normalizer
    points = outputs["points"].expand(foreground.shape[0], -1, -1)[foreground]  # [F, 2]
    pred_boxes = distances_to_boxes(points, outputs["box_distances"].float()[foreground])  # [F, 4]
    gt_boxes = distances_to_boxes(points, torch.stack(box_targets)[foreground])  # [F, 4]
    box_loss = generalized_box_iou_loss(pred_boxes, gt_boxes, reduction="sum") / normalizer
    centerness_loss = F.binary_cross_entropy_with_logits(
        outputs["centerness_logits"].float()[foreground], torch.stack(centerness_targets)[foreground], reduction="sum"
    ) / normalizer
    return cls_loss + box_loss + centerness_loss, cls_loss, box_loss, centerness_loss
# --8<-- [end:fcos_loss]


# --8<-- [start:fcos_inference]
@torch.no_grad()
def fcos_detect(
    model: FCOS,
    images: Tensor,
    score_threshold: float = 0.05,
    topk_per_level: int = 1000,
    nms_threshold: float = 0.6,
    max_detections: int = 100,
) -> list[dict[str, Tensor]]:
    """Detect digits in a batch of images.

    score = sqrt(sigmoid(class logit) * sigmoid(centerness logit)) for every (point, class): off-center
    points, whose boxes are worse, are ranked lower. Per level: keep scores > ``score_threshold``, the
    best ``topk_per_level`` of them; decode their boxes; then over all levels per-class NMS at IoU
    ``nms_threshold`` and the best ``max_detections``.

    Args:
        model: a trained :class:`FCOS` (its device is used).
        images: float [B, 3, H, W] in [0, 1].

    Returns:
        B dicts {"boxes": float32 [D, 4] xyxy clipped to the image, "scores": float32 [D] descending,
        "labels": int64 [D] digits}, on the model's device.
    """
    if not 0.0 <= score_threshold <= 1.0 or not 0.0 <= nms_threshold <= 1.0:
        raise ValueError(f"thresholds must be in [0, 1], got {score_threshold}, {nms_threshold}")
    if model.training:
        raise RuntimeError("fcos_detect needs the model in eval mode: call model.eval() first")
    images = images.to(next(model.parameters()).device)
    outputs = model.head_outputs(images)
    height, width = images.shape[-2:]
    scores_all = torch.sqrt(outputs["cls_logits"].float().sigmoid()
                            * outputs["centerness_logits"].float().sigmoid()[..., None])  # [B, P, C]
    num_classes = scores_all.shape[-1]
    results = []
    for i in range(images.shape[0]):
        boxes, scores, labels, first = [], [], [], 0
        for num_points in outputs["num_points_per_level"]:
            level_scores = scores_all[i, first : first + num_points].flatten()  # [HW * C]
            candidates = torch.nonzero(level_scores > score_threshold).squeeze(1)
            top = level_scores[candidates].topk(min(topk_per_level, len(candidates))).indices
            candidates = candidates[top]
            point_index = first + candidates // num_classes
            boxes.append(distances_to_boxes(outputs["points"][point_index], outputs["box_distances"][i, point_index]))
            scores.append(level_scores[candidates])
            labels.append(candidates % num_classes)
            first += num_points
        boxes, scores, labels = torch.cat(boxes).float(), torch.cat(scores), torch.cat(labels)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        keep = batched_nms(boxes, scores, labels, nms_threshold)[:max_detections]  # sorted by score
        results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return results
# --8<-- [end:fcos_inference]
