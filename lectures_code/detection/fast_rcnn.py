"""Fast R-CNN from scratch on DigitCanvases (Girshick, ICCV 2015), Lecture 14.

Boxes are xyxy in image pixels (x2/y2 exclusive, the DigitCanvases convention; no "+1" anywhere).
Inside the detector class 0 is background and 1..10 are the digits 0..9; everything returned to a
user (the detections of :class:`FastRCNN` in eval mode) uses the digit 0..9 again.

R-CNN (Lecture 13) warps every proposal and runs a CNN on each of them: ~100 CNN passes per canvas.
Fast R-CNN runs the CNN ONCE per image and cuts the regions out of its feature map:

1. Region proposals: Lecture 13's Selective Search ("fast" strategy, at most 400 per canvas, ~100
   here), computed outside the network and cached on disk (:func:`lectures_code.detection.rcnn.proposals_for`).
   They are clipped to the image and boxes under 2 px (R-CNN's rule) are dropped.
2. Backbone: the same small CNN as our Faster R-CNN (``small_backbone`` of ``backbones.py``), stride 8, so a 128x128
   canvas gives a 16x16 feature map with 128 channels, computed once per image.
3. RoI pooling: each proposal is projected onto the feature map (``spatial_scale = 1 / 8``) and
   pooled to a fixed 7x7 grid. We use our ``roi_align`` (sampling ratio 2, aligned=False, as
   torchvision's Faster R-CNN) by default, not the paper's RoI max pool: at stride 8 a 20-px digit
   covers only 2.5 feature cells, and RoI Pool rounds the box edges to whole cells (up to 4 px, 20%
   of such a box), which costs localisation accuracy; RoI Align samples the exact box. The same
   pooling as our Faster R-CNN also means the two detectors differ only in where the proposals come
   from. ``roi_op="roi_pool"`` gives the paper's RoI max pool (our ``roi_pool``).
4. Per-region head (``BoxHead``, shared with Faster R-CNN): two fully connected layers, 11 class
   logits (background + 10 digits) and class-specific deltas (10 x 4, weights (10, 10, 5, 5)).
5. Training targets (``box_head_targets``, shared with Faster R-CNN): the ground-truth boxes are
   appended to the proposals, matcher at IoU 0.5 / 0.5 without low-quality matches, 128 regions
   per image with at most 25% positives. (The paper samples 64 regions from each of 2 images and
   takes background only from IoU [0.1, 0.5); here every IoU < 0.5 is background, as torchvision.)
6. Loss (:func:`fast_rcnn_losses`): the paper's multi-task loss, cross-entropy over all sampled
   regions + smooth-L1 (beta 1/9) of the positives' deltas for their own class, summed and divided
   by the number of sampled regions (torchvision's convention; the paper's lambda = 1).
7. Inference (``faster_rcnn_inference``, shared): softmax, one box per class, clip, score >= 0.05,
   per-class NMS at 0.5, top 100 per image.

The shared loop trains it (registry entry "fast-rcnn": ``lectures train fast-rcnn``) on
:class:`ProposalCanvasSet`, whose minibatches carry each canvas's proposals. At test time (one CPU
thread, batch 1) the network takes ~20 ms per canvas and Selective Search ~60 ms: region proposals
dominate Fast R-CNN's test time, which is what Faster R-CNN's learned proposals fix.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lectures_code.data.digit_canvases import NUM_CLASSES, CanvasDetectionSet
from lectures_code.detection.backbones import small_backbone
from lectures_code.detection.evaluation import SUBSET, coco_record, evaluate_on_canvases
from lectures_code.detection.faster_rcnn import (
    SMOOTH_L1_BETA,
    STRIDE,
    BoxHead,
    box_head_targets,
    detections_per_image,
)
from lectures_code.detection.inference import inference_settings
from lectures_code.detection.rcnn import proposals_for
from lectures_code.ops.roi_align import roi_align
from lectures_code.ops.roi_pool import roi_pool
from lectures_code.progress import progress_bar

POOLED_SIZE = 7
SAMPLING_RATIO = 2
MIN_PROPOSAL_SIZE = 2.0  # px: a 1-pixel sliver says nothing about a digit (R-CNN's rule)
ROI_OPS = ("roi_align", "roi_pool")
LOSS_NAMES = ("loss_classifier", "loss_box_reg")


# --8<-- [start:fast_rcnn_losses]
def fast_rcnn_losses(
    class_logits: torch.Tensor, box_deltas: torch.Tensor, labels: torch.Tensor, box_targets: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Fast R-CNN's multi-task loss over the sampled regions of a batch.

    Args:
        class_logits: [R, 1 + C] (column 0 = background); box_deltas: [R, C, 4];
        labels: int64 [R], 0 = background, c + 1 = digit c; box_targets: [R, 4] (weights 10, 10, 5, 5).

    Returns:
        {"loss_classifier", "loss_box_reg"}: scalar tensors (the box-head half of ``faster_rcnn_losses``).
    """
    if class_logits.ndim != 2 or box_deltas.shape != (len(class_logits), class_logits.shape[1] - 1, 4) \
            or labels.shape != (len(class_logits),) or box_targets.shape != (len(class_logits), 4):
        raise ValueError(f"need class_logits [R, 1 + C], box_deltas [R, C, 4], labels [R], box_targets [R, 4], got "
                         f"{tuple(class_logits.shape)}, {tuple(box_deltas.shape)}, {tuple(labels.shape)}, "
                         f"{tuple(box_targets.shape)}")
    loss_classifier = F.cross_entropy(class_logits, labels)
    positive = torch.where(labels > 0)[0]  # [P]
    # Class-specific regression: only the 4 outputs of the region's true class are trained; the
    # background has no box ([u >= 1] in the paper's loss).
    deltas = box_deltas[positive, labels[positive] - 1]  # [P, 4]
    loss_box = F.smooth_l1_loss(deltas, box_targets[positive], beta=SMOOTH_L1_BETA,
                                reduction="sum") / max(1, labels.numel())
    return {"loss_classifier": loss_classifier, "loss_box_reg": loss_box}
