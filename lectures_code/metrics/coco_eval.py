"""COCO box evaluation (Lecture 13): AP@[.5:.95], AP50, AP75, AP/AR by size, written from scratch.

Reproduces pycocotools' ``COCOeval(iouType="bbox")`` number for number (its 12 ``stats`` and its
``eval["precision"]`` / ``eval["recall"]`` arrays), including its quirks, with numpy in float64.

Inputs are plain COCO JSON dicts:
- ground truth ``gt``: ``images`` (``id``), ``categories`` (``id``) and ``annotations`` with ``id``,
  ``image_id``, ``category_id``, ``bbox`` = [x, y, w, h] (top-left corner, width, height, pixels),
  ``area`` (used for the size buckets, NOT recomputed from the box), ``iscrowd`` (0/1, default 0);
- ``detections``: list of ``image_id``, ``category_id``, ``bbox`` = [x, y, w, h], ``score``.
Ids are integers. The evaluation protocol (all fixed, as in pycocotools):
- IoU thresholds ``np.linspace(.5, .95, 10)`` [T=10], recall points ``np.linspace(0, 1, 101)`` [R=101],
  maxDets (1, 10, 100) [M=3], areas all/small/medium/large = [0, 1e10] / [0, 32^2] / [32^2, 96^2] /
  [96^2, 1e10], both ends inclusive (a GT of area exactly 1024 is both small and medium) [A=4].
- A GT is "ignored" when it is a crowd (any ``ignore`` field is overwritten by ``iscrowd``) or its
  ``area`` is outside the range; a detection is ignored when it matches an ignored GT, or when it is
  unmatched and its area w*h is outside the range.

Quirk kept on purpose: pycocotools stores the matched GT's annotation *id* and reads id 0 as
"unmatched", so a detection that matches a GT with ``id == 0`` counts as a false positive (and the GT
stays unrecalled). We replicate it, so numbers equal the reference, and warn when a GT id is 0.
Deviations: an empty detection list is allowed (pycocotools crashes on it), a missing ``iscrowd``
means 0, and duplicate annotation ids or non-finite boxes/scores raise ValueError.
"""

from __future__ import annotations

import warnings

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # [T]; note IOU_THRESHOLDS[8] == 0.8999999999999999
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)  # [R]
MAX_DETS = (1, 10, 100)  # [M], per image and category
AREA_RANGES = np.array([[0, 1e10], [0, 32**2], [32**2, 96**2], [96**2, 1e10]], dtype=np.float64)  # [A, 2]
AREA_NAMES = ("all", "small", "medium", "large")


def _int_ids(values: list, what: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError) as err:
        raise TypeError(f"{what} must be integers") from err


def _boxes(records: list, what: str) -> np.ndarray:
    try:
        boxes = np.asarray([r["bbox"] for r in records], dtype=np.float64).reshape(-1, 4)  # [N, 4] xywh
    except (TypeError, ValueError) as err:
        raise ValueError(f"every {what} bbox must be 4 numbers [x, y, w, h]") from err
    if boxes.shape[0] != len(records) or not np.isfinite(boxes).all():
        raise ValueError(f"every {what} bbox must be 4 finite numbers [x, y, w, h]")
    return boxes


