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

``python -m lectures_code.detection.fcos --num-train-images 4000 --epochs 14 --ship`` trains, evaluates
and ships ``lectures_code/checkpoints/fcos_digits.pt`` (see :func:`main`).
"""

from __future__ import annotations

import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from lectures_code.data.digit_canvases import NUM_CLASSES, DigitCanvases
from lectures_code.detection.fcos_targets import centerness_target, fcos_points, match_points_to_boxes
from lectures_code.detection.training_cli import (
    check_recipe,
    evaluate_on_canvases,
    load_training_state,
    optimizer_step,
    progress_bar,
    save_training_state,
    training_parts,
)
from lectures_code.ops.losses import generalized_box_iou_loss, sigmoid_focal_loss
from lectures_code.ops.nms import batched_nms

STRIDES = (8, 16, 32)
SCALE_RANGES = ((0, 32), (32, 64), (64, math.inf))  # max(l, t, r, b) in pixels, per level (see module doc)
CENTER_SAMPLING_RADIUS = 1.5  # in strides of the point's level
PRIOR_PROBABILITY = 0.01


def _conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class Backbone(nn.Module):
    """Small CNN: float images [B, 3, S, S] -> [C3, C4, C5].

    C3 [B, 64, S/8, S/8], C4 [B, 96, S/16, S/16], C5 [B, 128, S/32, S/32].
    """

    channels = (64, 96, 128)

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(_conv_block(3, 16, stride=2), _conv_block(16, 32, stride=2), _conv_block(32, 32))
        self.stage3 = nn.Sequential(_conv_block(32, 64, stride=2), _conv_block(64, 64))  # stride 8
        self.stage4 = nn.Sequential(_conv_block(64, 96, stride=2), _conv_block(96, 96))  # stride 16
        self.stage5 = nn.Sequential(_conv_block(96, 128, stride=2), _conv_block(128, 128))  # stride 32

    def forward(self, images: Tensor) -> list[Tensor]:
        c3 = self.stage3(self.stem(images))
        c4 = self.stage4(c3)
        c5 = self.stage5(c4)
        return [c3, c4, c5]


# --8<-- [start:fpn]
class FeaturePyramid(nn.Module):
    """Feature Pyramid Network (Lin et al., 2017): [C3, C4, C5] -> [P3, P4, P5], all ``out_channels``.

    Deep maps (C5) know *what* is there but are coarse; shallow maps (C3) are sharp but semantically
    weak. The top-down pathway upsamples the deeper P and adds it to a 1x1 "lateral" projection of
    the shallower C, so every level gets both; a 3x3 convolution then smooths the aliasing of the
    nearest-neighbour upsampling.
    """

    def __init__(self, in_channels: tuple[int, ...], out_channels: int = 64):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """features: finest first, each [B, C_k, H_k, W_k] with H_k = 2 H_{k+1}. Returns [B, out, H_k, W_k] each."""
        top_down = self.lateral[-1](features[-1])  # start at the coarsest level
        outputs = [self.smooth[-1](top_down)]
        for k in range(len(features) - 2, -1, -1):
            upsampled = F.interpolate(top_down, size=features[k].shape[-2:], mode="nearest")
            top_down = self.lateral[k](features[k]) + upsampled
            outputs.insert(0, self.smooth[k](top_down))
        return outputs
# --8<-- [end:fpn]


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


class FCOS(nn.Module):
    """Backbone + FPN + shared head.

    ``forward(images)`` with float images [B, 3, S, S] in [0, 1] returns a dict with "cls_logits"
    [B, P, C], "box_distances" [B, P, 4] (l, t, r, b in pixels, float32), "centerness_logits" [B, P],
    "points" [P, 2] (x, y), "point_strides" [P] and "num_points_per_level" (list of H_k * W_k).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, fpn_channels: int = 64, num_convs: int = 2):
        super().__init__()
        self.num_classes = num_classes
        self.strides = STRIDES
        self.backbone = Backbone()
        self.fpn = FeaturePyramid(Backbone.channels, fpn_channels)
        self.head = FCOSHead(fpn_channels, num_classes, len(STRIDES), num_convs)
        self.config = {"num_classes": num_classes, "fpn_channels": fpn_channels, "num_convs": num_convs}

    def features(self, images: Tensor) -> list[Tensor]:
        """P3, P4, P5: [B, fpn_channels, S/8, S/8], [.., S/16, S/16], [.., S/32, S/32]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"images must be floating point in [0, 1], got {images.dtype}")
        if images.shape[-1] % 32 or images.shape[-2] % 32:
            raise ValueError(f"image height and width must be multiples of 32, got {tuple(images.shape[-2:])}")
        return self.fpn(self.backbone(images))

    def forward(self, images: Tensor) -> dict:
        features = self.features(images)
        cls_logits, box_distances, centerness_logits = self.head(features, self.strides)
        points, point_strides, num_points_per_level = fcos_points(
            [f.shape[-2:] for f in features], self.strides, device=images.device)
        return {"cls_logits": cls_logits, "box_distances": box_distances, "centerness_logits": centerness_logits,
                "points": points, "point_strides": point_strides, "num_points_per_level": num_points_per_level}


def assign_targets(outputs: dict, gt_boxes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """FCOS targets of one image with this module's scale ranges (``SCALE_RANGES``, see the module doc).

    Args:
        outputs: the dict of :meth:`FCOS.forward` (its points).
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
        outputs: :meth:`FCOS.forward` of B images.
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
    model.eval()
    images = images.to(next(model.parameters()).device)
    outputs = model(images)
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