# --8<-- [end:fast_rcnn_losses]


def usable_proposals(proposals: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Clip float [P, 4] xyxy proposals to the image (H, W) and drop those under 2 px: float32 [P', 4]."""
    height, width = image_size
    boxes = proposals.float().clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= MIN_PROPOSAL_SIZE) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_PROPOSAL_SIZE)
    return boxes[keep]


class FastRCNN(nn.Module):
    """Fast R-CNN: one backbone pass per image, RoI pooling of external proposals, per-region head.

    ``forward(images, proposals, targets)`` in train mode returns {"loss_classifier", "loss_box_reg"};
    ``forward(images, proposals)`` in eval mode returns one dict per image {"boxes" float32 [D, 4] xyxy,
    "scores" float32 [D] (descending), "labels" int64 [D] digits 0..9}.

    Args:
        images: float [B, 3, H, W] in [0, 1] (H, W multiples of 8).
        proposals: list of B float tensors [P_i, 4] xyxy in pixels (e.g. Selective Search); in eval mode
            None runs Selective Search on each image (not cached).
        targets: list of B dicts with "boxes" float [G, 4] xyxy and "labels" int64 [G] digits 0..9.
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        channels: int = 128,
        roi_op: str = "roi_align",
        box_batch_size_per_image: int = 128,
        positive_fraction: float = 0.25,
        score_threshold: float = 0.05,
        nms_threshold: float = 0.5,
        max_detections: int = 100,
    ):
        super().__init__()
        if roi_op not in ROI_OPS:
            raise ValueError(f"roi_op must be one of {ROI_OPS}, got {roi_op!r}")
        self.num_classes = num_classes
        self.channels = channels
        self.roi_op = roi_op
        self.backbone = small_backbone(channels)
        self.box_head = BoxHead(channels, num_classes, POOLED_SIZE)
        self.box_batch_size_per_image = box_batch_size_per_image
        self.positive_fraction = positive_fraction
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_detections = max_detections

    def _check(self, images: torch.Tensor, proposals, targets: list[dict] | None) -> None:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a float [B, 3, H, W] tensor, "
                             f"got {getattr(images, 'shape', type(images))}")
        if not images.is_floating_point():
            raise TypeError(f"images must be floating point in [0, 1], got {images.dtype}")
        if images.shape[2] % STRIDE or images.shape[3] % STRIDE:
            raise ValueError(f"image height and width must be multiples of {STRIDE}, got {tuple(images.shape[2:])}")
        if proposals is None and self.training:
            raise ValueError("in train mode, forward needs the proposals of every image")
        if proposals is not None:
            if not isinstance(proposals, (list, tuple)) or len(proposals) != len(images):
                raise ValueError(f"proposals must be a list of {len(images)} tensors [P, 4], one per image")
            for boxes in proposals:
                if not isinstance(boxes, torch.Tensor) or boxes.ndim != 2 or boxes.shape[1] != 4:
                    raise ValueError(f"each image's proposals must be a [P, 4] xyxy tensor, "
                                     f"got {getattr(boxes, 'shape', type(boxes))}")
                if not boxes.is_floating_point():
                    raise TypeError(f"proposals must be floating point, got {boxes.dtype}")
        if self.training:
            if targets is None or len(targets) != len(images):
                raise ValueError("in train mode, forward needs one target dict per image")
            for target in targets:
                boxes, labels = target["boxes"], target["labels"]
                if boxes.ndim != 2 or boxes.shape[1] != 4 or labels.shape != (boxes.shape[0],):
                    raise ValueError(f"target boxes must be [G, 4] and labels [G], got {tuple(boxes.shape)}, "
                                     f"{tuple(labels.shape)}")

    def roi_features(self, features: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """Features [B, C, h, w] and B lists of xyxy pixel boxes [P_i, 4] -> float32 [sum P_i, C, 7, 7]."""
        features = features.float()  # the pooled features and the head run in float32, also under autocast
        boxes = [b.to(features) for b in boxes]
        if self.roi_op == "roi_pool":
            return roi_pool(features, boxes, POOLED_SIZE, 1 / STRIDE)
        return roi_align(features, boxes, POOLED_SIZE, 1 / STRIDE, SAMPLING_RATIO)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, proposals: list[torch.Tensor] | None = None,
                score_threshold: float | None = None, nms_threshold: float | None = None,
                max_detections: int | None = None) -> list[dict[str, torch.Tensor]]:
        """Detections of a batch (eval mode): one dict per image {"boxes" float32 [D, 4] xyxy, "scores" float32
        [D] descending, "labels" int64 [D] digits 0..9, "proposals" float32 [P, 4] the usable proposals in
        Selective Search's order}. ``proposals=None`` runs Selective Search now (on the CPU, not cached)."""
        score_threshold, nms_threshold, max_detections = inference_settings(
            self, score_threshold, nms_threshold, max_detections)
        self._check(images, proposals, None)
        image_size = tuple(images.shape[-2:])
        if proposals is None:  # Selective Search on the CPU: the slow part of Fast R-CNN at test time
            proposals = [proposals_for(image) for image in images]
        proposals = [usable_proposals(boxes.to(images.device), image_size) for boxes in proposals]
        features = self.backbone(images - 0.5)  # [B, C, H / 8, W / 8]: ONE pass for all regions of an image
        class_logits, box_deltas = self.box_head(self.roi_features(features, proposals))  # [sum P, 11], [., 10, 4]
        detections = detections_per_image(class_logits, box_deltas, proposals, image_size, score_threshold,
                                          nms_threshold, max_detections)
        return [d | {"proposals": p} for d, p in zip(detections, proposals)]

    # --8<-- [start:fast_rcnn_forward]
    def forward(self, images: torch.Tensor, proposals: list[torch.Tensor] | None = None,
                targets: list[dict] | None = None):
        if not self.training:  # eval: the detections with the model's thresholds
            return [{k: d[k] for k in ("boxes", "scores", "labels")} for d in self.predict(images, proposals)]
        self._check(images, proposals, targets)
        image_size = tuple(images.shape[-2:])
        proposals = [usable_proposals(boxes.to(images.device), image_size) for boxes in proposals]
        # The whole point of Fast R-CNN: ONE backbone pass per image, shared by all its regions.
        features = self.backbone(images - 0.5)  # [B, C, H / 8, W / 8]

        sampled, labels, box_targets = [], [], []
        for boxes, target in zip(proposals, targets):
            gt_boxes = target["boxes"].to(device=images.device, dtype=torch.float32)
            image_boxes, image_labels, image_targets = box_head_targets(
                boxes, gt_boxes, target["labels"].to(images.device), self.box_batch_size_per_image,
                self.positive_fraction)  # [S, 4], [S], [S, 4]
            sampled.append(image_boxes)
            labels.append(image_labels)
            box_targets.append(image_targets)
        class_logits, box_deltas = self.box_head(self.roi_features(features, sampled))  # [R, 11], [R, 10, 4]
        return fast_rcnn_losses(class_logits.float(), box_deltas.float(), torch.cat(labels), torch.cat(box_targets))
    # --8<-- [end:fast_rcnn_forward]

    def config(self) -> dict:
        """Constructor arguments as plain types (what the shipped checkpoint's metadata stores)."""
        return {"num_classes": self.num_classes, "channels": self.channels, "roi_op": self.roi_op,
                "box_batch_size_per_image": self.box_batch_size_per_image,
                "positive_fraction": self.positive_fraction, "score_threshold": self.score_threshold,
                "nms_threshold": self.nms_threshold, "max_detections": self.max_detections}


class ProposalCanvasSet(CanvasDetectionSet):
    """Training canvases with their Selective Search proposals (computed once, cached on disk by
    ``proposals_for``): collate gives {"images", "proposals": B x [P_i, 4], "targets"}."""

    def __init__(self, split: str = "train", size: int = 1000, seed: int = 0, progress: bool = False,
                 cache_dir: str | os.PathLike | None = None):
        super().__init__(split, size, seed, progress)
        start = time.perf_counter()
        self.proposals = [proposals_for(self.images[index].float() / 255, split, index, seed, cache_dir=cache_dir)
                          for index in progress_bar(range(size), progress, f"proposals ({split})")]
        self.proposal_seconds = time.perf_counter() - start  # cache reads + Selective Search of the uncached

    def collate(self, indices: torch.Tensor, device: torch.device) -> dict:
        batch = super().collate(indices, device)
        return {"images": batch["images"], "proposals": [self.proposals[i].to(device) for i in indices.tolist()],
                "targets": batch["targets"]}

    def summary(self) -> dict:
        return {"proposal_seconds_train": round(self.proposal_seconds, 1),
                "proposals_per_train_image": round(float(np.mean([len(p) for p in self.proposals])), 1)}


@torch.no_grad()
def evaluate_fast_rcnn(
    model: FastRCNN,
    num_test_images: int = 200,
    split: str = "test",
    seed: int = 0,
    cached_proposals: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict:
    """COCO box AP (our ``coco_evaluate``) on the first ``num_test_images`` canvases of ``split``.

    Images go through the model one at a time (batch 1). With ``cached_proposals`` the proposals are
    read from (or written to) the disk cache; without, Selective Search runs for every image, as it
    would on a new image. Returns {"stats": the 12 COCO numbers, "per_class_ap": {digit: {"AP", "AP50"}},
    "seconds_per_image": proposals + network, "seconds_per_image_proposals": getting the proposals,
    "seconds_per_image_without_proposals": backbone + RoI pooling + head + NMS, "images", "detections"}.
    """
    model.eval()
    device = next(model.parameters()).device
    proposal_seconds = []

    def detect(index: int, image: torch.Tensor) -> dict:
        start = time.perf_counter()
        proposals = proposals_for(image, split, index, seed, cache_dir=cache_dir) if cached_proposals \
            else proposals_for(image)
        proposal_seconds.append(time.perf_counter() - start)
        return model(image[None].to(device), [proposals.to(device)])[0]

    result = evaluate_on_canvases(detect, device, num_test_images, split, seed, progress)
    result["seconds_per_image_proposals"] = sum(proposal_seconds) / num_test_images
    result["seconds_per_image_without_proposals"] = result["seconds_per_image"] - result["seconds_per_image_proposals"]
    return result


def evaluation_record(model: FastRCNN, num_test_images: int = 200, progress: bool = False) -> dict:
    """The training record's test part. Every test canvas gets fresh Selective Search (the latency a new
    image would see); the first-40 subset that the tests re-check reads the proposal cache."""
    evaluation = evaluate_fast_rcnn(model, num_test_images, cached_proposals=False, progress=progress)
    subset = evaluate_fast_rcnn(model, min(SUBSET, num_test_images), progress=False)
    return coco_record(evaluation, subset) | {
        "seconds_per_test_image": round(evaluation["seconds_per_image"], 4),
        "seconds_per_test_image_without_proposals": round(evaluation["seconds_per_image_without_proposals"], 4),
        "proposal_seconds": {
            "per_image_selective_search (uncached, test)": round(evaluation["seconds_per_image_proposals"], 4),
            "per_image_cache_read (test)": round(subset["seconds_per_image_proposals"], 4),
        },
    }
