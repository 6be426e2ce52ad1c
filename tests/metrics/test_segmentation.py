"""Segmentation metrics: hand-worked maps (exact fractions), torchmetrics and sklearn as oracles, a plain
Python loop in the style of the COCO ``panopticapi`` as a second, independent PQ implementation."""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
import sklearn.metrics
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassJaccardIndex
from torchmetrics.detection import PanopticQuality as TorchmetricsPanopticQuality
from torchmetrics.functional.segmentation import mean_iou as torchmetrics_mean_iou

from lectures_code.metrics.segmentation import (
    PanopticCounts,
    PanopticScores,
    confusion_matrix,
    foreground_iou,
    iou_per_class,
    mean_iou,
    panoptic_counts,
    panoptic_quality,
    pixel_accuracy,
)

IGNORE = 255
VOID = -1


def exact(value: float, fraction: Fraction) -> bool:
    """A float64 result against a hand-worked fraction: equal up to the rounding of a few float operations."""
    return value == pytest.approx(float(fraction), rel=1e-15, abs=0)


# ----------------------------------------------------------------------------------------------------
# Semantic segmentation
# ----------------------------------------------------------------------------------------------------

# 3 x 4 maps, 4 classes (class 3 appears nowhere), one ignored pixel at (2, 0) (predicted 2 there).
HAND_TARGET = [[0, 0, 1, 1],
               [0, 2, 2, 1],
               [IGNORE, 2, 2, 0]]
HAND_PRED = [[0, 1, 1, 1],
             [0, 2, 1, 1],
             [2, 2, 0, 0]]
# rows = target, columns = prediction, counted by hand over the 11 kept pixels
HAND_CONFUSION = [[3, 1, 0, 0],
                  [0, 3, 0, 0],
                  [1, 1, 2, 0],
                  [0, 0, 0, 0]]


def test_hand_worked_confusion_and_iou(device):
    target = torch.tensor(HAND_TARGET, device=device)
    pred = torch.tensor(HAND_PRED, device=device)
    confusion = confusion_matrix(pred, target, num_classes=4, ignore_index=IGNORE)
    assert confusion.dtype == torch.int64 and confusion.device.type == device
    assert confusion.tolist() == HAND_CONFUSION
    iou = iou_per_class(confusion)
    # class 0: 3 / (4 + 4 - 3); class 1: 3 / (3 + 5 - 3); class 2: 2 / (4 + 2 - 2); class 3: 0 / 0
    assert exact(iou[0].item(), Fraction(3, 5)) and exact(iou[1].item(), Fraction(3, 5))
    assert exact(iou[2].item(), Fraction(1, 2)) and math.isnan(iou[3].item())
    assert exact(mean_iou(confusion), (Fraction(3, 5) + Fraction(3, 5) + Fraction(1, 2)) / 3)  # 17/30
    assert exact(pixel_accuracy(confusion), Fraction(8, 11))
    # foreground = classes 1..3: 6 pixels foreground in both, 8 in either (11 minus 3 background in both)
    assert exact(foreground_iou(confusion), Fraction(6, 8))


def test_a_class_only_predicted_counts_as_zero():
    target = torch.tensor([[0, 0], [1, 1]])
    pred = torch.tensor([[0, 2], [1, 1]])
    iou = iou_per_class(confusion_matrix(pred, target, num_classes=4))
    assert iou[:3].tolist() == [0.5, 1.0, 0.0] and math.isnan(iou[3].item())
    assert exact(mean_iou(confusion_matrix(pred, target, num_classes=4)), Fraction(1, 2))


def test_everything_ignored_or_empty_gives_nan():
    target = torch.full((2, 3, 3), IGNORE)
    pred = torch.zeros(2, 3, 3, dtype=torch.int64)
    for confusion in (confusion_matrix(pred, target, 5, ignore_index=IGNORE),
                      confusion_matrix(torch.zeros(0, 7, dtype=torch.int64), torch.zeros(0, 7, dtype=torch.int64), 5)):
        assert confusion.shape == (5, 5) and confusion.sum() == 0
        assert torch.isnan(iou_per_class(confusion)).all()
        assert math.isnan(mean_iou(confusion)) and math.isnan(pixel_accuracy(confusion))
        assert math.isnan(foreground_iou(confusion))


def test_foreground_iou_is_nan_only_without_foreground():
    target = torch.zeros(4, 4, dtype=torch.int64)
    assert math.isnan(foreground_iou(confusion_matrix(target, target, 3)))
    pred = target.clone()
    pred[0, 0] = 2  # one false foreground pixel: IoU 0 / 1
    assert foreground_iou(confusion_matrix(pred, target, 3)) == 0.0
    assert foreground_iou(confusion_matrix(pred, target, 3), background=2) == pytest.approx(15 / 16, abs=1e-15)