def _read_ground_truth(gt: dict):
    """Sorted image/category ids and the annotations that belong to them, in file order."""
    if not isinstance(gt, dict) or not {"images", "annotations", "categories"} <= gt.keys():
        raise TypeError("gt must be a COCO dict with 'images', 'annotations' and 'categories'")
    image_ids = np.unique(_int_ids([im["id"] for im in gt["images"]], "image ids"))  # [I]
    category_ids = np.unique(_int_ids([c["id"] for c in gt["categories"]], "category ids"))  # [K]
    anns = gt["annotations"]
    ann_ids = _int_ids([a["id"] for a in anns], "annotation ids")
    if len(np.unique(ann_ids)) != len(ann_ids):
        raise ValueError("annotation ids must be unique")
    image = _int_ids([a["image_id"] for a in anns], "annotation image_ids")
    category = _int_ids([a["category_id"] for a in anns], "annotation category_ids")
    boxes = _boxes(anns, "annotation")
    area = np.asarray([a["area"] for a in anns], dtype=np.float64)
    crowd = np.asarray([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    # annotations of unknown images or categories are not evaluated (as in pycocotools)
    keep = np.isin(image, image_ids) & np.isin(category, category_ids)
    if (ann_ids[keep] == 0).any():
        warnings.warn(
            "a ground-truth annotation has id 0: like pycocotools, a detection matched to it counts as a "
            "false positive; number annotations from 1",
            stacklevel=3,
        )
    image_index = np.searchsorted(image_ids, image[keep])
    category_index = np.searchsorted(category_ids, category[keep])
    return image_ids, category_ids, (image_index, category_index, boxes[keep], area[keep], crowd[keep],
                                     ann_ids[keep])


def _read_detections(detections: list, image_ids: np.ndarray, category_ids: np.ndarray):
    if not isinstance(detections, (list, tuple)):
        raise TypeError("detections must be a list of dicts")
    image = _int_ids([d["image_id"] for d in detections], "detection image_ids")
    category = _int_ids([d["category_id"] for d in detections], "detection category_ids")
    boxes = _boxes(detections, "detection")
    scores = np.asarray([d["score"] for d in detections], dtype=np.float64).reshape(-1)
    if not np.isfinite(scores).all():
        raise ValueError("detection scores must be finite")
    if not np.isin(image, image_ids).all():
        raise ValueError("a detection refers to an image_id that is not in gt['images']")
    keep = np.isin(category, category_ids)  # unknown categories are silently dropped, as in pycocotools
    return (np.searchsorted(image_ids, image[keep]), np.searchsorted(category_ids, category[keep]),
            boxes[keep], scores[keep])


# --8<-- [start:coco_iou]
def coco_box_iou(det_boxes: np.ndarray, gt_boxes: np.ndarray, gt_crowd: np.ndarray) -> np.ndarray:
    """IoU of xywh boxes exactly as pycocotools' C ``bbIou`` computes it (float64, no +1 pixel).

    det_boxes [..., 4], gt_boxes [..., 4] and gt_crowd [...] (bool) broadcast against each other.
    For a crowd GT the union is the detection's own area: a detection inside a crowd region has IoU 1.
    """
    dx, dy, dw, dh = np.moveaxis(det_boxes, -1, 0)
    gx, gy, gw, gh = np.moveaxis(gt_boxes, -1, 0)
    inter_w = np.minimum(dx + dw, gx + gw) - np.maximum(dx, gx)
    inter_h = np.minimum(dy + dh, gy + gh) - np.maximum(dy, gy)
    inter = inter_w * inter_h
    det_area, gt_area = dw * dh, gw * gh
    union = np.where(gt_crowd, det_area, det_area + gt_area - inter)  # same operation order as the C code
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((inter_w > 0) & (inter_h > 0), inter / union, 0.0)
# --8<-- [end:coco_iou]


# --8<-- [start:coco_match]
def _match(det_cell, det_rank, det_boxes, gt_cell, gt_rank, gt_boxes, gt_crowd, gt_ignored, num_cells):
    """Greedy matching in every (image, category) cell, for every area range and IoU threshold at once.

    Detections are sorted by score within their cell (det_rank = position, < 100); GTs keep file order
    (gt_rank). gt_ignored [A, G]. Returns det_gt [N, A, T]: index of the matched GT, or -1.

    pycocotools walks the GTs "regular first, ignored last" and, for each detection, keeps the GT with
    the highest IoU >= threshold that is still free (crowds never get used up), taking a later GT on
    equal IoU, and only falls back to ignored GTs when no regular GT qualifies. Detections are handled
    one rank at a time (inherently sequential: each one uses up a GT), but all cells, areas and
    thresholds move together. Cells are bucketed by GT count (rounded up to a power of two) so that
    padding at most doubles the work.
    """
    num_areas, num_thresholds = gt_ignored.shape[0], len(IOU_THRESHOLDS)
    det_gt = np.full((len(det_cell), num_areas, num_thresholds), -1)
    thresholds = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)  # [T]
    dets_per_cell = np.bincount(det_cell, minlength=num_cells)
    gts_per_cell = np.bincount(gt_cell, minlength=num_cells)
    width = 2 ** np.ceil(np.log2(np.maximum(gts_per_cell, 1))).astype(np.int64)
    width[(dets_per_cell == 0) | (gts_per_cell == 0)] = 0  # nothing to match there
    for W in np.unique(width[width > 0]):
        # most detections first, so the cells still having a detection at rank r are a prefix
        cells = np.flatnonzero(width == W)
        cells = cells[np.argsort(-dets_per_cell[cells], kind="stable")]  # [P]
        dets_left = dets_per_cell[cells]  # [P]
        P, D = len(cells), dets_left[0]
        slot = np.full(num_cells, -1)
        slot[cells] = np.arange(P)
        d_sel, g_sel = np.flatnonzero(slot[det_cell] >= 0), np.flatnonzero(slot[gt_cell] >= 0)
        det_index = np.zeros((P, D), dtype=np.int64)  # [P, D] global detection index (padding: 0)
        det_index[slot[det_cell[d_sel]], det_rank[d_sel]] = d_sel
        gt_index = np.zeros((P, W), dtype=np.int64)  # [P, W] global GT index (padding: 0, invalid)
        gt_valid = np.zeros((P, W), dtype=bool)
        gt_index[slot[gt_cell[g_sel]], gt_rank[g_sel]] = g_sel
        gt_valid[slot[gt_cell[g_sel]], gt_rank[g_sel]] = True
        crowd = gt_crowd[gt_index] & gt_valid  # [P, W]
        regular = ~gt_ignored[:, gt_index].transpose(1, 0, 2)  # [P, A, W]
        iou = coco_box_iou(det_boxes[det_index][:, :, None], gt_boxes[gt_index][:, None], crowd[:, None])
        shape = (P, num_areas, num_thresholds, W)
        available = np.broadcast_to(gt_valid[:, None, None], shape).copy()  # GTs a detection may still take
        for r in range(D):
            n = np.count_nonzero(dets_left > r)
            iou_r = iou[:n, r, None, None, :]  # [n, 1, 1, W]
            candidate = available[:n] & (iou_r >= thresholds[:, None])  # [n, A, T, W]
            regular_candidate = candidate & regular[:n, :, None]
            pool = np.where(regular_candidate.any(-1, keepdims=True), regular_candidate, candidate)
            # argmax returns the first maximum: on the reversed GT axis that is the LAST best GT
            best = W - 1 - np.argmax(np.where(pool, iou_r, -1.0)[..., ::-1], axis=-1)  # [n, A, T]
            found = pool.any(-1)  # [n, A, T]
            cell = np.arange(n)[:, None, None]
            det_gt[det_index[:n, r]] = np.where(found, gt_index[cell, best], -1)
            used_up = found & ~crowd[cell, best]  # crowd GTs can absorb any number of detections
            available[:n] &= (np.arange(W) != best[..., None]) | ~used_up[..., None]
    return det_gt
# --8<-- [end:coco_match]


# --8<-- [start:coco_accumulate]
def _accumulate(det_category, det_rank, det_score, is_tp, is_fp, num_positives):
    """Pool all images of a category, sort by score, and read precision at 101 recall points.

    is_tp, is_fp [N, A, T] (ignored detections are neither), num_positives [K, A] (non-ignored GTs).
    Returns precision [T, R, K, A, M] and recall [T, K, A, M], -1 where a category/area has no GT.
    """
    K, A = num_positives.shape
    T, R, M = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(MAX_DETS)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    # detections arrive ordered by (image, rank); a stable sort by score then by category keeps that
    # order among equal scores, which is what pycocotools' mergesort over the concatenated images gives
    order = np.argsort(-det_score, kind="mergesort")
    order = order[np.argsort(det_category[order], kind="mergesort")]
    bounds = np.searchsorted(det_category[order], np.arange(K + 1))
    for k in range(K):
        areas = np.flatnonzero(num_positives[k] > 0)
        if len(areas) == 0:
            continue
        positives = num_positives[k, areas][:, None, None]  # [A', 1, 1]
        for m, max_det in enumerate(MAX_DETS):
            rows = order[bounds[k] : bounds[k + 1]]
            rows = rows[det_rank[rows] < max_det]  # [n]
            n = len(rows)
            tp = np.cumsum(is_tp[rows][:, areas], axis=0).astype(np.float64).transpose(1, 2, 0)  # [A', T, n]
            fp = np.cumsum(is_fp[rows][:, areas], axis=0).astype(np.float64).transpose(1, 2, 0)
            rc = tp / positives
            pr = tp / (fp + tp + np.spacing(1))
            pr = np.maximum.accumulate(pr[..., ::-1], axis=-1)[..., ::-1]  # precision envelope
            recall[:, k, areas, m] = (rc[..., -1] if n else np.zeros(rc.shape[:2])).T
            for ai, a in enumerate(areas):
                for t in range(T):
                    at = np.searchsorted(rc[ai, t], RECALL_THRESHOLDS, side="left")  # [R]
                    read = pr[ai, t, np.minimum(at, n - 1)] if n else np.zeros(R)
                    precision[t, :, k, a, m] = np.where(at < n, read, 0.0)  # unreached recall: 0
    return precision, recall
# --8<-- [end:coco_accumulate]


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else -1.0


# (ap?, IoU threshold or None for all, area name, maxDets) for the 12 pycocotools stats, in order
_STATS = [(True, None, "all", 100), (True, 0.5, "all", 100), (True, 0.75, "all", 100),
          (True, None, "small", 100), (True, None, "medium", 100), (True, None, "large", 100),
          (False, None, "all", 1), (False, None, "all", 10), (False, None, "all", 100),
          (False, None, "small", 100), (False, None, "medium", 100), (False, None, "large", 100)]


def _summarize(precision: np.ndarray, recall: np.ndarray) -> list[float]:
    stats = []
    for is_ap, iou, area, max_det in _STATS:
        t = slice(None) if iou is None else np.flatnonzero(IOU_THRESHOLDS == iou)
        a, m = AREA_NAMES.index(area), MAX_DETS.index(max_det)
        values = precision[t][:, :, :, a, m] if is_ap else recall[t][:, :, a, m]
        stats.append(_mean_valid(values))
    return stats


STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100", "AR_small",
              "AR_medium", "AR_large")  # the 12 numbers of ``stats``, in order


