"""Tests of RetinaNet (lectures_code/detection/retinanet.py).

Oracles: torchvision's RetinaNet pieces fed the SAME inputs: ``AnchorGenerator`` (anchors),
``RetinaNetHead`` (output layout, and ``compute_loss`` with matches from its own ``Matcher(0.5, 0.4, True)``),
``RetinaNet.postprocess_detections`` (inference). Labels are digits 0..9 on both sides: torchvision's
RetinaNet has no background class either, its label 0 is an ordinary class.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.retinanet import RetinaNet as TVRetinaNet
from torchvision.models.detection.retinanet import RetinaNetHead as TVRetinaNetHead

from lectures_code.data.digit_canvases import render_canvases
from lectures_code.detection.evaluation import evaluate_detector
from lectures_code.detection.retinanet import (
    ANCHOR_RATIOS,
    ANCHOR_SIZES,
    STRIDES,
    RetinaNet,
    RetinaNetHead,
    match_anchors,
    retinanet_loss,
    retinanet_postprocess,
)

NUM_CLASSES = 10


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a busy 2-core machine two threads per op run several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _anchors(size: int = 128, device="cpu") -> tuple[torch.Tensor, list[int]]:
    model_anchors = RetinaNet().anchor_generator
    grids = [(size // s, size // s) for s in STRIDES]
    anchors = model_anchors((size, size), grids, torch.float32, device)
    return anchors, [h * w * 9 for h, w in grids]


def _random_targets(num_images: int, generator: torch.Generator, device) -> list[dict]:
    """Random boxes of 10-70 px on a 128 canvas; the second image has none."""
    targets = []
    for i in range(num_images):
        count = 0 if i == 1 else int(torch.randint(1, 6, (), generator=generator))
        xy = torch.rand(count, 2, generator=generator) * 100
        wh = torch.rand(count, 2, generator=generator) * 60 + 10
        boxes = torch.cat((xy, (xy + wh).clamp(max=128)), 1)
        labels = torch.randint(0, NUM_CLASSES, (count,), generator=generator)
        targets.append({"boxes": boxes.to(device), "labels": labels.to(device)})
    return targets


def _torchvision_matches(anchors, targets) -> list[torch.Tensor]:
    # As torchvision's RetinaNet.compute_loss: an image without boxes is all background.
    matcher = Matcher(0.5, 0.4, allow_low_quality_matches=True)
    return [torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device) if t["boxes"].numel() == 0
            else matcher(torchvision.ops.box_iou(t["boxes"], anchors)) for t in targets]


# ---------------------------------------------------------------------------------------------
# anchors and head


def test_anchor_sizes_follow_torchvision_rule():
    # torchvision: (x, int(x 2^(1/3)), int(x 2^(2/3))) for x in 32..512; here x in 16, 32, 64.
    assert ANCHOR_SIZES == tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in (16, 32, 64))
    assert ANCHOR_SIZES == ((16, 20, 25), (32, 40, 50), (64, 80, 101))


@pytest.mark.parametrize("height, width", [(128, 128), (96, 160)])
def test_anchors_equal_torchvision(device, height, width):
    model = RetinaNet().to(device)
    outputs = model.head_outputs(torch.rand(2, 3, height, width, device=device))
    feature_maps = [torch.zeros(2, 1, height // s, width // s, device=device) for s in STRIDES]
    image_list = ImageList(torch.zeros(2, 3, height, width, device=device), [(height, width)] * 2)
    reference = TVAnchorGenerator(ANCHOR_SIZES, (ANCHOR_RATIOS,) * 3)(image_list, feature_maps)
    for ref in reference:
        torch.testing.assert_close(outputs["anchors"], ref, rtol=0, atol=0)
    assert outputs["num_anchors_per_level"] == [(height // s) * (width // s) * 9 for s in STRIDES]
    assert outputs["cls_logits"].shape == (2, outputs["anchors"].shape[0], NUM_CLASSES)
    assert outputs["box_deltas"].shape == (2, outputs["anchors"].shape[0], 4)


def test_head_layout_equals_torchvision():
    """torchvision's head with our convolutions plugged in must give our outputs: same anchor/class layout."""
    torch.manual_seed(0)
    ours = RetinaNetHead(channels=16, num_anchors=9, num_classes=NUM_CLASSES, num_convs=2)
    for p in ours.parameters():  # random weights, so a permutation of the layout would show
        nn.init.normal_(p)
    reference = TVRetinaNetHead(16, 9, NUM_CLASSES)
    reference.classification_head.conv, reference.classification_head.cls_logits = ours.cls_subnet, ours.cls_logits
    reference.regression_head.conv, reference.regression_head.bbox_reg = ours.box_subnet, ours.box_deltas
    features = [torch.randn(2, 16, 8, 6), torch.randn(2, 16, 4, 3), torch.randn(2, 16, 2, 2)]
    cls_logits, box_deltas = ours(features)
    expected = reference(features)
    torch.testing.assert_close(cls_logits, expected["cls_logits"], rtol=0, atol=0)
    torch.testing.assert_close(box_deltas, expected["bbox_regression"], rtol=0, atol=0)


