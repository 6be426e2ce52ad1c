"""COCO evaluation (Lectures 13 and 15): AP@[.5:.95], AP50, AP75, AP/AR by size, written from scratch,
for boxes (``iou_type="bbox"``), instance masks (``"segm"``) and keypoints (``"keypoints"``).

Reproduces pycocotools' ``COCOeval(iouType=...)`` number for number (its ``stats`` and its
``eval["precision"]`` / ``eval["recall"]`` arrays), including its quirks, with numpy in float64.

Inputs are plain COCO JSON dicts:
- ground truth ``gt``: ``images`` (``id``), ``categories`` (``id``) and ``annotations`` with ``id``,
  ``image_id``, ``category_id``, ``area`` (used for the size buckets, NOT recomputed from the box or
  mask), ``iscrowd`` (0/1, default 0) and the geometry of the IoU type:
  ``bbox`` = [x, y, w, h] (top-left corner, width, height, pixels) for "bbox";
  ``segmentation`` = a COCO RLE dict, uncompressed (``counts`` a list of ints) or compressed (a str or
  bytes), see ``lectures_code.metrics.rle``, for "segm";
  ``keypoints`` = [x1, y1, v1, ..., xK, yK, vK] (v = 0: not labelled, v > 0: labelled),
  ``num_keypoints`` (default: the number of v > 0) and ``bbox`` for "keypoints";
- ``detections``: list of ``image_id``, ``category_id``, ``score`` and ``bbox`` / ``segmentation`` /
  ``keypoints`` (the detection's v values are not used).
Ids are integers. The evaluation protocol (all fixed, as in pycocotools):
- IoU thresholds ``np.linspace(.5, .95, 10)`` [T=10], recall points ``np.linspace(0, 1, 101)`` [R=101];
- "bbox" and "segm": maxDets (1, 10, 100) [M=3], areas all/small/medium/large = [0, 1e10] / [0, 32^2] /
  [32^2, 96^2] / [96^2, 1e10] [A=4], 12 stats; "keypoints": maxDets (20,) [M=1], areas all/medium/large
  [A=3], 10 stats. Both ends of an area range are inclusive (a GT of area exactly 1024 is both small and
  medium).
- The overlap of a detection and a GT: box IoU (for a crowd GT the union is the detection's area); mask
  IoU, counted in pixels on the run-length codes, with the same crowd rule; for keypoints the object
  keypoint similarity OKS = mean over the GT's labelled keypoints of exp(-d^2 / (2 s^2 (2 sigma_k)^2)),
  with d the distance to the GT keypoint, s^2 the GT's ``area`` and sigma_k the keypoint's
  ``kpt_oks_sigmas`` entry (default: the 17 COCO person sigmas); a GT without labelled keypoints measures
  d to a box twice the size of its ``bbox``.
- A GT is "ignored" when it is a crowd (any ``ignore`` field is overwritten by ``iscrowd``), when its
  ``area`` is outside the range, or (keypoints) when ``num_keypoints`` is 0; a detection is ignored when
  it matches an ignored GT, or when it is unmatched and its area is outside the range. A detection's
  area is, as pycocotools' ``loadRes`` makes it: w*h of its ``bbox`` when the (first) detection has one,
  otherwise the mask's pixel count ("segm") or the extent of its keypoints ("keypoints").

Quirk kept on purpose: pycocotools stores the matched GT's annotation *id* and reads id 0 as
"unmatched", so a detection that matches a GT with ``id == 0`` counts as a false positive (and the GT
stays unrecalled). We replicate it, so numbers equal the reference, and warn when a GT id is 0.
Deviations: an empty detection list is allowed (pycocotools crashes on it), a missing ``iscrowd``
means 0, duplicate annotation ids or non-finite boxes/scores/keypoints raise ValueError, detections may
give uncompressed RLEs (pycocotools' ``loadRes`` needs compressed ones), images need no ``height`` /
``width`` (the RLEs carry their size), and polygon segmentations are not supported (convert them to RLE).
"""

from __future__ import annotations

import warnings

import numpy as np