def random_label_maps(seed: int, num_classes: int = 11, shape=(6, 24, 20), ignore_fraction: float = 0.1):
    """Label maps drawn from a random subset of the classes (so some are absent), prediction = target with
    a random fraction of pixels relabelled, and some target pixels ignored."""
    gen = torch.Generator().manual_seed(seed)
    used = torch.randperm(num_classes, generator=gen)[: int(torch.randint(2, num_classes + 1, (1,), generator=gen))]
    target = used[torch.randint(len(used), shape, generator=gen)]
    noise = torch.rand(shape, generator=gen) < torch.rand(1, generator=gen)
    pred = torch.where(noise, used[torch.randint(len(used), shape, generator=gen)], target)
    if torch.rand(1, generator=gen) < 0.5:  # sometimes predict a class the target never has
        pred[0, 0, 0] = int(torch.randint(num_classes, (1,), generator=gen))
    target = torch.where(torch.rand(shape, generator=gen) < ignore_fraction, IGNORE, target)
    return pred, target


@pytest.mark.parametrize("seed", range(12))
def test_random_maps_match_torchmetrics_and_sklearn(seed, device):
    num_classes = 11
    pred, target = random_label_maps(seed, num_classes)
    confusion = confusion_matrix(pred.to(device), target.to(device), num_classes, ignore_index=IGNORE)
    assert confusion.device.type == device
    confusion = confusion.cpu()
    # the matrix itself: integers, exactly
    reference = MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE)(pred, target)
    assert torch.equal(confusion, reference.long())
    kept = target != IGNORE
    t, p = target[kept].numpy(), pred[kept].numpy()
    assert torch.equal(confusion, torch.from_numpy(sklearn.metrics.confusion_matrix(t, p, labels=range(num_classes))))
    # mIoU over the classes that occur: sklearn in float64 (labels=None: the classes present in t or p)
    assert mean_iou(confusion) == pytest.approx(sklearn.metrics.jaccard_score(t, p, average="macro"), abs=1e-10)
    sklearn_iou = sklearn.metrics.jaccard_score(t, p, average=None, labels=range(num_classes), zero_division=0)
    occurs = ~torch.isnan(iou_per_class(confusion))
    assert iou_per_class(confusion)[occurs].numpy() == pytest.approx(sklearn_iou[occurs.numpy()], abs=1e-10)
    # torchmetrics computes the same in float32
    jaccard = MulticlassJaccardIndex(num_classes, average="macro", ignore_index=IGNORE)(pred, target)
    assert mean_iou(confusion) == pytest.approx(jaccard.item(), rel=1e-6)
    accuracy = MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE)(pred, target)
    assert pixel_accuracy(confusion) == pytest.approx(sklearn.metrics.accuracy_score(t, p), abs=1e-10)
    assert pixel_accuracy(confusion) == pytest.approx(accuracy.item(), rel=1e-6)
    assert foreground_iou(confusion) == pytest.approx(sklearn.metrics.jaccard_score(t != 0, p != 0), abs=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_per_image_iou_matches_torchmetrics_mean_iou(seed):
    """torchmetrics' segmentation.mean_iou scores each image on its own (-1 = class absent from both)."""
    num_classes = 7
    pred, target = random_label_maps(seed, num_classes, ignore_fraction=0.0)
    reference = torchmetrics_mean_iou(pred, target, num_classes=num_classes, per_class=True, input_format="index")
    reference_mean = torchmetrics_mean_iou(pred, target, num_classes=num_classes, input_format="index")
    for image in range(len(pred)):
        confusion = confusion_matrix(pred[image], target[image], num_classes)
        ours = iou_per_class(confusion).nan_to_num(-1.0)
        assert ours.float() == pytest.approx(reference[image], rel=1e-6)
        assert mean_iou(confusion) == pytest.approx(reference_mean[image].item(), rel=1e-6)


def test_confusion_matrices_of_batches_add_up(device):
    pred, target = random_label_maps(3)
    pred, target = pred.to(device), target.to(device)
    whole = confusion_matrix(pred, target, 11, ignore_index=IGNORE)
    parts = sum(confusion_matrix(pred[i], target[i], 11, ignore_index=IGNORE) for i in range(len(pred)))
    assert torch.equal(whole, parts)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.int64])
def test_any_integer_dtype(dtype):
    pred, target = random_label_maps(5, ignore_fraction=0.0)
    expected = confusion_matrix(pred, target, 11)
    assert torch.equal(confusion_matrix(pred.to(dtype), target.to(dtype), 11), expected)