def test_initial_class_probability_is_the_prior(device):
    torch.manual_seed(0)
    outputs = RetinaNet().to(device).head_outputs(torch.rand(2, 3, 128, 128, device=device))
    probabilities = outputs["cls_logits"].sigmoid()
    assert torch.allclose(probabilities.mean(), torch.tensor(0.01, device=device), atol=0.003)


# ---------------------------------------------------------------------------------------------
# loss


@pytest.mark.parametrize("box_loss", ["l1", "giou"])
@pytest.mark.parametrize("seed", range(4))
def test_loss_equals_torchvision(device, seed, box_loss):
    generator = torch.Generator().manual_seed(seed)
    anchors, _ = _anchors(device=device)
    targets = _random_targets(3, generator, device)
    cls_logits = (torch.randn(3, anchors.shape[0], NUM_CLASSES, generator=generator) * 2 - 3).to(device)
    box_deltas = (torch.randn(3, anchors.shape[0], 4, generator=generator) * 0.3).to(device)
    cls_logits.requires_grad_(True)
    box_deltas.requires_grad_(True)

    matched = _torchvision_matches(anchors, targets)
    for ours_matched, ref_matched in zip([match_anchors(anchors, t["boxes"]) for t in targets], matched):
        torch.testing.assert_close(ours_matched, ref_matched, rtol=0, atol=0)
    assert any((m == -2).any() for m in matched) and any((m >= 0).any() for m in matched)

    ours = retinanet_loss(cls_logits, box_deltas, anchors, targets, box_loss=box_loss)
    head = TVRetinaNetHead(8, 9, NUM_CLASSES).to(device)
    head.regression_head._loss_type = box_loss
    expected = head.compute_loss(targets, {"cls_logits": cls_logits, "bbox_regression": box_deltas},
                                 [anchors] * 3, matched)
    for ours_key, ref_key in (("classification", "classification"), ("bbox_regression", "bbox_regression")):
        torch.testing.assert_close(ours[ours_key], expected[ref_key], rtol=1e-5, atol=1e-6)
    # and the same gradients
    ours_grads = torch.autograd.grad(ours["classification"] + ours["bbox_regression"], (cls_logits, box_deltas))
    ref_grads = torch.autograd.grad(expected["classification"] + expected["bbox_regression"],
                                    (cls_logits, box_deltas))
    for a, b in zip(ours_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)


def test_loss_without_any_object():
    anchors, _ = _anchors()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    cls_logits = torch.randn(2, anchors.shape[0], NUM_CLASSES, requires_grad=True)
    box_deltas = torch.randn(2, anchors.shape[0], 4, requires_grad=True)
    losses = retinanet_loss(cls_logits, box_deltas, anchors, [empty, empty])
    expected = TVRetinaNetHead(8, 9, NUM_CLASSES).compute_loss(
        [empty, empty], {"cls_logits": cls_logits, "bbox_regression": box_deltas}, [anchors] * 2,
        _torchvision_matches(anchors, [empty, empty]))
    torch.testing.assert_close(losses["classification"], expected["classification"])
    assert losses["bbox_regression"] == 0 and losses["classification"] > 0
    (losses["classification"] + losses["bbox_regression"]).backward()
    assert box_deltas.grad.abs().sum() == 0


def test_model_train_mode_returns_the_loss_of_its_outputs():
    torch.manual_seed(0)
    images, targets = render_canvases("train", 3)
    images = images.float() / 255
    model = RetinaNet().train()
    losses = model(images, targets)
    assert set(losses) == {"classification", "bbox_regression"}
    torch.manual_seed(0)
    reference_model = RetinaNet().train()
    outputs = reference_model.head_outputs(images)
    expected = retinanet_loss(outputs["cls_logits"], outputs["box_deltas"], outputs["anchors"], targets)
    for key in losses:
        torch.testing.assert_close(losses[key], expected[key])
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# inference