from lectures_code.metrics.rle import RleBatch, mask_runs, pair_iou, read_rles

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # [T]; note IOU_THRESHOLDS[8] == 0.8999999999999999
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)  # [R]
MAX_DETS = (1, 10, 100)  # [M], per image and category
AREA_RANGES = np.array([[0, 1e10], [0, 32**2], [32**2, 96**2], [96**2, 1e10]], dtype=np.float64)  # [A, 2]
AREA_NAMES = ("all", "small", "medium", "large")
KEYPOINT_MAX_DETS = (20,)  # keypoints: one maxDets
KEYPOINT_AREA_RANGES = np.array([[0, 1e10], [32**2, 96**2], [96**2, 1e10]], dtype=np.float64)  # [A=3, 2]
KEYPOINT_AREA_NAMES = ("all", "medium", "large")
# The 17 COCO person keypoints (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles): the
# spread of human annotations of each, as a fraction of the object's scale (pycocotools' default)
COCO_KEYPOINT_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89,
                                 .89]) / 10.0
IOU_TYPES = ("bbox", "segm", "keypoints")


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
    return image_ids, category_ids, (image_index, category_index, area[keep], crowd[keep], ann_ids[keep], keep)


def _read_detections(detections: list, image_ids: np.ndarray, category_ids: np.ndarray):
    if not isinstance(detections, (list, tuple)):
        raise TypeError("detections must be a list of dicts")
    image = _int_ids([d["image_id"] for d in detections], "detection image_ids")
    category = _int_ids([d["category_id"] for d in detections], "detection category_ids")
    scores = np.asarray([d["score"] for d in detections], dtype=np.float64).reshape(-1)
    if not np.isfinite(scores).all():
        raise ValueError("detection scores must be finite")
    if not np.isin(image, image_ids).all():
        raise ValueError("a detection refers to an image_id that is not in gt['images']")
    keep = np.isin(category, category_ids)  # unknown categories are silently dropped, as in pycocotools
    return np.searchsorted(image_ids, image[keep]), np.searchsorted(category_ids, category[keep]), scores[keep], keep


def _segmentations(records: list, what: str) -> RleBatch:
    try:
        return read_rles([record["segmentation"] for record in records])
    except (KeyError, TypeError, ValueError) as err:  # find the culprit for a clear message
        for record in records:
            segmentation = record.get("segmentation") if isinstance(record, dict) else None
            if isinstance(segmentation, list):
                raise ValueError(f"a {what} segmentation is a polygon: only RLE masks are supported, convert "
                                 "it (e.g. with lectures_code.metrics.rle.rle_encode of the rasterized mask)") from err
            if not isinstance(segmentation, dict):
                raise ValueError(f"every {what} needs a 'segmentation' RLE dict for iou_type='segm'") from err
        raise ValueError(f"{what} segmentation: {err}") from err


def _keypoints(records: list, num_keypoints: int, what: str) -> np.ndarray:
    """float64 [N, K, 3] (x, y, v) from the records' ``keypoints`` lists of 3K numbers."""
    try:
        points = np.asarray([r["keypoints"] for r in records], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"every {what} needs 'keypoints' = [x1, y1, v1, ...] for iou_type='keypoints'") from err
    if points.shape != (len(records), 3 * num_keypoints) and len(records):
        raise ValueError(f"every {what} 'keypoints' must hold 3 * {num_keypoints} numbers (one sigma per "
                         "keypoint in kpt_oks_sigmas)")
    if not np.isfinite(points).all():
        raise ValueError(f"{what} keypoints must be finite")
    return points.reshape(len(records), num_keypoints, 3)


def _detection_area_from_bbox(detections: list) -> bool:
    """pycocotools' loadRes takes w*h of the ``bbox`` as every detection's area when the FIRST one has a
    non-empty bbox, whatever the iou_type (and the mask or keypoint extent otherwise)."""
    bbox = detections[0].get("bbox") if detections else None
    return bbox is not None and not (isinstance(bbox, (list, tuple)) and len(bbox) == 0)


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


