"""Our Faster R-CNN / FCOS / RetinaNet next to torchvision's own detector classes, built and trained the same way.

Run: ``python benchmarks/torchvision_detectors.py [--models faster_rcnn fcos retinanet] [--step-time-only]``.
Writes lectures_code/results/benchmarks/torchvision_detectors.json and .md (a ``--step-time-only`` run updates only the
step-time fields of the models it ran and keeps the rest).

torchvision's ``FasterRCNN`` / ``FCOS`` / ``RetinaNet`` get OUR backbone (and, for the one-stage models, our
feature pyramid, wrapped to return an OrderedDict of levels), our anchors (torchvision's ``AnchorGenerator``
with our sizes and ratios), and every setting of the shipped records in lectures_code/results/lecture14_detectors.json:
sampling sizes, pre/post-NMS top-n, IoU thresholds, box-coder weights, RoI Align 7x7 with sampling ratio 2
(``MultiScaleRoIAlign`` on the single level), center-sampling radius, score threshold, top-k, NMS. Their
``GeneralizedRCNNTransform`` does not resize (min_size = max_size = 128, ``_skip_resize`` in training; the
eval-time "resize" has scale 1 and is the identity) and normalizes exactly like our models: Faster R-CNN
feeds ``images - 0.5`` to its backbone (mean 0.5, std 1), FCOS the raw [0, 1] images (mean 0, std 1).

Labels: Faster R-CNN's softmax keeps 0 for background, so torchvision gets digit + 1 and its detections
are mapped back; FCOS / RetinaNet use one sigmoid per class, so the digit 0..9 is the class column itself.

The torchvision models are trained by OUR training loop (``lectures_code.training.fit``) on our training set
(``CanvasDetectionSet``) with the recipe of our shipped run (epochs, batch size, AdamW, lr, weight decay 1e-4,
warm-up + cosine schedule, gradient clipping at 10, seed, per-epoch shuffling; no augmentation, ours has none):
:class:`TorchvisionTwin` only maps the labels. They are evaluated with our ``coco_evaluate``
(``digit_coco_ap``) on the first 200 test canvases, one image at a time, next to our shipped checkpoint.

Step time: one training step (forward, the losses, backward, clipping, AdamW, scheduler) of ours and of
torchvision's, built from the same seed, alternating on the same batches in this process; median over
``--repeats`` steps after ``--warmup`` steps, at 1 and at 2 threads. Training runs on 1 thread.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
import torchvision
from torchvision.models.detection import FCOS as TorchvisionFCOS
from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN
from torchvision.models.detection import RetinaNet as TorchvisionRetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.fcos import FCOSClassificationHead, FCOSHead, FCOSRegressionHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.rpn import RPNHead as TorchvisionRPNHead
from torchvision.ops import MultiScaleRoIAlign

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lectures_code import registry, results  # noqa: E402
from lectures_code.data.digit_canvases import CanvasDetectionSet, DigitCanvases  # noqa: E402
from lectures_code.detection import backbones  # noqa: E402
from lectures_code.detection import faster_rcnn as ours_faster_rcnn  # noqa: E402
from lectures_code.detection import fcos as ours_fcos  # noqa: E402
from lectures_code.detection.evaluation import digit_coco_ap  # noqa: E402
from lectures_code.metrics.coco_eval import named_stats  # noqa: E402
from lectures_code.progress import progress_bar  # noqa: E402
from lectures_code.training import Recipe, fit, optimizer_step, warmup_cosine  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "lectures_code" / "results" / "benchmarks"  # package data
IMAGE_SIZE = 128  # DigitCanvases are 128 x 128
MODELS = ("faster_rcnn", "fcos", "retinanet")
TITLES = {"faster_rcnn": "Faster R-CNN", "fcos": "FCOS", "retinanet": "RetinaNet"}


# ------------------------------------------------------------------------------------------------
# Faster R-CNN: torchvision's FasterRCNN on our stride-8 backbone


# --8<-- [start:torchvision_faster_rcnn]
def torchvision_faster_rcnn(config: dict | None = None, seed: int = 0) -> TorchvisionFasterRCNN:
    """torchvision's ``FasterRCNN`` with our backbone and every setting of our ``FasterRCNN(**config)``.

    ``config`` is ``FasterRCNN.config()`` (default: our defaults, the shipped model's). The box predictor
    is initialised like ours (normal std 0.01 / 0.001, zero bias; torchvision's default is PyTorch's
    uniform init). It predicts deltas for 11 classes (background included) where ours predicts 10: the
    background rows are never trained or used. Expects labels 1..10 (digit + 1); images in [0, 1].
    """
    config = config or ours_faster_rcnn.FasterRCNN().config()
    channels, num_classes = config["channels"], config["num_classes"]
    torch.manual_seed(seed)  # our constructor's order: backbone, RPN head, box head
    backbone = backbones.small_backbone(channels)  # [B, 3, 128, 128] -> [B, C, 16, 16]
    backbone.out_channels = channels
    anchor_generator = TorchvisionAnchorGenerator((tuple(config["anchor_sizes"]),),
                                                  (tuple(config["anchor_ratios"]),))
    rpn_head = TorchvisionRPNHead(channels, anchor_generator.num_anchors_per_location()[0])
    box_head = TwoMLPHead(channels * 7 * 7, 256)
    predictor = FastRCNNPredictor(256, num_classes + 1)
    nn.init.normal_(predictor.cls_score.weight, std=0.01)
    nn.init.normal_(predictor.bbox_pred.weight, std=0.001)
    nn.init.zeros_(predictor.cls_score.bias)
    nn.init.zeros_(predictor.bbox_pred.bias)
    train_pre, test_pre = config["rpn_pre_nms_top_n"]
    train_post, test_post = config["rpn_post_nms_top_n"]
    return TorchvisionFasterRCNN(
        backbone, num_classes=None,
        min_size=IMAGE_SIZE, max_size=IMAGE_SIZE, image_mean=[0.5] * 3, image_std=[1.0] * 3, _skip_resize=True,
        rpn_anchor_generator=anchor_generator, rpn_head=rpn_head,
        rpn_pre_nms_top_n_train=train_pre, rpn_pre_nms_top_n_test=test_pre,
        rpn_post_nms_top_n_train=train_post, rpn_post_nms_top_n_test=test_post,
        rpn_nms_thresh=0.7, rpn_fg_iou_thresh=0.7, rpn_bg_iou_thresh=0.3,
        rpn_batch_size_per_image=config["rpn_batch_size_per_image"], rpn_positive_fraction=0.5,
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),  # scale 1/8 from the sizes
        box_head=box_head, box_predictor=predictor,
        box_score_thresh=config["score_threshold"], box_nms_thresh=config["nms_threshold"],
        box_detections_per_img=config["max_detections"], box_fg_iou_thresh=0.5, box_bg_iou_thresh=0.5,
        box_batch_size_per_image=config["box_batch_size_per_image"], box_positive_fraction=0.25,
        bbox_reg_weights=ours_faster_rcnn.BOX_WEIGHTS,
    )
# --8<-- [end:torchvision_faster_rcnn]


def faster_rcnn_weights_for_torchvision(ours: ours_faster_rcnn.FasterRCNN) -> dict:
    """Our Faster R-CNN's state_dict renamed for :func:`torchvision_faster_rcnn` (background deltas zero)."""
    state = ours.state_dict()
    renamed = {k: v for k, v in state.items() if k.startswith("backbone.")}
    for ours_name, tv_name in (("rpn_head.conv", "rpn.head.conv.0.0"), ("rpn_head.objectness", "rpn.head.cls_logits"),
                               ("rpn_head.deltas", "rpn.head.bbox_pred"), ("box_head.fc1", "roi_heads.box_head.fc6"),
                               ("box_head.fc2", "roi_heads.box_head.fc7"),
                               ("box_head.class_logits", "roi_heads.box_predictor.cls_score")):
        for leaf in ("weight", "bias"):
            renamed[f"{tv_name}.{leaf}"] = state[f"{ours_name}.{leaf}"]
    deltas_weight, deltas_bias = state["box_head.deltas.weight"], state["box_head.deltas.bias"]  # [40, 256], [40]
    renamed["roi_heads.box_predictor.bbox_pred.weight"] = torch.cat([deltas_weight.new_zeros(4, 256), deltas_weight])
    renamed["roi_heads.box_predictor.bbox_pred.bias"] = torch.cat([deltas_bias.new_zeros(4), deltas_bias])
    return renamed


# ------------------------------------------------------------------------------------------------
# FCOS / RetinaNet: our backbone + feature pyramid, as the OrderedDict torchvision's one-stage models want


class PyramidBackbone(nn.Module):
    """Our ``Backbone`` then our ``FeaturePyramid``: images -> OrderedDict {"p3", "p4", "p5"} of [B, C, H_k, W_k]."""

    def __init__(self, body: nn.Module, fpn: nn.Module, out_channels: int):
        super().__init__()
        self.body, self.fpn, self.out_channels = body, fpn, out_channels

    def forward(self, images: torch.Tensor) -> OrderedDict:
        levels = self.fpn(self.body(images))
        return OrderedDict((f"p{3 + k}", level) for k, level in enumerate(levels))


def torchvision_fcos(config: dict | None = None, seed: int = 0) -> TorchvisionFCOS:
    """torchvision's ``FCOS`` with our backbone, FPN and the settings of our ``FCOS(**config)``.

    Our scale ranges are (2 s, 4 s) per level where torchvision's rule is (4 a, 8 a) for an anchor of size
    a; ours reaches them by handing its matcher half strides and twice the radius, and so does this model:
    anchors of size s / 2 (centred on the same points x * s, y * s) and center_sampling_radius 3.0, i.e. 1.5
    real strides. torchvision's regression head is relu(x) * a (``BoxLinearCoder``), ours exp(scale_k x) * s:
    the one deliberate difference, as the head is torchvision's own. Its towers get our depth (``num_convs``)
    and GroupNorm groups (16; torchvision's default 32). Labels are the digits 0..9.
    """
    config = config or ours_fcos.FCOS().config()
    channels, num_classes, num_convs = config["fpn_channels"], config["num_classes"], config["num_convs"]
    half_strides = tuple(s // 2 for s in ours_fcos.STRIDES)
    ranges = [(0 if k == 0 else 4 * a, math.inf if k == len(half_strides) - 1 else 8 * a)
              for k, a in enumerate(half_strides)]
    if ranges != [(lo, hi) for lo, hi in ours_fcos.SCALE_RANGES]:
        raise AssertionError(f"half-stride anchors give scale ranges {ranges}, ours are {ours_fcos.SCALE_RANGES}")
    torch.manual_seed(seed)  # our constructor's order: backbone, FPN, head
    backbone = PyramidBackbone(backbones.Backbone(), backbones.FeaturePyramid(backbones.Backbone.channels, channels),
                               channels)
    anchor_generator = TorchvisionAnchorGenerator(tuple((a,) for a in half_strides), ((1.0,),) * len(half_strides))
    head = FCOSHead(channels, 1, num_classes, num_convs)
    norm_layer = partial(nn.GroupNorm, 16)
    head.classification_head = FCOSClassificationHead(channels, 1, num_classes, num_convs, norm_layer=norm_layer)
    head.regression_head = FCOSRegressionHead(channels, 1, num_convs, norm_layer=norm_layer)
    return TorchvisionFCOS(
        backbone, num_classes, min_size=IMAGE_SIZE, max_size=IMAGE_SIZE, image_mean=[0.0] * 3, image_std=[1.0] * 3,
        _skip_resize=True, anchor_generator=anchor_generator, head=head,
        center_sampling_radius=2 * ours_fcos.CENTER_SAMPLING_RADIUS, score_thresh=0.05, nms_thresh=0.6,
        detections_per_img=100, topk_candidates=1000,
    )


def fcos_weights_for_torchvision(ours: ours_fcos.FCOS) -> dict:
    """Our FCOS's state_dict renamed for :func:`torchvision_fcos` (all but the per-level ``scales``).

    The box branch's weights carry over but not its meaning (exp(scale x) s vs relu(x) s / 2): only the
    classification and centerness outputs of the two models agree.
    """
    renamed = {}
    for name, value in ours.state_dict().items():
        if name.startswith("backbone."):
            renamed["backbone.body." + name.removeprefix("backbone.")] = value
        elif name.startswith("fpn."):
            renamed["backbone." + name] = value
        elif name.startswith("head.cls_tower."):
            renamed["head.classification_head.conv." + name.removeprefix("head.cls_tower.")] = value
        elif name.startswith("head.box_tower."):
            renamed["head.regression_head.conv." + name.removeprefix("head.box_tower.")] = value
        elif name.startswith("head.cls_logits."):
            renamed["head.classification_head." + name.removeprefix("head.")] = value
        elif name.startswith("head.box_distances."):
            renamed["head.regression_head.bbox_reg." + name.removeprefix("head.box_distances.")] = value
        elif name.startswith("head.centerness."):
            renamed["head.regression_head.bbox_ctrness." + name.removeprefix("head.centerness.")] = value
    return renamed


def torchvision_retinanet(config: dict, seed: int = 0) -> TorchvisionRetinaNet:
    """torchvision's ``RetinaNet`` on our backbone + FPN with the settings of our ``RetinaNet(**config)``.

    Same anchors (sizes per level, ratios), matcher 0.5 / 0.4 with low-quality matches, box weights
    (1, 1, 1, 1), L1 (or GIoU) box loss, score threshold, top-k, NMS, detections per image. torchvision's
    head has 4 convs per subnet: it keeps our ``num_convs`` and gets our GroupNorm(16) (its convs then
    have no bias, ours do: 64 parameters per conv). Labels are the digits 0..9.
    """
    from lectures_code.detection import retinanet as ours_retinanet

    channels, num_classes = config["fpn_channels"], config["num_classes"]
    sizes = tuple(tuple(level) for level in config["anchor_sizes"])
    ratios = (tuple(config["anchor_ratios"]),) * len(sizes)
    torch.manual_seed(seed)  # our constructor's order: backbone, FPN, head
    backbone = PyramidBackbone(backbones.Backbone(), backbones.FeaturePyramid(backbones.Backbone.channels, channels),
                               channels)
    anchor_generator = TorchvisionAnchorGenerator(sizes, ratios)
    head = RetinaNetHead(channels, anchor_generator.num_anchors_per_location()[0], num_classes,
                         norm_layer=partial(nn.GroupNorm, 16))
    for subnet in (head.classification_head, head.regression_head):
        subnet.conv = subnet.conv[: config["num_convs"]]
    head.regression_head._loss_type = config["box_loss"]
    return TorchvisionRetinaNet(
        backbone, num_classes, min_size=IMAGE_SIZE, max_size=IMAGE_SIZE, image_mean=[0.0] * 3, image_std=[1.0] * 3,
        _skip_resize=True, anchor_generator=anchor_generator, head=head,
        fg_iou_thresh=ours_retinanet.FOREGROUND_IOU, bg_iou_thresh=ours_retinanet.BACKGROUND_IOU,
        score_thresh=config["score_threshold"], nms_thresh=config["nms_threshold"],
        topk_candidates=config["topk_candidates"], detections_per_img=config["max_detections"],
    )


# ------------------------------------------------------------------------------------------------
# One detector of ours and its torchvision twin, behind the same small interface


class TorchvisionTwin(nn.Module):
    """A torchvision detector behind our models' contract, so that our loop trains it: in train mode
    ``forward(images, targets)`` returns its dict of losses, in eval mode the detections with digit labels.
    torchvision's label = digit + ``label_offset`` (1 where class 0 is its background)."""

    def __init__(self, detector: nn.Module, key: str, label_offset: int):
        super().__init__()
        self.detector, self.key, self.label_offset = detector, key, label_offset

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None):
        if self.training:
            shifted = [{"boxes": t["boxes"], "labels": t["labels"] + self.label_offset} for t in targets]
            return self.detector(list(images), shifted)
        return [{"boxes": r["boxes"], "scores": r["scores"], "labels": r["labels"] - self.label_offset}
                for r in self.detector(list(images))]

    def config(self) -> dict:
        return {"twin": self.key}


@dataclass
class Pair:
    """What the benchmark needs of one detector: builders, a loss dict per batch, detections per image.

    Losses take float images [B, 3, 128, 128] in [0, 1] and targets {"boxes" xyxy float [G, 4], "labels" digits
    int64 [G]}; detect takes one image [1, 3, 128, 128] and returns {"boxes", "scores", "labels" digits}.
    """

    key: str  # in the results file: faster_rcnn, fcos, retinanet
    build_torchvision: Callable  # (config, seed) -> torchvision's detector with our settings
    label_offset: int  # torchvision label = digit + label_offset

    @property
    def entry(self):
        return registry.get(self.key.replace("_", "-"))

    def build_ours(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return self.entry.build()

    def build_twin(self, seed: int) -> TorchvisionTwin:
        detector = self.build_torchvision(self.entry.build().config(), seed)
        return TorchvisionTwin(detector, self.key, self.label_offset)

    @staticmethod
    def ours_losses(model, images, targets) -> dict:
        return model(images, targets)

    @staticmethod
    def ours_detect(model, image) -> dict:
        return model.predict(image)[0]

    @staticmethod
    def torchvision_losses(twin, images, targets) -> dict:
        return twin(images, targets)

    @staticmethod
    def torchvision_detect(twin, image) -> dict:
        return twin(image)[0]


def faster_rcnn_pair() -> Pair:
    return Pair("faster_rcnn", lambda config, seed: torchvision_faster_rcnn(config, seed), label_offset=1)


def fcos_pair() -> Pair:
    return Pair("fcos", lambda config, seed: torchvision_fcos(config, seed), label_offset=0)


def retinanet_pair() -> Pair:
    return Pair("retinanet", lambda config, seed: torchvision_retinanet(config, seed), label_offset=0)


def shared_parameter_counts(key: str, ours: nn.Module, theirs: nn.Module) -> dict:
    """Parameters per part of the two models: {part: [ours, torchvision]}."""
    theirs = theirs.detector if isinstance(theirs, TorchvisionTwin) else theirs

    def count(*modules) -> int:
        return sum(p.numel() for m in modules for p in (m.parameters() if isinstance(m, nn.Module) else [m]))

    if key == "faster_rcnn":
        parts = {"backbone": (ours.backbone, theirs.backbone), "rpn_head": (ours.rpn_head, theirs.rpn.head),
                 "box_head_fc": ((ours.box_head.fc1, ours.box_head.fc2), (theirs.roi_heads.box_head,)),
                 "box_predictor": ((ours.box_head.class_logits, ours.box_head.deltas),
                                   (theirs.roi_heads.box_predictor,))}
    else:
        parts = {"backbone": (ours.backbone, theirs.backbone.body), "fpn": (ours.fpn, theirs.backbone.fpn),
                 "head": (ours.head, theirs.head)}
    counts = {}
    for name, (a, b) in parts.items():
        a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
        counts[name] = [count(*a), count(*b)]
    counts["total"] = [count(ours), count(theirs)]
    return counts


# ------------------------------------------------------------------------------------------------
# Training both the same way: our recipe, our training set, our loop


def recipe_of(pair: Pair, record: dict) -> tuple[Recipe, int]:
    """The recipe of a shipped run (the registry's, with the record's images, epochs, lr, batch size) and its seed."""
    seed = re.search(r"--seed[ =](\d+)", record["command"])
    recipe = pair.entry.recipe.with_options(num_train_images=record["train_images"], epochs=record["epochs"],
                                            lr=record["settings"]["lr"], batch_size=record["settings"]["batch_size"])
    return recipe, int(seed.group(1)) if seed else 0


def make_optimizer(model: nn.Module, recipe: Recipe, steps_per_epoch: int):
    """The loop's optimizer and schedule for the whole run of ``recipe`` (AdamW, warm-up + cosine)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    return optimizer, warmup_cosine(optimizer, recipe.epochs * steps_per_epoch)


NO_AMP = torch.amp.GradScaler("cuda", enabled=False)  # a disabled scaler: plain backward and step


def train_step(losses_fn: Callable, model, optimizer, scheduler, images, targets) -> dict:
    """One step as the loop takes it (for the step-time comparison): losses, their sum, ``optimizer_step``."""
    losses = losses_fn(model, images, targets)
    total = sum(losses.values())
    optimizer_step(total, model, optimizer, NO_AMP, scheduler)  # our update, clipping included
    return {k: float(v.detach()) for k, v in losses.items()} | {"total": float(total.detach())}


def train_torchvision(pair: Pair, recipe: Recipe, seed: int, data: CanvasDetectionSet,
                      checkpoint_path: Path | None = None) -> tuple[nn.Module, dict]:
    """Train the torchvision twin with our loop and recipe; returns (twin in eval mode, {"train_seconds", ...}).

    With ``checkpoint_path`` the loop saves after every epoch and a rerun resumes from it."""
    twin = pair.build_twin(seed)
    history = fit(twin, data, recipe, seed=seed, checkpoint_path=checkpoint_path, desc=f"torchvision {pair.key}")
    names = [k for k, v in history.items() if isinstance(v, list) and k != "epoch_seconds"]
    final = {k: round(statistics.fmean(history[k][-50:]), 4) for k in names}
    return twin, {"train_seconds": round(history["train_seconds"], 1), "steps": history["steps"], "final_loss": final}


# ------------------------------------------------------------------------------------------------
# Timing and evaluation


def median_step_ms(pair: Pair, recipe: Recipe, seed: int, data: CanvasDetectionSet, threads: int, warmup: int,
                   repeats: int) -> dict:
    """Median training-step time of ours and torchvision's (same seed, same batches, alternating who goes first)."""
    torch.set_num_threads(threads)
    batches = data.batches(0, recipe.batch_size, seed)
    ours, theirs = pair.build_ours(seed).train(), pair.build_twin(seed).train()
    runners = {"ours": (pair.ours_losses, ours, *make_optimizer(ours, recipe, len(batches))),
               "torchvision": (pair.torchvision_losses, theirs, *make_optimizer(theirs, recipe, len(batches)))}
    times = {"ours": [], "torchvision": []}
    for step, batch in enumerate(batches[: warmup + repeats]):
        collated = data.collate(batch, torch.device("cpu"))
        batch_images, batch_targets = collated["images"], collated["targets"]
        for name in (("ours", "torchvision") if step % 2 == 0 else ("torchvision", "ours")):
            torch.manual_seed(step)  # the same sampler draws for both
            start = time.perf_counter()
            train_step(*runners[name], batch_images, batch_targets)
            if step >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    ours_ms, tv_ms = statistics.median(times["ours"]), statistics.median(times["torchvision"])
    return {"ours_ms": round(ours_ms, 2), "torchvision_ms": round(tv_ms, 2), "ratio": round(ours_ms / tv_ms, 3)}


def profile_steps(pair: Pair, recipe: Recipe, seed: int, data: CanvasDetectionSet, steps: int = 5,
                  rows: int = 25) -> dict:
    """torch.profiler tables (self CPU time) of a few training steps of ours and of torchvision's, 1 thread."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    tables = {}
    batches = [data.collate(b, torch.device("cpu")) for b in data.batches(0, recipe.batch_size, seed)[: steps + 2]]
    for name in ("ours", "torchvision"):
        model = (pair.build_ours if name == "ours" else pair.build_twin)(seed).train()
        losses_fn = pair.ours_losses if name == "ours" else pair.torchvision_losses
        optimizer, scheduler = make_optimizer(model, recipe, steps + 2)
        for batch in batches[:2]:  # warm-up
            train_step(losses_fn, model, optimizer, scheduler, batch["images"], batch["targets"])
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in batches[2:]:
                train_step(losses_fn, model, optimizer, scheduler, batch["images"], batch["targets"])
        tables[name] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
        print(f"--- profile of {steps} steps, {name} {pair.key} ---\n{tables[name]}", flush=True)
    return tables


@torch.no_grad()
def evaluate_pair(pair: Pair, ours: nn.Module, theirs: nn.Module, num_test_images: int) -> dict:
    """Both models on the first test canvases one image at a time, alternating: COCO AP and median latency."""
    torch.set_num_threads(1)
    ours.eval(), theirs.eval()
    dataset = DigitCanvases("test", size=num_test_images, seed=0)
    detections = {"ours": [], "torchvision": []}
    times = {"ours": [], "torchvision": []}
    runners = {"ours": partial(pair.ours_detect, ours), "torchvision": partial(pair.torchvision_detect, theirs)}
    for index in progress_bar(range(num_test_images), True, f"evaluate {pair.key}"):
        image = dataset[index][0][None]  # [1, 3, 128, 128] in [0, 1], as our evaluate functions
        for name in (("ours", "torchvision") if index % 2 == 0 else ("torchvision", "ours")):
            start = time.perf_counter()
            result = runners[name](image)
            times[name].append((time.perf_counter() - start) * 1e3)
            for box, score, label in zip(result["boxes"].tolist(), result["scores"].tolist(),
                                         result["labels"].tolist()):
                x1, y1, x2, y2 = box
                detections[name].append({"image_id": index, "category_id": int(label) + 1,
                                         "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    return {name: {"infer_ms": round(statistics.median(times[name]), 2),
                   "test": named_stats(digit_coco_ap(dataset, detections[name])["stats"]),
                   "detections": len(detections[name])} for name in detections}


# ------------------------------------------------------------------------------------------------
# Report


def environment() -> dict:
    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2)}


def _fmt(value, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def write_results(results: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "torchvision_detectors.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| model | threads | our step ms | torchvision step ms | ratio | our infer ms | tv infer ms "
             "| our AP | tv AP | our AP50 | tv AP50 |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key in MODELS:
        row = results["models"].get(key)
        if row is None:
            continue
        for threads in ("1", "2"):
            step = row.get("step", {}).get(threads)
            if step is None:
                continue
            ours, tv = row.get("ours", {}), row.get("torchvision", {})
            show = threads == "1"  # latency and AP once per model (measured on 1 thread)
            cells = [TITLES[key], threads, _fmt(step["ours_ms"]), _fmt(step["torchvision_ms"]), f"{step['ratio']:.2f}",
                     _fmt(ours.get("infer_ms") if show else None), _fmt(tv.get("infer_ms") if show else None),
                     _fmt(ours.get("AP") if show else None, 3), _fmt(tv.get("AP") if show else None, 3),
                     _fmt(ours.get("AP50") if show else None, 3), _fmt(tv.get("AP50") if show else None, 3)]
            lines.append("| " + " | ".join(cells) + " |")
    env = results["environment"]
    lines += ["", results["note"].format(**env)]
    for key, row in results["models"].items():
        if "transplant" in row:
            t = row["transplant"]
            lines.append(f"\n{TITLES[key]}: torchvision's pipeline running OUR shipped weights gives AP {t['AP']:.3f} "
                         f"/ AP50 {t['AP50']:.3f} (ours {row['ours']['AP']:.3f} / {row['ours']['AP50']:.3f}).")
    for key in results.get("skipped", {}):
        lines.append(f"\n{TITLES[key]}: skipped ({results['skipped'][key]}).")
    (RESULTS / "torchvision_detectors.md").write_text("\n".join(lines) + "\n")


NOTE = (
    "Machine: {cpu}, {cpu_count} cores shared with other jobs (load average {load_average_1min} at the end); "
    "torch {torch}, torchvision {torchvision}. Step = forward + losses + backward + gradient clipping + AdamW + "
    "scheduler on a training batch (Faster R-CNN 8 images, FCOS and RetinaNet 16), ours and torchvision's "
    "built from the same seed and alternating on the same batches in one process; median of {repeats} steps "
    "after {warmup} warm-up steps, at 1 and 2 threads; ratio = ours / torchvision. Infer = median ms per test "
    "canvas, batch 1, 1 thread. AP / AP50 = our coco_evaluate on the first 200 test canvases (ours: the shipped "
    "checkpoint, which reproduces its record; torchvision: trained here on 1 thread). Held identical: backbone "
    "(+ FPN), anchors, image size 128 without resizing and the same input normalization, RPN / box sampling "
    "sizes, pre/post-NMS top-n, IoU thresholds, box weights, RoI Align 7x7 sampling ratio 2, center sampling and "
    "scale ranges, score threshold, top-k, NMS, training images, epochs, batch size, AdamW, lr, weight decay, "
    "warm-up + cosine, clipping, seed. Not identical (torchvision's own classes): its FCOS regresses "
    "relu(x) * s/2 where ours does exp(scale x) * s; its Faster R-CNN predicts deltas for the background class "
    "too (1,028 unused parameters) and drops boxes under 1e-3 / 1e-2 px where ours drops those under 1 px; its "
    "RetinaNet head's convs have no bias before GroupNorm (64 parameters each). A --step-time-only run replaces "
    "only the step columns, so they may come from a later (quieter) run than the latency and AP columns; each "
    "ours / torchvision pair is always timed in the same run."
)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--step-time-only", action="store_true", help="time training steps; no training or AP")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--num-test-images", type=int, default=200)
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables of a few steps")
    parser.add_argument("--checkpoint-dir", default=str(Path.home() / ".cache" / "lectures_code"),
                        help="per-epoch training state of the torchvision models (a rerun resumes)")
    args = parser.parse_args(argv)

    records = results.read("lecture14_detectors")
    path = RESULTS / "torchvision_detectors.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    report.setdefault("models", {})
    skipped = {}
    for key in args.models:
        pair = {"faster_rcnn": faster_rcnn_pair, "fcos": fcos_pair, "retinanet": retinanet_pair}[key]()
        recipe, seed = recipe_of(pair, records[key])
        print(f"== {TITLES[key]}: recipe {recipe}, seed {seed}", flush=True)
        data = CanvasDetectionSet("train", recipe.num_train_images, seed, progress=True)
        row = report["models"].setdefault(key, {})
        row["recipe"] = recipe.as_dict() | {"seed": seed}
        row["parameters"] = shared_parameter_counts(key, pair.build_ours(0), pair.build_twin(0))
        row["step"] = {str(t): median_step_ms(pair, recipe, seed, data, t, args.warmup, args.repeats)
                       for t in (1, 2)}
        print(f"   step ms {row['step']}", flush=True)
        if args.profile:
            row["profile"] = profile_steps(pair, recipe, seed, data)
        if args.step_time_only:
            continue

        torch.set_num_threads(1)
        theirs, training = train_torchvision(pair, recipe, seed, data,
                                              Path(args.checkpoint_dir) / f"torchvision_{key}_train.pt")
        ours = registry.load_pretrained(pair.entry.name)
        evaluation = evaluate_pair(pair, ours, theirs, args.num_test_images)
        record = records[key]
        if evaluation["ours"]["test"]["AP"] != record["test"]["AP"]:
            print(f"WARNING our {key} AP here {evaluation['ours']['test']['AP']} != record {record['test']['AP']}")
        row["ours"] = {"infer_ms": evaluation["ours"]["infer_ms"], "AP": record["test"]["AP"],
                       "AP50": record["test"]["AP50"], "AP_recomputed": evaluation["ours"]["test"]["AP"],
                       "train_seconds": record["train_seconds"], "steps": record["steps"]}
        row["torchvision"] = {"infer_ms": evaluation["torchvision"]["infer_ms"],
                              "AP": evaluation["torchvision"]["test"]["AP"],
                              "AP50": evaluation["torchvision"]["test"]["AP50"],
                              "test": evaluation["torchvision"]["test"], **training}
        row["AP_difference"] = round(row["ours"]["AP"] - row["torchvision"]["AP"], 4)
        if key == "faster_rcnn":  # the same weights through both inference pipelines
            twin = TorchvisionTwin(torchvision_faster_rcnn(ours.config()), key, pair.label_offset)
            twin.detector.load_state_dict(faster_rcnn_weights_for_torchvision(ours))
            transplant = evaluate_pair(pair, ours, twin, args.num_test_images)["torchvision"]
            row["transplant"] = {"AP": transplant["test"]["AP"], "AP50": transplant["test"]["AP50"],
                                 "infer_ms": transplant["infer_ms"]}
        print(f"   {json.dumps(row)}", flush=True)
        report["models"][key] = row

    # Re-read: another run (other --models) may have written its rows meanwhile.
    latest = json.loads(path.read_text()) if path.is_file() else {}
    report = latest | {"models": latest.get("models", {}) | {k: report["models"][k] for k in args.models
                                                             if k in report["models"] and k not in skipped}}
    report["skipped"] = {k: v for k, v in (latest.get("skipped", {}) | skipped).items()
                         if k not in report["models"] or k in skipped}
    report["environment"] = environment() | {"warmup": args.warmup, "repeats": args.repeats}
    report["note"] = NOTE
    write_results(report)
    return report


if __name__ == "__main__":
    main()
