"""Detecting a single object: classification + localization as a multitask network (Lecture 13).

When every image holds exactly one object, detection is "classify the image" plus "regress 4
numbers": one CNN computes a feature vector, and two heads read it,

    class head: 10 logits (the digit)            -> cross-entropy      L_cls
    box head:   4 numbers (the box)              -> L2 (squared error) L_reg
    multitask loss  L = L_cls + lambda * L_reg

The box head predicts the box as xyxy *normalized by the canvas size*: (x1/W, y1/H, x2/W, y2/H),
numbers in about [0, 1], so that lambda does not depend on the image size. Boxes given to or
returned by the public functions below are xyxy in pixels (x2/y2 exclusive, as in
``DigitCanvases``) unless a name says "normalized".

The data are ``DigitCanvases(max_objects=1)``: 128x128 canvases with one real MNIST digit. The
training set (:class:`SingleObjectSet`) is rendered once and kept as uint8 (every canvas costs ~5 ms to
render, far more than a training step's share of it), then visited in random minibatches drawn with
replacement; the shared loop trains it (registry entry "single-object": ``lectures train single-object``).
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from lectures_code.data.digit_canvases import NUM_CLASSES, DigitCanvases, render_canvases
from lectures_code.data.training_set import TrainingSet
from lectures_code.detection.backbones import conv_block
from lectures_code.ops.boxes import box_iou


class SingleObjectDetector(nn.Module):
    """Small CNN -> feature vector -> (class logits [B, 10], normalized xyxy box [B, 4]).

    Input: float32 images [B, 3, image_size, image_size] in [0, 1]. The backbone halves the
    resolution five times (128 -> 4). The feature vector that both heads read joins two views of that
    4x4 map: its maximum over positions (128 numbers that do not depend on where the digit is, which
    makes classification learnable from a few thousand images) and a fully connected layer on the
    flattened map (``feature_dim`` numbers that keep *where* the features are, which the box needs).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, image_size: int = 128, feature_dim: int = 256,
                 box_weight: float = 10.0):
        super().__init__()
        if image_size % 32 != 0:
            raise ValueError(f"image_size must be a multiple of 32, got {image_size}")
        self.num_classes = num_classes
        self.image_size = image_size
        self.feature_dim = feature_dim
        # lambda = 10: the normalized box error is small (0.1 of the canvas is an L2 of ~0.01-0.04) next to
        # a cross-entropy of ~2.3 at the start.
        self.box_weight = box_weight
        # Stride-2 convolutions halve the resolution five times (128 -> 4) and a stride-1 block at
        # 32, 16 and 8 px adds depth where the digits are a few cells wide; a full-resolution
        # convolution at 128x128 would cost most of a CPU's training time.
        self.backbone = nn.Sequential(
            conv_block(3, 16, stride=2),  # -> 64
            conv_block(16, 32, stride=2), conv_block(32, 32),  # -> 32
            conv_block(32, 64, stride=2), conv_block(64, 64),  # -> 16
            conv_block(64, 96, stride=2), conv_block(96, 96),  # -> 8
            conv_block(96, 128, stride=2),  # -> 4
        )
        cells = (image_size // 32) ** 2
        self.where = nn.Sequential(nn.Flatten(), nn.Linear(128 * cells, feature_dim), nn.ReLU(inplace=True))
        self.class_head = nn.Linear(128 + feature_dim, num_classes)
        self.box_head = nn.Linear(128 + feature_dim, 4)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None, boxes: torch.Tensor | None = None):
        """images float [B, 3, S, S] -> (class_logits [B, num_classes], box_pred [B, 4] normalized xyxy); with
        ``labels`` [B] and normalized ``boxes`` [B, 4] (training), the multitask loss's two terms
        {"loss_classifier": L_cls, "loss_box": lambda * L_reg}."""
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"images must be [B, 3, {self.image_size}, {self.image_size}], got {tuple(images.shape)}")
        feature_map = self.backbone(images)  # [B, 128, S/32, S/32]
        # "What": max over positions, the same wherever the digit is. "Where": the flattened map.
        what = feature_map.amax(dim=(2, 3))  # [B, 128]
        feature = torch.cat([what, self.where(feature_map)], dim=1)  # [B, 128 + feature_dim]
        class_logits, box_pred = self.class_head(feature), self.box_head(feature)
        if labels is None:
            return class_logits, box_pred
        _, cls_loss, reg_loss = single_object_loss(class_logits.float(), box_pred.float(), labels, boxes)
        return {"loss_classifier": cls_loss, "loss_box": self.box_weight * reg_loss}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """One detection per image (the model assumes exactly one object): dicts {"boxes" [1, 4] xyxy pixels,
        "scores" [1], "labels" [1]}, the same format as the multi-object detectors."""
        if self.training:
            raise RuntimeError("SingleObjectDetector.predict needs eval mode: call model.eval() first")
        result = predict_single_object(self, images)
        return [{key: result[key][i:i + 1] for key in ("boxes", "scores", "labels")} for i in range(len(images))]

    def config(self) -> dict:
        """Constructor arguments as plain types (what the shipped checkpoint's metadata stores)."""
        return {"num_classes": self.num_classes, "image_size": self.image_size, "feature_dim": self.feature_dim,
                "box_weight": self.box_weight}