# --8<-- [start:coco_oks]
def coco_oks(det_points: np.ndarray, gt_points: np.ndarray, gt_boxes: np.ndarray, gt_area: np.ndarray,
             sigmas: np.ndarray) -> np.ndarray:
    """Object keypoint similarity of P (detection, GT) pairs, as pycocotools' ``computeOks``: float64 [P].

    det_points, gt_points [P, K, 3] (x, y, v; the detection's v is not used), gt_boxes [P, 4] xywh,
    gt_area [P] (the GT's ``area``, the squared object scale s^2), sigmas [K]. A keypoint at distance d
    from the GT's scores exp(-d^2 / (2 s^2 (2 sigma)^2)): 1 on the spot, 0.5 at about 2.35 sigma s.
    The mean runs over the GT's labelled keypoints (v > 0). A GT without any measures, for every keypoint,
    how far the detection's lies outside the GT box grown to three times its width and height.
    """
    variances = (sigmas * 2) ** 2  # [K]
    labelled = gt_points[..., 2] > 0  # [P, K]
    has_labels = labelled.any(1, keepdims=True)  # [P, 1]
    x0, y0 = gt_boxes[:, :1] - gt_boxes[:, 2:3], gt_boxes[:, 1:2] - gt_boxes[:, 3:4]  # [P, 1]
    x1, y1 = gt_boxes[:, :1] + gt_boxes[:, 2:3] * 2, gt_boxes[:, 1:2] + gt_boxes[:, 3:4] * 2
    xd, yd = det_points[..., 0], det_points[..., 1]  # [P, K]
    outside_x = np.maximum(0, x0 - xd) + np.maximum(0, xd - x1)
    outside_y = np.maximum(0, y0 - yd) + np.maximum(0, yd - y1)
    dx = np.where(has_labels, xd - gt_points[..., 0], outside_x)
    dy = np.where(has_labels, yd - gt_points[..., 1], outside_y)
    e = (dx**2 + dy**2) / variances / (gt_area[:, None] + np.spacing(1)) / 2  # [P, K], pycocotools' order
    used = labelled | ~has_labels  # [P, K]
    # The mean over the used keypoints, summed like numpy sums pycocotools' array of exactly those
    # (pairs grouped by how many keypoints they use), so that results are equal to the last bit.
    oks = np.zeros(len(e))
    count = used.sum(1)  # [P]
    for n in np.unique(count[count > 0]):
        rows = np.flatnonzero(count == n)
        values = np.exp(-e[rows][used[rows]]).reshape(len(rows), n)  # [rows, n], in keypoint order
        oks[rows] = values.sum(1) / n
    return oks
# --8<-- [end:coco_oks]


