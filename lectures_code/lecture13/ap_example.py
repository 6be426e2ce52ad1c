"""A worked average-precision example (Lecture 13): 3 ground-truth boxes, 6 scored detections, one class.

The page walks through it by hand: match the detections in descending score order, keep running TP / FP
counts, read precision and recall after every detection, draw the precision-recall curve, and turn the
curve into one number in the three usual ways (PASCAL VOC2007 11-point, VOC2010+ all-point area, COCO
101-point). Everything is computed here in exact fractions (integer box corners give rational IoUs),
so the page's table prints 1/3 and 2/3 instead of rounded floats. The test suite checks every number
against ``lectures_code.metrics.voc_ap``, ``lectures_code.metrics.coco_evaluate`` and pycocotools.

Boxes are xyxy pixels with no "+1" (as in COCO and torchvision). The matching rule is COCO's: a
detection takes the not-yet-matched ground truth with the highest IoU >= the threshold. PASCAL VOC
differs in two details that do not change this example (its IoUs are far from 0.5): a detection only
tries its single highest-IoU ground truth (if that one is taken, the detection is a false positive),
and VOC requires IoU strictly greater than 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

Box = tuple[Fraction, Fraction, Fraction, Fraction]

IMAGE_SIZE = (240, 170)  # width, height of the example's image, pixels
GROUND_TRUTH: dict[str, tuple[int, int, int, int]] = {  # name -> xyxy
    "A": (20, 30, 80, 110),
    "B": (110, 20, 170, 70),
    "C": (150, 90, 220, 150),
}
DETECTIONS: list[tuple[str, float, tuple[int, int, int, int]]] = [  # (name, score, xyxy), any order
    ("d1", 0.95, (24, 34, 84, 110)),  # a good box on A
    ("d2", 0.90, (120, 30, 185, 85)),  # near B but badly placed (IoU < 0.5)
    ("d3", 0.80, (10, 25, 75, 100)),  # a second box on A: a duplicate
    ("d4", 0.70, (105, 18, 168, 72)),  # a good box on B
    ("d5", 0.60, (180, 10, 230, 60)),  # on the background
    ("d6", 0.50, (160, 95, 235, 160)),  # a rough box on C (0.5 < IoU < 0.75)
]


def as_box(xyxy) -> Box:
    return tuple(Fraction(v) for v in xyxy)


# --8<-- [start:iou]
def iou(a: Box, b: Box) -> Fraction:
    """Intersection over union of two xyxy boxes, exact for integer corners."""
    inter_w = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
    inter_h = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    inter = inter_w * inter_h
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return Fraction(inter) / (area_a + area_b - inter)
# --8<-- [end:iou]


@dataclass(frozen=True)
class Step:
    """One row of the walk-through: a detection, its verdict, and the running counts after it."""

    name: str
    score: float
    best_gt: str | None  # the ground truth with the highest IoU (None if it overlaps none)
    best_iou: Fraction
    matched_gt: str | None  # the ground truth it was matched to (None: a false positive)
    tp: int  # running number of true positives, this detection included
    fp: int
    precision: Fraction  # tp / (tp + fp)
    recall: Fraction  # tp / number of ground-truth boxes


# --8<-- [start:match]
def walk_detections(threshold: Fraction = Fraction(1, 2)) -> list[Step]:
    """Match the detections in descending score order and keep the running precision and recall."""
    gts = {name: as_box(box) for name, box in GROUND_TRUTH.items()}
    detections = sorted(DETECTIONS, key=lambda d: -d[1])  # highest score first
    free = set(gts)  # each ground-truth box can be matched once
    tp = fp = 0
    steps = []
    for name, score, box in detections:
        ious = {g: iou(as_box(box), gts[g]) for g in gts}
        best_gt = max(ious, key=ious.get) if max(ious.values()) > 0 else None
        candidates = [g for g in gts if g in free and ious[g] >= threshold]  # free, overlapping enough
        matched = max(candidates, key=ious.get) if candidates else None
        if matched is not None:
            free.remove(matched)
            tp += 1
        else:
            fp += 1  # too little overlap, or a duplicate of an already matched box
        steps.append(Step(name, score, best_gt, ious[best_gt] if best_gt else Fraction(0), matched,
                          tp, fp, Fraction(tp, tp + fp), Fraction(tp, len(gts))))
    return steps
# --8<-- [end:match]


# --8<-- [start:interpolate]
def envelope(steps: list[Step]) -> list[Fraction]:
    """Interpolated precision at each step: the best precision at this recall or any higher one."""
    best, out = Fraction(0), []
    for step in reversed(steps):
        best = max(best, step.precision)
        out.append(best)
    return out[::-1]


def precision_at(steps: list[Step], recall: Fraction) -> Fraction:
    """The envelope read at a recall level: its value at the first step reaching it (0 if none does)."""
    for step, p in zip(steps, envelope(steps)):
        if step.recall >= recall:
            return p
    return Fraction(0)


def ap_voc07(steps: list[Step]) -> Fraction:
    """PASCAL VOC2007: mean of the envelope at recall 0, 0.1, ..., 1 (11 points)."""
    return sum(precision_at(steps, Fraction(i, 10)) for i in range(11)) / 11


def ap_all_points(steps: list[Step]) -> Fraction:
    """PASCAL VOC2010+: the exact area under the envelope, a sum of (recall step) x (envelope)."""
    area, previous_recall = Fraction(0), Fraction(0)
    for step, p in zip(steps, envelope(steps)):
        area += (step.recall - previous_recall) * p
        previous_recall = step.recall
    return area


def ap_coco101(steps: list[Step]) -> Fraction:
    """COCO: mean of the envelope at recall 0, 0.01, ..., 1 (101 points), for one IoU threshold."""
    return sum(precision_at(steps, Fraction(i, 100)) for i in range(101)) / 101
# --8<-- [end:interpolate]


COCO_THRESHOLDS = [Fraction(50 + 5 * i, 100) for i in range(10)]  # 0.50, 0.55, ..., 0.95


def coco_ap_over_thresholds() -> dict[Fraction, Fraction]:
    """COCO's 101-point AP at each IoU threshold 0.5:0.05:0.95; their mean is AP@[.5:.95]."""
    return {t: ap_coco101(walk_detections(t)) for t in COCO_THRESHOLDS}


def as_coco_json() -> tuple[dict, list[dict]]:
    """The example as COCO JSON (xywh boxes) for ``coco_evaluate`` and pycocotools: one image, one class."""
    width, height = IMAGE_SIZE
    annotations = []
    for i, (x1, y1, x2, y2) in enumerate(GROUND_TRUTH.values()):
        annotations.append({"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    gt = {"images": [{"id": 1, "width": width, "height": height}],
          "categories": [{"id": 1, "name": "object"}], "annotations": annotations}
    detections = [{"image_id": 1, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
                  for _, score, (x1, y1, x2, y2) in DETECTIONS]
    return gt, detections
