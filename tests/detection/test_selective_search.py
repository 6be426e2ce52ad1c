"""Selective Search: geometric properties of the proposals, recovery of synthetic objects, the four
similarities on hand-made inputs, exactness of the merged histograms, and the grouping loop
against a slow re-implementation that recomputes everything from pixels at every step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data
from skimage.transform import resize
from torchvision.ops import box_iou

from lectures_code.detection.selective_search import (
    STRATEGIES,
    adjacent_pairs,
    colour_histograms,
    convert_colour_space,
    fill_similarity,
    hierarchical_grouping,
    histogram_intersection,
    merge_histograms,
    proposal_recall,
    region_boxes,
    selective_search,
    similarity,
    size_similarity,
    texture_histograms,
    texture_maps,
)


@pytest.fixture(scope="module")
def small_photo() -> np.ndarray:
    photo = resize(data.chelsea(), (120, 180), anti_aliasing=True)  # H, W, 3 float in [0, 1]
    return (photo * 255).round().astype(np.uint8)


def synthetic_scene(seed: int, size: int = 160):
    """Textured grey background with 3 solid objects (rectangles or discs) of saturated colours.
    Returns the uint8 image HxWx3 and the objects' boxes [3, 4] xyxy (x2, y2 exclusive)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(90, 150, size=(size, size, 1)).repeat(3, axis=2).astype(np.uint8)
    colours = [(220, 30, 30), (30, 200, 40), (40, 60, 230)]
    rows, cols = np.mgrid[:size, :size]
    boxes = []
    # three vertical bands so that the objects never overlap
    band = size // 3
    for index, colour in enumerate(colours):
        w, h = rng.integers(18, band - 6), rng.integers(18, size // 2)
        x1 = index * band + rng.integers(2, band - w - 2)
        y1 = rng.integers(2, size - h - 2)
        if rng.random() < 0.5:
            mask = (cols >= x1) & (cols < x1 + w) & (rows >= y1) & (rows < y1 + h)
        else:
            radius = min(w, h) / 2
            mask = (cols + 0.5 - (x1 + radius)) ** 2 + (rows + 0.5 - (y1 + radius)) ** 2 <= radius**2
        image[mask] = colour
        ys, xs = np.nonzero(mask)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return image, np.array(boxes, dtype=np.float32)


# ------------------------------------------------------------------------------- proposals


@pytest.mark.parametrize("strategy", ["single", "fast"])
def test_boxes_inside_image_unique_and_non_degenerate(small_photo, strategy):
    boxes = selective_search(small_photo, strategy=strategy, max_proposals=None)
    height, width = small_photo.shape[:2]
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert np.all(boxes == np.round(boxes))  # integer pixel edges
    assert np.all(boxes[:, :2] >= 0)
    assert np.all(boxes[:, 2] <= width) and np.all(boxes[:, 3] <= height)
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    assert len(np.unique(boxes, axis=0)) == len(boxes)


def test_full_image_box_ranks_near_the_top(small_photo):
    height, width = small_photo.shape[:2]
    for seed in range(3):
        boxes = selective_search(small_photo, strategy="fast", max_proposals=100, seed=seed)
        assert np.any(np.all(boxes == [0, 0, width, height], axis=1))


def test_deterministic_for_a_seed_and_seed_only_reorders(small_photo):
    a = selective_search(small_photo, strategy="fast", max_proposals=None, seed=3)
    b = selective_search(small_photo, strategy="fast", max_proposals=None, seed=3)
    c = selective_search(small_photo, strategy="fast", max_proposals=None, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # the seed only changes the ranking, never the set of regions
    key = lambda boxes: sorted(map(tuple, boxes.tolist()))  # noqa: E731
    assert key(a) == key(c)
    # max_proposals keeps the best-ranked prefix
    np.testing.assert_array_equal(selective_search(small_photo, "fast", max_proposals=50, seed=3), a[:50])


def test_number_of_proposals(small_photo):
    single = selective_search(small_photo, strategy="single", max_proposals=None)
    fast = selective_search(small_photo, strategy="fast", max_proposals=None)
    # one hierarchy of n initial regions has 2n - 1 regions, so at most that many distinct boxes
    converted = convert_colour_space(small_photo, "hsv")
    from skimage.segmentation import felzenszwalb

    n = int(felzenszwalb(converted, scale=100, sigma=0.8, min_size=100).max()) + 1
    assert n < len(single) <= 2 * n - 1
    assert len(fast) > len(single)
    assert len(selective_search(small_photo, strategy="fast", max_proposals=7)) == 7


@pytest.mark.parametrize("seed", range(4))
def test_synthetic_objects_are_recovered(seed):
    image, objects = synthetic_scene(seed)
    boxes = selective_search(image, strategy="fast", seed=seed)
    best = box_iou(torch.from_numpy(objects), torch.from_numpy(boxes)).max(dim=1).values
    assert torch.all(best >= 0.9), best
    assert proposal_recall(boxes, objects, iou_threshold=0.9) == 1.0


def test_torch_input_matches_numpy(small_photo, device):
    tensor = torch.from_numpy(small_photo).permute(2, 0, 1).to(device)
    np.testing.assert_array_equal(
        selective_search(tensor, strategy="single"), selective_search(small_photo, strategy="single")
    )


def test_tiny_and_constant_images():
    constant = np.full((5, 7, 3), 128, dtype=np.uint8)
    np.testing.assert_array_equal(selective_search(constant, "single"), [[0, 0, 7, 5]])
    one_pixel = np.zeros((1, 1, 3), dtype=np.uint8)
    np.testing.assert_array_equal(selective_search(one_pixel, "fast"), [[0, 0, 1, 1]])


def test_bad_input():
    good = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(TypeError):
        selective_search(good.astype(np.float32))
    with pytest.raises(ValueError):
        selective_search(good[..., :2])
    with pytest.raises(TypeError):
        selective_search(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError):
        selective_search(torch.zeros(8, 8, 3, dtype=torch.uint8))
    with pytest.raises(ValueError):
        selective_search(good, strategy="slow")
    with pytest.raises(ValueError):
        proposal_recall(np.zeros((3, 5)), np.zeros((1, 4)))


# ------------------------------------------------------------------------------- recall


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_proposal_recall_matches_torchvision_iou(seed, threshold):
    rng = np.random.default_rng(seed)
    xy = rng.integers(0, 50, size=(2, 60, 2))
    wh = rng.integers(1, 40, size=(2, 60, 2))
    proposals = np.concatenate([xy[0], xy[0] + wh[0]], 1).astype(np.float32)
    gt = np.concatenate([xy[1], xy[1] + wh[1]], 1).astype(np.float32)[: rng.integers(1, 20)]
    iou = box_iou(torch.from_numpy(gt), torch.from_numpy(proposals))
    expected = (iou.max(dim=1).values >= threshold).float().mean().item()
    assert proposal_recall(proposals, gt, threshold) == pytest.approx(expected)
    assert proposal_recall(torch.from_numpy(proposals), torch.from_numpy(gt), threshold) == pytest.approx(
        expected
    )


def test_proposal_recall_edge_cases():
    gt = np.array([[0, 0, 10, 10]], dtype=np.float32)
    assert proposal_recall(np.zeros((0, 4)), gt) == 0.0
    assert np.isnan(proposal_recall(gt, np.zeros((0, 4))))
    # IoU exactly at the threshold counts as covered
    assert proposal_recall(np.array([[0, 0, 10, 5]]), gt, 0.5) == 1.0
    assert proposal_recall(np.array([[0, 0, 10, 4]]), gt, 0.5) == 0.0


# ------------------------------------------------------------------------------- similarities


def test_histogram_intersection_hand_made():
    a = np.array([0.5, 0.5, 0.0, 0.0])
    b = np.array([0.0, 0.0, 0.25, 0.75])
    c = np.array([0.25, 0.25, 0.25, 0.25])
    assert histogram_intersection(a, a) == pytest.approx(1.0)
    assert histogram_intersection(a, b) == pytest.approx(0.0)
    assert histogram_intersection(a, c) == pytest.approx(0.5)
    np.testing.assert_allclose(histogram_intersection(np.stack([a, a]), np.stack([b, c])), [0.0, 0.5])


def test_size_and_fill_similarity_hand_made():
    # two halves of a 10x10 square in a 100x100 image: together they fill their box exactly
    left, right = np.array([0.0, 0, 5, 10]), np.array([5.0, 0, 10, 10])
    assert fill_similarity(left, right, 50, 50, 10000.0) == pytest.approx(1.0)
    assert size_similarity(50, 50, 10000.0) == pytest.approx(0.99)
    # two 1-pixel regions at opposite corners leave a 100x100 - 2 pixel hole: fill = 2 / 10000
    corner_a, corner_b = np.array([0.0, 0, 1, 1]), np.array([99.0, 99, 100, 100])
    assert fill_similarity(corner_a, corner_b, 1, 1, 10000.0) == pytest.approx(2 / 10000)
    assert size_similarity(5000, 5000, 10000.0) == pytest.approx(0.0)


@pytest.mark.parametrize("seed", range(3))
def test_merged_histograms_equal_histograms_of_the_union(seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    converted = convert_colour_space(image, "lab")
    texture_bins = texture_maps(converted)
    # 3x4 grid of blocks of unequal sizes, so that a plain average of histograms would be wrong
    row_block = np.searchsorted([6, 19], np.arange(30), side="right")
    col_block = np.searchsorted([5, 17, 31], np.arange(40), side="right")
    labels = row_block[:, None] * 4 + col_block[None, :]
    sizes = np.bincount(labels.ravel())
    a, b = rng.choice(12, size=2, replace=False)
    merged_labels = np.where(labels == b, a, labels)
    for features, histograms in ((converted, colour_histograms), (texture_bins, texture_histograms)):
        separate = histograms(features, labels, 12)
        together = histograms(features, merged_labels, 12)[a]
        merged = merge_histograms(separate[a], sizes[a], separate[b], sizes[b])
        np.testing.assert_allclose(merged, together, atol=1e-12)
        assert merged.sum() == pytest.approx(1.0)


def test_colour_histogram_bins_and_region_boxes():
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    image[:, 3:] = 255
    labels = np.zeros((4, 6), dtype=np.int64)
    labels[1:3, 3:5] = 1
    hist = colour_histograms(convert_colour_space(image, "rgb"), labels, 2)
    assert hist.shape == (2, 75)
    # region 1 is white: all mass in the last bin of each of the 3 channels
    np.testing.assert_allclose(hist[1, [24, 49, 74]], [1 / 3] * 3)
    # region 0: 12 black pixels (bin 0) and 8 white pixels (bin 24) per channel, out of 20
    np.testing.assert_allclose(hist[0, [0, 24]], [12 / 60, 8 / 60])
    np.testing.assert_array_equal(region_boxes(labels, 2), [[0, 0, 6, 4], [3, 1, 5, 3]])
    np.testing.assert_array_equal(adjacent_pairs(labels), [[0, 1]])


# ------------------------------------------------------------------------------- grouping


def slow_grouping(converted, texture_bins, labels, measures):
    """Reference: every step recomputes features from the pixels and all adjacent pairs from the
    label image, and merges the most similar pair (ties: smallest (i, j), as the heap does)."""
    labels = labels.copy()
    n = int(labels.max()) + 1
    image_size = float(labels.size)
    created = [region_boxes(labels, n)[i] for i in range(n)]
    next_label = n
    while True:
        present = np.unique(labels)
        if len(present) == 1:
            return np.array(created)
        # relabel so the feature functions can use bincount; keep the real ids in `present`
        dense = np.searchsorted(present, labels)
        colour = colour_histograms(converted, dense, len(present))
        texture = texture_histograms(texture_bins, dense, len(present))
        sizes = np.bincount(dense.ravel()).astype(np.float64)
        boxes = region_boxes(dense, len(present))
        pairs = adjacent_pairs(dense)
        scores = similarity(measures, colour, texture, sizes, boxes, pairs[:, 0], pairs[:, 1], image_size)
        real = present[pairs]
        real.sort(axis=1)
        order = np.lexsort((real[:, 1], real[:, 0], -np.round(scores, 9)))
        i, j = real[order[0]]
        labels[(labels == i) | (labels == j)] = next_label
        ys, xs = np.nonzero(labels == next_label)
        created.append(np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64))
        next_label += 1


@pytest.mark.parametrize("measures", ["CTSF", "TSF", "S", "F", "C"])
def test_grouping_matches_slow_reference(small_photo, measures):
    from skimage.segmentation import felzenszwalb

    crop = small_photo[10:90, 20:140]
    converted = convert_colour_space(crop, "hsv")
    labels = felzenszwalb(converted, scale=50, sigma=0.8, min_size=10)
    n = int(labels.max()) + 1
    assert n >= 50
    texture_bins = texture_maps(converted)
    fast = hierarchical_grouping(
        colour_histograms(converted, labels, n),
        texture_histograms(texture_bins, labels, n),
        np.bincount(labels.ravel()),
        region_boxes(labels, n),
        adjacent_pairs(labels),
        float(labels.size),
        measures,
    )
    slow = slow_grouping(converted, texture_bins, labels, measures)
    assert len(fast) == 2 * n - 1
    np.testing.assert_array_equal(fast[-1], [0, 0, crop.shape[1], crop.shape[0]])
    np.testing.assert_array_equal(fast, slow)


def test_strategies_are_as_documented():
    assert STRATEGIES["single"] == {"colour_spaces": ("hsv",), "ks": (100,), "similarities": ("CTSF",)}
    fast = STRATEGIES["fast"]
    assert set(fast["colour_spaces"]) == {"hsv", "lab"} and set(fast["ks"]) == {50, 100}
    assert set(fast["similarities"]) == {"CTSF", "TSF"}
    quality = STRATEGIES["quality"]
    assert len(quality["colour_spaces"]) * len(quality["ks"]) * len(quality["similarities"]) == 80