# --8<-- [start:coco_match]
def _match(det_cell, det_rank, gt_cell, gt_rank, gt_crowd, gt_ignored, num_cells, overlap):
    """Greedy matching in every (image, category) cell, for every area range and IoU threshold at once.

    Detections are sorted by score within their cell (det_rank = position, < maxDets); GTs keep file
    order (gt_rank). gt_ignored [A, G]. ``overlap(det_index [P, D], det_valid [P, D], gt_index [P, W],
    gt_valid [P, W], crowd [P, W])`` gives the IoU (or OKS) [P, D, W] of every detection with every GT of
    its cell (entries not valid on both sides are never read). Returns det_gt [N, A, T]: index of the
    matched GT, or -1.

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
        det_valid = np.arange(D) < dets_left[:, None]  # [P, D]
        iou = overlap(det_index, det_valid, gt_index, gt_valid, crowd)  # [P, D, W]
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
def _accumulate(det_category, det_rank, det_score, is_tp, is_fp, num_positives, max_dets=MAX_DETS):
    """Pool all images of a category, sort by score, and read precision at 101 recall points.

    is_tp, is_fp [N, A, T] (ignored detections are neither), num_positives [K, A] (non-ignored GTs).
    Returns precision [T, R, K, A, M] and recall [T, K, A, M], -1 where a category/area has no GT.
    """
    K, A = num_positives.shape
    T, R, M = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(max_dets)
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
        for m, max_det in enumerate(max_dets):
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
# ... and for the 10 keypoint stats (pycocotools' _summarizeKps)
_KEYPOINT_STATS = [(True, None, "all", 20), (True, 0.5, "all", 20), (True, 0.75, "all", 20),
                   (True, None, "medium", 20), (True, None, "large", 20),
                   (False, None, "all", 20), (False, 0.5, "all", 20), (False, 0.75, "all", 20),
                   (False, None, "medium", 20), (False, None, "large", 20)]


def _summarize(precision: np.ndarray, recall: np.ndarray, spec=_STATS, area_names=AREA_NAMES,
               max_dets=MAX_DETS) -> list[float]:
    stats = []
    for is_ap, iou, area, max_det in spec:
        t = slice(None) if iou is None else np.flatnonzero(IOU_THRESHOLDS == iou)
        a, m = area_names.index(area), max_dets.index(max_det)
        values = precision[t][:, :, :, a, m] if is_ap else recall[t][:, :, a, m]
        stats.append(_mean_valid(values))
    return stats


STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100", "AR_small",
              "AR_medium", "AR_large")  # the 12 numbers of ``stats`` (bbox, segm), in order
KEYPOINT_STAT_NAMES = ("AP", "AP50", "AP75", "AP_medium", "AP_large", "AR", "AR50", "AR75", "AR_medium",
                       "AR_large")  # the 10 numbers of ``stats`` for keypoints, in order


def _stat_spec(stats) -> tuple[list, tuple]:
    if len(stats) == 12:
        return _STATS, STAT_NAMES
    if len(stats) == 10:
        return _KEYPOINT_STATS, KEYPOINT_STAT_NAMES
    raise ValueError(f"expected the 12 COCO stats (10 for keypoints), got {len(stats)}")


def named_stats(stats, digits: int = 4) -> dict:
    """The 12 COCO numbers (10 for keypoints) by name (``STAT_NAMES`` / ``KEYPOINT_STAT_NAMES``), rounded
    to ``digits`` for a record."""
    _, names = _stat_spec(stats)
    return {name: round(float(value), digits) for name, value in zip(names, stats)}


def format_stats(stats) -> str:
    """The lines pycocotools' ``COCOeval.summarize()`` prints, for a list of 12 stats (10 for keypoints)."""
    spec, _ = _stat_spec(stats)
    line = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
    all_ious = f"{IOU_THRESHOLDS[0]:0.2f}:{IOU_THRESHOLDS[-1]:0.2f}"
    return "\n".join(
        line.format("Average Precision" if is_ap else "Average Recall", "(AP)" if is_ap else "(AR)",
                    all_ious if iou is None else f"{iou:0.2f}", area, max_det, value)
        for (is_ap, iou, area, max_det), value in zip(spec, stats)
    )


def _box_geometry(gt: dict, gt_keep, detections: list, det_keep, order):
    """Detection areas [N] (w*h) and the box IoU of (detection, GT) pairs, for ``_match``."""
    gt_boxes = _boxes(gt["annotations"], "annotation")[gt_keep]  # [G, 4] xywh
    det_boxes = _boxes(detections, "detection")[det_keep][order]  # [N, 4] xywh, ranked
    det_area = det_boxes[:, 2] * det_boxes[:, 3]

    def overlap(det_index, det_valid, gt_index, gt_valid, crowd):  # every entry: boxes are cheap
        return coco_box_iou(det_boxes[det_index][:, :, None], gt_boxes[gt_index][:, None], crowd[:, None])

    return det_area, overlap


def _valid_pairs(pair_overlap, det_index, det_valid, gt_index, gt_valid, crowd):
    """[P, D, W] with ``pair_overlap(det [Q], gt [Q], crowd [Q])`` on the valid entries, 0 elsewhere."""
    out = np.zeros(det_index.shape + gt_index.shape[1:])
    p, d, g = np.nonzero(det_valid[:, :, None] & gt_valid[:, None, :])
    out[p, d, g] = pair_overlap(det_index[p, d], gt_index[p, g], crowd[p, g])
    return out


