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
training set is rendered once and kept as uint8 (every canvas costs ~5 ms to render, far more than
a training step's share of it), then visited in random minibatches.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from lectures_code.data.digit_canvases import NUM_CLASSES, DigitCanvases
from lectures_code.detection.boxes import box_iou


def _conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SingleObjectDetector(nn.Module):
    """Small CNN -> feature vector -> (class logits [B, 10], normalized xyxy box [B, 4]).

    Input: float32 images [B, 3, image_size, image_size] in [0, 1]. The backbone halves the
    resolution five times (128 -> 4), then a fully connected layer makes a ``feature_dim`` vector;
    flattening (not global average pooling) keeps *where* the features are, which the box head needs.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, image_size: int = 128, feature_dim: int = 256):
        super().__init__()
        if image_size % 32 != 0:
            raise ValueError(f"image_size must be a multiple of 32, got {image_size}")
        self.num_classes = num_classes
        self.image_size = image_size
        # Every block halves the resolution with a stride-2 convolution (128 -> 4): on a CPU a
        # full-resolution convolution at 128x128 would cost most of the training time.
        self.backbone = nn.Sequential(
            _conv_block(3, 16, stride=2),  # -> 64
            _conv_block(16, 32, stride=2),  # -> 32
            _conv_block(32, 64, stride=2),  # -> 16
            _conv_block(64, 96, stride=2),  # -> 8
            _conv_block(96, 128, stride=2),  # -> 4
        )
        cells = (image_size // 32) ** 2
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(128 * cells, feature_dim), nn.ReLU(inplace=True))
        self.class_head = nn.Linear(feature_dim, num_classes)
        self.box_head = nn.Linear(feature_dim, 4)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images float [B, 3, S, S] -> (class_logits [B, num_classes], box_pred [B, 4] normalized xyxy)."""
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"images must be [B, 3, {self.image_size}, {self.image_size}], got {tuple(images.shape)}")
        feature = self.features(self.backbone(images))  # [B, feature_dim]
        return self.class_head(feature), self.box_head(feature)


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


def render_split(split: str, size: int, seed: int = 0, canvas_size: int = 128) -> dict[str, torch.Tensor]:
    """Render ``DigitCanvases(split, size, max_objects=1)`` once.

    Returns {"images": uint8 [N, 3, S, S], "labels": int64 [N], "boxes": float32 [N, 4] xyxy pixels}.
    """
    dataset = DigitCanvases(split, size=size, canvas_size=canvas_size, max_objects=1, seed=seed)
    images = torch.empty(size, 3, canvas_size, canvas_size, dtype=torch.uint8)
    labels = torch.empty(size, dtype=torch.int64)
    boxes = torch.empty(size, 4, dtype=torch.float32)
    for i in range(size):
        image, target = dataset[i]
        images[i] = (image * 255).round().to(torch.uint8)  # uint8: 4x less memory than float32
        labels[i] = target["labels"][0]
        boxes[i] = target["boxes"][0]
    return {"images": images, "labels": labels, "boxes": boxes}


def train_single_object(
    steps: int = 1500,
    lr: float = 2e-3,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    seed: int = 0,
    num_train_images: int = 4000,
    box_weight: float = 10.0,
    progress: bool = True,
    model: SingleObjectDetector | None = None,
) -> tuple[SingleObjectDetector, dict]:
    """Train a :class:`SingleObjectDetector` on ``DigitCanvases("train", max_objects=1)``.

    AdamW with a cosine learning-rate schedule; mixed precision (bfloat16 autocast) only on CUDA.
    lambda (``box_weight``) = 10 because the normalized box error is small (0.1 of the canvas is an
    L2 of ~0.01-0.04) next to a cross-entropy of ~2.3 at the start.

    Returns:
        (model in eval mode, history) with history = {"total", "cls", "reg": [steps] floats per step,
        "seconds": training time, "device": str}.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size), ("num_train_images", num_train_images)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    device = torch.device(device)
    torch.manual_seed(seed)
    data = render_split("train", num_train_images, seed=seed)
    size = data["images"].shape[-1]
    model = (model or SingleObjectDetector(image_size=size)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    history: dict = {"total": [], "cls": [], "reg": []}
    model.train()
    start = time.perf_counter()
    bar = _progress_bar(steps, progress, "single-object")
    for _ in range(steps):
        index = torch.randint(0, num_train_images, (batch_size,), generator=generator)  # [B]
        images = data["images"][index].to(device).float().div_(255)  # [B, 3, S, S]
        labels = data["labels"][index].to(device)  # [B]
        boxes = data["boxes"][index].to(device) / size  # [B, 4] normalized xyxy
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            class_logits, box_pred = model(images)
        total, cls_loss, reg_loss = single_object_loss(class_logits.float(), box_pred.float(), labels, boxes,
                                                       box_weight)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        schedule.step()
        for key, value in (("total", total), ("cls", cls_loss), ("reg", reg_loss)):
            history[key].append(float(value.detach()))
        if bar is not None:
            bar.set_postfix(loss=f"{history['total'][-1]:.3f}", refresh=False)
            bar.update()
    if bar is not None:
        bar.close()
    history["seconds"] = time.perf_counter() - start
    history["device"] = str(device)
    return model.eval(), history


def _progress_bar(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)


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

