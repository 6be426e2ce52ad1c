"""Tests of the FCOS detector (lectures_code/detection/fcos.py).

Oracles: the loss parts are recomputed by hand from torchvision.ops (sigmoid_focal_loss,
generalized_box_iou_loss) on our targets; the targets with the adapted scale ranges are checked
against a direct brute-force implementation of the FCOS rule; inference NMS against
torchvision.ops.batched_nms.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from lectures_code.data.digit_canvases import DigitCanvases
from lectures_code.detection.fcos import (
    FCOS,
    SCALE_RANGES,
    STRIDES,
    FeaturePyramid,
    assign_targets,
    fcos_loss,
)


def _batch(num_images: int, seed: int = 0):
    dataset = DigitCanvases("train", size=num_images, seed=seed)
    items = [dataset[i] for i in range(num_images)]
    images = torch.stack([image for image, _ in items])
    targets = [{"boxes": t["boxes"], "labels": t["labels"]} for _, t in items]
    return images, targets


def test_fpn_shapes(device):
    fpn = FeaturePyramid((8, 12, 16), out_channels=6).to(device)
    features = [torch.randn(2, 8, 16, 20, device=device), torch.randn(2, 12, 8, 10, device=device),
                torch.randn(2, 16, 4, 5, device=device)]
    outputs = fpn(features)
    assert [tuple(o.shape) for o in outputs] == [(2, 6, 16, 20), (2, 6, 8, 10), (2, 6, 4, 5)]
    # the coarse level reaches the fine one through the top-down path
    features[2].requires_grad_(True)
    fpn(features)[0].sum().backward()
    assert features[2].grad.abs().sum() > 0


def test_model_output_shapes_per_level(device):
    model = FCOS().to(device)
    for size in (128, 96):
        outputs = model.head_outputs(torch.rand(2, 3, size, size, device=device))
        sizes = [(size // s) ** 2 for s in STRIDES]
        num_points = sum(sizes)
        assert outputs["num_points_per_level"] == sizes
        assert outputs["cls_logits"].shape == (2, num_points, 10)
        assert outputs["box_distances"].shape == (2, num_points, 4) and (outputs["box_distances"] > 0).all()
        assert outputs["centerness_logits"].shape == (2, num_points)
        assert outputs["points"].shape == (num_points, 2)
        features = model.features(torch.rand(1, 3, size, size, device=device))
        assert [tuple(f.shape) for f in features] == [(1, 64, size // s, size // s) for s in STRIDES]
    # prior-probability initialisation: every class starts near p = 0.01
    probabilities = outputs["cls_logits"].sigmoid()
    assert torch.allclose(probabilities.mean(), torch.tensor(0.01, device=device), atol=0.005)


def test_model_rejects_bad_images():
    model = FCOS()
    with pytest.raises(ValueError):
        model.head_outputs(torch.rand(3, 128, 128))
    with pytest.raises(ValueError):
        model.head_outputs(torch.rand(1, 3, 100, 128))
    with pytest.raises(TypeError):
        model.head_outputs(torch.zeros(1, 3, 128, 128, dtype=torch.uint8))


@pytest.mark.parametrize("seed", range(5))
def test_targets_follow_adapted_scale_ranges(seed):
    """Brute force: for every point and box, apply the rule with SCALE_RANGES written out directly."""
    generator = torch.Generator().manual_seed(seed)
    model = FCOS()
    outputs = model.head_outputs(torch.rand(1, 3, 128, 128))
    xy = torch.rand(6, 2, generator=generator) * 100
    wh = torch.rand(6, 2, generator=generator) * 60 + 8
    gt = torch.cat((xy, (xy + wh).clamp(max=128)), dim=1)
    matched, box_targets, centerness = assign_targets(outputs, gt)
    points, strides = outputs["points"], outputs["point_strides"]
    levels = torch.repeat_interleave(torch.arange(3), torch.tensor(outputs["num_points_per_level"]))
    areas = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    for p in range(points.shape[0]):
        x, y = points[p].tolist()
        low, high = SCALE_RANGES[int(levels[p])]
        best, best_area = -1, math.inf
        for m, (x1, y1, x2, y2) in enumerate(gt.tolist()):
            ltrb = (x - x1, y - y1, x2 - x, y2 - y)
            near = max(abs(x - (x1 + x2) / 2), abs(y - (y1 + y2) / 2)) < 1.5 * float(strides[p])
            if min(ltrb) > 0 and near and low < max(ltrb) < high and float(areas[m]) < best_area:
                best, best_area = m, float(areas[m])
        assert int(matched[p]) == best
        if best >= 0:
            x1, y1, x2, y2 = gt[best].tolist()
            assert torch.allclose(box_targets[p], torch.tensor([x - x1, y - y1, x2 - x, y2 - y]), atol=1e-4)
            assert 0 < float(centerness[p]) <= 1
        else:
            assert float(centerness[p]) == 0 and (box_targets[p] == 0).all()


@pytest.mark.parametrize("seed", range(3))
def test_loss_parts_match_torchvision(seed):
    torch.manual_seed(seed)
    model = FCOS()
    images, targets = _batch(3, seed)
    outputs = model.head_outputs(images)
    total, cls_loss, box_loss, centerness_loss = fcos_loss(outputs, targets)
    assert all(torch.isfinite(v) for v in (total, cls_loss, box_loss, centerness_loss))

    cls_targets = torch.zeros_like(outputs["cls_logits"])
    pred, gt, ctr_logits, ctr_targets = [], [], [], []
    for i, target in enumerate(targets):
        matched, box_targets, centerness = assign_targets(outputs, target["boxes"])
        fg = matched >= 0
        cls_targets[i, fg, target["labels"][matched[fg]]] = 1
        points = outputs["points"][fg]
        d = outputs["box_distances"][i, fg]
        pred.append(torch.cat((points - d[:, :2], points + d[:, 2:]), 1))
        gt.append(target["boxes"][matched[fg]])
        ctr_logits.append(outputs["centerness_logits"][i, fg])
        ctr_targets.append(centerness[fg])
    num_fg = max(1, int(cls_targets.sum()))
    expected_cls = torchvision.ops.sigmoid_focal_loss(outputs["cls_logits"], cls_targets, reduction="sum") / num_fg
    expected_box = torchvision.ops.generalized_box_iou_loss(torch.cat(pred), torch.cat(gt), reduction="sum") / num_fg
    expected_ctr = F.binary_cross_entropy_with_logits(torch.cat(ctr_logits), torch.cat(ctr_targets),
                                                      reduction="sum") / num_fg
    torch.testing.assert_close(cls_loss, expected_cls, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(box_loss, expected_box, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(centerness_loss, expected_ctr, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(total, cls_loss + box_loss + centerness_loss)


def test_loss_without_objects_is_finite():
    model = FCOS()
    outputs = model.head_outputs(torch.rand(2, 3, 128, 128))
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    total, cls_loss, box_loss, centerness_loss = fcos_loss(outputs, [empty, empty])
    assert torch.isfinite(total) and box_loss == 0 and centerness_loss == 0 and cls_loss > 0
    total.backward()




def test_train_mode_forward_returns_the_three_losses_of_its_outputs():
    images, targets = _batch(2, 0)
    torch.manual_seed(0)
    model = FCOS().train()
    losses = model(images, targets)
    assert list(losses) == ["classification", "bbox_regression", "bbox_ctrness"]
    _, cls_loss, box_loss, centerness_loss = fcos_loss(model.head_outputs(images), targets)
    for value, expected in zip(losses.values(), (cls_loss, box_loss, centerness_loss)):
        torch.testing.assert_close(value, expected)
    with pytest.raises(ValueError, match="target"):
        model(images)
    model.eval()
    detections = model(images)
    assert len(detections) == 2 and set(detections[0]) == {"boxes", "scores", "labels"}