def _mask_geometry(gt: dict, gt_keep, detections: list, det_kept):
    """Detection areas [N] and the mask IoU of (detection, GT) pairs; det_kept: ranked detection indices."""
    gt_masks = _segmentations([gt["annotations"][i] for i in np.flatnonzero(gt_keep)], "annotation")
    det_records = [detections[i] for i in det_kept]
    det_masks = _segmentations(det_records, "detection")
    gt_runs, det_runs = mask_runs(gt_masks), mask_runs(det_masks)  # foreground runs, areas and boxes, once
    if _detection_area_from_bbox(detections):
        det_boxes = _boxes(det_records, "detection")
        det_area = det_boxes[:, 2] * det_boxes[:, 3]
    else:
        det_area = det_runs.area.astype(np.float64)

    def overlap(det_index, det_valid, gt_index, gt_valid, crowd):
        return _valid_pairs(lambda d, g, c: pair_iou(det_runs, gt_runs, d, g, c), det_index, det_valid, gt_index,
                            gt_valid, crowd)

    return det_area, overlap


def _keypoint_geometry(gt: dict, gt_keep, detections: list, det_kept, gt_area, sigmas):
    """Detection areas [N], GTs without labelled keypoints [G], and the OKS of (detection, GT) pairs."""
    gt_records = [gt["annotations"][i] for i in np.flatnonzero(gt_keep)]
    gt_points = _keypoints(gt_records, len(sigmas), "annotation")  # [G, K, 3]
    gt_boxes = _boxes(gt_records, "annotation")  # [G, 4] xywh
    labelled = (gt_points[..., 2] > 0).sum(1)
    num_keypoints = np.asarray([r.get("num_keypoints", n) for r, n in zip(gt_records, labelled.tolist())])
    det_records = [detections[i] for i in det_kept]
    det_points = _keypoints(det_records, len(sigmas), "detection")  # [N, K, 3]
    if _detection_area_from_bbox(detections):
        det_boxes = _boxes(det_records, "detection")
        det_area = det_boxes[:, 2] * det_boxes[:, 3]
    else:  # the extent of the keypoints, as pycocotools' loadRes
        extent = det_points[..., :2].max(1) - det_points[..., :2].min(1)  # [N, 2]
        det_area = extent[:, 0] * extent[:, 1]

    def overlap(det_index, det_valid, gt_index, gt_valid, crowd):  # crowd plays no part in OKS
        return _valid_pairs(lambda d, g, c: coco_oks(det_points[d], gt_points[g], gt_boxes[g], gt_area[g], sigmas),
                            det_index, det_valid, gt_index, gt_valid, crowd)

    return det_area, num_keypoints.reshape(-1) == 0, overlap


def _check_sigmas(iou_type: str, kpt_oks_sigmas) -> np.ndarray | None:
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    if iou_type != "keypoints":
        if kpt_oks_sigmas is not None:
            raise ValueError("kpt_oks_sigmas is only used with iou_type='keypoints'")
        return None
    sigmas = COCO_KEYPOINT_SIGMAS if kpt_oks_sigmas is None else np.asarray(kpt_oks_sigmas, dtype=np.float64)
    if sigmas.ndim != 1 or len(sigmas) == 0 or not (np.isfinite(sigmas) & (sigmas > 0)).all():
        raise ValueError("kpt_oks_sigmas must be K > 0 positive numbers, one per keypoint")
    return sigmas


