"""coco_evaluate vs pycocotools' COCOeval (exact) and faster-coco-eval (second oracle, 1e-12), for boxes, masks
(iou_type="segm") and keypoints."""

from __future__ import annotations

import contextlib
import copy
import io
import warnings

import numpy as np
import pytest

from lectures_code.data.digit_canvases import DigitCanvases, mask_keypoints, to_coco
from lectures_code.metrics.coco_eval import KEYPOINT_STAT_NAMES, coco_evaluate, format_stats, named_stats
from lectures_code.metrics.rle import rle_compress, rle_encode

pycocotools_coco = pytest.importorskip("pycocotools.coco")
pycocotools_eval = pytest.importorskip("pycocotools.cocoeval")
faster_coco_eval = pytest.importorskip("faster_coco_eval")


def run_pycocotools(gt, detections, iou_type="bbox", kpt_oks_sigmas=None):
    """COCOeval after evaluate/accumulate/summarize, plus what summarize printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coco_gt = pycocotools_coco.COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        evaluator = pycocotools_eval.COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(detections)), iou_type)
        if kpt_oks_sigmas is not None:  # pycocotools hard-codes the 17 COCO sigmas otherwise
            evaluator.params.kpt_oks_sigmas = np.asarray(kpt_oks_sigmas)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator, printed.getvalue()


def run_faster_coco_eval(gt, detections, iou_type="bbox", kpt_oks_sigmas=None):
    sigmas = {} if kpt_oks_sigmas is None else {"kpt_oks_sigmas": list(kpt_oks_sigmas)}
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coco_gt = faster_coco_eval.COCO(copy.deepcopy(gt))
        evaluator = faster_coco_eval.COCOeval_faster(
            coco_gt, coco_gt.loadRes(copy.deepcopy(detections)), iou_type, print_function=lambda *args: None, **sigmas
        )
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def evaluate_quietly(gt, detections, iou_type="bbox", kpt_oks_sigmas=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return coco_evaluate(copy.deepcopy(gt), copy.deepcopy(detections), iou_type, kpt_oks_sigmas=kpt_oks_sigmas)


def assert_matches_references(gt, detections, faster=True, iou_type="bbox", kpt_oks_sigmas=None):
    ours = evaluate_quietly(gt, detections, iou_type, kpt_oks_sigmas)
    num_stats = 10 if iou_type == "keypoints" else 12
    assert len(ours["stats"]) == num_stats
    if detections:  # pycocotools' loadRes crashes on an empty list
        reference, _ = run_pycocotools(gt, detections, iou_type, kpt_oks_sigmas)
        np.testing.assert_allclose(ours["stats"], reference.stats, rtol=0, atol=1e-12)
        # same operations in the same order: the arrays agree bit for bit
        np.testing.assert_array_equal(ours["precision"], reference.eval["precision"])
        np.testing.assert_array_equal(ours["recall"], reference.eval["recall"])
    if faster:
        # faster-coco-eval drops pycocotools' np.spacing(1) in tp / (tp + fp): equal to ~1e-16
        second = run_faster_coco_eval(gt, detections, iou_type, kpt_oks_sigmas)
        np.testing.assert_allclose(ours["stats"], second.stats[:num_stats], rtol=0, atol=1e-12)
        np.testing.assert_allclose(ours["precision"], second.eval["precision"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(ours["recall"], second.eval["recall"], rtol=0, atol=1e-12)
    return ours


def make_dataset(seed, num_images=16, num_classes=4, max_gts=8, max_false=8, image_ids=None):
    """Random GT boxes of all sizes (some crowd), jittered duplicates, class confusions, false positives,
    scores rounded to one decimal (ties within and across images), images with no GT or no detection."""
    rng = np.random.default_rng(seed)
    image_ids = list(range(1, num_images + 1)) if image_ids is None else image_ids
    category_ids = [int(c) for c in rng.choice(np.arange(1, 4 * num_classes), num_classes, replace=False)]
    annotations, detections = [], []
    for image_id in image_ids:
        for _ in range(rng.integers(0, max_gts + 1)):
            w, h = np.round(np.exp(rng.uniform(1.0, 5.5, 2)), 1)
            x, y = np.round(rng.uniform(0, 300, 2), 1)
            category = int(rng.choice(category_ids))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                "bbox": [float(x), float(y), float(w), float(h)],
                # like a segmentation area: smaller than the box, and what the size buckets use
                "area": float(w * h * rng.uniform(0.6, 1.0)),
                "iscrowd": int(rng.random() < 0.08),
                "ignore": int(rng.random() < 0.2),  # overwritten by iscrowd in pycocotools
            })
            for _ in range(rng.integers(0, 4)):
                jitter = rng.normal(0, 0.12, 4) * [w, h, w, h]
                detections.append({
                    "image_id": image_id,
                    "category_id": category if rng.random() < 0.85 else int(rng.choice(category_ids)),
                    "bbox": [float(x + jitter[0]), float(y + jitter[1]), float(max(w + jitter[2], 1.0)),
                             float(max(h + jitter[3], 1.0))],
                    "score": float(rng.integers(0, 10) / 10),
                })
        for _ in range(rng.integers(0, max_false + 1)):
            w, h = np.exp(rng.uniform(1.0, 5.5, 2))
            x, y = rng.uniform(0, 300, 2)
            detections.append({"image_id": image_id, "category_id": int(rng.choice(category_ids)),
                               "bbox": [float(x), float(y), float(w), float(h)],
                               "score": float(np.round(rng.random(), 1))})
    order = rng.permutation(len(detections))  # detections need not be grouped by image
    gt = {"images": [{"id": i} for i in image_ids], "categories": [{"id": c} for c in category_ids],
          "annotations": annotations}
    return gt, [detections[i] for i in order]


@pytest.mark.parametrize("seed", range(30))
def test_random_datasets_match_pycocotools_and_faster_coco_eval(seed):
    gt, detections = make_dataset(seed)
    assert_matches_references(gt, detections)


@pytest.mark.parametrize("seed", range(4))
def test_unsorted_sparse_ids_and_many_detections(seed):
    rng = np.random.default_rng(100 + seed)
    image_ids = [int(i) for i in rng.choice(np.arange(1, 10_000), 12, replace=False)]  # unsorted
    gt, detections = make_dataset(seed, image_ids=image_ids, max_gts=20, max_false=40, num_classes=2)
    assert_matches_references(gt, detections)


@pytest.mark.parametrize("seed", range(3))
def test_crowded_images(seed):
    # up to 60 GTs of one class per image: wide GT buckets in the matching
    gt, detections = make_dataset(200 + seed, num_images=4, num_classes=1, max_gts=60, max_false=30)
    assert_matches_references(gt, detections)


def test_format_stats_prints_what_summarize_prints():
    gt, detections = make_dataset(0)
    reference, printed = run_pycocotools(gt, detections)
    expected = [line for line in printed.splitlines() if line.startswith(" Average")]
    assert format_stats(evaluate_quietly(gt, detections)["stats"]).splitlines() == expected
    assert format_stats(list(reference.stats)).splitlines() == expected


def test_per_class_ap_and_pr_curves_read_the_reference_precision():
    gt, detections = make_dataset(5)
    ours = evaluate_quietly(gt, detections)
    reference, _ = run_pycocotools(gt, detections)
    precision = reference.eval["precision"]  # [T, R, K, A, M]
    for k, category_id in enumerate(reference.params.catIds):
        curve = precision[:, :, k, 0, 2]
        valid = curve[curve > -1]
        assert ours["per_class_ap"][category_id]["AP"] == pytest.approx(valid.mean() if valid.size else -1)
        assert ours["per_class_ap"][category_id]["AP50"] == pytest.approx(
            curve[0][curve[0] > -1].mean() if valid.size else -1)
        np.testing.assert_array_equal(ours["pr_curves"][category_id][0.5], curve[0])
        np.testing.assert_array_equal(ours["pr_curves"][category_id][0.75], curve[5])


def box(image_id, category_id, bbox, score=None, ann_id=None, area=None, iscrowd=0):
    if score is not None:
        return {"image_id": image_id, "category_id": category_id, "bbox": list(bbox), "score": score}
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": list(bbox),
            "area": float(bbox[2] * bbox[3]) if area is None else area, "iscrowd": iscrowd}


def dataset(annotations, image_ids=(1,), category_ids=(1,)):
    return {"images": [{"id": i} for i in image_ids], "categories": [{"id": c} for c in category_ids],
            "annotations": annotations}


def test_crowd_absorbs_detections_and_uses_the_detection_area_as_union():
    crowd = box(1, 1, [0, 0, 200, 200], ann_id=1, iscrowd=1)
    person = box(1, 1, [300, 300, 40, 40], ann_id=2)
    # small detections inside the crowd region: IoU 1 with the crowd (union = detection area),
    # so they are ignored (neither TP nor FP) even though they score higher than the true positive
    inside = [box(1, 1, [10 * i, 10 * i, 20, 20], score=0.9) for i in range(6)]
    detections = [*inside, box(1, 1, [300, 300, 40, 40], score=0.5)]
    ours = assert_matches_references(dataset([crowd, person]), detections)
    # hand-checked: the one regular GT is found with precision 1 (1 / (1 + eps) in pycocotools)
    assert ours["stats"][0] == pytest.approx(1.0, abs=1e-12)


def test_empty_category_stays_minus_one():
    gt, detections = make_dataset(1)
    gt["categories"].append({"id": 999})  # no GT; a few detections of it
    detections += [box(gt["images"][0]["id"], 999, [0, 0, 30, 30], score=0.7)]
    ours = assert_matches_references(gt, detections)
    k = ours["category_ids"].index(999)
    assert (ours["precision"][:, :, k] == -1).all() and (ours["recall"][:, k] == -1).all()
    assert ours["per_class_ap"][999] == {"AP": -1.0, "AP50": -1.0}


def test_area_range_boundaries_are_inclusive():
    # GT areas exactly 32^2 and 96^2 belong to two buckets each; detection areas w*h likewise
    annotations = [box(1, 1, [0, 0, 32, 32], ann_id=1), box(1, 1, [100, 100, 96, 96], ann_id=2),
                   box(2, 1, [0, 0, 50, 50], ann_id=3, area=1024.0), box(2, 1, [200, 0, 80, 80], ann_id=4,
                                                                          area=9216.0)]
    detections = [box(1, 1, [0, 0, 32, 32], score=0.9), box(1, 1, [100, 100, 96, 96], score=0.8),
                  box(2, 1, [0, 0, 50, 50], score=0.7), box(2, 1, [200, 0, 80, 80], score=0.6),
                  box(2, 1, [400, 400, 32, 32], score=0.95), box(2, 1, [400, 0, 96, 96], score=0.85)]
    ours = assert_matches_references(dataset(annotations, image_ids=(1, 2)), detections)
    small, medium, large = ours["recall"][0, 0, 1:, 2]
    assert (small, medium, large) == (1.0, 1.0, 1.0)


def test_tied_scores_across_images_keep_image_order():
    gt, detections = make_dataset(2)
    for detection in detections:
        detection["score"] = 0.5
    assert_matches_references(gt, detections)


def test_more_than_100_detections_per_image_are_cut_after_sorting():
    rng = np.random.default_rng(0)
    annotations = [box(1, 1, [float(10 * i), 0, 8, 8], ann_id=i + 1) for i in range(30)]
    # 150 detections: the true positives have the LOWEST scores, beyond rank 100 for most of them
    false = [box(1, 1, [500 + float(i), 500, 5, 5], score=float(0.5 + 0.003 * i)) for i in range(120)]
    true = [box(1, 1, [float(10 * i), 0, 8, 8], score=float(0.1 + 0.01 * i)) for i in range(30)]
    detections = [false[i] if i < 120 else true[i - 120] for i in rng.permutation(150)]
    ours = assert_matches_references(dataset(annotations), detections)
    assert ours["recall"][0, 0, 0, 2] == 0.0  # only ranks 0-99 count: all false positives


def test_exact_threshold_ious_match():
    # GT 100x1 vs detection k x 1: IoU k/100 is computed the same way as the thresholds are compared,
    # including 0.5 and 0.75 exactly (integer boxes); one image per detection keeps them independent
    annotations, detections = [], []
    for i, k in enumerate(range(45, 101, 5)):
        annotations.append(box(i + 1, 1, [0, 0, 100, 1], ann_id=i + 1))
        detections.append(box(i + 1, 1, [0, 0, k, 1], score=float(k) / 100))
    annotations.append(box(99, 1, [0, 0, 20, 20], ann_id=99))
    detections.append(box(99, 1, [0, 0, 20, 15], score=0.3))  # IoU 300 / 400 = 0.75
    image_ids = [a["image_id"] for a in annotations]
    ours = assert_matches_references(dataset(annotations, image_ids=image_ids), detections)
    # hand-checked: IoU exactly 0.5 counts at threshold 0.5 (k = 50..100 and the 20x20 box: 12 of 13),
    # IoU exactly 0.75 at threshold 0.75 (k = 75..100 and the 20x20 box: 7 of 13)
    assert ours["recall"][0, 0, 0, 2] == 12 / 13 and ours["recall"][5, 0, 0, 2] == 7 / 13


def test_images_without_gt_or_detections():
    annotations = [box(1, 1, [0, 0, 50, 50], ann_id=1), box(3, 1, [0, 0, 50, 50], ann_id=2)]
    detections = [box(1, 1, [0, 0, 50, 50], score=0.9), box(2, 1, [0, 0, 50, 50], score=0.95)]
    ours = assert_matches_references(dataset(annotations, image_ids=(1, 2, 3, 4)), detections)
    # hand-checked: FP (0.95) then TP (0.9): recall 0.5 at precision 0.5, GT of image 3 never found
    assert ours["recall"][0, 0, 0, 2] == 0.5
    assert ours["pr_curves"][1][0.5][50] == pytest.approx(0.5) and ours["pr_curves"][1][0.5][51] == 0.0


@pytest.mark.parametrize("later_first", [False, True])
def test_equal_iou_goes_to_the_later_gt(later_first):
    a, b = box(1, 1, [12, 0, 10, 10], ann_id=1), box(1, 1, [8, 0, 10, 10], ann_id=2)
    detections = [box(1, 1, [10, 0, 10, 10], score=0.9),  # IoU 80/120 with both GTs
                  box(1, 1, [14, 0, 10, 10], score=0.8)]  # IoU 80/120 with a, 40/160 with b
    ours = assert_matches_references(dataset([b, a] if later_first else [a, b]), detections)
    # a listed first: detection 1 takes the later b, detection 2 takes a -> AP50 = 1. Otherwise
    # detection 1 takes a, detection 2 is a false positive: precision 1 up to recall 0.5 -> 51/101
    assert ours["per_class_ap"][1]["AP50"] == pytest.approx(51 / 101 if later_first else 1.0, abs=1e-12)


def test_annotation_id_zero_quirk_is_replicated_and_warned_about():
    annotations = [box(1, 1, [0, 0, 10, 10], ann_id=0)]
    detections = [box(1, 1, [0, 0, 10, 10], score=0.9)]
    with pytest.warns(UserWarning, match="id 0"):
        coco_evaluate(dataset(annotations), detections)
    ours = assert_matches_references(dataset(annotations), detections)
    assert ours["stats"][0] == 0.0  # a perfect detection of GT id 0 scores 0, as in pycocotools
    annotations[0]["id"] = 1
    assert evaluate_quietly(dataset(annotations), detections)["stats"][0] == pytest.approx(1.0, abs=1e-12)


def test_ignore_field_is_overwritten_by_iscrowd():
    annotations = [{**box(1, 1, [0, 0, 10, 10], ann_id=1), "ignore": 1}]
    ours = assert_matches_references(dataset(annotations), [box(1, 1, [50, 50, 10, 10], score=0.9)])
    assert ours["stats"][0] == 0.0  # the GT still counts (AP 0, not -1)


def test_empty_detection_list_and_empty_ground_truth():
    gt, _ = make_dataset(3)
    ours = assert_matches_references(gt, [])
    assert ours["stats"][0] == 0.0 and ours["stats"][8] == 0.0
    no_gt = dataset([], image_ids=(1, 2))
    ours = assert_matches_references(no_gt, [box(1, 1, [0, 0, 5, 5], score=0.5)])
    assert ours["stats"] == [-1.0] * 12


def test_unknown_category_is_dropped_and_unknown_image_rejected():
    gt, detections = make_dataset(4)
    extra = [box(gt["images"][0]["id"], 12345, [0, 0, 20, 20], score=0.99)]
    assert evaluate_quietly(gt, detections + extra)["stats"] == evaluate_quietly(gt, detections)["stats"]
    with pytest.raises(ValueError, match="image_id"):
        coco_evaluate(gt, [box(424242, gt["categories"][0]["id"], [0, 0, 5, 5], score=0.5)])


def test_bad_input_raises():
    gt, detections = make_dataset(0)
    with pytest.raises(ValueError, match="iou_type"):
        coco_evaluate(gt, detections, iou_type="mask")
    with pytest.raises(ValueError, match="bbox"):
        coco_evaluate(gt, [{**detections[0], "bbox": [0, 0, 5]}])
    with pytest.raises(ValueError, match="score"):
        coco_evaluate(gt, [{**detections[0], "score": float("nan")}])
    with pytest.raises(TypeError):
        coco_evaluate({"images": []}, detections)
    with pytest.raises(ValueError, match="12"):
        format_stats([0.0] * 11)


def test_regular_gt_is_preferred_over_a_better_matching_crowd():
    crowd = box(1, 1, [0, 0, 100, 100], ann_id=1, iscrowd=1)
    person = box(1, 1, [0, 0, 30, 20], ann_id=2)
    # IoU 1 with the crowd (inside it), 600 / 900 = 0.67 with the person: the regular GT wins
    detections = [box(1, 1, [0, 0, 30, 30], score=0.9)]
    ours = assert_matches_references(dataset([crowd, person]), detections)
    assert ours["recall"][0, 0, 0, 2] == 1.0


# ----------------------------------------------------------------------------------------------
# iou_type="segm": instance masks as COCO RLE (Lecture 15)


def ellipse_mask(h, w, cy, cx, ry, rx):
    y, x = np.mgrid[:h, :w]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1


def make_mask_dataset(seed, num_images=10, height=60, width=80, num_classes=3, max_gts=6):
    """Ellipse masks of all sizes (some crossing the border, some empty, some crowd), GT RLEs in both forms,
    detections = jittered GT masks (compressed RLE, as pycocotools' loadRes wants) and false positives,
    scores rounded to one decimal (ties), images without GT or detections."""
    rng = np.random.default_rng(seed)
    category_ids = [int(c) for c in rng.choice(np.arange(1, 20), num_classes, replace=False)]
    images = [{"id": i + 1, "height": height, "width": width} for i in range(num_images)]
    annotations, detections = [], []
    for image in images:
        for _ in range(rng.integers(0, max_gts + 1)):
            cy, cx = rng.uniform(-5, height + 5), rng.uniform(-5, width + 5)
            ry, rx = np.exp(rng.uniform(0, 3.5, 2))
            mask = ellipse_mask(height, width, cy, cx, ry, rx)
            if rng.random() < 0.08:
                mask[:] = False  # an empty GT mask (it can still be ignored by its area)
            category = int(rng.choice(category_ids))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image["id"], "category_id": category,
                "segmentation": rle_encode(mask, compressed=bool(rng.random() < 0.5)),
                "area": float(mask.sum()) if rng.random() < 0.8 else float(mask.sum() * rng.uniform(0.5, 2)),
                "iscrowd": int(rng.random() < 0.1), "ignore": int(rng.random() < 0.2),
            })
            for _ in range(rng.integers(0, 4)):
                jittered = ellipse_mask(height, width, cy + rng.normal(0, 0.2 * ry), cx + rng.normal(0, 0.2 * rx),
                                        ry * rng.uniform(0.7, 1.3), rx * rng.uniform(0.7, 1.3))
                detections.append({"image_id": image["id"],
                                   "category_id": category if rng.random() < 0.85 else int(rng.choice(category_ids)),
                                   "segmentation": rle_encode(jittered, compressed=True),
                                   "score": float(rng.integers(0, 10) / 10)})
        for _ in range(rng.integers(0, 4)):
            mask = ellipse_mask(height, width, rng.uniform(0, height), rng.uniform(0, width),
                                *np.exp(rng.uniform(0, 3.5, 2)))
            detections.append({"image_id": image["id"], "category_id": int(rng.choice(category_ids)),
                               "segmentation": rle_encode(mask, compressed=True),
                               "score": float(np.round(rng.random(), 1))})
    order = rng.permutation(len(detections))
    gt = {"images": images, "categories": [{"id": c} for c in category_ids], "annotations": annotations}
    return gt, [detections[i] for i in order]


@pytest.mark.parametrize("seed", range(16))
def test_segm_random_datasets_match_pycocotools_and_faster_coco_eval(seed):
    gt, detections = make_mask_dataset(seed)
    assert_matches_references(gt, detections, iou_type="segm")


@pytest.mark.parametrize("seed", range(3))
def test_segm_crowded_images_and_many_detections(seed):
    gt, detections = make_mask_dataset(50 + seed, num_images=3, num_classes=1, max_gts=40)
    rng = np.random.default_rng(seed)
    first_image = [d for d in detections if d["image_id"] == 1]
    # more than maxDets = 100 detections in one image: only the 100 best count
    detections += [{**first_image[i % len(first_image)], "score": float(rng.integers(0, 100) / 100)}
                   for i in range(120)]
    assert_matches_references(gt, detections, iou_type="segm")


def test_segm_area_comes_from_the_bbox_when_the_first_detection_has_one():
    # pycocotools' loadRes takes its bbox branch when detections[0] has a "bbox": every detection's area
    # becomes w*h of its bbox, which then decides the small/medium/large buckets
    gt, detections = make_mask_dataset(7)
    rng = np.random.default_rng(0)
    for detection in detections:
        detection["bbox"] = [0.0, 0.0, float(rng.uniform(1, 120)), float(rng.uniform(1, 120))]
    with_bbox = assert_matches_references(gt, detections, iou_type="segm")
    without = evaluate_quietly(gt, [{k: v for k, v in d.items() if k != "bbox"} for d in detections], "segm")
    assert with_bbox["stats"][3:6] != without["stats"][3:6]  # the size buckets changed, nothing else did
    assert with_bbox["stats"][:3] == without["stats"][:3]


def test_segm_hand_checked_crowd_and_border_masks():
    h, w = 20, 30
    crowd = np.zeros((h, w), dtype=bool)
    crowd[:, :15] = True  # a crowd region on the left half, touching three borders
    person = np.zeros((h, w), dtype=bool)
    person[10:, 20:] = True  # 10 x 10 in the bottom-right corner
    # (pycocotools needs the images' height and width for segm, we read the size off the RLEs)
    gt = {"images": [{"id": 1, "height": h, "width": w}], "categories": [{"id": 1}], "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle_encode(crowd), "area": 300.0, "iscrowd": 1},
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": rle_encode(person), "area": 100.0, "iscrowd": 0}]}
    inside = np.zeros((h, w), dtype=bool)
    inside[2:6, 2:6] = True  # in the crowd region: IoU 1 with it (union = the detection), ignored
    found = person.copy()
    found[10, 20] = False  # 99 of the 100 pixels: IoU 0.99
    detections = [{"image_id": 1, "category_id": 1, "segmentation": rle_encode(m, compressed=True), "score": s}
                  for m, s in ((inside, 0.9), (found, 0.5))]
    ours = assert_matches_references(gt, detections, iou_type="segm")
    assert ours["stats"][0] == pytest.approx(1.0, abs=1e-12)  # hand-checked: the regular GT found at IoU 0.99


def test_segm_images_without_gt_or_detections_and_empty_detection_list():
    gt, detections = make_mask_dataset(3)
    gt["images"] += [{"id": 100, "height": 60, "width": 80}, {"id": 101, "height": 60, "width": 80}]
    extra = rle_encode(np.ones((60, 80), dtype=bool), compressed=True)  # an all-ones false positive
    detections.append({"image_id": 100, "category_id": gt["categories"][0]["id"], "segmentation": extra,
                       "score": 0.99})
    assert_matches_references(gt, detections, iou_type="segm")
    ours = assert_matches_references(gt, [], iou_type="segm", faster=False)
    assert ours["stats"][0] == 0.0


def test_segm_detection_of_another_size_never_matches():
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:8, 2:8] = True
    gt = {"images": [{"id": 1, "height": 10, "width": 10}], "categories": [{"id": 1}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle_encode(mask), "area": 36.0,
                           "iscrowd": 0}]}
    bigger = np.zeros((12, 12), dtype=bool)
    bigger[2:8, 2:8] = True  # the same pixels on a 12 x 12 canvas: pycocotools' IoU is -1
    detections = [{"image_id": 1, "category_id": 1, "segmentation": rle_encode(bigger, compressed=True),
                   "score": 0.9}]
    ours = assert_matches_references(gt, detections, iou_type="segm", faster=False)
    assert ours["stats"][0] == 0.0


def test_segm_of_the_digit_canvases_ground_truth_is_perfect():
    gt = to_coco(DigitCanvases("test", size=12, seed=5))
    detections = [{"image_id": a["image_id"], "category_id": a["category_id"],
                   "segmentation": rle_compress(a["segmentation"]), "score": 0.9} for a in gt["annotations"]]
    ours = assert_matches_references(gt, detections, iou_type="segm")
    assert ours["stats"][0] == pytest.approx(1.0) and ours["stats"][8] == pytest.approx(1.0)


def test_segm_bad_input_raises():
    gt, detections = make_mask_dataset(0)
    with pytest.raises(ValueError, match="polygon"):
        coco_evaluate(gt, [{**detections[0], "segmentation": [[0, 0, 5, 0, 5, 5]]}], "segm")
    with pytest.raises(ValueError, match="segmentation"):
        coco_evaluate(gt, [{k: v for k, v in detections[0].items() if k != "segmentation"}], "segm")
    bad = {**detections[0], "segmentation": {"size": [60, 80], "counts": [1, 2, 3]}}
    with pytest.raises(ValueError, match="sum to 6"):
        coco_evaluate(gt, [bad], "segm")
    with pytest.raises(ValueError, match="kpt_oks_sigmas"):
        coco_evaluate(gt, detections, "segm", kpt_oks_sigmas=[0.1])


# ----------------------------------------------------------------------------------------------
# iou_type="keypoints": object keypoint similarity (Lecture 15)


def make_keypoint_dataset(seed, num_keypoints, num_images=12, num_classes=2, with_bbox=False):
    """GT keypoints inside random boxes, some not labelled (v = 0, coordinates 0), some GTs with none (then
    num_keypoints 0: ignored); detections near the GT keypoints or anywhere in the box."""
    rng = np.random.default_rng(seed)
    K = num_keypoints
    category_ids = list(range(1, num_classes + 1))
    annotations, detections = [], []
    for image_id in range(1, num_images + 1):
        for _ in range(rng.integers(0, 6)):
            w, h = np.exp(rng.uniform(2, 5.5, 2))
            x, y = rng.uniform(0, 300, 2)
            points = np.stack([rng.uniform(x, x + w, K), rng.uniform(y, y + h, K),
                               rng.choice([0, 1, 2], K, p=[0.3, 0.2, 0.5])], 1)
            if rng.random() < 0.15:
                points[:, 2] = 0  # no labelled keypoint: OKS measures the distance to the grown box
            points[points[:, 2] == 0, :2] = 0
            category = int(rng.choice(category_ids))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                "keypoints": points.ravel().tolist(), "num_keypoints": int((points[:, 2] > 0).sum()),
                "bbox": [float(x), float(y), float(w), float(h)],
                "area": float(w * h * rng.uniform(0.5, 1.0)), "iscrowd": int(rng.random() < 0.08),
            })
            for _ in range(rng.integers(0, 4)):
                guess = np.stack([rng.uniform(x, x + w, K), rng.uniform(y, y + h, K), np.ones(K)], 1)
                close = points[:, :2] + rng.normal(0, 0.05 * np.sqrt(w * h), (K, 2))
                guess[:, :2] = np.where(rng.random((K, 1)) < 0.7, close, guess[:, :2])
                detection = {"image_id": image_id,
                             "category_id": category if rng.random() < 0.9 else int(rng.choice(category_ids)),
                             "keypoints": guess.ravel().tolist(), "score": float(rng.integers(0, 10) / 10)}
                if with_bbox:
                    detection["bbox"] = [float(x), float(y), float(w), float(h)]
                detections.append(detection)
    gt = {"images": [{"id": i} for i in range(1, num_images + 1)],
          "categories": [{"id": c} for c in category_ids], "annotations": annotations}
    return gt, detections


@pytest.mark.parametrize("seed", range(8))
def test_keypoints_with_the_17_coco_sigmas_match_the_references(seed):
    gt, detections = make_keypoint_dataset(seed, 17, with_bbox=seed % 3 == 0)
    ours = assert_matches_references(gt, detections, iou_type="keypoints")
    assert ours["precision"].shape == (10, 101, 2, 3, 1) and ours["area_names"] == ("all", "medium", "large")


@pytest.mark.parametrize("seed", range(8))
def test_keypoints_with_custom_sigmas_match_the_references(seed):
    # K = 4 (the digits' top, bottom, left and right) with our own sigmas, given to pycocotools through
    # params.kpt_oks_sigmas and to faster-coco-eval through kpt_oks_sigmas=
    sigmas = [0.05, 0.1, 0.07, 0.2]
    gt, detections = make_keypoint_dataset(100 + seed, 4, with_bbox=seed % 3 == 0)
    assert_matches_references(gt, detections, iou_type="keypoints", kpt_oks_sigmas=sigmas)


def test_oks_hand_checked():
    # one labelled keypoint at distance d from its GT: OKS = exp(-d^2 / (2 area (2 sigma)^2))
    gt = {"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "keypoints": [10, 10, 2, 0, 0, 0], "num_keypoints": 1,
         "bbox": [0, 0, 40, 40], "area": 1600.0, "iscrowd": 0}]}
    detections = [{"image_id": 1, "category_id": 1, "keypoints": [13, 14, 1, 99, 99, 1], "score": 0.9}]
    sigmas = np.array([0.1, 0.3])
    expected = np.exp(-25 / (2 * 1600 * (2 * 0.1) ** 2))  # 0.8226: above 0.8, below 0.85
    ours = assert_matches_references(gt, detections, iou_type="keypoints", kpt_oks_sigmas=sigmas)
    assert 0.8 < expected < 0.85
    assert ours["recall"][:, 0, 0, 0].tolist() == [1.0] * 7 + [0.0] * 3  # matched up to threshold 0.8


def test_gt_without_keypoints_is_ignored_and_invisible_keypoints_do_not_count():
    gt, detections = make_keypoint_dataset(5, 4)
    for annotation in gt["annotations"][::3]:
        annotation["keypoints"][2::3] = [0] * 4  # visibility 0 everywhere
        annotation["num_keypoints"] = 0
    ours = assert_matches_references(gt, detections, iou_type="keypoints", kpt_oks_sigmas=[0.1] * 4)
    # the same with num_keypoints left out: counted from v > 0, as the data say
    stripped = copy.deepcopy(gt)
    for annotation in stripped["annotations"]:
        del annotation["num_keypoints"]
    assert evaluate_quietly(stripped, detections, "keypoints", [0.1] * 4)["stats"] == ours["stats"]


def test_keypoints_of_the_digit_canvases():
    dataset = DigitCanvases("test", size=8, seed=3)
    gt = to_coco(dataset)
    for index in range(len(dataset)):
        masks = dataset[index][1]["masks"].numpy()
        points = mask_keypoints(masks)  # [K, 4, 3]
        for mask, (top, bottom, left, right) in zip(masks, points):
            rows, cols = np.nonzero(mask)
            for (x, y, v), row, col in ((top, rows.min(), None), (bottom, rows.max(), None),
                                        (left, None, cols.min()), (right, None, cols.max())):
                assert v == 2 and mask[int(y), int(x)]  # an ink pixel, at its centre
                assert (row is None or y == row + 0.5) and (col is None or x == col + 0.5)
    sigmas = [0.05] * 4
    detections = [{"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": a["keypoints"],
                   "score": 0.9} for a in gt["annotations"]]
    shifted = [{**d, "keypoints": [v + 3 if i % 3 < 2 else v for i, v in enumerate(d["keypoints"])]}
               for d in detections]
    for dets in (detections, shifted):
        # faster-coco-eval leaves the digits without GT out of its keypoint precision array: stats only
        ours = assert_matches_references(gt, dets, faster=False, iou_type="keypoints", kpt_oks_sigmas=sigmas)
        second = run_faster_coco_eval(gt, dets, "keypoints", sigmas)
        np.testing.assert_allclose(ours["stats"], second.stats[:10], rtol=0, atol=1e-12)
        assert (ours["stats"][0] == pytest.approx(1.0)) == (dets is detections)


def test_format_stats_prints_what_summarize_prints_for_keypoints():
    gt, detections = make_keypoint_dataset(2, 17)
    reference, printed = run_pycocotools(gt, detections, "keypoints")
    expected = [line for line in printed.splitlines() if line.startswith(" Average")]
    assert len(expected) == 10
    assert format_stats(evaluate_quietly(gt, detections, "keypoints")["stats"]).splitlines() == expected
    assert list(named_stats(reference.stats)) == list(KEYPOINT_STAT_NAMES)


def test_keypoints_bad_input_raises():
    gt, detections = make_keypoint_dataset(0, 4)
    with pytest.raises(ValueError, match="3 \\* 17"):  # 4 keypoints, default 17 sigmas
        coco_evaluate(gt, detections, "keypoints")
    with pytest.raises(ValueError, match="kpt_oks_sigmas"):
        coco_evaluate(gt, detections, "keypoints", kpt_oks_sigmas=[0.1, -0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="finite"):
        bad = copy.deepcopy(detections)
        bad[0]["keypoints"][0] = float("nan")
        coco_evaluate(gt, bad, "keypoints", kpt_oks_sigmas=[0.1] * 4)
