"""The worked AP example of Lecture 13: every number it prints agrees with voc_ap, coco_evaluate and pycocotools.

Oracles: ``lectures_code.metrics.voc_ap`` (itself checked against py-faster-rcnn's voc_ap),
``lectures_code.metrics.coco_evaluate`` and pycocotools' ``COCOeval`` (the reference; a missing
pycocotools is a failure, not a skip), torchvision's ``box_iou`` for the IoUs.
"""

from __future__ import annotations

import contextlib
import copy
import io
from fractions import Fraction

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_iou

from lectures_code.lecture13 import ap_example
from lectures_code.lecture13.ap_example import (
    COCO_THRESHOLDS,
    DETECTIONS,
    GROUND_TRUTH,
    ap_all_points,
    ap_coco101,
    ap_voc07,
    as_coco_json,
    coco_ap_over_thresholds,
    envelope,
    walk_detections,
)
from lectures_code.metrics.coco_eval import coco_evaluate
from lectures_code.metrics.voc_ap import voc_ap


def pycocotools_eval(gt: dict, detections: list) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(detections)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def recall_precision(steps) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([float(s.recall) for s in steps]), np.array([float(s.precision) for s in steps]))


def test_the_example_is_hand_sized_and_shows_every_kind_of_detection():
    steps = walk_detections()
    assert len(GROUND_TRUTH) == 3 and len(steps) == 6
    assert [s.score for s in steps] == sorted((d[1] for d in DETECTIONS), reverse=True)
    verdicts = [s.matched_gt is not None for s in steps]
    assert verdicts == [True, False, False, True, False, True]
    d2, d3, d5 = steps[1], steps[2], steps[4]
    assert 0 < d2.best_iou < Fraction(1, 2)  # localization error
    assert d3.best_iou >= Fraction(1, 2) and d3.best_gt == steps[0].matched_gt  # duplicate of a matched box
    assert d5.best_gt is None  # background
    # no IoU sits on a threshold, so VOC's "> 0.5" and COCO's ">= 0.5" agree, at every COCO threshold too
    assert all(s.best_iou not in COCO_THRESHOLDS for s in steps)
    # the three ways of interpolating give three different numbers
    assert len({ap_voc07(steps), ap_all_points(steps), ap_coco101(steps)}) == 3


def test_ious_equal_torchvision():
    gt = torch.tensor(list(GROUND_TRUTH.values()), dtype=torch.float64)
    det = torch.tensor([d[2] for d in sorted(DETECTIONS, key=lambda d: -d[1])], dtype=torch.float64)
    reference = box_iou(det, gt)  # [6, 3]
    names = list(GROUND_TRUTH)
    for row, step in zip(reference, walk_detections()):
        assert float(step.best_iou) == pytest.approx(float(row.max()), abs=1e-15)
        if step.best_gt is not None:
            assert names[int(row.argmax())] == step.best_gt


def test_running_counts_follow_the_definitions():
    steps = walk_detections()
    for i, s in enumerate(steps):
        assert s.tp + s.fp == i + 1
        assert s.precision == Fraction(s.tp, i + 1)
        assert s.recall == Fraction(s.tp, len(GROUND_TRUTH))
    assert envelope(steps) == [max(t.precision for t in steps[i:]) for i in range(len(steps))]


def test_voc_matching_rule_gives_the_same_verdicts():
    """VOC: each detection tries only its highest-IoU GT and needs IoU > 0.5; here that changes nothing."""
    taken, verdicts = set(), []
    for s in walk_detections():
        hit = s.best_gt is not None and s.best_iou > Fraction(1, 2) and s.best_gt not in taken
        if hit:
            taken.add(s.best_gt)
        verdicts.append(s.best_gt if hit else None)
    assert verdicts == [s.matched_gt for s in walk_detections()]


@pytest.mark.parametrize("use_07_metric", [True, False])
def test_voc_ap_agrees(use_07_metric):
    steps = walk_detections()
    recall, precision = recall_precision(steps)
    expected = ap_voc07(steps) if use_07_metric else ap_all_points(steps)
    assert voc_ap(recall, precision, use_07_metric=use_07_metric) == pytest.approx(float(expected), abs=1e-12)


def test_coco_numbers_agree_with_coco_evaluate_and_pycocotools():
    gt, detections = as_coco_json()
    ours = coco_evaluate(gt, detections)
    reference = pycocotools_eval(gt, detections)
    per_threshold = coco_ap_over_thresholds()
    # precision[T, R, K, A, M]: area "all", maxDets 100; the 101-point envelope at each threshold
    for t, threshold in enumerate(COCO_THRESHOLDS):
        steps = walk_detections(threshold)
        curve = np.array([float(ap_example.precision_at(steps, Fraction(i, 100))) for i in range(101)])
        np.testing.assert_allclose(reference.eval["precision"][t, :, 0, 0, -1], curve, atol=1e-12)
        np.testing.assert_allclose(ours["precision"][t, :, 0, 0, -1], curve, atol=1e-12)
        assert reference.eval["precision"][t, :, 0, 0, -1].mean() == pytest.approx(float(per_threshold[threshold]),
                                                                                    abs=1e-12)
    ap_50_95 = float(sum(per_threshold.values()) / len(per_threshold))
    assert reference.stats[0] == pytest.approx(ap_50_95, abs=1e-12)
    assert reference.stats[1] == pytest.approx(float(ap_coco101(walk_detections())), abs=1e-12)
    assert reference.stats[2] == pytest.approx(float(per_threshold[Fraction(3, 4)]), abs=1e-12)
    np.testing.assert_allclose(ours["stats"], reference.stats, atol=1e-12)


def test_a_stricter_threshold_turns_the_rough_box_into_a_false_positive():
    strict = walk_detections(Fraction(3, 4))
    assert [s.matched_gt for s in strict] == ["A", None, None, "B", None, None]
    assert strict[-1].recall == Fraction(2, 3)
    assert ap_coco101(strict) < ap_coco101(walk_detections())
