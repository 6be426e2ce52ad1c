"""voc_ap vs the classic py-faster-rcnn implementation (rewritten here) and hand-checked curves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lectures_code.metrics.voc_ap import voc_ap


def reference_voc_ap(rec, prec, use_07_metric=False):
    """py-faster-rcnn's voc_ap (lib/datasets/voc_eval.py), loops and all."""
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def random_pr_curve(seed, num_detections=200):
    """PR points of a random ranked list: TP flags with ties in recall, as a detector produces them."""
    rng = np.random.default_rng(seed)
    is_tp = rng.random(num_detections) < rng.uniform(0.1, 0.9)
    num_positives = int(is_tp.sum() + rng.integers(0, 20))  # some GTs are never found
    tp = np.cumsum(is_tp)
    fp = np.cumsum(~is_tp)
    return tp / max(num_positives, 1), tp / np.maximum(tp + fp, np.finfo(np.float64).eps)


@pytest.mark.parametrize("use_07_metric", [False, True])
@pytest.mark.parametrize("seed", range(20))
def test_matches_py_faster_rcnn(seed, use_07_metric):
    num_detections = int(np.random.default_rng(seed).integers(1, 300))
    recall, precision = random_pr_curve(seed, num_detections)
    expected = reference_voc_ap(recall, precision, use_07_metric)
    assert voc_ap(recall, precision, use_07_metric) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("use_07_metric", [False, True])
def test_tensors_on_device(device, dtype, use_07_metric):
    recall, precision = random_pr_curve(7)
    expected = reference_voc_ap(recall.astype(np.float64), precision, use_07_metric)
    got = voc_ap(torch.tensor(recall, dtype=dtype, device=device),
                 torch.tensor(precision, dtype=dtype, device=device), use_07_metric)
    assert got == pytest.approx(expected, abs=1e-12 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("use_07_metric", [False, True])
def test_hand_checked_curves(use_07_metric):
    # perfect detector: every detection is a TP, all GTs found
    assert voc_ap([0.25, 0.5, 0.75, 1.0], [1.0, 1.0, 1.0, 1.0], use_07_metric) == pytest.approx(1.0)
    # half of the GTs found, all with precision 1: VOC2010 area 0.5; 11-point: t = 0, 0.1, ..., 0.5 -> 6/11
    expected = 6 / 11 if use_07_metric else 0.5
    assert voc_ap([0.25, 0.5], [1.0, 1.0], use_07_metric) == pytest.approx(expected)
    # FP first, then a TP that finds the only GT: precision 1/2 at recall 1
    assert voc_ap([0.0, 1.0], [0.0, 0.5], use_07_metric) == pytest.approx(0.5)
    # nothing found: AP 0; no detections at all: AP 0
    assert voc_ap([0.0, 0.0], [0.0, 0.0], use_07_metric) == 0.0
    assert voc_ap([], [], use_07_metric) == 0.0


def test_envelope_uses_the_best_precision_to_the_right():
    # TP, FP, TP over 2 GTs: points (0.5, 1), (0.5, 1/2), (1, 2/3); area = 0.5 * 1 + 0.5 * 2/3
    assert voc_ap([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(0.5 + 1 / 3)
    # 11-point: t <= 0.5 -> 1, t = 0.6..1.0 -> 2/3
    expected = (6 + 5 * 2 / 3) / 11
    assert voc_ap([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3], use_07_metric=True) == pytest.approx(expected)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="shape"):
        voc_ap([0.1, 0.2], [1.0])
    with pytest.raises(ValueError, match="1-D"):
        voc_ap(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="non-decreasing"):
        voc_ap([0.5, 0.2], [1.0, 1.0])
    with pytest.raises(TypeError, match="floating"):
        voc_ap(torch.tensor([0, 1]), torch.tensor([1, 1]))