@pytest.mark.parametrize("settings", [(0.05, 1000, 0.5, 100), (0.3, 50, 0.3, 20)])
@pytest.mark.parametrize("seed", range(3))
def test_postprocess_equals_torchvision(device, seed, settings):
    score_threshold, topk, nms_threshold, max_detections = settings
    generator = torch.Generator().manual_seed(seed)
    anchors, per_level = _anchors(device=device)
    cls_logits = (torch.randn(2, anchors.shape[0], NUM_CLASSES, generator=generator) * 2 - 3.5).to(device)
    cls_logits[1] = -20.0  # an image without a single score over the threshold
    box_deltas = (torch.randn(2, anchors.shape[0], 4, generator=generator) * 0.3).to(device)
    ours = retinanet_postprocess(cls_logits, box_deltas, anchors, per_level, (128, 128), score_threshold, topk,
                                 nms_threshold, max_detections)

    backbone = nn.Conv2d(3, 8, 1)
    backbone.out_channels = 8
    anchor_generator = TVAnchorGenerator(ANCHOR_SIZES, (ANCHOR_RATIOS,) * 3)
    reference = TVRetinaNet(backbone, NUM_CLASSES, anchor_generator=anchor_generator,
                            score_thresh=score_threshold, nms_thresh=nms_threshold,
                            detections_per_img=max_detections, topk_candidates=topk).to(device)
    split = {"cls_logits": list(cls_logits.split(per_level, 1)),
             "bbox_regression": list(box_deltas.split(per_level, 1))}
    expected = reference.postprocess_detections(split, [list(anchors.split(per_level))] * 2, [(128, 128)] * 2)
    for mine, theirs in zip(ours, expected):
        assert mine["boxes"].shape[0] == theirs["boxes"].shape[0] <= max_detections
        # up to the order among equal scores: sort both by (score, label)
        order_mine = torch.argsort(mine["scores"] * 100 + mine["labels"], descending=True, stable=True)
        order_theirs = torch.argsort(theirs["scores"] * 100 + theirs["labels"], descending=True, stable=True)
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(mine[key][order_mine], theirs[key][order_theirs], rtol=1e-6, atol=1e-5)
    assert ours[0]["boxes"].shape[0] > 0 and ours[1]["boxes"].shape[0] == 0


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_inputs_raise():
    model = RetinaNet()
    with pytest.raises(ValueError):
        model(torch.rand(3, 128, 128))
    with pytest.raises(ValueError):
        model(torch.rand(1, 3, 100, 128))
    with pytest.raises(TypeError):
        model(torch.zeros(1, 3, 128, 128, dtype=torch.uint8))
    model.train()
    image = torch.rand(1, 3, 128, 128)
    with pytest.raises(ValueError, match="target"):
        model(image)
    good = torch.tensor([[10.0, 10.0, 40.0, 50.0]])
    for bad in ({"boxes": good, "labels": torch.tensor([10])},  # not a digit
                {"boxes": good, "labels": torch.tensor([1, 2])},  # one label per box
                {"boxes": torch.tensor([[10.0, 10.0, 10.0, 50.0]]), "labels": torch.tensor([3])},  # zero width
                {"boxes": good[0], "labels": torch.tensor([3])}):  # not [G, 4]
        with pytest.raises(ValueError):
            model(image, [bad])
    with pytest.raises(ValueError):
        RetinaNet(box_loss="smooth_l2")
    anchors, per_level = _anchors()
    logits, deltas = torch.zeros(1, anchors.shape[0], NUM_CLASSES), torch.zeros(1, anchors.shape[0], 4)
    target = [{"boxes": good, "labels": torch.tensor([3])}]
    with pytest.raises(ValueError):
        retinanet_loss(logits, deltas[:, :-1], anchors, target)
    with pytest.raises(ValueError):
        retinanet_loss(logits, deltas, anchors, target * 2)
    with pytest.raises(ValueError):
        retinanet_loss(logits, deltas, anchors, target, box_loss="iou")
    with pytest.raises(ValueError):
        retinanet_postprocess(logits, deltas, anchors, per_level, (128, 128), score_threshold=1.5)
    with pytest.raises(ValueError):
        retinanet_postprocess(logits, deltas, anchors, per_level[:-1], (128, 128))
    with pytest.raises(ValueError):
        evaluate_detector(model.eval(), 0)
