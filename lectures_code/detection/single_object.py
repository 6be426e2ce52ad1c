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
from lectures_code.ops.boxes import box_iou


def _conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SingleObjectDetector(nn.Module):
    """Small CNN -> feature vector -> (class logits [B, 10], normalized xyxy box [B, 4]).

    Input: float32 images [B, 3, image_size, image_size] in [0, 1]. The backbone halves the
    resolution five times (128 -> 4). The feature vector that both heads read joins two views of that
    4x4 map: its maximum over positions (128 numbers that do not depend on where the digit is, which
    makes classification learnable from a few thousand images) and a fully connected layer on the
    flattened map (``feature_dim`` numbers that keep *where* the features are, which the box needs).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, image_size: int = 128, feature_dim: int = 256):
        super().__init__()
        if image_size % 32 != 0:
            raise ValueError(f"image_size must be a multiple of 32, got {image_size}")
        self.num_classes = num_classes
        self.image_size = image_size
        # Stride-2 convolutions halve the resolution five times (128 -> 4) and a stride-1 block at
        # 32, 16 and 8 px adds depth where the digits are a few cells wide; a full-resolution
        # convolution at 128x128 would cost most of a CPU's training time.
        self.backbone = nn.Sequential(
            _conv_block(3, 16, stride=2),  # -> 64
            _conv_block(16, 32, stride=2), _conv_block(32, 32),  # -> 32
            _conv_block(32, 64, stride=2), _conv_block(64, 64),  # -> 16
            _conv_block(64, 96, stride=2), _conv_block(96, 96),  # -> 8
            _conv_block(96, 128, stride=2),  # -> 4
        )
        cells = (image_size // 32) ** 2
        self.where = nn.Sequential(nn.Flatten(), nn.Linear(128 * cells, feature_dim), nn.ReLU(inplace=True))
        self.class_head = nn.Linear(128 + feature_dim, num_classes)
        self.box_head = nn.Linear(128 + feature_dim, 4)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images float [B, 3, S, S] -> (class_logits [B, num_classes], box_pred [B, 4] normalized xyxy)."""
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"images must be [B, 3, {self.image_size}, {self.image_size}], got {tuple(images.shape)}")
        feature_map = self.backbone(images)  # [B, 128, S/32, S/32]
        # "What": max over positions, the same wherever the digit is. "Where": the flattened map.
        what = feature_map.amax(dim=(2, 3))  # [B, 128]
        feature = torch.cat([what, self.where(feature_map)], dim=1)  # [B, 128 + feature_dim]
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


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate: linear warm-up over the first 10% of the steps, then a cosine decay to 0."""
    warmup = max(1, total_steps // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_single_object(
    steps: int = 2000,
    lr: float = 3e-3,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    seed: int = 0,
    num_train_images: int = 5000,
    box_weight: float = 10.0,
    progress: bool = True,
    model: SingleObjectDetector | None = None,
) -> tuple[SingleObjectDetector, dict]:
    """Train a :class:`SingleObjectDetector` on ``DigitCanvases("train", max_objects=1)``.

    AdamW with warm-up + cosine decay of the learning rate; mixed precision (float16 autocast with
    gradient scaling) only on CUDA.
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
    schedule = warmup_cosine(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history: dict = {"total": [], "cls": [], "reg": []}
    model.train()
    start = time.perf_counter()
    bar = _progress_bar(steps, progress, "single-object")
    for _ in range(steps):
        index = torch.randint(0, num_train_images, (batch_size,), generator=generator)  # [B]
        images = data["images"][index].to(device).float().div_(255)  # [B, 3, S, S]
        labels = data["labels"][index].to(device)  # [B]
        boxes = data["boxes"][index].to(device) / size  # [B, 4] normalized xyxy
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            class_logits, box_pred = model(images)
        total, cls_loss, reg_loss = single_object_loss(class_logits.float(), box_pred.float(), labels, boxes,
                                                       box_weight)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
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



def main(argv: list[str] | None = None) -> dict:
    """Train, evaluate and (with --ship) save the shipped single-object detector:
    ``python -m lectures_code.detection.single_object``."""
    import argparse
    import json
    import platform
    import shlex
    import sys

    from lectures_code.checkpoints import CHECKPOINT_DIR, save_checkpoint
    from lectures_code.detection.training_cli import update_record

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-train-images", type=int, default=5000)
    parser.add_argument("--num-test-images", type=int, default=500)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    parser.add_argument("--ship", action="store_true", help="write lectures_code/checkpoints/single_object_digits.pt")
    parser.add_argument("--record", default="docs/data/lecture13_detectors.json")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    model, history = train_single_object(args.steps, args.lr, args.batch_size, args.device, args.seed,
                                         args.num_train_images)
    total_seconds = time.perf_counter() - start
    test_set = DigitCanvases("test", size=args.num_test_images, max_objects=1, seed=args.seed)
    metrics = evaluate_single_object(model, test_set)
    images = torch.stack([test_set[i][0] for i in range(20)]).to(args.device)
    start = time.perf_counter()
    for i in range(len(images)):
        predict_single_object(model, images[i : i + 1])
    per_image = (time.perf_counter() - start) / len(images)

    def window_mean(values: list[float], first: bool) -> float:
        part = values[:50] if first else values[-50:]
        return round(sum(part) / len(part), 4)

    record = {
        "model": "SingleObjectDetector",
        "command": "python -m lectures_code.detection.single_object "
        + shlex.join(sys.argv[1:] if argv is None else argv),
        "device": str(args.device),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "train_images": args.num_train_images,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "box_weight_lambda": 10.0,
        "train_seconds (steps only)": round(history["seconds"], 1),
        "total_seconds (rendering + steps)": round(total_seconds, 1),
        "loss_first_50_steps": {k: window_mean(history[k], True) for k in ("total", "cls", "reg")},
        "loss_last_50_steps": {k: window_mean(history[k], False) for k in ("total", "cls", "reg")},
        "test": {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()},
        "seconds_per_test_image": round(per_image, 5),
    }
    if args.ship:
        metadata = {"config": {"num_classes": model.num_classes, "image_size": model.image_size, "feature_dim": 256},
                    "trained_on": f"DigitCanvases train[:{args.num_train_images}] max_objects=1 seed {args.seed}",
                    "command": record["command"], "test_accuracy": record["test"]["accuracy"],
                    "test_mean_iou": record["test"]["mean_iou"]}
        path = CHECKPOINT_DIR / "single_object_digits.pt"
        record["checkpoint"] = {"file": "lectures_code/checkpoints/single_object_digits.pt",
                                "sha256": save_checkpoint(model.state_dict(), metadata, path),
                                "bytes": path.stat().st_size}
        update_record("single_object", record, args.record)
    print(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
