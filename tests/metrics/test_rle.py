"""Our COCO RLE (lectures_code.metrics.rle) against pycocotools.mask (the oracle): encode in both forms, decode,
area, toBbox, iou with iscrowd, merge; random and edge masks; and the data set's own uncompressed encoder."""

from __future__ import annotations

import re

import numpy as np
import pycocotools.mask as mask_utils  # the oracle (a missing one is a failure, not a skip)
import pytest
import torch

from lectures_code.metrics.rle import (
    rle_area,
    rle_compress,
    rle_decode,
    rle_decompress,
    rle_encode,
    rle_iou,
    rle_merge,
    rle_to_bbox,
)

# pycocotools' decode passes copy=False to numpy 2's __array__
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def reference_encode(masks: np.ndarray) -> list[dict]:
    """pycocotools' compressed RLEs of bool [N, H, W] masks (it wants Fortran-ordered uint8 [H, W, N])."""
    return mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


def random_masks(rng, n: int, h: int, w: int, kind: int) -> np.ndarray:
    """bool [n, h, w]: noise of any density, blobs, stripes, nearly full, masks touching the border."""
    if kind == 0:  # noise: many short runs
        return rng.random((n, h, w)) < rng.random()
    if kind == 1:  # ellipses, some crossing the border
        y, x = np.mgrid[:h, :w]
        cy, cx = rng.uniform(-0.2, 1.2, (2, n, 1, 1)) * np.array([h, w])[:, None, None, None]
        ry, rx = rng.uniform(0.5, 0.8, (2, n, 1, 1)) * np.array([h, w])[:, None, None, None]
        return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1
    if kind == 2:  # rectangles reaching the first/last row or column
        masks = np.zeros((n, h, w), dtype=bool)
        for m in masks:
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            m[y0:, :x0 + 1] = True
        return masks
    return rng.random((n, h, w)) < 0.97  # mostly ones: long foreground runs, short gaps


MASK_CASES = [(seed, kind) for seed in range(10) for kind in range(4)]


