"""RetinaNet: a single-stage detector with anchors, a feature pyramid and the focal loss, from scratch (Lecture 14).

Lin, Goyal, Girshick, He, Dollar, "Focal Loss for Dense Object Detection", ICCV 2017, built the way
``torchvision.models.detection.RetinaNet`` builds it (the tests use its loss and post-processing as
oracles), scaled down to 128x128 digit canvases.

Boxes are ``xyxy`` = (x1, y1, x2, y2) in image pixels (x2/y2 exclusive, as in ``DigitCanvases``).
Labels are the digits 0..9 everywhere: there is no background class. Each of the C = 10 sigmoid
outputs of an anchor says "this anchor is digit c"; background is "all C outputs say no" (torchvision
does the same: its label 0 is an ordinary class).

Network. The backbone and FPN are FCOS's (``Backbone`` and ``FeaturePyramid`` of ``backbones.py``:
P3, P4, P5 at strides 8, 16, 32, 64 channels),
so RetinaNet and FCOS differ only in the head and in how training targets are assigned:

- FCOS: one prediction per feature-map *point*, assigned by "the point lies in the box, near its
  centre, and the box size suits the level"; boxes as distances (l, t, r, b).
- RetinaNet: A = 9 *anchors* per point, assigned by IoU (matcher: >= 0.5 foreground, < 0.4
  background, in between ignored, plus low-quality matches); boxes as deltas (tx, ty, tw, th) of
  the anchor (``box_coding.py``, weights (1, 1, 1, 1)).

Anchors. torchvision puts sizes 32 * 2^(0, 1/3, 2/3) on P3 (4 strides) and ratios h / w of
(0.5, 1, 2) on 800-px COCO images. The digits here are 20-64 px along their longer side (sqrt of the
box area: 1st-99th percentile 13-61 px) and upright (h / w: 1st percentile 0.69, median 1.3, 90th
percentile 2.0, a "1" up to ~5). So:

- sizes 16 * 2^(0, 1/3, 2/3) = (16, 20, 25) px on P3, (32, 40, 50) on P4, (64, 80, 101) on P5
  (2 strides, with torchvision's int() rounding): one geometric ladder 16..101 with 2^(1/3) steps,
  so every digit size is within a factor 2^(1/6) of some anchor size;
- aspect ratios h / w = (1, 1.5, 2.5): square-ish, typical and tall digits. Wide anchors (0.5) would
  almost never match an upright digit.

On 1,500 training canvases these anchors give every digit 9.4 positive anchors on average; 98% of
the digits reach IoU >= 0.5 with some anchor, the rest (mostly thin "1"s) get their best anchors
through the low-quality matches. 38% of the positives fall on P3, 58% on P4, 5% on P5.

Loss (:func:`retinanet_loss`, as torchvision): per image, the sigmoid focal loss (alpha 0.25,
gamma 2) summed over all non-ignored anchors and all C classes, plus the L1 loss of the box deltas
summed over the foreground anchors (or, with ``box_loss="giou"``, the GIoU loss of the decoded boxes),
each divided by max(1, the image's number of foreground anchors); then the mean over the images.

Inference (:func:`retinanet_postprocess`, as torchvision): per level, sigmoid scores of every
(anchor, class) pair, keep those > 0.05, at most the best 1000; decode their boxes, clip them to the
image; then over all levels per-class NMS at IoU 0.5 and the best 100 detections.

The shared loop trains it (registry entry "retinanet": ``lectures train retinanet``); ``predict`` is the
inference API with the reader's thresholds, ``anchor_levels`` gives the anchors.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from lectures_code.data.digit_canvases import NUM_CLASSES
from lectures_code.detection.anchors import AnchorGenerator, AnchorLevel
from lectures_code.detection.backbones import Backbone, FeaturePyramid
from lectures_code.detection.inference import inference_settings
from lectures_code.detection.matcher import BETWEEN_THRESHOLDS, match_boxes
from lectures_code.ops.box_coding import decode_boxes, encode_boxes
from lectures_code.ops.boxes import box_iou
from lectures_code.ops.losses import generalized_box_iou_loss, sigmoid_focal_loss
from lectures_code.ops.nms import batched_nms

STRIDES = (8, 16, 32)
# 3 octave scales per level, 2 strides at the smallest (torchvision: 4 strides); int() as torchvision.
ANCHOR_SIZES = tuple((s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3))) for s in (16, 32, 64))
ANCHOR_RATIOS = (1.0, 1.5, 2.5)  # h / w: upright digits (see the module doc)
FOREGROUND_IOU = 0.5
BACKGROUND_IOU = 0.4
BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
PRIOR_PROBABILITY = 0.01
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
BOX_LOSSES = ("l1", "giou")


# --8<-- [start:retinanet_head]
class RetinaNetHead(nn.Module):
    """Two subnets shared by all pyramid levels: classification (A * C logits) and box (A * 4 deltas).

    Each subnet is ``num_convs`` 3x3 convolutions (GroupNorm + ReLU, as torchvision's RetinaNet v2;
    the paper uses 4 without normalization) and a final 3x3 convolution. The two subnets share no
    weights: "what is it" and "where exactly are its edges" want different features.

    - Class bias = -log((1 - pi) / pi) with pi = 0.01, so every anchor starts at p = 0.01 for every
      class. With bias 0 (p = 0.5) the ~3,000 anchors x 10 classes, nearly all background, would give a
      focal loss of about 150 per image at step 1 instead of about 1, and blow up the first updates.
    - Box deltas start at 0 (zero bias, tiny weights): every prediction starts as its anchor.
    """

    def __init__(self, channels: int = 64, num_anchors: int = 9, num_classes: int = NUM_CLASSES, num_convs: int = 2):
        super().__init__()

        def subnet() -> nn.Sequential:
            layers = []
            for _ in range(num_convs):
                layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(16, channels),
                           nn.ReLU(inplace=True)]
            return nn.Sequential(*layers)

        self.num_anchors, self.num_classes = num_anchors, num_classes
        self.cls_subnet, self.box_subnet = subnet(), subnet()
        self.cls_logits = nn.Conv2d(channels, num_anchors * num_classes, 3, padding=1)
        self.box_deltas = nn.Conv2d(channels, num_anchors * 4, 3, padding=1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY))

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """features: [B, channels, H_k, W_k] per level. Returns class logits [B, N, C] and box deltas
        [B, N, 4] over the N = sum_k H_k W_k A anchors, in the anchors' order (level, row y, column x,
        anchor): exactly the layout of :class:`AnchorGenerator` and of torchvision's head."""
        cls_all, box_all = [], []
        for feature in features:
            batch, _, height, width = feature.shape
            logits = self.cls_logits(self.cls_subnet(feature))  # [B, A * C, H, W]
            deltas = self.box_deltas(self.box_subnet(feature))  # [B, A * 4, H, W]
            # channel a * C + c is (anchor a, class c): [B, A, C, H, W] -> [B, H, W, A, C] -> [B, HWA, C]
            cls_all.append(logits.view(batch, self.num_anchors, -1, height, width).permute(0, 3, 4, 1, 2)
                           .reshape(batch, -1, self.num_classes))
            box_all.append(deltas.view(batch, self.num_anchors, 4, height, width).permute(0, 3, 4, 1, 2)
                           .reshape(batch, -1, 4))
        return torch.cat(cls_all, 1), torch.cat(box_all, 1)