@pytest.mark.parametrize(("pred", "target", "kwargs", "error", "message"), [
    (torch.zeros(2, 3, dtype=torch.int64), torch.zeros(3, 2, dtype=torch.int64), {}, ValueError, "differ in shape"),
    (torch.zeros(2, 3, dtype=torch.int64), torch.zeros(1, 2, 3, dtype=torch.int64), {}, ValueError, "differ in shape"),
    (torch.tensor([[0, -1]]), torch.tensor([[0, 1]]), {}, ValueError, r"pred has labels outside 0\.\.2: \[-1\]"),
    (torch.tensor([[0, 1]]), torch.tensor([[0, -2]]), {}, ValueError, r"target has labels outside 0\.\.2: \[-2\]"),
    (torch.tensor([[0, 3]]), torch.tensor([[0, 1]]), {}, ValueError, r"pred has labels outside 0\.\.2: \[3\]"),
    (torch.tensor([[0, 1]]), torch.tensor([[0, 7]]), {}, ValueError, r"target has labels outside .* \[7\]"),
    (torch.tensor([[0, 1]]), torch.tensor([[0, 7]]), {"ignore_index": IGNORE}, ValueError, "ignore_index=255"),
    (torch.tensor([[0, IGNORE]]), torch.tensor([[0, 1]]), {"ignore_index": IGNORE}, ValueError, "pred has labels"),
    (torch.tensor([[0, 1]]), torch.tensor([[0, 1]]), {"ignore_index": 2}, ValueError, "is one of the classes"),
    (torch.tensor([[0, 1]]), torch.tensor([[0, 1]]), {"num_classes": 0}, ValueError, "positive int"),
    (torch.tensor([0, 1]), torch.tensor([0, 1]), {}, ValueError, r"\[H, W\] or \[B, H, W\]"),
    (torch.zeros(1, 1, 2, 2, dtype=torch.int64), torch.zeros(1, 1, 2, 2, dtype=torch.int64), {}, ValueError, "shape"),
    (torch.tensor([[0.0, 1.0]]), torch.tensor([[0, 1]]), {}, TypeError, "integer labels"),
    (torch.tensor([[True, False]]), torch.tensor([[0, 1]]), {}, TypeError, "integer labels"),
    ([[0, 1]], torch.tensor([[0, 1]]), {}, TypeError, "torch.Tensor"),
])
def test_bad_semantic_inputs(pred, target, kwargs, error, message):
    kwargs = {"num_classes": 3, **kwargs}
    with pytest.raises(error, match=message):
        confusion_matrix(pred, target, **kwargs)


def test_bad_confusion_and_background():
    with pytest.raises(ValueError, match="square"):
        iou_per_class(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="background=3"):
        foreground_iou(torch.zeros(3, 3), background=3)


# ----------------------------------------------------------------------------------------------------
# Panoptic segmentation: an independent implementation, a plain loop over pixels and segments following
# panopticapi's pq_compute_single_core (gt void = segment None; a pred void pixel belongs to no segment)
# ----------------------------------------------------------------------------------------------------


def reference_counts(pred_cat, pred_inst, gt_cat, gt_inst, things, stuffs, void=VOID):
    """{category: [iou_sum, tp, fp, fn]} for numpy maps [B, H, W], one image at a time."""
    stats = {c: [0.0, 0, 0, 0] for c in set(things) | set(stuffs)}

    def segment(category, instance):  # None = void
        if category == void:
            return None
        return (int(category), int(instance) if category in things else 0)

    for b in range(gt_cat.shape[0]):
        pred_area, gt_area, intersection = Counter(), Counter(), Counter()
        for y in range(gt_cat.shape[1]):
            for x in range(gt_cat.shape[2]):
                p = segment(pred_cat[b, y, x], pred_inst[b, y, x])
                g = segment(gt_cat[b, y, x], gt_inst[b, y, x])
                pred_area[p] += 1
                gt_area[g] += 1
                intersection[g, p] += 1
        gt_matched, pred_matched = set(), set()
        for (g, p), overlap in intersection.items():
            if g is None or p is None or g[0] != p[0]:
                continue
            union = pred_area[p] + gt_area[g] - overlap - intersection.get((None, p), 0)
            iou = overlap / union
            if iou > 0.5:
                # Theorem 1: a segment never takes part in two matches
                assert g not in gt_matched and p not in pred_matched
                gt_matched.add(g)
                pred_matched.add(p)
                stats[g[0]][0] += iou
                stats[g[0]][1] += 1
        for g in gt_area:
            if g is not None and g not in gt_matched:
                stats[g[0]][3] += 1
        for p in pred_area:
            if p is not None and p not in pred_matched and intersection.get((None, p), 0) / pred_area[p] <= 0.5:
                stats[p[0]][2] += 1
    return stats


def reference_average(stats, categories):
    """panopticapi's pq_average: (pq, sq, rq, n) over the categories with TP + FP + FN > 0."""
    pq = sq = rq = 0.0
    n = 0
    for c in categories:
        iou, tp, fp, fn = stats[c]
        if tp + fp + fn == 0:
            continue
        n += 1
        pq += iou / (tp + 0.5 * fp + 0.5 * fn)
        sq += iou / tp if tp != 0 else 0
        rq += tp / (tp + 0.5 * fp + 0.5 * fn)
    return (pq / n, sq / n, rq / n, n) if n else (math.nan, math.nan, math.nan, 0)


