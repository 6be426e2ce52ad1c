"""R-CNN end to end on DigitCanvases (Girshick, Donahue, Darrell, Malik; CVPR 2014), from scratch.

Boxes are xyxy in pixels with x2/y2 exclusive (the DigitCanvases / selective-search convention);
class labels inside the detector are 0 = background and 1..10 = digits 0..9; everything returned to
a user (``detect``) uses the digit 0..9 again.

The pipeline, as in Lecture 13:

1. Region proposals: Selective Search ("fast" strategy) on every image; at most ``max_proposals``
   (400) per 128x128 canvas (it gives ~100 here). They are slow to compute (~0.25 s per canvas), so
   they are cached as ``.npz`` files (see :func:`proposals_for`). For training, the ground-truth
   boxes are added to the proposals, as R-CNN does: they are the best possible positives.
2. Training targets (:func:`build_targets`): ``label_proposals`` with IoU >= 0.5 -> the digit's
   class, < 0.3 -> background, in between ignored; positives also get a box-regression target
   (tx, ty, tw, th) = ``encode_boxes(proposal, matched gt, weights=(10, 10, 5, 5))``.
3. Warping: ``crop_and_warp`` resizes every proposal, enlarged by R-CNN's context margin (16 px
   around the box at 227 px), to a fixed 32x32 crop. The lecture (and the
   paper) warp to 224x224 (227x227 with 16 px of context) for an ImageNet AlexNet/VGG; on a CPU that
   is far too big, and a 20-64 px digit is perfectly readable at 32x32.
4. A small CNN per crop (:class:`RCNN`): a class head with 11 logits (background + 10 digits) and a
   class-specific box head (10 x 4 numbers: each class has its own (tx, ty, tw, th)).
5. Loss = cross-entropy + smooth-L1 (beta 1/9) of the positives' deltas for their class, summed and
   divided by the minibatch size (torchvision's Fast R-CNN convention). Minibatches of 128 crops
   hold 25% positives (32) and 75% background (96), the R-CNN / Fast R-CNN sampler.
   Deviation from the 2014 paper: it fine-tuned the CNN with softmax, then trained per-class SVMs and
   a separate ridge-regression box regressor on frozen features; here both heads are trained jointly
   with one multitask loss, as Fast R-CNN does (the same per-region heads, one training stage).
6. Inference (:func:`detect`): score every proposal, decode one box per class, drop background,
   keep scores >= ``score_threshold``, per-class NMS (``batched_nms``) at ``nms_threshold``, top 100.
7. Evaluation (:func:`evaluate_rcnn`): COCO AP with our ``coco_evaluate`` on the test split.

The shared loop trains it (registry entry "rcnn": ``lectures train rcnn``) on :class:`RegionSet`,
whose epochs are R-CNN's minibatches of warped regions with a fixed share of positives.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lectures_code.data.digit_canvases import NUM_CLASSES, DigitCanvases
from lectures_code.data.training_set import TrainingSet
from lectures_code.detection.backbones import conv_block
from lectures_code.detection.evaluation import SUBSET, coco_record, digit_coco_ap
from lectures_code.detection.inference import inference_settings
from lectures_code.detection.rcnn_targets import crop_and_warp, label_proposals
from lectures_code.detection.selective_search import selective_search
from lectures_code.ops.box_coding import decode_boxes, encode_boxes
from lectures_code.ops.nms import batched_nms
from lectures_code.progress import progress_bar

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # Fast R-CNN's box-head weights: targets of about unit variance
CROP_SIZE = 32
MAX_PROPOSALS = 400
STRATEGY = "fast"
PROPOSAL_SEED = 0  # seed of selective search's random ranking
CACHE_ENV = "LECTURES_CODE_CACHE"
CONTEXT_SCALE = 227 / (227 - 2 * 16)  # R-CNN's context padding: 16 px around a box warped to 227 px


def default_cache_dir() -> Path:
    """``$LECTURES_CODE_CACHE/proposals`` if set, else ``~/.cache/lectures_code/proposals``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() / "proposals" if root else Path.home() / ".cache" / "lectures_code" / "proposals"


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    """float [3, H, W] in [0, 1] -> uint8 [3, H, W] on the CPU (what selective search reads)."""
    return (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()


def proposals_for(
    image: torch.Tensor,
    split: str | None = None,
    index: int | None = None,
    data_seed: int = 0,
    strategy: str = STRATEGY,
    max_proposals: int = MAX_PROPOSALS,
    cache_dir: str | os.PathLike | None = None,
) -> torch.Tensor:
    """Selective-search proposals of one image, float32 [N, 4] xyxy on the CPU (N <= max_proposals).

    With ``split`` and ``index`` given, the boxes are cached in
    ``cache_dir/<split>-data<seed>-<strategy>-max<max_proposals>/<index>.npz`` together with a SHA-1 of
    the image, so a re-run reads them back (~1 ms instead of ~250 ms) and a different image under the
    same key (e.g. other data-set parameters) is recomputed instead of being trusted.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be a float [3, H, W] tensor, got {getattr(image, 'shape', type(image))}")
    pixels = _to_uint8(image)
    path = None
    if split is not None and index is not None:
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = folder / f"{split}-data{data_seed}-{strategy}-max{max_proposals}" / f"{int(index):06d}.npz"
    digest = hashlib.sha1(pixels.numpy().tobytes()).hexdigest()
    if path is not None and path.is_file():
        try:
            with np.load(path) as cached:
                if str(cached["digest"]) == digest:
                    return torch.from_numpy(cached["boxes"].astype(np.float32))
        except (OSError, ValueError, KeyError):
            pass  # unreadable cache entry: recompute and overwrite it
    boxes = selective_search(pixels, strategy=strategy, max_proposals=max_proposals, seed=PROPOSAL_SEED)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.npz")
            np.savez(tmp, boxes=boxes.astype(np.float32), digest=np.array(digest))
            os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        except OSError:
            pass  # a read-only or full disk only costs speed: the boxes are still returned
    return torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32))


def warp_regions(image: torch.Tensor, regions: torch.Tensor, crop_size: int = CROP_SIZE) -> torch.Tensor:
    """Crop each region *with context* and warp it to crop_size x crop_size: float [K, 3, S, S].

    As in R-CNN, the region is first enlarged about its centre so that, after warping, it is
    surrounded by a margin (16 px of the paper's 227, i.e. the box fills 195/227 of the crop); the
    network then sees the object's edges, which the box regressor needs. Outside the image is 0.
    """
    centre = (regions[:, :2] + regions[:, 2:]) / 2  # [K, 2]
    half = (regions[:, 2:] - regions[:, :2]) / 2 * CONTEXT_SCALE  # [K, 2]
    return crop_and_warp(image, torch.cat([centre - half, centre + half], dim=1), crop_size)


def _drop_tiny(boxes: torch.Tensor, min_size: float = 2.0) -> torch.Tensor:
    # A 1-pixel sliver says nothing about a digit and its log-size target is extreme.
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    return boxes[keep]


# --8<-- [start:rcnn_targets]
def build_targets(
    proposals: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor, add_gt: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training regions of one image: which proposals to use, their class and their box target.

    Args:
        proposals: float32 [N, 4] xyxy region proposals.
        gt_boxes: float32 [M, 4] xyxy ground-truth boxes.
        gt_labels: int64 [M], digits 0..9.
        add_gt: append the ground-truth boxes to the proposals (R-CNN does, for training).

    Returns:
        regions float32 [K, 4] xyxy (ignored proposals, 0.3 <= IoU < 0.5, are dropped),
        labels int64 [K]: 0 background, 1..10 = digit + 1,
        box_targets float32 [K, 4]: (tx, ty, tw, th) towards the matched gt box with weights
        (10, 10, 5, 5) for positives, zeros for background (never used by the loss).
    """
    if add_gt:
        proposals = torch.cat([proposals, gt_boxes.to(proposals.dtype)])  # [N + M, 4]
    proposals = _drop_tiny(proposals)
    labels, matched_gt, _ = label_proposals(proposals, gt_boxes, gt_labels, pos_iou=0.5, neg_iou=0.3)
    used = labels >= 0  # ignored proposals (-1) take part in neither loss
    regions, labels, matched_gt = proposals[used], labels[used], matched_gt[used]
    box_targets = torch.zeros_like(regions)
    positive = labels > 0
    box_targets[positive] = encode_boxes(regions[positive], gt_boxes[matched_gt[positive]], BOX_WEIGHTS)
    return regions, labels, box_targets
# --8<-- [end:rcnn_targets]


def sample_minibatches(
    labels: torch.Tensor, batch_size: int = 128, positive_fraction: float = 0.25, generator=None
) -> list[torch.Tensor]:
    """One epoch of minibatch indices with a fixed share of positives (R-CNN: 32 of 128).

    Every positive (label > 0) appears at least once per epoch, exactly ``round(batch_size *
    positive_fraction)`` per minibatch (the last minibatch is topped up with the first positives of
    the permutation); the rest of each minibatch is background (label 0) drawn without replacement
    from a random permutation that restarts when it runs out. Returns a list of int64 index tensors.
    """
    if not 0 < positive_fraction < 1:
        raise ValueError(f"positive_fraction must be in (0, 1), got {positive_fraction}")
    positives = torch.where(labels > 0)[0]
    negatives = torch.where(labels == 0)[0]
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError(f"need positives and negatives, got {len(positives)} and {len(negatives)}")
    per_batch = max(1, round(batch_size * positive_fraction))
    positives = positives[torch.randperm(len(positives), generator=generator)]
    num_batches = math.ceil(len(positives) / per_batch)
    rounds = math.ceil(num_batches * per_batch / len(positives))
    positives = positives.repeat(rounds)  # wrap around so that the last minibatch is full too
    num_negatives = num_batches * (batch_size - per_batch)
    rounds = math.ceil(num_negatives / len(negatives))
    negatives = torch.cat([negatives[torch.randperm(len(negatives), generator=generator)] for _ in range(rounds)])
    batches = []
    for b in range(num_batches):
        pos = positives[b * per_batch : (b + 1) * per_batch]
        neg = negatives[b * (batch_size - per_batch) : (b + 1) * (batch_size - per_batch)]
        batches.append(torch.cat([pos, neg]))
    return batches


# --8<-- [start:rcnn_forward]
class RCNN(nn.Module):
    """The per-region CNN of R-CNN: warped crop -> (class logits, class-specific box deltas).

    Input: float crops [K, 3, crop_size, crop_size] in [0, 1]. Output: class logits [K, 1 + C]
    (column 0 = background) and deltas [K, C, 4], one (tx, ty, tw, th) per digit class, encoded
    with weights (10, 10, 5, 5).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, crop_size: int = CROP_SIZE, feature_dim: int = 256):
        super().__init__()
        if crop_size % 8 != 0:
            raise ValueError(f"crop_size must be a multiple of 8, got {crop_size}")
        self.num_classes = num_classes
        self.crop_size = crop_size
        self.feature_dim = feature_dim
        self.score_threshold, self.nms_threshold, self.max_detections = 0.05, 0.5, 100  # test-time settings
        self.backbone = nn.Sequential(
            conv_block(3, 16), nn.MaxPool2d(2),  # 32 -> 16
            conv_block(16, 32), nn.MaxPool2d(2),  # -> 8
            conv_block(32, 64), nn.MaxPool2d(2),  # -> 4
        )
        cells = (crop_size // 8) ** 2
        self.features = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * cells, feature_dim), nn.ReLU(inplace=True), nn.Dropout(0.2)
        )
        self.class_head = nn.Linear(feature_dim, num_classes + 1)
        self.box_head = nn.Linear(feature_dim, num_classes * 4)
        nn.init.normal_(self.box_head.weight, std=0.001)  # start from "keep the proposal as it is"
        nn.init.zeros_(self.box_head.bias)

    def forward(self, crops: torch.Tensor, labels: torch.Tensor | None = None,
                box_targets: torch.Tensor | None = None):
        """crops float [K, 3, S, S] -> (class_logits [K, 1 + C], box_deltas [K, C, 4]); with the regions'
        ``labels`` [K] and ``box_targets`` [K, 4] (training), the losses {"loss_classifier", "loss_box_reg"}."""
        if crops.ndim != 4 or crops.shape[1:] != (3, self.crop_size, self.crop_size):
            raise ValueError(f"crops must be [K, 3, {self.crop_size}, {self.crop_size}], got {tuple(crops.shape)}")
        feature = self.features(self.backbone(crops))  # [K, feature_dim]
        class_logits, box_deltas = self.class_head(feature), self.box_head(feature).view(-1, self.num_classes, 4)
        if labels is None:
            return class_logits, box_deltas
        _, cls_loss, box_loss = rcnn_loss(class_logits.float(), box_deltas.float(), labels, box_targets)
        return {"loss_classifier": cls_loss, "loss_box_reg": box_loss}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, proposals: list[torch.Tensor] | None = None,
                score_threshold: float | None = None, nms_threshold: float | None = None,
                max_detections: int | None = None) -> list[dict[str, torch.Tensor]]:
        """R-CNN on a batch (eval mode): one dict per image from :func:`detect` ({"boxes", "scores", "labels"})
        plus "proposals" [P, 4]. ``proposals=None`` runs Selective Search on each image (not cached)."""
        score_threshold, nms_threshold, max_detections = inference_settings(
            self, score_threshold, nms_threshold, max_detections)
        results = []
        for i, image in enumerate(images):
            found = proposals_for(image) if proposals is None else proposals[i]
            results.append(detect(self, image, found, score_threshold, nms_threshold, max_detections)
                           | {"proposals": torch.as_tensor(found, dtype=torch.float32)})
        return results

    def config(self) -> dict:
        """Constructor arguments as plain types (what the shipped checkpoint's metadata stores)."""
        return {"num_classes": self.num_classes, "crop_size": self.crop_size, "feature_dim": self.feature_dim}


def rcnn_loss(
    class_logits: torch.Tensor, box_deltas: torch.Tensor, labels: torch.Tensor, box_targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multitask loss of a minibatch of regions: (total, cls, box).

    cls = cross-entropy over all K regions (background included); box = smooth-L1 (beta 1/9) between
    the positives' deltas *for their own class* and their targets, summed and divided by K.

    Args: class_logits [K, 1 + C], box_deltas [K, C, 4], labels int64 [K] (0 = background),
    box_targets [K, 4].
    """
    cls_loss = F.cross_entropy(class_logits, labels)
    positive = torch.where(labels > 0)[0]  # [P]
    # Class-specific regression: only the 4 outputs of the region's true class are trained.
    deltas = box_deltas[positive, labels[positive] - 1]  # [P, 4]
    box_loss = F.smooth_l1_loss(deltas, box_targets[positive], beta=1 / 9, reduction="sum") / labels.numel()
    return cls_loss + box_loss, cls_loss, box_loss
# --8<-- [end:rcnn_forward]


def prepare_training_regions(
    num_images: int,
    split: str = "train",
    seed: int = 0,
    crop_size: int = CROP_SIZE,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Proposals -> targets -> warped crops for the first ``num_images`` canvases of a split.

    Crops are kept as uint8 (a 32x32 crop is 3 KB; ~100 regions per image), on the CPU.
    Returns {"crops": uint8 [R, 3, S, S], "labels": int64 [R], "box_targets": float32 [R, 4],
    "regions": float32 [R, 4], "image_index": int64 [R]}.
    """
    dataset = DigitCanvases(split, size=num_images, seed=seed)
    parts: dict[str, list] = {"crops": [], "labels": [], "box_targets": [], "regions": [], "image_index": []}
    for index in progress_bar(range(num_images), progress, f"proposals + crops ({split})"):
        image, target = dataset[index]
        proposals = proposals_for(image, split, index, seed, cache_dir=cache_dir)
        regions, labels, box_targets = build_targets(proposals, target["boxes"], target["labels"])
        crops = warp_regions(image, regions, crop_size)  # [K, 3, S, S] float
        parts["crops"].append((crops * 255).round().to(torch.uint8))
        parts["labels"].append(labels)
        parts["box_targets"].append(box_targets)
        parts["regions"].append(regions)
        parts["image_index"].append(torch.full((len(labels),), index, dtype=torch.int64))
    return {key: torch.cat(value) for key, value in parts.items()}


class RegionSet(TrainingSet):
    """R-CNN's training data: the warped regions of the first ``size`` canvases (:func:`prepare_training_regions`).

    An epoch is :func:`sample_minibatches`: every positive region once, ``positive_fraction`` of each
    minibatch positive, the rest background. collate gives {"crops": float [B, 3, S, S], "labels" [B],
    "box_targets" [B, 4]}, the arguments of :meth:`RCNN.forward` that make it return its losses.
    """

    def __init__(self, split: str = "train", size: int = 600, seed: int = 0, progress: bool = False,
                 cache_dir: str | os.PathLike | None = None, crop_size: int = CROP_SIZE,
                 positive_fraction: float = 0.25):
        start = time.perf_counter()
        data = prepare_training_regions(size, split, seed, crop_size, cache_dir, progress)
        self.prepare_seconds = time.perf_counter() - start
        self.crops, self.labels, self.box_targets = data["crops"], data["labels"], data["box_targets"]
        self.positive_fraction = positive_fraction

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, epoch: int, batch_size: int, seed: int, steps: int | None = None) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        return sample_minibatches(self.labels, batch_size, self.positive_fraction, generator)

    def collate(self, indices: torch.Tensor, device: torch.device) -> dict:
        return {"crops": self.crops[indices].to(device).float().div_(255),  # [B, 3, S, S]
                "labels": self.labels[indices].to(device), "box_targets": self.box_targets[indices].to(device)}

    def summary(self) -> dict:
        return {"train_regions": int(len(self.labels)), "train_positives": int((self.labels > 0).sum()),
                "prepare_seconds (proposals + crops, proposals cached)": round(self.prepare_seconds, 1),
                "proposals": f"selective search {STRATEGY}, max {MAX_PROPOSALS}"}


# --8<-- [start:rcnn_inference]
@torch.no_grad()
def detect(
    model: RCNN,
    image: torch.Tensor,
    proposals: torch.Tensor | np.ndarray | None = None,
    score_threshold: float = 0.05,
    nms_threshold: float = 0.5,
    max_detections: int = 100,
    chunk_size: int = 512,
) -> dict[str, torch.Tensor]:
    """Detect digits in one image with R-CNN.

    Args:
        model: a trained :class:`RCNN` (its device is used).
        image: float [3, H, W] in [0, 1].
        proposals: float [N, 4] xyxy; None runs selective search (not cached).
        score_threshold: drop detections whose class probability is below it.
        nms_threshold: per-class NMS IoU threshold (a box is dropped if IoU > threshold).
        max_detections: keep the best this many after NMS.

    Returns:
        {"boxes": float32 [D, 4] xyxy clipped to the image, "scores": float32 [D] (descending),
        "labels": int64 [D] digits 0..9}, on the model's device.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be a float [3, H, W] tensor, got {getattr(image, 'shape', type(image))}")
    if not image.is_floating_point():
        raise TypeError(f"image must be floating point in [0, 1], got {image.dtype}")
    if not 0.0 <= score_threshold <= 1.0 or not 0.0 <= nms_threshold <= 1.0:
        raise ValueError(f"thresholds must be in [0, 1], got {score_threshold}, {nms_threshold}")
    device = next(model.parameters()).device
    image = image.to(device=device, dtype=torch.float32)
    if proposals is None:
        proposals = proposals_for(image)
    proposals = torch.as_tensor(proposals, dtype=torch.float32).to(device)
    if proposals.ndim != 2 or proposals.shape[1] != 4:
        raise ValueError(f"proposals must be [N, 4] xyxy, got {tuple(proposals.shape)}")
    proposals = _drop_tiny(proposals)
    num_classes, (height, width) = model.num_classes, image.shape[-2:]
    empty = {"boxes": torch.zeros(0, 4, device=device), "scores": torch.zeros(0, device=device),
             "labels": torch.zeros(0, dtype=torch.int64, device=device)}
    if len(proposals) == 0:
        return empty

    model.eval()
    logits, deltas = [], []
    for first in range(0, len(proposals), chunk_size):
        crops = warp_regions(image, proposals[first : first + chunk_size], model.crop_size)  # [k, 3, S, S]
        chunk_logits, chunk_deltas = model(crops)
        logits.append(chunk_logits.float())
        deltas.append(chunk_deltas.float())
    probabilities = torch.cat(logits).softmax(dim=1)  # [N, 1 + C]
    deltas = torch.cat(deltas)  # [N, C, 4]

    # One box per (proposal, class): each class moves the proposal its own way.
    boxes = decode_boxes(deltas.reshape(-1, 4), proposals.repeat_interleave(num_classes, dim=0), BOX_WEIGHTS)
    boxes = boxes.view(-1, num_classes, 4)  # [N, C, 4]
    boxes[..., 0::2] = boxes[..., 0::2].clamp(0, width)
    boxes[..., 1::2] = boxes[..., 1::2].clamp(0, height)
    scores = probabilities[:, 1:]  # [N, C]: the background column is dropped
    labels = torch.arange(num_classes, device=device).expand_as(scores)  # [N, C] digit of each column

    boxes, scores, labels = boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
    keep = (scores >= score_threshold) & (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = batched_nms(boxes, scores, labels, nms_threshold)[:max_detections]  # sorted by score
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
# --8<-- [end:rcnn_inference]


def evaluate_rcnn(
    model: RCNN,
    num_test_images: int = 200,
    split: str = "test",
    seed: int = 0,
    score_threshold: float = 0.05,
    nms_threshold: float = 0.5,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict:
    """COCO box AP of the detector on the first ``num_test_images`` canvases of ``split``.

    Returns {"stats": the 12 COCO numbers (AP, AP50, AP75, APs/m/l, AR1/10/100, ARs/m/l),
    "per_class_ap": {digit "0".."9": {"AP", "AP50"}}, "seconds_per_image": {"proposals", "detect"}
    (mean wall time of getting the proposals, which is a cache read when they are cached, and of
    crop + CNN + NMS), "images": int}.
    """
    if not isinstance(num_test_images, int) or num_test_images < 1:
        raise ValueError(f"num_test_images must be a positive int, got {num_test_images!r}")
    dataset = DigitCanvases(split, size=num_test_images, seed=seed)
    detections, proposal_seconds, detect_seconds = [], 0.0, 0.0
    for index in progress_bar(range(num_test_images), progress, f"evaluate ({split})"):
        image, _ = dataset[index]
        start = time.perf_counter()
        proposals = proposals_for(image, split, index, seed, cache_dir=cache_dir)
        middle = time.perf_counter()
        result = detect(model, image, proposals, score_threshold, nms_threshold)
        detect_seconds += time.perf_counter() - middle
        proposal_seconds += middle - start
        for box, score, label in zip(result["boxes"].tolist(), result["scores"].tolist(), result["labels"].tolist()):
            x1, y1, x2, y2 = box
            detections.append({"image_id": index, "category_id": label + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                               "score": score})
    return {
        **digit_coco_ap(dataset, detections),
        "seconds_per_image": {"proposals": proposal_seconds / num_test_images,
                              "detect": detect_seconds / num_test_images},
        "images": num_test_images,
        "detections": len(detections),
    }


def evaluation_record(model: RCNN, num_test_images: int = 200, progress: bool = False) -> dict:
    """The training record's test part: COCO AP on ``num_test_images`` canvases (proposals cached), the same
    on the first 40, and the seconds per canvas, with Selective Search timed uncached on 10 canvases."""
    evaluation = evaluate_rcnn(model, num_test_images, progress=progress)
    subset = evaluate_rcnn(model, min(SUBSET, num_test_images), progress=False)
    test_set = DigitCanvases("test", size=10)
    start = time.perf_counter()
    for index in range(len(test_set)):
        proposals_for(test_set[index][0])
    search_seconds = (time.perf_counter() - start) / len(test_set)
    return coco_record(evaluation, subset) | {
        "seconds_per_test_image": {
            "selective_search": round(search_seconds, 4),
            "crops_cnn_nms": round(evaluation["seconds_per_image"]["detect"], 4),
            "total_without_cache": round(search_seconds + evaluation["seconds_per_image"]["detect"], 4),
        },
    }