# --8<-- [end:retinanet_head]


class RetinaNet(nn.Module):
    """Backbone + FPN (FCOS's) + anchors + :class:`RetinaNetHead`.

    ``forward(images, targets)`` in train mode returns {"classification", "bbox_regression"}: the two
    losses of :func:`retinanet_loss` (scalars); ``forward(images)`` in eval mode returns one dict per image
    {"boxes" float32 [D, 4] xyxy, "scores" float32 [D] descending, "labels" int64 [D] digits 0..9} from
    :func:`retinanet_postprocess` with this model's thresholds.

    Args:
        images: float [B, 3, H, W] in [0, 1], H and W multiples of 32.
        targets: B dicts with "boxes" float [G, 4] xyxy (x2 > x1, y2 > y1) and "labels" int64 [G] in 0..C-1.
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        fpn_channels: int = 64,
        num_convs: int = 2,
        anchor_sizes=ANCHOR_SIZES,
        anchor_ratios=ANCHOR_RATIOS,
        box_loss: str = "l1",
        score_threshold: float = 0.05,
        topk_candidates: int = 1000,
        nms_threshold: float = 0.5,
        max_detections: int = 100,
    ):
        super().__init__()
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"box_loss must be one of {BOX_LOSSES}, got {box_loss!r}")
        if len(anchor_sizes) != len(STRIDES):
            raise ValueError(f"need one tuple of anchor sizes per level {STRIDES}, got {anchor_sizes!r}")
        self.num_classes = num_classes
        self.anchor_generator = AnchorGenerator(tuple(tuple(s) for s in anchor_sizes), tuple(anchor_ratios))
        num_anchors = self.anchor_generator.num_anchors_per_location()
        if len(set(num_anchors)) != 1:
            raise ValueError("every level needs the same number of anchor sizes (the head is shared)")
        self.backbone = Backbone()
        self.fpn = FeaturePyramid(Backbone.channels, fpn_channels)
        self.head = RetinaNetHead(fpn_channels, num_anchors[0], num_classes, num_convs)
        self.fpn_channels, self.num_convs, self.box_loss = fpn_channels, num_convs, box_loss
        self.score_threshold, self.topk_candidates = score_threshold, topk_candidates
        self.nms_threshold, self.max_detections = nms_threshold, max_detections

    def config(self) -> dict:
        """Constructor arguments as plain types (what the shipped checkpoint's metadata stores)."""
        return {"num_classes": self.num_classes, "fpn_channels": self.fpn_channels, "num_convs": self.num_convs,
                "anchor_sizes": [list(s) for s in self.anchor_generator.sizes],
                "anchor_ratios": list(self.anchor_generator.aspect_ratios[0]), "box_loss": self.box_loss,
                "score_threshold": self.score_threshold, "topk_candidates": self.topk_candidates,
                "nms_threshold": self.nms_threshold, "max_detections": self.max_detections}

    def _check(self, images: Tensor, targets: list[dict] | None) -> None:
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = getattr(images, "shape", type(images))
            raise ValueError(f"images must be a float [B, 3, H, W] tensor, got {shape}")
        if not images.is_floating_point():
            raise TypeError(f"images must be floating point in [0, 1], got {images.dtype}")
        if images.shape[-1] % 32 or images.shape[-2] % 32:
            raise ValueError(f"image height and width must be multiples of 32, got {tuple(images.shape[-2:])}")
        if not self.training:
            return
        if targets is None or len(targets) != len(images):
            raise ValueError("in train mode, forward needs one target dict per image")
        for target in targets:
            boxes, labels = target["boxes"], target["labels"]
            if boxes.ndim != 2 or boxes.shape[1] != 4 or labels.shape != (boxes.shape[0],):
                raise ValueError(f"target boxes must be [G, 4] and labels [G], got {tuple(boxes.shape)}, "
                                 f"{tuple(labels.shape)}")
            if labels.is_floating_point() or ((labels < 0) | (labels >= self.num_classes)).any():
                raise ValueError(f"labels must be integers in 0..{self.num_classes - 1}, got {labels.tolist()}")
            if (boxes[:, 2:] <= boxes[:, :2]).any():
                raise ValueError(f"every box needs x2 > x1 and y2 > y1, got {boxes.tolist()}")

    def head_outputs(self, images: Tensor) -> dict:
        """Raw outputs: {"cls_logits" [B, N, C], "box_deltas" [B, N, 4], "anchors" float32 [N, 4] xyxy,
        "num_anchors_per_level" list of H_k W_k A}."""
        features = self.fpn(self.backbone(images))
        cls_logits, box_deltas = self.head(features)
        sizes = [tuple(f.shape[-2:]) for f in features]
        anchors = self.anchor_generator(tuple(images.shape[-2:]), sizes, torch.float32, images.device)  # [N, 4]
        num_anchors_per_level = [h * w * self.head.num_anchors for h, w in sizes]
        return {"cls_logits": cls_logits, "box_deltas": box_deltas, "anchors": anchors,
                "num_anchors_per_level": num_anchors_per_level}

    def forward(self, images: Tensor, targets: list[dict] | None = None):
        if not self.training:  # eval: the detections with the model's thresholds (torchvision's contract)
            return self.predict(images)
        self._check(images, targets)
        outputs = self.head_outputs(images)
        targets = [{"boxes": t["boxes"].to(images.device, torch.float32), "labels": t["labels"].to(images.device)}
                   for t in targets]
        return retinanet_loss(outputs["cls_logits"].float(), outputs["box_deltas"].float(), outputs["anchors"],
                              targets, box_loss=self.box_loss)

    @torch.no_grad()
    def predict(self, images: Tensor, score_threshold: float | None = None, nms_threshold: float | None = None,
                max_detections: int | None = None) -> list[dict[str, Tensor]]:
        """Detections of a batch (eval mode): :func:`retinanet_postprocess` of the head outputs with the given
        thresholds (None: the model's)."""
        score_threshold, nms_threshold, max_detections = inference_settings(
            self, score_threshold, nms_threshold, max_detections)
        self._check(images, None)
        outputs = self.head_outputs(images)
        return retinanet_postprocess(
            outputs["cls_logits"].float(), outputs["box_deltas"].float(), outputs["anchors"],
            outputs["num_anchors_per_level"], tuple(images.shape[-2:]), score_threshold, self.topk_candidates,
            nms_threshold, max_detections)

    def anchor_levels(self, image_size: tuple[int, int] = (128, 128)) -> list[AnchorLevel]:
        """The anchors the head classifies on P3, P4, P5 for an image of ``image_size``."""
        return self.anchor_generator.levels(image_size, STRIDES, next(self.parameters()).device)


# --8<-- [start:retinanet_loss]
def match_anchors(anchors: Tensor, gt_boxes: Tensor) -> Tensor:
    """Matched ground-truth index of every anchor: >= 0 foreground, -1 background, -2 ignored.

    IoU >= 0.5 with its best box: foreground; best IoU < 0.4: background; in between: ignored (neither
    clearly a digit nor clearly not, so it is not trained at all). Low-quality matches are on: each box
    also gets its highest-IoU anchors, so a box that no anchor covers at 0.5 still has positives.

    Args:
        anchors: [N, 4] xyxy anchors.
        gt_boxes: [G, 4] xyxy ground-truth boxes of one image (G may be 0: all background).

    Returns:
        int64 [N].
    """
    if gt_boxes.numel() == 0:
        return torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device)
    return match_boxes(box_iou(gt_boxes, anchors), FOREGROUND_IOU, BACKGROUND_IOU, allow_low_quality_matches=True)