def assert_counts_equal(counts: PanopticCounts, stats: dict):
    for i, c in enumerate(counts.categories):
        iou, tp, fp, fn = stats[c]
        assert (counts.true_positives[i].item(), counts.false_positives[i].item(),
                counts.false_negatives[i].item()) == (tp, fp, fn), f"category {c}"
        assert counts.iou_sum[i].item() == pytest.approx(iou, abs=1e-10), f"category {c}"


def random_panoptic_maps(seed, things, stuffs, shape=(3, 20, 24), target_void=True, pred_void=False):
    """(pred, target) as (categories, instances) numpy pairs: stuff regions and thing rectangles; the
    prediction is the target with rectangles moved, relabelled, merged or split, plus pixel noise."""
    rng = np.random.default_rng(seed)
    things, stuffs = sorted(things), sorted(stuffs)
    batch, height, width = shape

    def paint(cat, inst, count, choices, void_too):
        for _ in range(count):
            y, x = rng.integers(0, height), rng.integers(0, width)
            h, w = rng.integers(2, height // 2 + 1), rng.integers(2, width // 2 + 1)
            c = VOID if void_too and rng.random() < 0.15 else int(rng.choice(choices))
            cat[y:y + h, x:x + w] = c
            inst[y:y + h, x:x + w] = rng.integers(0, 4)  # few ids: repeats merge segments

    gt_cat = np.empty(shape, dtype=np.int64)
    gt_inst = np.zeros(shape, dtype=np.int64)
    pred_cat, pred_inst = np.empty_like(gt_cat), np.empty_like(gt_inst)
    for b in range(batch):
        cat, inst = gt_cat[b], gt_inst[b]
        cat[:] = rng.choice(stuffs)
        paint(cat, inst, rng.integers(0, 4), stuffs, target_void)
        paint(cat, inst, rng.integers(0, 6), things, target_void)
        pc, pi = cat.copy(), inst.copy()
        if rng.random() < 0.5:  # shift everything by a pixel or two
            shift = tuple(rng.integers(-2, 3, size=2))
            pc, pi = np.roll(pc, shift, axis=(0, 1)), np.roll(pi, shift, axis=(0, 1))
        paint(pc, pi, rng.integers(0, 5), things + stuffs, pred_void)
        noise = rng.random((height, width)) < rng.uniform(0, 0.3)
        pc[noise] = rng.choice(things + stuffs, size=int(noise.sum()))
        pi[noise] = rng.integers(0, 4, size=int(noise.sum()))
        if not pred_void:
            pc[pc == VOID] = stuffs[0]
        pred_cat[b], pred_inst[b] = pc, pi
    return (pred_cat, pred_inst), (gt_cat, gt_inst)


@contextlib.contextmanager
def float64_division():
    """torchmetrics divides int64 pixel counts (intersection / union), which gives the default float dtype:
    make that float64 while it runs, so that it can be compared to 1e-10."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def torchmetrics_pq(pred, target, things, stuffs, **options):
    """torchmetrics' PanopticQuality on (B, H, W, 2) maps, computed in float64; also returns the metric (its
    per-category counts)."""
    with float64_division():
        metric = TorchmetricsPanopticQuality(things, stuffs, **options)
        metric.update(pred, target)
        return metric.compute(), metric


def to_torchmetrics(cat, inst, void_category):
    """(B, H, W, 2) with void pixels given a category torchmetrics does not know (it treats those as void)."""
    cat = np.where(cat == VOID, void_category, cat)
    return torch.from_numpy(np.stack([cat, inst], axis=-1))


THINGS, STUFFS = {3, 4, 7, 9}, {0, 1, 5}


@pytest.mark.parametrize("seed", range(16))
def test_random_maps_match_torchmetrics(seed, device):
    (pc, pi), (gc, gi) = random_panoptic_maps(seed, THINGS, STUFFS, pred_void=False)
    counts = panoptic_counts((torch.from_numpy(pc).to(device), torch.from_numpy(pi).to(device)),
                             (torch.from_numpy(gc).to(device), torch.from_numpy(gi).to(device)), THINGS, STUFFS)
    assert counts.iou_sum.device.type == device and counts.iou_sum.dtype == torch.float64
    quality = panoptic_quality(counts)
    tm_pred, tm_target = to_torchmetrics(pc, pi, 99), to_torchmetrics(gc, gi, 99)
    per_class, metric = torchmetrics_pq(tm_pred, tm_target, THINGS, STUFFS, return_sq_and_rq=True,
                                        return_per_class=True)  # (C, 3): pq, sq, rq; 0 for an absent category
    # torchmetrics orders categories things first, then stuffs, each ascending
    tm_order = sorted(THINGS) + sorted(STUFFS)
    ours = [counts.categories.index(c) for c in tm_order]
    assert counts.true_positives[ours].tolist() == metric.true_positives.tolist()
    assert counts.false_positives[ours].tolist() == metric.false_positives.tolist()
    assert counts.false_negatives[ours].tolist() == metric.false_negatives.tolist()
    assert counts.iou_sum[ours].cpu().numpy() == pytest.approx(metric.iou_sum.numpy(), abs=1e-10)
    for name, column in (("pq", 0), ("sq", 1), ("rq", 2)):
        value = getattr(quality, name)[ours].cpu()
        occurs = ~torch.isnan(value)
        assert value[occurs].numpy() == pytest.approx(per_class[occurs, column].numpy(), abs=1e-10)
        assert (per_class[~occurs, column] == 0).all()
    expected = torchmetrics_pq(tm_pred, tm_target, THINGS, STUFFS, return_sq_and_rq=True)[0].tolist()
    got = [quality.averages["all"][k] for k in ("pq", "sq", "rq")]
    assert got == pytest.approx(expected, abs=1e-10, nan_ok=True)


@pytest.mark.parametrize("seed", range(16))
def test_random_maps_with_void_match_the_reference_loop(seed, device):
    (pc, pi), (gc, gi) = random_panoptic_maps(seed + 100, THINGS, STUFFS, pred_void=True)
    counts = panoptic_counts(torch.from_numpy(np.stack([pc, pi], -1)).to(device),
                             torch.from_numpy(np.stack([gc, gi], -1)).to(device), THINGS, STUFFS)
    stats = reference_counts(pc, pi, gc, gi, THINGS, STUFFS)
    assert_counts_equal(counts, stats)
    quality = panoptic_quality(counts)
    for name, categories in (("all", THINGS | STUFFS), ("things", THINGS), ("stuff", STUFFS)):
        pq, sq, rq, n = reference_average(stats, categories)
        average = quality.averages[name]
        assert average["n"] == n
        assert [average["pq"], average["sq"], average["rq"]] == pytest.approx([pq, sq, rq], abs=1e-10, nan_ok=True)
    # PQ = SQ x RQ = sum IoU / (TP + FP/2 + FN/2), category by category
    tp, fp, fn = (c.double() for c in (counts.true_positives, counts.false_positives, counts.false_negatives))
    direct = counts.iou_sum / (tp + fp / 2 + fn / 2)
    assert torch.allclose(quality.pq, direct, atol=1e-12, equal_nan=True)
    assert torch.allclose(quality.pq, quality.sq * quality.rq, atol=1e-12, equal_nan=True)


def test_batch_counts_are_the_sum_of_per_image_counts(device):
    (pc, pi), (gc, gi) = random_panoptic_maps(7, THINGS, STUFFS, shape=(5, 16, 16), pred_void=True)
    pred = torch.from_numpy(np.stack([pc, pi], -1)).to(device)
    target = torch.from_numpy(np.stack([gc, gi], -1)).to(device)
    whole = panoptic_counts(pred, target, THINGS, STUFFS)
    parts = panoptic_counts(pred[0], target[0], THINGS, STUFFS)
    for b in range(1, len(pred)):
        parts = parts + panoptic_counts(pred[b], target[b], THINGS, STUFFS)
    for field in ("true_positives", "false_positives", "false_negatives"):
        assert torch.equal(getattr(whole, field), getattr(parts, field))
    assert torch.allclose(whole.iou_sum, parts.iou_sum, atol=1e-12)


# Two hand-worked 4 x 6 images. Stuff: 0, 1; things: 3, 5, 8 (8 never appears); V = void.
V = VOID
HAND_GT_CAT = [[[0, 0, 0, 0, 0, 0],
                [0, 3, 3, 0, 5, 5],
                [1, 3, 3, 1, 5, 5],
                [1, 1, 1, 1, V, V]],
               [[0, 0, 0, 0, 0, 0],
                [0, 3, 3, 0, 3, 3],
                [0, 3, 3, 0, 3, 3],
                [1, 1, 1, 1, 1, 1]]]
HAND_GT_INST = [[[0, 0, 0, 0, 0, 0],
                 [0, 1, 1, 0, 2, 2],
                 [0, 1, 1, 0, 2, 2],
                 [0, 0, 0, 0, 0, 0]],
                [[0, 0, 0, 0, 0, 0],
                 [0, 1, 1, 0, 2, 2],
                 [0, 1, 1, 0, 2, 2],
                 [0, 0, 0, 0, 0, 0]]]
HAND_PRED_CAT = [[[0, 0, 0, 0, 0, 0],
                  [0, 3, 3, 0, 5, 0],
                  [1, 3, 1, 1, 5, 5],
                  [1, 1, 1, 1, 5, 5]],
                 [[0, 0, 0, 0, 0, 0],
                  [0, 3, 3, 3, 3, 3],
                  [0, 3, 3, 3, 3, 3],
                  [1, 1, 1, 1, 5, 5]]]
HAND_PRED_INST = [[[5, 5, 5, 0, 0, 0],  # instance ids of stuff pixels are ignored
                   [0, 7, 7, 0, 4, 0],
                   [0, 7, 0, 0, 4, 4],
                   [2, 2, 0, 0, 9, 9]],
                  [[0, 0, 0, 0, 0, 0],
                   [0, 1, 1, 1, 1, 1],
                   [0, 1, 1, 1, 1, 1],
                   [0, 0, 0, 0, 1, 1]]]
# Worked by hand, image 1: stuff 0: 8 px in common, pred 9 px, gt 8 -> IoU 8/9; stuff 1: 6 / (7 + 6 - 6) = 6/7;
# thing 3: 3 / (3 + 4 - 3) = 3/4; thing 5 (id 4): 3/4; thing 5 (id 9) lies wholly on void: ignored, not an FP.
# Image 2: stuff 0: 8 / (8 + 10 - 8) = 4/5; stuff 1: 4 / (4 + 6 - 4) = 2/3; the predicted 3 merges both
# ground-truth 3s: IoU 4 / 10 with each, no match -> 1 FP + 2 FN; the predicted 5 is an FP.
HAND_COUNTS = {  # category: (iou_sum, TP, FP, FN)
    0: (Fraction(8, 9) + Fraction(4, 5), 2, 0, 0),
    1: (Fraction(6, 7) + Fraction(2, 3), 2, 0, 0),
    3: (Fraction(3, 4), 1, 1, 2),
    5: (Fraction(3, 4), 1, 1, 0),
    8: (Fraction(0), 0, 0, 0),
}
HAND_PQ = {0: Fraction(38, 45), 1: Fraction(16, 21), 3: Fraction(3, 10), 5: Fraction(1, 2)}  # iou / (TP+FP/2+FN/2)
HAND_SQ = {0: Fraction(38, 45), 1: Fraction(16, 21), 3: Fraction(3, 4), 5: Fraction(3, 4)}  # iou / TP
HAND_RQ = {0: Fraction(1), 1: Fraction(1), 3: Fraction(2, 5), 5: Fraction(2, 3)}  # TP / (TP+FP/2+FN/2)


def hand_maps(device, stacked=False):
    maps = [torch.tensor(m, device=device) for m in (HAND_PRED_CAT, HAND_PRED_INST, HAND_GT_CAT, HAND_GT_INST)]
    if stacked:
        return torch.stack(maps[:2], -1), torch.stack(maps[2:], -1)
    return tuple(maps[:2]), tuple(maps[2:])


@pytest.mark.parametrize("stacked", [False, True])
def test_hand_worked_panoptic_quality(device, stacked):
    for category in HAND_PQ:  # the hand-worked table is consistent: PQ = SQ x RQ
        assert HAND_PQ[category] == HAND_SQ[category] * HAND_RQ[category]
    pred, target = hand_maps(device, stacked)
    counts = panoptic_counts(pred, target, things={3, 5, 8}, stuffs={0, 1})
    assert counts.categories == (0, 1, 3, 5, 8)
    assert counts.is_thing.tolist() == [False, False, True, True, True]
    for i, c in enumerate(counts.categories):
        iou, tp, fp, fn = HAND_COUNTS[c]
        assert (counts.true_positives[i].item(), counts.false_positives[i].item(),
                counts.false_negatives[i].item()) == (tp, fp, fn)
        assert exact(counts.iou_sum[i].item(), iou)
    quality = panoptic_quality(counts)
    assert isinstance(quality, PanopticScores) and quality.categories == counts.categories
    for i, c in enumerate(counts.categories):
        if c == 8:  # absent from both: NaN, left out of the averages
            assert math.isnan(quality.pq[i].item()) and math.isnan(quality.sq[i].item())
            assert math.isnan(quality.rq[i].item())
            continue
        assert exact(quality.pq[i].item(), HAND_PQ[c]) and exact(quality.sq[i].item(), HAND_SQ[c])
        assert exact(quality.rq[i].item(), HAND_RQ[c])
    for name, categories in (("all", (0, 1, 3, 5)), ("things", (3, 5)), ("stuff", (0, 1))):
        average = quality.averages[name]
        assert average["n"] == len(categories)
        for key, table in (("pq", HAND_PQ), ("sq", HAND_SQ), ("rq", HAND_RQ)):
            assert exact(average[key], sum(table[c] for c in categories) / len(categories))
    assert exact(quality.averages["things"]["pq"], Fraction(2, 5))
    # the loop implementation and torchmetrics agree with the hand-worked counts
    as_numpy = [np.array(m) for m in (HAND_PRED_CAT, HAND_PRED_INST, HAND_GT_CAT, HAND_GT_INST)]
    assert_counts_equal(counts, reference_counts(*as_numpy, {3, 5, 8}, {0, 1}))
    expected, _ = torchmetrics_pq(to_torchmetrics(*as_numpy[:2], 99), to_torchmetrics(*as_numpy[2:], 99),
                                  {3, 5, 8}, {0, 1}, return_sq_and_rq=True)
    assert [quality.averages["all"][k] for k in ("pq", "sq", "rq")] == pytest.approx(expected.tolist(), abs=1e-12)


def test_segments_are_matched_inside_each_image():
    """Image 1: a perfect thing; image 2: the same (category, instance id) missed. Pooled across images the
    two would form one segment of IoU 1/2 and no match; per image it is 1 TP (IoU 1) and 1 FN."""
    target_cat = torch.tensor([[[3, 0], [0, 0]], [[3, 0], [0, 0]]])
    instances = torch.tensor([[[1, 0], [0, 0]], [[1, 0], [0, 0]]])
    pred_cat = torch.tensor([[[3, 0], [0, 0]], [[0, 0], [0, 0]]])
    counts = panoptic_counts((pred_cat, instances), (target_cat, instances), things={3}, stuffs={0})
    # categories (0, 3); stuff 0: IoU 3/3 in image 1, 3/4 in image 2
    assert counts.true_positives.tolist() == [2, 1] and counts.false_negatives.tolist() == [0, 1]
    assert counts.false_positives.tolist() == [0, 0] and counts.iou_sum.tolist() == [1.75, 1.0]


def test_iou_of_exactly_one_half_is_no_match_and_predicted_void_follows_panopticapi():
    """A thing of 4 pixels, predicted on 2 of them, void on the other 2. panopticapi: the void pixels stay in
    the ground truth, IoU = 2/4 = 0.5, not > 0.5: 1 FP + 1 FN, PQ 0. torchmetrics 1.9 with
    allow_unknown_preds_category removes them from the ground truth too: IoU 2/2 = 1, PQ 1."""
    target_cat = torch.tensor([[3, 3, 3, 3], [0, 0, 0, 0]])
    target_inst = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]])
    pred_cat = torch.tensor([[3, 3, V, V], [0, 0, 0, 0]])
    counts = panoptic_counts((pred_cat, target_inst), (target_cat, target_inst), things={3}, stuffs={0})
    assert counts.true_positives.tolist() == [1, 0]
    assert counts.false_positives.tolist() == [0, 1] and counts.false_negatives.tolist() == [0, 1]
    assert panoptic_quality(counts).pq.tolist() == [1.0, 0.0]
    as_numpy = [m.numpy()[None] for m in (pred_cat, target_inst, target_cat, target_inst)]
    assert_counts_equal(counts, reference_counts(*as_numpy, {3}, {0}))
    theirs, _ = torchmetrics_pq(to_torchmetrics(*as_numpy[:2], 99), to_torchmetrics(*as_numpy[2:], 99), {3}, {0},
                                allow_unknown_preds_category=True, return_per_class=True)
    assert theirs.tolist() == [[1.0, 1.0]]


def test_a_prediction_mostly_on_void_is_not_a_false_positive():
    """An unmatched predicted 3 of 4 pixels: 2 of them on void -> still an FP (2/4 is not > 1/2); 3 -> ignored."""
    pred_cat = torch.tensor([[3, 3, 3, 3, 0, 0, 0, 0]])
    zeros = torch.zeros(1, 8, dtype=torch.int64)
    for void_pixels, false_positives in ((2, 1), (3, 0)):
        target_cat = torch.zeros(1, 8, dtype=torch.int64)
        target_cat[0, :void_pixels] = V
        counts = panoptic_counts((pred_cat, zeros), (target_cat, zeros), things={3}, stuffs={0})
        assert counts.false_positives.tolist() == [0, false_positives]
        assert counts.true_positives.tolist() == [1, 0]  # stuff 0 matches: 4 / (8 - void_pixels)


def test_only_false_positives_count_and_absent_categories_do_not():
    target_cat = torch.zeros(4, 4, dtype=torch.int64)
    pred_cat = target_cat.clone()
    pred_cat[:2, :2] = 3
    zeros = torch.zeros(4, 4, dtype=torch.int64)
    quality = panoptic_quality(panoptic_counts((pred_cat, zeros), (target_cat, zeros), things={3, 4}, stuffs={0}))
    assert quality.pq[1].item() == 0.0 and quality.sq[1].item() == 0.0 and quality.rq[1].item() == 0.0
    assert math.isnan(quality.pq[2].item())  # thing 4 never occurs
    assert quality.averages["things"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 1}
    assert quality.averages["all"]["n"] == 2
    assert quality.averages["all"]["pq"] == pytest.approx((12 / 16 + 0.0) / 2, abs=1e-15)


@pytest.mark.parametrize("shape", [(3, 4), (0, 3, 4), (2, 0, 5)])
def test_nothing_to_evaluate_gives_nan(shape, device):
    """All void, or no pixels at all: every count is 0, every PQ NaN, every average NaN with n = 0."""
    void = torch.full(shape, V, device=device)
    zeros = torch.zeros(shape, dtype=torch.int64, device=device)
    counts = panoptic_counts((void, zeros), (void, zeros), things={3}, stuffs={0})
    assert counts.true_positives.sum() == counts.false_positives.sum() == counts.false_negatives.sum() == 0
    quality = panoptic_quality(counts)
    assert torch.isnan(quality.pq).all() and torch.isnan(quality.sq).all() and torch.isnan(quality.rq).all()
    for average in quality.averages.values():
        assert average["n"] == 0 and all(math.isnan(average[k]) for k in ("pq", "sq", "rq"))


def test_stuff_instance_ids_are_ignored_and_formats_agree():
    (pc, pi), (gc, gi) = random_panoptic_maps(11, THINGS, STUFFS, shape=(1, 12, 12), pred_void=True)
    pred, target = (torch.from_numpy(pc), torch.from_numpy(pi)), (torch.from_numpy(gc), torch.from_numpy(gi))
    counts = panoptic_counts(pred, target, THINGS, STUFFS)
    scrambled = torch.where(torch.isin(pred[0], torch.tensor(sorted(STUFFS))), torch.randint(0, 50, pi.shape), pred[1])
    variants = [
        panoptic_counts((pred[0], scrambled), target, THINGS, STUFFS),
        panoptic_counts((pred[0][0], pred[1][0]), (target[0][0], target[1][0]), THINGS, STUFFS),  # [H, W]
        panoptic_counts(torch.stack(pred, -1)[0], torch.stack(target, -1)[0], THINGS, STUFFS),  # [H, W, 2]
        panoptic_counts((pred[0].int(), pred[1].to(torch.uint8)), target, list(THINGS), tuple(STUFFS)),
    ]
    for other in variants:
        for field in ("true_positives", "false_positives", "false_negatives", "iou_sum"):
            assert torch.equal(getattr(counts, field), getattr(other, field))


@pytest.mark.parametrize(("pred", "target", "kwargs", "error", "message"), [
    ("ok", torch.zeros(1, 3, 5, 2, dtype=torch.int64), {}, ValueError, "differ in shape"),
    ("ok", (torch.zeros(2, 4, dtype=torch.int64),) * 2, {}, ValueError, "differ in shape"),
    (torch.tensor([[[7, 0], [0, 0]]]), "ok", {}, ValueError, r"categories \[7\] that are neither"),
    ("ok", torch.tensor([[[0, 0], [-5, 0]]]), {}, ValueError, r"target has categories \[-5\]"),
    (torch.tensor([[[3, -1], [0, 0]]]), "ok", {}, ValueError, r"negative instance ids: \[-1\]"),
    (torch.zeros(1, 2, 3, dtype=torch.int64), "ok", {}, ValueError, r"\[H, W, 2\] or \[B, H, W, 2\]"),
    (torch.zeros(1, 2, 2, dtype=torch.float32), "ok", {}, TypeError, "integer labels"),
    ((torch.zeros(1, 2, dtype=torch.int64),) * 3, "ok", {}, ValueError, "pair"),
    (3, "ok", {}, TypeError, "pair or a tensor"),
    ("ok", "ok", {"things": {0}}, ValueError, r"both things and stuffs"),
    ("ok", "ok", {"things": set(), "stuffs": set()}, ValueError, "both empty"),
    ("ok", "ok", {"void_label": 3}, ValueError, "void_label=3 is also"),
    ("ok", "ok", {"things": {-2}}, ValueError, ">= 0"),
    ("ok", "ok", {"things": {1.5}}, ValueError, "int category ids"),
    ("ok", (torch.full((1, 2), 3), torch.full((1, 2), 2**61)), {}, ValueError, "too large"),
])
def test_bad_panoptic_inputs(pred, target, kwargs, error, message):
    ok = torch.zeros(1, 2, 2, dtype=torch.int64)  # one [1, 2] image, as [H, W, 2]
    pred, target = (ok if isinstance(x, str) else x for x in (pred, target))
    kwargs = {"things": {3}, "stuffs": {0}, **kwargs}
    with pytest.raises(error, match=message):
        panoptic_counts(pred, target, **kwargs)


def test_counts_of_different_categories_do_not_add():
    ok = torch.zeros(1, 2, 2, 2, dtype=torch.int64)
    with pytest.raises(ValueError, match="different things / stuff"):
        panoptic_counts(ok, ok, {3}, {0}) + panoptic_counts(ok, ok, {4}, {0})