def column_major_runs(mask: np.ndarray) -> dict:
    """An independent uncompressed RLE: run lengths of the column-major pixels, starting with background."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    counts, current, run = [], False, 0
    for pixel in flat:
        if pixel != current:
            counts.append(run)
            current, run = pixel, 0
        run += 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


@pytest.mark.parametrize("seed, kind", MASK_CASES)
def test_encode_decode_area_bbox_match_pycocotools(seed, kind):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 40, 2))
    masks = random_masks(rng, int(rng.integers(1, 6)), h, w, kind)
    reference = reference_encode(masks)
    compressed, uncompressed = rle_encode(masks, compressed=True), rle_encode(masks)
    assert [r["counts"] for r in compressed] == [r["counts"].decode() for r in reference]
    assert all(r["size"] == [h, w] for r in compressed + uncompressed)
    # uncompressed: what the data set's COCO export writes, and what pycocotools' frPyObjects compresses
    assert uncompressed == [column_major_runs(m) for m in masks]
    assert [r["counts"] for r in rle_compress(uncompressed)] == [
        mask_utils.frPyObjects(r, h, w)["counts"].decode() for r in uncompressed]
    assert rle_decompress(compressed) == uncompressed
    for form in (compressed, uncompressed, reference):  # bytes counts (pycocotools' own) too
        np.testing.assert_array_equal(rle_decode(form), masks)
        np.testing.assert_array_equal(rle_area(form), mask_utils.area(reference))
        np.testing.assert_array_equal(rle_to_bbox(form), mask_utils.toBbox(reference))
    np.testing.assert_array_equal(rle_decode(compressed[0]), mask_utils.decode(reference[0]).astype(bool))


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (5, 5)])
@pytest.mark.parametrize("fill", ["empty", "full", "first pixel", "last pixel", "border ring"])
def test_edge_masks(shape, fill):
    mask = np.zeros(shape, dtype=bool)
    if fill == "full":
        mask[:] = True
    elif fill == "first pixel":
        mask[0, 0] = True
    elif fill == "last pixel":
        mask[-1, -1] = True
    elif fill == "border ring":
        mask[[0, -1], :] = True
        mask[:, [0, -1]] = True
    reference = reference_encode(mask[None])[0]
    ours = rle_encode(mask, compressed=True)
    assert ours["counts"] == reference["counts"].decode()
    assert rle_area(ours) == mask_utils.area(reference) == mask.sum()
    np.testing.assert_array_equal(rle_to_bbox(ours), mask_utils.toBbox(reference))
    np.testing.assert_array_equal(rle_decode(ours), mask)
    # an empty mask has the box [0, 0, 0, 0]; a mask starting with foreground starts with an empty run
    assert (rle_to_bbox(ours) == 0).all() == (fill == "empty")
    assert (rle_encode(mask)["counts"][0] == 0) == bool(mask[0, 0])


def test_long_runs_need_several_characters():
    # counts up to ~4.5M and differences of both signs: numbers of 1 to 5 characters in the string form
    rng = np.random.default_rng(0)
    h, w = 1500, 3000
    masks = np.zeros((3, h, w), dtype=bool)
    masks[0, :, 1000:2500] = True
    masks[1, 700:701, :] = True
    for m in masks[2:]:
        for _ in range(30):
            x0, y0 = rng.integers(0, w), rng.integers(0, h)
            m[y0 : y0 + rng.integers(1, 800), x0 : x0 + rng.integers(1, 900)] = True
    reference = reference_encode(masks)
    ours = rle_encode(masks, compressed=True)
    assert [r["counts"] for r in ours] == [r["counts"].decode() for r in reference]
    longest = max(len(number) for r in ours for number in re.findall("[P-o]*[0-O]", r["counts"]))
    assert longest == 5  # 'P'..'o' carry "more characters follow"
    np.testing.assert_array_equal(rle_decode(reference), masks)
    np.testing.assert_array_equal(rle_area(ours), masks.sum((1, 2)))


def test_torch_masks_of_any_dtype_encode_like_numpy():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(3, 9, 11, generator=g) > 0.5
    expected = rle_encode(masks.numpy())
    assert rle_encode(masks) == expected
    assert rle_encode(masks.float() * 0.7) == expected  # nonzero = foreground
    assert rle_encode(masks.to(torch.uint8)[1]) == expected[1]  # one [H, W] mask -> one dict


@pytest.mark.parametrize("seed", range(12))
def test_iou_matches_pycocotools_with_crowd(seed):
    rng = np.random.default_rng(100 + seed)
    h, w = (int(v) for v in rng.integers(1, 30, 2))
    dets = random_masks(rng, int(rng.integers(1, 8)), h, w, seed % 4)
    gts = random_masks(rng, int(rng.integers(1, 6)), h, w, (seed + 1) % 4)
    gts[0] = False  # an empty GT: IoU 0 with everything
    crowd = rng.random(len(gts)) < 0.4
    det_rles, gt_rles = reference_encode(dets), reference_encode(gts)
    expected = mask_utils.iou(det_rles, gt_rles, crowd.astype(np.uint8))
    ours = rle_iou(rle_encode(dets), rle_encode(gts, compressed=True), crowd)
    assert ours.shape == (len(dets), len(gts)) and ours.dtype == np.float64
    np.testing.assert_array_equal(ours, expected)  # i / u of the same integers: equal to the last bit


def test_iou_hand_checked_and_crowd_union_is_the_detection():
    gt = np.zeros((10, 10), dtype=bool)
    gt[:, :5] = True  # 50 px
    det = np.zeros((10, 10), dtype=bool)
    det[:, 3:8] = True  # 50 px, 20 shared
    iou = rle_iou([rle_encode(det)], [rle_encode(gt)] * 2, [0, 1])
    np.testing.assert_array_equal(iou, [[20 / 80, 20 / 50]])
    inside = np.zeros((10, 10), dtype=bool)
    inside[2:4, 1:3] = True  # wholly inside the crowd region: IoU 1
    assert rle_iou([rle_encode(inside)], [rle_encode(gt)], [1])[0, 0] == 1.0


def test_iou_of_masks_of_different_sizes_is_minus_one_where_boxes_overlap():
    small, large = np.ones((4, 4), dtype=bool), np.zeros((6, 6), dtype=bool)
    large[:2, :2] = True  # overlaps the small mask's box
    far = np.zeros((6, 6), dtype=bool)
    far[5, 5] = True  # box beyond the small mask's: pycocotools never looks at the pixels
    dets, gts = [rle_encode(small, compressed=True)], [rle_encode(large), rle_encode(far)]
    expected = mask_utils.iou([rle_compress(dets[0])], [rle_compress(g) for g in gts], [0, 0])
    np.testing.assert_array_equal(rle_iou(dets, gts, [0, 0]), expected)
    np.testing.assert_array_equal(expected, [[-1.0, 0.0]])


def test_empty_lists():
    one = [rle_encode(np.ones((3, 3), dtype=bool))]
    assert rle_iou([], one, [0]).shape == (0, 1) and rle_iou(one, [], []).shape == (1, 0)
    assert rle_area([]).shape == (0,) and rle_to_bbox([]).shape == (0, 4)
    assert rle_encode(np.zeros((0, 4, 5), dtype=bool)) == []


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("intersect", [False, True])
def test_merge_matches_pycocotools(seed, intersect):
    rng = np.random.default_rng(seed)
    masks = random_masks(rng, int(rng.integers(1, 5)), 13, 17, seed % 4)
    reference = mask_utils.merge(reference_encode(masks), intersect=intersect)
    ours = rle_merge(rle_encode(masks), intersect=intersect)
    assert ours == {"size": [13, 17], "counts": reference["counts"].decode()}


def test_bad_rles_raise():
    good = rle_encode(np.eye(3, dtype=bool))
    with pytest.raises(ValueError, match="sum to 8"):
        rle_decode({"size": [3, 3], "counts": [0, 1, 3, 1, 3]})
    with pytest.raises(ValueError, match=">= 0"):
        rle_area({"size": [3, 3], "counts": [5, -1, 5]})
    for text in ("0 1", "0é1"):
        with pytest.raises(ValueError, match="characters"):
            rle_area({"size": [3, 3], "counts": text})
    with pytest.raises(ValueError, match="middle of a number"):
        rle_area({"size": [3, 3], "counts": "0P"})  # 'P' = 48 + 0x20: "more characters follow"
    with pytest.raises(ValueError, match="size"):
        rle_area({"counts": [9]})
    with pytest.raises(ValueError, match="one size"):
        rle_decode([good, rle_encode(np.ones((2, 2), dtype=bool))])
    with pytest.raises(ValueError, match="one size"):
        rle_merge([good, rle_encode(np.ones((2, 2), dtype=bool))])
    with pytest.raises(ValueError, match="one flag per GT"):
        rle_iou([good], [good], [0, 1])
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        rle_encode(np.zeros(5, dtype=bool))
    with pytest.raises(TypeError):
        rle_area("not an RLE")