def render_split(split: str, size: int, seed: int = 0) -> dict:
    """Render ``DigitCanvases(split, size)`` once: {"images": uint8 [N, 3, S, S], "targets": N dicts
    with "boxes" float32 [M, 4] xyxy and "labels" int64 [M]}."""
    dataset = DigitCanvases(split, size=size, seed=seed)
    images, targets = [], []
    for index in range(size):
        image, target = dataset[index]
        images.append((image * 255).round().to(torch.uint8))  # uint8: 4x less memory than float32
        targets.append({"boxes": target["boxes"], "labels": target["labels"]})
    return {"images": torch.stack(images), "targets": targets}


def train_fcos(
    num_train_images: int = 4000,
    epochs: int = 14,
    lr: float = 2e-3,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    seed: int = 0,
    checkpoint_path: str | os.PathLike | None = None,
    progress: bool = True,
    resume: bool = True,
) -> tuple[FCOS, dict]:
    """Train an :class:`FCOS` on the first ``num_train_images`` training canvases.

    AdamW (weight decay 1e-4), linear warm-up then cosine decay; mixed precision (float16 autocast
    with gradient scaling) only on CUDA. Deterministic: epoch e shuffles with a generator seeded by
    (seed, e). With a ``checkpoint_path``, {"model", "optimizer", "scheduler", "scaler", "epoch",
    "history", "config", "run"} is saved after every epoch, and with ``resume`` a run continues
    from it, visiting the same minibatches as an uninterrupted run.

    Returns:
        (model in eval mode, history) with history = {"total", "cls", "box", "centerness": per-step
        losses, "epoch_seconds", "render_seconds", "train_seconds", "device"}.
    """

    check_recipe(num_train_images, epochs, batch_size, lr)
    device = torch.device(device)
    use_amp = device.type == "cuda"
    run = {"num_train_images": num_train_images, "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed}

    start = time.perf_counter()
    data = render_split("train", num_train_images, seed)
    render_seconds = time.perf_counter() - start

    torch.manual_seed(seed)
    model = FCOS().to(device)
    optimizer, scheduler, scaler = training_parts(model, lr, epochs * math.ceil(num_train_images / batch_size), use_amp)
    history: dict = {"total": [], "cls": [], "box": [], "centerness": [], "epoch_seconds": []}
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    history, first_epoch = load_training_state(checkpoint_path, resume, run, model.config, device, parts, history)

    for epoch in range(first_epoch, epochs):
        epoch_start = time.perf_counter()
        model.train()
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(num_train_images, generator=generator)
        batches = order.split(batch_size)
        bar = progress_bar(batches, progress, f"FCOS epoch {epoch + 1}/{epochs}")
        for batch in bar:
            images = data["images"][batch].to(device).float().div_(255)  # [B, 3, S, S]
            targets = [data["targets"][j] for j in batch.tolist()]
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                outputs = model(images)
            total, cls_loss, box_loss, centerness_loss = fcos_loss(outputs, targets)
            optimizer_step(total, model, optimizer, scaler, scheduler)
            for key, value in (("total", total), ("cls", cls_loss), ("box", box_loss),
                               ("centerness", centerness_loss)):
                history[key].append(float(value.detach()))
            if progress:
                bar.set_postfix(loss=f"{history['total'][-1]:.3f}", refresh=False)
        history["epoch_seconds"].append(time.perf_counter() - epoch_start)
        save_training_state(checkpoint_path, parts, epoch + 1, history, model.config, run)

    history.update(render_seconds=render_seconds, train_seconds=float(sum(history["epoch_seconds"])),
                   device=str(device))
    return model.eval(), history


def evaluate_fcos(model: FCOS, num_test_images: int = 200, split: str = "test", seed: int = 0) -> dict:
    """COCO box AP (our :func:`coco_evaluate`) on the first ``num_test_images`` canvases of ``split``.

    Returns {"stats": the 12 COCO numbers (AP, AP50, AP75, APs/m/l, AR1/10/100, ARs/m/l), "per_class_ap":
    {digit: {"AP", "AP50"}}, "seconds_per_image": mean wall time of :func:`fcos_detect` one image at a time,
    "images", "detections"}.
    """
    model.eval()
    device = next(model.parameters()).device
    return evaluate_on_canvases(lambda index, image: fcos_detect(model, image[None].to(device))[0], device,
                                num_test_images, split, seed)


def main(argv: list[str] | None = None) -> dict:
    """Train, evaluate and (with --ship) save the shipped FCOS: ``python -m lectures_code.detection.fcos``."""
    from lectures_code.detection import training_cli

    parser = training_cli.detector_parser(main.__doc__, "fcos", num_train_images=4000, epochs=14, lr=2e-3,
                                          batch_size=16, threads=1, record="docs/data/lecture14_detectors.json")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    model, history = train_fcos(args.num_train_images, args.epochs, args.lr, args.batch_size, args.device, args.seed,
                                args.checkpoint_path, progress=True, resume=not args.no_resume)
    evaluation = evaluate_fcos(model.to("cpu"), args.num_test_images)
    subset = evaluate_fcos(model, 40)  # the subset that tests/detection/test_fcos.py checks

    record = {
        "model": "FCOS",
        **training_cli.run_info("lectures_code.detection.fcos", args, argv),
        "epochs": args.epochs,
        "steps": len(history["total"]),
        "render_seconds": round(history["render_seconds"], 1),
        "train_seconds": round(history["train_seconds"], 1),
        "first_loss": {k: round(sum(history[k][:20]) / 20, 4) for k in ("total", "cls", "box", "centerness")},
        "final_loss": {k: round(sum(history[k][-20:]) / 20, 4) for k in ("total", "cls", "box", "centerness")},
        "test_images": args.num_test_images,
        "test": training_cli.named_stats(evaluation["stats"]),
        "per_class_ap": training_cli.rounded_per_class(evaluation["per_class_ap"]),
        "test_first_40": training_cli.named_stats(subset["stats"]),
        "seconds_per_test_image (cpu, batch 1)": round(evaluation["seconds_per_image"], 4),
        "settings": {"strides": list(STRIDES), "scale_ranges_px": [[lo, str(hi)] for lo, hi in SCALE_RANGES],
                     "center_sampling_radius": CENTER_SAMPLING_RADIUS, "score_threshold": 0.05,
                     "topk_per_level": 1000, "nms_threshold": 0.6, "max_detections": 100,
                     "focal_alpha": 0.25, "focal_gamma": 2.0, "batch_size": args.batch_size, "lr": args.lr,
                     "parameters": sum(p.numel() for p in model.parameters()), **model.config},
    }
    if args.ship:
        training_cli.ship("fcos", model, model.config, args, record)
    print(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
