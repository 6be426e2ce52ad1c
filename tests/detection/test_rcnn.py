"""R-CNN pipeline: targets, sampler, loss, inference format, training/resume, shipped checkpoint and its AP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou as tv_box_iou

from lectures_code import registry
from lectures_code.data.digit_canvases import DigitCanvases
from lectures_code.detection import rcnn
from lectures_code.detection.rcnn import (
    BOX_WEIGHTS,
    RCNN,
    build_targets,
    detect,
    proposals_for,
    rcnn_loss,
    sample_minibatches,
)
from lectures_code.ops.box_coding import decode_boxes


def random_boxes(generator: torch.Generator, n: int, size: float = 128.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * size * 0.8
    wh = torch.rand(n, 2, generator=generator) * size * 0.4 + 4
    return torch.cat([xy, xy + wh], dim=1)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("proposals")


@pytest.fixture(scope="module")
def shipped():
    return registry.load_pretrained("rcnn")


# ---------------------------------------------------------------------------------------------
# Targets


@pytest.mark.parametrize("seed", range(5))
def test_build_targets_labels_follow_iou(seed):
    g = torch.Generator().manual_seed(seed)
    proposals, gt = random_boxes(g, 200), random_boxes(g, 3)
    gt_labels = torch.randint(0, 10, (3,), generator=g)
    regions, labels, box_targets = build_targets(proposals, gt, gt_labels)

    iou = tv_box_iou(regions, gt)  # oracle
    best, match = iou.max(dim=1)
    assert bool((best[labels > 0] >= 0.5).all())
    assert bool((best[labels == 0] < 0.3).all())
    assert torch.equal(labels[labels > 0], gt_labels[match[labels > 0]] + 1)
    # ignored proposals (0.3 <= IoU < 0.5) are dropped, every other one is kept
    all_best = tv_box_iou(torch.cat([proposals, gt]), gt).max(dim=1).values
    assert len(regions) == int(((all_best >= 0.5) | (all_best < 0.3)).sum())
    # the ground-truth boxes themselves are positives of their own class (R-CNN adds them)
    for box, label in zip(gt, gt_labels):
        rows = (regions == box).all(dim=1)
        assert rows.any() and bool((labels[rows] == label + 1).all())
    assert bool((box_targets[labels == 0] == 0).all())


@pytest.mark.parametrize("seed", range(5))
def test_box_targets_decode_back_to_gt(seed):
    g = torch.Generator().manual_seed(100 + seed)
    gt = random_boxes(g, 4)
    # proposals near the ground truth, so that there are many positives
    near = gt.repeat(30, 1) + torch.randn(120, 4, generator=g) * 3
    near = torch.cat([torch.minimum(near[:, :2], near[:, 2:] - 2), near[:, 2:]], dim=1)
    regions, labels, box_targets = build_targets(near, gt, torch.arange(4))
    positive = labels > 0
    assert positive.sum() >= 4
    decoded = decode_boxes(box_targets[positive], regions[positive], BOX_WEIGHTS)
    match = tv_box_iou(regions[positive], gt).argmax(dim=1)
    torch.testing.assert_close(decoded, gt[match], atol=1e-3, rtol=0)


def test_build_targets_without_gt_is_all_background():
    proposals = random_boxes(torch.Generator().manual_seed(0), 10)
    regions, labels, _ = build_targets(proposals, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert len(regions) == 10 and bool((labels == 0).all())


# ---------------------------------------------------------------------------------------------
# Sampler


@pytest.mark.parametrize("num_pos, num_neg", [(100, 1000), (33, 40), (5, 500), (64, 10)])
def test_sampler_quarter_positives(num_pos, num_neg):
    g = torch.Generator().manual_seed(0)
    labels = torch.cat([torch.randint(1, 11, (num_pos,), generator=g), torch.zeros(num_neg, dtype=torch.int64)])
    labels = labels[torch.randperm(len(labels), generator=g)]
    batches = sample_minibatches(labels, 128, 0.25, torch.Generator().manual_seed(1))
    assert len(batches) == -(-num_pos // 32)
    for batch in batches:
        assert len(batch) == 128
        assert int((labels[batch] > 0).sum()) == 32
        assert int((labels[batch] == 0).sum()) == 96
    seen = torch.cat(batches)
    assert set(torch.where(labels > 0)[0].tolist()) <= set(seen.tolist())  # every positive is used
    negatives = seen[labels[seen] == 0]
    if len(negatives) <= num_neg:  # enough background: no background crop repeats within an epoch
        assert len(set(negatives.tolist())) == len(negatives)
    again = sample_minibatches(labels, 128, 0.25, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))


def test_sampler_rejects_missing_class():
    with pytest.raises(ValueError):
        sample_minibatches(torch.zeros(10, dtype=torch.int64))
    with pytest.raises(ValueError):
        sample_minibatches(torch.ones(10, dtype=torch.int64), positive_fraction=1.5)


# ---------------------------------------------------------------------------------------------
# Model and loss


def test_model_shapes(device):
    model = RCNN().to(device)
    logits, deltas = model(torch.rand(5, 3, 32, 32, device=device))
    assert logits.shape == (5, 11) and deltas.shape == (5, 10, 4)
    with pytest.raises(ValueError):
        model(torch.rand(5, 3, 48, 48, device=device))


@pytest.mark.parametrize("seed", range(3))
def test_loss_matches_hand_computation(seed, device):
    g = torch.Generator().manual_seed(seed)
    k = 16
    logits = torch.randn(k, 11, generator=g, dtype=torch.float64)
    deltas = torch.randn(k, 10, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 11, (k,), generator=g)
    targets = torch.randn(k, 4, generator=g, dtype=torch.float64)
    total, cls, box = rcnn_loss(logits.to(device), deltas.to(device), labels.to(device), targets.to(device))

    ce = np.mean([-(logits[i, labels[i]] - torch.logsumexp(logits[i], 0)).item() for i in range(k)])
    beta, smooth = 1 / 9, 0.0
    for i in range(k):
        if labels[i] > 0:
            for j in range(4):
                d = abs(deltas[i, labels[i] - 1, j].item() - targets[i, j].item())
                smooth += 0.5 * d * d / beta if d < beta else d - 0.5 * beta
    assert cls.item() == pytest.approx(ce, rel=1e-10)
    assert box.item() == pytest.approx(smooth / k, rel=1e-10)
    assert total.item() == pytest.approx(ce + smooth / k, rel=1e-10)


# ---------------------------------------------------------------------------------------------
# Proposals cache


def test_proposals_are_cached(tmp_path, monkeypatch):
    image, _ = DigitCanvases("val", size=1)[0]
    first = proposals_for(image, "val", 0, cache_dir=tmp_path)
    assert first.dtype == torch.float32 and first.ndim == 2 and 1 <= len(first) <= rcnn.MAX_PROPOSALS
    assert len(list(tmp_path.rglob("*.npz"))) == 1

    def boom(*args, **kwargs):
        raise AssertionError("selective search ran although the proposals were cached")

    monkeypatch.setattr(rcnn, "selective_search", boom)
    assert torch.equal(proposals_for(image, "val", 0, cache_dir=tmp_path), first)
    # another image under the same key is not trusted: it is recomputed
    with pytest.raises(AssertionError, match="cached"):
        proposals_for(1 - image, "val", 0, cache_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# Inference


def test_detect_format_and_nms(shipped, cache_dir):
    dataset = DigitCanvases("test", size=3)
    for index in range(3):
        image, _ = dataset[index]
        proposals = proposals_for(image, "test", index, cache_dir=cache_dir)
        loose = detect(shipped, image, proposals, score_threshold=0.0, nms_threshold=1.0)
        for threshold in (0.3, 0.5):
            out = detect(shipped, image, proposals, score_threshold=0.0, nms_threshold=threshold)
            assert set(out) == {"boxes", "scores", "labels"}
            n = len(out["scores"])
            assert out["boxes"].shape == (n, 4) and out["boxes"].dtype == torch.float32
            assert out["labels"].dtype == torch.int64 and out["scores"].dtype == torch.float32
            assert 1 <= n <= 100
            assert bool((out["scores"][:-1] >= out["scores"][1:]).all())
            assert bool((out["labels"] >= 0).all() and (out["labels"] <= 9).all())
            assert bool((out["boxes"] >= 0).all() and (out["boxes"] <= 128).all())
            assert n <= len(loose["scores"])
            iou = tv_box_iou(out["boxes"], out["boxes"])
            same = out["labels"][:, None] == out["labels"][None, :]
            overlap = (iou > threshold) & same & ~torch.eye(n, dtype=torch.bool)
            assert not overlap.any(), "NMS left two same-class boxes overlapping above the threshold"
        high = detect(shipped, image, proposals, score_threshold=0.9)
        assert bool((high["scores"] >= 0.9).all())


def test_detect_device(shipped, device):
    image, _ = DigitCanvases("test", size=1)[0]
    model = RCNN()
    model.load_state_dict(shipped.state_dict())
    model.to(device)
    proposals = torch.tensor([[10.0, 10.0, 60.0, 70.0], [0.0, 0.0, 128.0, 128.0], [5.0, 5.0, 5.5, 40.0]])
    out = detect(model, image.to(device), proposals.to(device), score_threshold=0.0)
    assert out["boxes"].device.type == torch.device(device).type
    with pytest.raises(ValueError):
        detect(model, image[0], proposals)
    with pytest.raises(ValueError):
        detect(model, image, proposals[:, :3])


# ---------------------------------------------------------------------------------------------
# Shipped checkpoint


def test_logits_softmax_consistency(shipped):
    # detect() scores are softmax probabilities of the digit classes: they sum with background to 1
    image, _ = DigitCanvases("test", size=1)[0]
    box = torch.tensor([[0.0, 0.0, 128.0, 128.0]])
    logits, _ = shipped(rcnn.warp_regions(image, box))
    probabilities = F.softmax(logits, dim=1)[0]
    out = detect(shipped, image, box, score_threshold=0.0, nms_threshold=1.0)
    expected = probabilities[1:][out["labels"]]
    torch.testing.assert_close(out["scores"], expected, atol=1e-6, rtol=0)