# --8<-- [start:multitask_loss]
def single_object_loss(
    class_logits: torch.Tensor,
    box_pred: torch.Tensor,
    labels: torch.Tensor,
    boxes: torch.Tensor,
    box_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multitask loss L = L_cls + lambda * L_reg of the single-object detector.

    Args:
        class_logits: float [B, C].
        box_pred: float [B, 4], predicted normalized xyxy boxes.
        labels: int64 [B], the class of each image's object.
        boxes: float [B, 4], target normalized xyxy boxes.
        box_weight: lambda, the weight of the box loss.

    Returns:
        (total, cls, reg), scalars: cls = mean cross-entropy over the batch; reg = mean over the
        batch of the squared L2 distance between predicted and target box (sum over the 4 numbers).
    """
    if class_logits.ndim != 2 or labels.shape != class_logits.shape[:1]:
        raise ValueError(f"need class_logits [B, C] and labels [B], got {tuple(class_logits.shape)}, "
                         f"{tuple(labels.shape)}")
    if box_pred.shape != (class_logits.shape[0], 4) or boxes.shape != box_pred.shape:
        raise ValueError(f"need box_pred and boxes [B, 4], got {tuple(box_pred.shape)}, {tuple(boxes.shape)}")
    cls_loss = F.cross_entropy(class_logits, labels)  # L_cls: "what is it"
    reg_loss = ((box_pred - boxes) ** 2).sum(dim=1).mean()  # L_reg: "where is it", plain L2
    return cls_loss + box_weight * reg_loss, cls_loss, reg_loss
# --8<-- [end:multitask_loss]


class SingleObjectSet(TrainingSet):
    """``DigitCanvases(split, max_objects=1)`` rendered once: collate gives {"images" float [B, 3, S, S],
    "labels" int64 [B], "boxes" float [B, 4] normalized xyxy}, the arguments that make
    :meth:`SingleObjectDetector.forward` return its losses."""

    def __init__(self, split: str = "train", size: int = 5000, seed: int = 0, progress: bool = False,
                 canvas_size: int = 128):
        self.images, targets = render_canvases(split, size, seed, max_objects=1, canvas_size=canvas_size,
                                               progress=progress)
        self.labels = torch.stack([t["labels"][0] for t in targets])  # int64 [N]
        self.boxes = torch.stack([t["boxes"][0] for t in targets])  # float32 [N, 4] xyxy pixels

    def __len__(self) -> int:
        return len(self.labels)

    def collate(self, indices: torch.Tensor, device: torch.device) -> dict:
        size = self.images.shape[-1]
        return {"images": self.images[indices].to(device).float().div_(255),  # [B, 3, S, S]
                "labels": self.labels[indices].to(device), "boxes": self.boxes[indices].to(device) / size}


@torch.no_grad()
def predict_single_object(model: SingleObjectDetector, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run the model on float images [B, 3, S, S] in [0, 1] (on the model's device).

    Returns {"boxes": float32 [B, 4] xyxy pixels, "labels": int64 [B] digit 0..9, "scores": float32 [B]
    softmax probability of that digit}.
    """
    model.eval()
    class_logits, box_pred = model(images)
    probabilities = class_logits.float().softmax(dim=1)  # [B, C]
    scores, labels = probabilities.max(dim=1)
    return {"boxes": box_pred.float() * images.shape[-1], "labels": labels, "scores": scores}


def evaluate_single_object(
    model: SingleObjectDetector, dataset: DigitCanvases | int = 500, batch_size: int = 100
) -> dict[str, float]:
    """Accuracy and localization quality on a data set (default: the first 500 test canvases).

    Args:
        model: a trained detector (evaluated on its own device).
        dataset: a ``DigitCanvases`` (only its first object per image is used), or a number of
            ``DigitCanvases("test", max_objects=1)`` images.

    Returns:
        {"accuracy", "mean_iou", "iou_above_0.5" (fraction with IoU > 0.5), "correct_and_iou_above_0.5",
        "images"}.
    """
    if isinstance(dataset, int):
        dataset = DigitCanvases("test", size=dataset, max_objects=1)
    if len(dataset) == 0:
        raise ValueError("evaluate_single_object needs a non-empty data set")
    device = next(model.parameters()).device
    correct, ious = [], []
    for first in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(first, min(first + batch_size, len(dataset)))]
        images = torch.stack([image for image, _ in items]).to(device)
        labels = torch.stack([target["labels"][0] for _, target in items]).to(device)  # [b]
        boxes = torch.stack([target["boxes"][0] for _, target in items]).to(device)  # [b, 4]
        predicted = predict_single_object(model, images)
        correct.append(predicted["labels"] == labels)
        ious.append(box_iou(predicted["boxes"], boxes).diagonal().nan_to_num(0.0))
    correct_all, iou_all = torch.cat(correct).cpu(), torch.cat(ious).cpu()
    return {
        "accuracy": float(correct_all.float().mean()),
        "mean_iou": float(iou_all.mean()),
        "iou_above_0.5": float((iou_all > 0.5).float().mean()),
        "correct_and_iou_above_0.5": float((correct_all & (iou_all > 0.5)).float().mean()),
        "images": int(len(dataset)),
    }


def evaluation_record(model: SingleObjectDetector, num_test_images: int = 500, progress: bool = False) -> dict:
    """The training record's test part: :func:`evaluate_single_object` on the first ``num_test_images`` test
    canvases and the seconds per image (batch 1, 20 images)."""
    metrics = evaluate_single_object(model, num_test_images)
    test_set = DigitCanvases("test", size=20, max_objects=1)
    images = torch.stack([test_set[i][0] for i in range(len(test_set))]).to(next(model.parameters()).device)
    start = time.perf_counter()
    for i in range(len(images)):
        predict_single_object(model, images[i:i + 1])
    return {"test": {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()},
            "seconds_per_test_image": round((time.perf_counter() - start) / len(images), 5)}
