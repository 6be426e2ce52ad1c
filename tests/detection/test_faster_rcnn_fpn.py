"""Faster R-CNN + FPN: pyramid, per-level proposals and multi-scale RoI Align against torchvision, losses,
bad input, determinism, training, the shipped checkpoint and its AP."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops import box_iou as tv_box_iou

from lectures_code.data.digit_canvases import render_canvases
from lectures_code.detection.faster_rcnn_fpn import (
    FasterRCNNFPN,
    PyramidBackbone,
    multiscale_roi_align,
    select_proposals_per_level,
)

LOSS_NAMES = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
CHECKPOINT = "faster_rcnn_fpn_digits"


@pytest.fixture(scope="module")
def canvases():
    return render_canvases("train", 4, seed=0)


def _batch(canvases, device, n=2):
    images, targets = canvases
    return (images[:n].to(device).float() / 255,
            [{k: v.to(device) for k, v in t.items()} for t in targets[:n]])


def _random_boxes(n: int, g: torch.Generator, dtype=torch.float32, extent: float = 128.0) -> torch.Tensor:
    """Boxes of every size from 0 to ~1.4 x the image, some partly outside it."""
    centres = torch.rand(n, 2, generator=g, dtype=torch.float64) * (extent + 20) - 10
    sides = torch.exp(torch.rand(n, 2, generator=g, dtype=torch.float64) * math.log(180.0))  # 1 .. 180 px
    sides[: n // 10] = 0.0  # zero-area boxes: log2(0) = -inf, must go to the finest level
    return torch.cat([centres - sides / 2, centres + sides / 2], dim=1).to(dtype)


# ---------------------------------------------------------------------------------------------
# Feature pyramid


@pytest.mark.parametrize("size", [(128, 128), (96, 160)])
def test_pyramid_shapes(size, device):
    torch.manual_seed(0)
    backbone = PyramidBackbone(channels=32).to(device)
    features = backbone(torch.rand(2, 3, *size, device=device))
    assert [tuple(f.shape) for f in features] == [(2, 32, size[0] // s, size[1] // s) for s in (8, 16, 32)]
    assert all(f.device.type == device and f.dtype == torch.float32 for f in features)


def test_top_down_pass_matches_torchvision_fpn():
    torch.manual_seed(0)
    pyramid = PyramidBackbone(channels=64).fpn
    reference = FeaturePyramidNetwork(list(PyramidBackbone.c_channels), 64)  # oracle
    for ours, theirs in ((pyramid.lateral, reference.inner_blocks), (pyramid.smooth, reference.layer_blocks)):
        for our_conv, their_block in zip(ours, theirs):
            their_block[0].load_state_dict(our_conv.state_dict())
    g = torch.Generator().manual_seed(1)
    c = [torch.randn(2, ch, 16 // 2**i, 20 // 2**i, generator=g) for i, ch in enumerate(PyramidBackbone.c_channels)]
    expected = reference(OrderedDict(zip("345", c)))
    for ours, theirs in zip(pyramid(c), expected.values()):
        torch.testing.assert_close(ours, theirs)


# ---------------------------------------------------------------------------------------------
# Multi-scale RoI Align


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("canonical_scale", "canonical_level"), [(48, 4), (224, 4), (32, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_multiscale_roi_align_matches_torchvision(seed, canonical_scale, canonical_level, dtype, device):
    g = torch.Generator().manual_seed(seed)
    size = (128, 128) if seed % 2 == 0 else (96, 160)
    features = [torch.randn(3, 6, size[0] // s, size[1] // s, generator=g, dtype=dtype).to(device) for s in (8, 16, 32)]
    boxes = [_random_boxes(40, g, dtype).to(device), _random_boxes(0, g, dtype).to(device),
             _random_boxes(25, g, dtype).to(device)]  # an image without boxes in the middle
    ours = multiscale_roi_align(features, boxes, size, 7, 2, canonical_scale, canonical_level)
    oracle = MultiScaleRoIAlign(["p3", "p4", "p5"], 7, 2, canonical_scale=canonical_scale,
                                canonical_level=canonical_level)
    expected = oracle(OrderedDict(zip(["p3", "p4", "p5"], features)), boxes, [size] * 3)
    assert ours.shape == (65, 6, 7, 7) and ours.dtype == dtype
    tolerance = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(ours, expected, atol=tolerance, rtol=0)


def test_multiscale_roi_align_picks_the_level_by_box_size():
    # Map k is the constant k: the pooled value tells which level a box was read from.
    features = [torch.full((1, 1, 128 // 2**k, 128 // 2**k), float(k), dtype=torch.float64) for k in (3, 4, 5)]
    sides = torch.tensor([0.0, 5.0, 23.9, 47.9, 48.0, 95.9, 96.0, 128.0], dtype=torch.float64)
    boxes = torch.stack([torch.zeros_like(sides), torch.zeros_like(sides), sides, sides], dim=1)
    pooled = multiscale_roi_align(features, [boxes], (128, 128), 2, 2, canonical_scale=48, canonical_level=4)
    # k = floor(4 + log2(side / 48)) clamped to [3, 5]: < 48 px -> P3, 48..96 -> P4, >= 96 -> P5.
    expected = torch.tensor([3.0, 3.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0], dtype=torch.float64)
    torch.testing.assert_close(pooled[:, 0, 0, 0], expected)  # bilinear weights sum to 1 up to rounding
    features = [f.clone().requires_grad_() for f in features]
    multiscale_roi_align(features, [boxes], (128, 128), 2, 2).sum().backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in features)


def test_multiscale_roi_align_rejects_bad_input():
    features = [torch.zeros(2, 4, 16, 16), torch.zeros(2, 4, 8, 8)]
    boxes = [torch.zeros(1, 4), torch.zeros(1, 4)]
    with pytest.raises(TypeError):
        multiscale_roi_align(features[0], boxes, (128, 128))
    with pytest.raises(ValueError):
        multiscale_roi_align([features[0], torch.zeros(2, 5, 8, 8)], boxes, (128, 128))  # channels differ
    with pytest.raises(ValueError):
        multiscale_roi_align(features, boxes[:1], (128, 128))  # one box list per image


# ---------------------------------------------------------------------------------------------
# Per-level proposal selection


@pytest.mark.parametrize("seed", range(6))
def test_select_proposals_per_level_matches_torchvision(seed):
    g = torch.Generator().manual_seed(seed)
    model = FasterRCNNFPN()
    grids = [(16, 16), (8, 8), (4, 4)] if seed % 2 == 0 else [(12, 20), (6, 10), (3, 5)]
    image_size = (grids[0][0] * 8, grids[0][1] * 8)
    anchors = model.anchor_generator(image_size, grids)
    num_anchors_per_level = [h * w * 3 for h, w in grids]
    objectness = torch.randn(2, len(anchors), generator=g)
    deltas = torch.randn(2, len(anchors), 4, generator=g) * 0.5
    deltas[:, :30, 2:] = -6.0  # tiny boxes: removed by min_size
    pre_nms_top_n, post_nms_top_n = (100, 80) if seed < 3 else (30, 1000)  # P5 (48 anchors) cut or kept whole

    # Oracle: torchvision's RPN filter_proposals on torchvision-decoded boxes, eval mode, min_size 1.
    rpn = RegionProposalNetwork(None, None, 0.7, 0.3, 256, 0.5, {"training": pre_nms_top_n, "testing": pre_nms_top_n},
                                {"training": post_nms_top_n, "testing": post_nms_top_n}, 0.7).eval()
    rpn.min_size = 1.0
    decoded = torch.stack([BoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(deltas[i], anchors) for i in range(2)])
    expected_boxes, expected_scores = rpn.filter_proposals(decoded, objectness, [image_size] * 2, num_anchors_per_level)

    level_of_anchor = torch.repeat_interleave(torch.arange(3), torch.tensor(num_anchors_per_level))
    for i in range(2):
        boxes, scores, levels = select_proposals_per_level(anchors, objectness[i], deltas[i], num_anchors_per_level,
                                                           image_size, pre_nms_top_n, post_nms_top_n)
        torch.testing.assert_close(boxes, expected_boxes[i])
        torch.testing.assert_close(scores, expected_scores[i])
        # Independent checks: every level is represented, NMS only acts within a level.
        assert set(levels.tolist()) == {0, 1, 2}
        same_level = levels[:, None] == levels[None, :]
        iou = tv_box_iou(boxes, boxes).fill_diagonal_(0)
        assert bool((iou[same_level] <= 0.7 + 1e-6).all())
        for level in range(3):  # the level is that of the proposal's anchor: re-find it by its score
            level_scores = objectness[i, level_of_anchor == level].sigmoid()
            close = torch.isclose(scores[levels == level, None], level_scores[None, :], rtol=0, atol=1e-6)
            assert bool(close.any(dim=1).all())


def test_select_proposals_per_level_rejects_bad_input():
    anchors = torch.zeros(10, 4)
    with pytest.raises(ValueError, match="sum"):
        select_proposals_per_level(anchors, torch.zeros(10), torch.zeros(10, 4), [6, 3], (32, 32), 5, 5)
    with pytest.raises(ValueError):
        select_proposals_per_level(anchors, torch.zeros(9), torch.zeros(10, 4), [6, 4], (32, 32), 5, 5)


# ---------------------------------------------------------------------------------------------
# The detector


def test_forward_returns_four_finite_losses(canvases, device):
    torch.manual_seed(0)
    model = FasterRCNNFPN().to(device).train()
    images, targets = _batch(canvases, device)
    losses = model(images, targets)
    assert set(losses) == LOSS_NAMES
    for name, value in losses.items():
        value = float(value.detach())
        assert math.isfinite(value) and value >= 0, name
    sum(losses.values()).backward()
    for part in (model.backbone.stage3, model.backbone.stage5, model.backbone.fpn, model.rpn_head, model.box_head):
        assert all(p.grad is not None for p in part.parameters())


def test_propose_gives_levels_and_keeps_mode(canvases):
    torch.manual_seed(0)
    model = FasterRCNNFPN().train()
    images, _ = _batch(canvases, "cpu")
    proposals = model.propose(images)
    assert model.training  # propose() must not leave the model in eval mode
    for result in proposals:
        n = len(result["boxes"])
        assert 0 < n <= model.rpn_post_nms_top_n[1]
        assert result["scores"].shape == result["levels"].shape == result["roi_levels"].shape == (n,)
        assert set(result["levels"].tolist()) <= {3, 4, 5} and set(result["roi_levels"].tolist()) <= {3, 4, 5}
        assert bool((result["scores"][:-1] >= result["scores"][1:]).all())


def test_bad_input_raises(canvases):
    model = FasterRCNNFPN().train()
    images, targets = _batch(canvases, "cpu")
    with pytest.raises(ValueError, match="target"):
        model(images)
    with pytest.raises(ValueError):
        model(images, [{"boxes": torch.zeros(2, 3), "labels": torch.zeros(2, dtype=torch.int64)}] * 2)
    with pytest.raises(ValueError):
        model(images[:, :2], targets)
    with pytest.raises(TypeError):
        model.eval()(images.to(torch.uint8))
    with pytest.raises(ValueError, match="multiples of 32"):
        model.eval()(images[..., :120])
    with pytest.raises(ValueError, match="one anchor size per level"):
        FasterRCNNFPN(anchor_sizes=(16, 32))


def test_config_round_trip_and_determinism(canvases):
    torch.manual_seed(0)
    model = FasterRCNNFPN(channels=64, roi_canonical_scale=32)
    assert FasterRCNNFPN(**model.config()).config() == model.config()
    torch.manual_seed(0)
    again = FasterRCNNFPN(**model.config())
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    images, targets = _batch(canvases, "cpu")
    results = []
    for m in (model, again):
        torch.manual_seed(5)  # the samplers' randomness
        with torch.no_grad():
            results.append({k: float(v) for k, v in m.train()(images, targets).items()})
    assert results[0] == results[1]