def retinanet_loss(
    cls_logits: Tensor,
    box_deltas: Tensor,
    anchors: Tensor,
    targets: list[dict],
    matched_idxs: list[Tensor] | None = None,
    box_loss: str = "l1",
) -> dict[str, Tensor]:
    """RetinaNet's two losses of a batch, as ``torchvision``'s ``RetinaNetHead.compute_loss``.

    For image i with F_i foreground anchors:

    - classification_i = sum over non-ignored anchors and all classes of the sigmoid focal loss
      (alpha 0.25, gamma 2), target = one-hot of the matched digit (all zeros for background), / max(1, F_i);
    - bbox_regression_i = sum over foreground anchors of |predicted deltas - encode(anchor, matched box)|
      (L1, weights (1, 1, 1, 1)), or with ``box_loss="giou"`` of 1 - GIoU(decoded box, matched box), / max(1, F_i);

    each averaged over the B images. Dividing by the number of *foreground* anchors, not of all anchors:
    after the focal loss has silenced the easy negatives, the loss is about as large as the number of
    objects, whatever the number of anchors.

    Args:
        cls_logits: float [B, N, C] class logits.
        box_deltas: float [B, N, 4] predicted (tx, ty, tw, th).
        anchors: float [N, 4] xyxy, the same for every image.
        targets: B dicts with "boxes" float [G, 4] xyxy and "labels" int64 [G] in 0..C-1.
        matched_idxs: optional B int64 [N] from :func:`match_anchors` (computed if None).
        box_loss: "l1" (torchvision's default) or "giou".

    Returns:
        {"classification": scalar, "bbox_regression": scalar}.
    """
    if cls_logits.ndim != 3 or box_deltas.shape != (*cls_logits.shape[:2], 4) or anchors.shape != (
            cls_logits.shape[1], 4):
        raise ValueError(f"need cls_logits [B, N, C], box_deltas [B, N, 4], anchors [N, 4], got "
                         f"{tuple(cls_logits.shape)}, {tuple(box_deltas.shape)}, {tuple(anchors.shape)}")
    if len(targets) != cls_logits.shape[0]:
        raise ValueError(f"{cls_logits.shape[0]} images but {len(targets)} targets")
    if box_loss not in BOX_LOSSES:
        raise ValueError(f"box_loss must be one of {BOX_LOSSES}, got {box_loss!r}")
    if matched_idxs is None:
        matched_idxs = [match_anchors(anchors, target["boxes"]) for target in targets]
    matched = torch.stack(matched_idxs)  # [B, N]
    foreground = matched >= 0  # [B, N]
    num_foreground = foreground.sum(1).clamp(min=1).to(cls_logits.dtype)  # [B]

    cls_targets = torch.zeros_like(cls_logits)  # [B, N, C]
    matched_boxes = anchors.new_zeros(box_deltas.shape)  # [B, N, 4]
    for i, target in enumerate(targets):
        gt_index = matched[i, foreground[i]]  # [F_i]
        cls_targets[i, foreground[i], target["labels"][gt_index]] = 1.0
        matched_boxes[i, foreground[i]] = target["boxes"][gt_index].to(anchors.dtype)

    focal = sigmoid_focal_loss(cls_logits, cls_targets, FOCAL_ALPHA, FOCAL_GAMMA)  # [B, N, C]
    # Ignored anchors (IoU in [0.4, 0.5)) are neither foreground nor background: no loss at all.
    focal = torch.where((matched != BETWEEN_THRESHOLDS)[..., None], focal, torch.zeros_like(focal))
    classification = (focal.sum((1, 2)) / num_foreground).mean()

    image_index = foreground.nonzero()[:, 0]  # [F], the image of each foreground anchor
    fg_anchors = anchors.expand(len(targets), -1, -1)[foreground]  # [F, 4]
    if box_loss == "l1":
        regression_targets = encode_boxes(fg_anchors, matched_boxes[foreground], BOX_WEIGHTS)  # [F, 4]
        per_anchor = (box_deltas[foreground] - regression_targets).abs().sum(1)  # [F]
    else:
        predicted = decode_boxes(box_deltas[foreground], fg_anchors, BOX_WEIGHTS)  # [F, 4]
        per_anchor = generalized_box_iou_loss(predicted, matched_boxes[foreground])  # [F]
    per_image = box_deltas.new_zeros(len(targets)).index_add(0, image_index, per_anchor)  # [B]
    regression = (per_image / num_foreground).mean()
    return {"classification": classification, "bbox_regression": regression}