def named_stats(stats, digits: int = 4) -> dict:
    """The 12 COCO numbers by name (``STAT_NAMES``), rounded to ``digits`` for a record."""
    if len(stats) != 12:
        raise ValueError(f"expected the 12 COCO stats, got {len(stats)}")
    return {name: round(float(value), digits) for name, value in zip(STAT_NAMES, stats)}


def format_stats(stats) -> str:
    """The 12 lines pycocotools' ``COCOeval.summarize()`` prints, for a list of 12 stats."""
    if len(stats) != 12:
        raise ValueError(f"expected the 12 COCO stats, got {len(stats)}")
    line = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
    all_ious = f"{IOU_THRESHOLDS[0]:0.2f}:{IOU_THRESHOLDS[-1]:0.2f}"
    return "\n".join(
        line.format("Average Precision" if is_ap else "Average Recall", "(AP)" if is_ap else "(AR)",
                    all_ious if iou is None else f"{iou:0.2f}", area, max_det, value)
        for (is_ap, iou, area, max_det), value in zip(_STATS, stats)
    )


def coco_evaluate(gt: dict, detections: list, iou_type: str = "bbox") -> dict:
    """COCO AP/AR of ``detections`` against ``gt`` (both COCO JSON, boxes xywh); see the module docstring.

    Returns a dict with
    - ``stats``: the 12 numbers of pycocotools' ``COCOeval.stats`` (list of float, -1 = undefined);
    - ``precision``: float64 [T=10, R=101, K, A=4, M=3] like ``COCOeval.eval["precision"]``
      (categories in sorted id order, -1 for a category/area without GT); ``recall``: [T, K, A, M];
    - ``per_class_ap``: {category id: {"AP": AP@[.5:.95], "AP50": AP@.5}} (area all, maxDets 100);
    - ``pr_curves``: {category id: {0.5: precision [R], 0.75: precision [R]}} (area all, maxDets 100);
    - ``category_ids``, ``iou_thresholds``, ``recall_thresholds``.
    """
    if iou_type != "bbox":
        raise ValueError(f"only iou_type='bbox' is implemented, got {iou_type!r}")
    image_ids, category_ids, ground_truth = _read_ground_truth(gt)
    gt_image, gt_category, gt_boxes, gt_area, gt_crowd, gt_ids = ground_truth
    det_image, det_category, det_boxes, det_score = _read_detections(detections, image_ids, category_ids)
    K = len(category_ids)
    num_cells = len(image_ids) * K

    # cells = (image, category); detections by descending score (stable), top 100 per cell
    det_cell = det_image * K + det_category
    order = np.argsort(-det_score, kind="mergesort")
    order = order[np.argsort(det_cell[order], kind="mergesort")]
    det_rank = np.arange(len(order)) - np.searchsorted(det_cell[order], det_cell[order])  # within the cell
    order, det_rank = order[det_rank < MAX_DETS[-1]], det_rank[det_rank < MAX_DETS[-1]]
    det_cell, det_category, det_score = det_cell[order], det_category[order], det_score[order]
    det_boxes = det_boxes[order]
    det_area = det_boxes[:, 2] * det_boxes[:, 3]

    gt_cell = gt_image * K + gt_category
    gt_order = np.argsort(gt_cell, kind="mergesort")
    gt_rank = np.empty(len(gt_cell), dtype=np.int64)
    gt_rank[gt_order] = np.arange(len(gt_order)) - np.searchsorted(gt_cell[gt_order], gt_cell[gt_order])

    lo, hi = AREA_RANGES[:, :1], AREA_RANGES[:, 1:]  # [A, 1]
    gt_ignored = gt_crowd | (gt_area < lo) | (gt_area > hi)  # [A, G]
    det_outside = ((det_area < lo) | (det_area > hi)).T  # [N, A]

    det_gt = _match(det_cell, det_rank, det_boxes, gt_cell, gt_rank, gt_boxes, gt_crowd, gt_ignored,
                    num_cells)  # [N, A, T]
    # --8<-- [start:coco_tp_fp]
    matched = det_gt >= 0  # [N, A, T]
    matched_area = np.nonzero(matched)[1]
    matched_id = np.zeros(det_gt.shape, dtype=np.int64)  # pycocotools keeps the GT id; 0 reads as unmatched
    matched_id[matched] = gt_ids[det_gt[matched]]
    matched_ignored_gt = np.zeros(det_gt.shape, dtype=bool)
    matched_ignored_gt[matched] = gt_ignored[matched_area, det_gt[matched]]
    det_ignored = matched_ignored_gt | ((matched_id == 0) & det_outside[:, :, None])
    is_tp = (matched_id != 0) & ~det_ignored
    is_fp = (matched_id == 0) & ~det_ignored
    # --8<-- [end:coco_tp_fp]

    num_positives = np.zeros((K, len(AREA_RANGES)), dtype=np.int64)
    np.add.at(num_positives, gt_category, (~gt_ignored).T.astype(np.int64))
    precision, recall = _accumulate(det_category, det_rank, det_score, is_tp, is_fp, num_positives)

    t50, t75 = int(np.flatnonzero(IOU_THRESHOLDS == 0.5)[0]), int(np.flatnonzero(IOU_THRESHOLDS == 0.75)[0])
    per_class_ap, pr_curves = {}, {}
    for k, category_id in enumerate(category_ids.tolist()):
        curve = precision[:, :, k, 0, -1]  # [T, R], area all, maxDets 100
        per_class_ap[category_id] = {"AP": _mean_valid(curve), "AP50": _mean_valid(curve[t50])}
        pr_curves[category_id] = {0.5: curve[t50].copy(), 0.75: curve[t75].copy()}
    return {
        "stats": _summarize(precision, recall),
        "precision": precision,
        "recall": recall,
        "per_class_ap": per_class_ap,
        "pr_curves": pr_curves,
        "category_ids": category_ids.tolist(),
        "iou_thresholds": IOU_THRESHOLDS.copy(),
        "recall_thresholds": RECALL_THRESHOLDS.copy(),
    }