def coco_evaluate(gt: dict, detections: list, iou_type: str = "bbox", kpt_oks_sigmas=None) -> dict:
    """COCO AP/AR of ``detections`` against ``gt`` (both COCO JSON); see the module docstring.

    ``iou_type``: "bbox" (boxes xywh), "segm" (RLE masks) or "keypoints" (OKS with ``kpt_oks_sigmas``, K
    numbers, default the 17 COCO person sigmas ``COCO_KEYPOINT_SIGMAS``). Returns a dict with
    - ``stats``: the 12 numbers of pycocotools' ``COCOeval.stats`` (10 for keypoints; list of float,
      -1 = undefined);
    - ``precision``: float64 [T=10, R=101, K, A, M] like ``COCOeval.eval["precision"]`` (categories in
      sorted id order, -1 for a category/area without GT; A=4, M=3, or A=3, M=1 for keypoints);
      ``recall``: [T, K, A, M]; ``area_names`` and ``max_dets`` name the A and M axes;
    - ``per_class_ap``: {category id: {"AP": AP@[.5:.95], "AP50": AP@.5}} (area all, largest maxDets);
    - ``pr_curves``: {category id: {0.5: precision [R], 0.75: precision [R]}} (area all, largest maxDets);
    - ``category_ids``, ``iou_thresholds``, ``recall_thresholds``.
    """
    sigmas = _check_sigmas(iou_type, kpt_oks_sigmas)
    keypoints = iou_type == "keypoints"
    area_ranges = KEYPOINT_AREA_RANGES if keypoints else AREA_RANGES
    area_names = KEYPOINT_AREA_NAMES if keypoints else AREA_NAMES
    max_dets = KEYPOINT_MAX_DETS if keypoints else MAX_DETS
    image_ids, category_ids, ground_truth = _read_ground_truth(gt)
    gt_image, gt_category, gt_area, gt_crowd, gt_ids, gt_keep = ground_truth
    det_image, det_category, det_score, det_keep = _read_detections(detections, image_ids, category_ids)
    K = len(category_ids)
    num_cells = len(image_ids) * K

    # cells = (image, category); detections by descending score (stable), top maxDets per cell
    det_cell = det_image * K + det_category
    order = np.argsort(-det_score, kind="mergesort")
    order = order[np.argsort(det_cell[order], kind="mergesort")]
    det_rank = np.arange(len(order)) - np.searchsorted(det_cell[order], det_cell[order])  # within the cell
    order, det_rank = order[det_rank < max_dets[-1]], det_rank[det_rank < max_dets[-1]]
    det_cell, det_category, det_score = det_cell[order], det_category[order], det_score[order]

    gt_without_keypoints = np.zeros(len(gt_ids), dtype=bool)
    if iou_type == "bbox":
        det_area, overlap = _box_geometry(gt, gt_keep, detections, det_keep, order)
    elif iou_type == "segm":
        det_area, overlap = _mask_geometry(gt, gt_keep, detections, np.flatnonzero(det_keep)[order])
    else:
        det_area, gt_without_keypoints, overlap = _keypoint_geometry(
            gt, gt_keep, detections, np.flatnonzero(det_keep)[order], gt_area, sigmas)

    gt_cell = gt_image * K + gt_category
    gt_order = np.argsort(gt_cell, kind="mergesort")
    gt_rank = np.empty(len(gt_cell), dtype=np.int64)
    gt_rank[gt_order] = np.arange(len(gt_order)) - np.searchsorted(gt_cell[gt_order], gt_cell[gt_order])

    lo, hi = area_ranges[:, :1], area_ranges[:, 1:]  # [A, 1]
    gt_ignored = gt_crowd | gt_without_keypoints | (gt_area < lo) | (gt_area > hi)  # [A, G]
    det_outside = ((det_area < lo) | (det_area > hi)).T  # [N, A]

    det_gt = _match(det_cell, det_rank, gt_cell, gt_rank, gt_crowd, gt_ignored, num_cells, overlap)  # [N, A, T]
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

    num_positives = np.zeros((K, len(area_ranges)), dtype=np.int64)
    np.add.at(num_positives, gt_category, (~gt_ignored).T.astype(np.int64))
    precision, recall = _accumulate(det_category, det_rank, det_score, is_tp, is_fp, num_positives, max_dets)

    t50, t75 = int(np.flatnonzero(IOU_THRESHOLDS == 0.5)[0]), int(np.flatnonzero(IOU_THRESHOLDS == 0.75)[0])
    per_class_ap, pr_curves = {}, {}
    for k, category_id in enumerate(category_ids.tolist()):
        curve = precision[:, :, k, 0, -1]  # [T, R], area all, largest maxDets
        per_class_ap[category_id] = {"AP": _mean_valid(curve), "AP50": _mean_valid(curve[t50])}
        pr_curves[category_id] = {0.5: curve[t50].copy(), 0.75: curve[t75].copy()}
    spec = _KEYPOINT_STATS if keypoints else _STATS
    return {
        "stats": _summarize(precision, recall, spec, area_names, max_dets),
        "precision": precision,
        "recall": recall,
        "per_class_ap": per_class_ap,
        "pr_curves": pr_curves,
        "category_ids": category_ids.tolist(),
        "area_names": area_names,
        "max_dets": max_dets,
        "iou_thresholds": IOU_THRESHOLDS.copy(),
        "recall_thresholds": RECALL_THRESHOLDS.copy(),
    }