# --8<-- [end:retinanet_loss]


# --8<-- [start:retinanet_inference]
@torch.no_grad()
def retinanet_postprocess(
    cls_logits: Tensor,
    box_deltas: Tensor,
    anchors: Tensor,
    num_anchors_per_level: list[int],
    image_size: tuple[int, int],
    score_threshold: float = 0.05,
    topk_candidates: int = 1000,
    nms_threshold: float = 0.5,
    max_detections: int = 100,
) -> list[dict[str, Tensor]]:
    """Detections from the head outputs, as torchvision's ``RetinaNet.postprocess_detections``.

    Per level: score = sigmoid(logit) of every (anchor, class) pair; keep scores > ``score_threshold``,
    at most the best ``topk_candidates`` of them (most anchors of a level are background, so this bounds
    the work); decode their boxes from the deltas and clip them to the image. Then over all levels
    per-class NMS at IoU ``nms_threshold`` and the best ``max_detections``. One anchor can give boxes
    of two classes: the C sigmoids are independent.

    Args:
        cls_logits: float [B, N, C]; box_deltas: float [B, N, 4]; anchors: [N, 4] xyxy.
        num_anchors_per_level: anchors of each level (sum = N), in the order of ``anchors``.
        image_size: (H, W) to clip to.

    Returns:
        B dicts {"boxes" float [D, 4] xyxy, "scores" float [D] descending, "labels" int64 [D] in 0..C-1}.
    """
    if not 0.0 <= score_threshold <= 1.0 or not 0.0 <= nms_threshold <= 1.0:
        raise ValueError(f"thresholds must be in [0, 1], got {score_threshold}, {nms_threshold}")
    if sum(num_anchors_per_level) != anchors.shape[0] or cls_logits.shape[1] != anchors.shape[0]:
        raise ValueError(f"{cls_logits.shape[1]} predictions, {anchors.shape[0]} anchors, levels "
                         f"{num_anchors_per_level}: they must agree")
    height, width = image_size
    num_classes = cls_logits.shape[-1]
    results = []
    for logits_i, deltas_i in zip(cls_logits, box_deltas):
        boxes, scores, labels = [], [], []
        for logits, deltas, level_anchors in zip(logits_i.split(num_anchors_per_level),
                                                 deltas_i.split(num_anchors_per_level),
                                                 anchors.split(num_anchors_per_level)):
            level_scores = torch.sigmoid(logits).flatten()  # [N_k * C]: anchor-major, then class
            candidates = torch.where(level_scores > score_threshold)[0]
            level_scores, top = level_scores[candidates].topk(min(topk_candidates, candidates.numel()))
            candidates = candidates[top]
            anchor_index = torch.div(candidates, num_classes, rounding_mode="floor")
            level_boxes = decode_boxes(deltas[anchor_index], level_anchors[anchor_index], BOX_WEIGHTS)
            level_boxes[:, 0::2] = level_boxes[:, 0::2].clamp(0, width)
            level_boxes[:, 1::2] = level_boxes[:, 1::2].clamp(0, height)
            boxes.append(level_boxes)
            scores.append(level_scores)
            labels.append(candidates % num_classes)
        boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
        keep = batched_nms(boxes, scores, labels, nms_threshold)[:max_detections]  # sorted by score
        results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return results
# --8<-- [end:retinanet_inference]
