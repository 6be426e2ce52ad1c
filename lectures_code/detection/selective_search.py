"""Selective Search region proposals (Uijlings, van de Sande, Gevers, Smeulders; IJCV 2013).

Boxes are xyxy in pixel coordinates with x2/y2 EXCLUSIVE, i.e. the box of a mask: a region whose
pixels span columns 3..7 and rows 0..4 has the box [3, 0, 8, 5], and its area is (x2-x1)*(y2-y1).
Everything here is NumPy on the CPU (a bottom-up grouping loop is sequential by nature); a torch
input is copied to the CPU first.

The algorithm, per "strategy" (colour space, Felzenszwalb k, similarity combination):

1. Initial regions: the graph-based segmentation of Felzenszwalb & Huttenlocher (2004) of the
   image converted to the colour space, sigma 0.8, with threshold k (we call
   ``skimage.segmentation.felzenszwalb``, which is not the algorithm taught here).
2. Region adjacency graph: two regions are neighbours when they touch 4-connectedly.
3. Hierarchical grouping: repeatedly merge the two most similar neighbours, until one region (the
   whole image) is left. Every region ever formed (initial ones included) is a proposal.
4. Similarity = sum of a chosen subset of four measures, each in [0, 1]:
   colour (histogram intersection of 25-bin-per-channel colour histograms), texture (histogram
   intersection of 10-bin histograms of Gaussian derivatives, sigma 1, in 8 orientations, per
   channel), size (1 - (|r_i| + |r_j|) / |image|: merge small regions first) and fill
   (1 - (|BB_ij| - |r_i| - |r_j|) / |image|: merge regions that fill each other's gaps).
5. Diversification: several strategies are run and their proposals pooled. Ranking (paper Sec. 5):
   inside one hierarchy the region created last (the whole image) has position 1, the one before
   it position 2, ..., the initial regions the largest positions; each position is multiplied by
   a uniform random number in [0, 1) and all proposals are sorted by that value (smallest first),
   so that large regions come first but every hierarchy contributes early. Duplicate boxes keep
   their best-ranked copy.

Strategies (``STRATEGIES``):

- "single": HSV, k = 100, similarity C+T+S+F: 1 hierarchy.
- "fast" (the paper's "Selective Search Fast"): colour spaces HSV and Lab, k in {50, 100},
  similarities C+T+S+F and T+S+F: 2 x 2 x 2 = 8 hierarchies.
- "quality" (the paper's "Selective Search Quality"): colour spaces HSV, Lab, rgI, H, I,
  k in {50, 100, 150, 300}, similarities C+T+S+F, T+S+F, F, S: 5 x 4 x 4 = 80 hierarchies.

Following the authors' MATLAB demo, the minimum component size of the initial segmentation
defaults to k (``min_size=None``).
"""

from __future__ import annotations

import heapq

import numpy as np
import torch
from scipy import ndimage
from skimage import color
from skimage.segmentation import felzenszwalb

COLOUR_BINS = 25
TEXTURE_BINS = 10
TEXTURE_ORIENTATIONS = 8

STRATEGIES: dict[str, dict[str, tuple]] = {
    "single": {"colour_spaces": ("hsv",), "ks": (100,), "similarities": ("CTSF",)},
    "fast": {"colour_spaces": ("hsv", "lab"), "ks": (50, 100), "similarities": ("CTSF", "TSF")},
    "quality": {
        "colour_spaces": ("hsv", "lab", "rgi", "h", "i"),
        "ks": (50, 100, 150, 300),
        "similarities": ("CTSF", "TSF", "F", "S"),
    },
}


# ----------------------------------------------------------------------------------------------
# Colour spaces: every channel is scaled to [0, 1], the range felzenszwalb() and the histograms
# expect.


def convert_colour_space(image: np.ndarray, space: str) -> np.ndarray:
    """HxWx3 uint8 RGB -> HxWxC float64 in [0, 1] (C = 3 for rgb/hsv/lab/rgi, 1 for h/i)."""
    rgb = image.astype(np.float64) / 255.0
    if space == "rgb":
        return rgb
    if space == "hsv":
        return color.rgb2hsv(rgb)
    if space == "h":
        return color.rgb2hsv(rgb)[..., :1]
    if space == "i":
        return rgb.mean(axis=2, keepdims=True)
    if space == "lab":
        lab = color.rgb2lab(rgb)
        # L in [0, 100], a and b in about [-128, 127]
        scaled = (lab + [0.0, 128.0, 128.0]) / [100.0, 255.0, 255.0]
        return np.clip(scaled, 0.0, 1.0)
    if space == "rgi":
        total = rgb.sum(axis=2)
        # normalised r, g are undefined for black pixels: give them the grey value 1/3
        safe = np.where(total > 0, total, 1.0)
        r = np.where(total > 0, rgb[..., 0] / safe, 1.0 / 3.0)
        g = np.where(total > 0, rgb[..., 1] / safe, 1.0 / 3.0)
        return np.stack([r, g, total / 3.0], -1)
    raise ValueError(f"unknown colour space {space!r}; use rgb, hsv, h, i, lab or rgi")


# ----------------------------------------------------------------------------------------------
# Region features: one histogram row per region, computed for all regions at once with bincount.


def colour_histograms(colour_image: np.ndarray, labels: np.ndarray, n_regions: int) -> np.ndarray:
    """Colour histograms of every region, 25 bins per channel, L1-normalised.

    colour_image: HxWxC float in [0, 1]; labels: HxW int in [0, n_regions).
    Returns float64 [n_regions, C * 25], each row summing to 1.
    """
    bins = np.minimum((colour_image * COLOUR_BINS).astype(np.int64), COLOUR_BINS - 1)  # H, W, C
    return _region_histograms(bins, labels, n_regions, COLOUR_BINS)


def texture_maps(colour_image: np.ndarray) -> np.ndarray:
    """Gaussian-derivative texture responses binned to 10 levels: HxWxC -> HxWx(C*8) int64.

    Per channel, the derivative of a Gaussian (sigma 1) is steered to 8 orientations
    (0, 45, ..., 315 degrees); opposite orientations differ only in sign, so each response is
    half-wave rectified, then divided by its maximum over the image before binning.
    """
    angles = np.arange(TEXTURE_ORIENTATIONS) * (2 * np.pi / TEXTURE_ORIENTATIONS)
    maps = []
    for c in range(colour_image.shape[2]):
        channel = colour_image[..., c]
        dx = ndimage.gaussian_filter(channel, sigma=1.0, order=(0, 1))
        dy = ndimage.gaussian_filter(channel, sigma=1.0, order=(1, 0))
        for angle in angles:
            response = np.maximum(np.cos(angle) * dx + np.sin(angle) * dy, 0.0)
            peak = response.max()
            scaled = response / peak if peak > 0 else response
            maps.append(np.minimum((scaled * TEXTURE_BINS).astype(np.int64), TEXTURE_BINS - 1))
    return np.stack(maps, -1)


def texture_histograms(texture_bins: np.ndarray, labels: np.ndarray, n_regions: int) -> np.ndarray:
    """Texture histograms of every region: float64 [n_regions, C * 8 * 10], rows sum to 1."""
    return _region_histograms(texture_bins, labels, n_regions, TEXTURE_BINS)


def _region_histograms(bins: np.ndarray, labels: np.ndarray, n_regions: int, n_bins: int) -> np.ndarray:
    n_features = bins.shape[2]
    # flat index region * (F * n_bins) + feature * n_bins + bin, one bincount for everything
    offsets = np.arange(n_features) * n_bins
    flat = labels[..., None].astype(np.int64) * (n_features * n_bins) + offsets + bins  # H, W, F
    counts = np.bincount(flat.ravel(), minlength=n_regions * n_features * n_bins)
    hist = counts.reshape(n_regions, n_features * n_bins).astype(np.float64)
    # empty regions (possible only in callers' label images) keep an all-zero row
    return hist / np.maximum(hist.sum(axis=1, keepdims=True), 1.0)


def region_boxes(labels: np.ndarray, n_regions: int) -> np.ndarray:
    """Box of every region: HxW int labels -> float64 [n_regions, 4] xyxy (x2, y2 exclusive)."""
    boxes = np.zeros((n_regions, 4), dtype=np.float64)
    for index, found in enumerate(ndimage.find_objects(labels + 1, max_label=n_regions)):
        rows, cols = found  # slices with exclusive stops: exactly our box convention
        boxes[index] = (cols.start, rows.start, cols.stop, rows.stop)
    return boxes


def adjacent_pairs(labels: np.ndarray) -> np.ndarray:
    """Pairs (i, j), i < j, of regions that touch 4-connectedly: int64 [P, 2], sorted, unique."""
    n_regions = int(labels.max()) + 1
    pairs = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        differ = a != b
        lo = np.minimum(a[differ], b[differ]).astype(np.int64)
        hi = np.maximum(a[differ], b[differ]).astype(np.int64)
        pairs.append(lo * n_regions + hi)
    keys = np.unique(np.concatenate(pairs))
    return np.stack([keys // n_regions, keys % n_regions], axis=1)


# ----------------------------------------------------------------------------------------------
# --8<-- [start:similarities]
def histogram_intersection(hist_a: np.ndarray, hist_b: np.ndarray) -> np.ndarray:
    """sum_k min(a_k, b_k) over the last axis: 1 for identical L1-normalised histograms, 0 for
    disjoint ones. Used for both the colour and the texture similarity. [..., D] -> [...]."""
    return np.minimum(hist_a, hist_b).sum(axis=-1)


def size_similarity(size_a, size_b, image_size: float):
    """1 - (|r_a| + |r_b|) / |image|: high for two small regions, so small regions merge early
    everywhere in the image instead of one region swallowing its neighbours one by one."""
    return 1.0 - (np.asarray(size_a) + np.asarray(size_b)) / image_size


def fill_similarity(box_a: np.ndarray, box_b: np.ndarray, size_a, size_b, image_size: float):
    """1 - (|BB_ab| - |r_a| - |r_b|) / |image|, BB_ab the tight box around both (xyxy, [..., 4]):
    high when one region fills a gap of the other, low when merging them would leave holes."""
    x1 = np.minimum(box_a[..., 0], box_b[..., 0])
    y1 = np.minimum(box_a[..., 1], box_b[..., 1])
    x2 = np.maximum(box_a[..., 2], box_b[..., 2])
    y2 = np.maximum(box_a[..., 3], box_b[..., 3])
    union_box_area = (x2 - x1) * (y2 - y1)
    return 1.0 - (union_box_area - np.asarray(size_a) - np.asarray(size_b)) / image_size


def merge_histograms(hist_a: np.ndarray, size_a, hist_b: np.ndarray, size_b) -> np.ndarray:
    """Histogram of the union r_a U r_b without touching pixels: the size-weighted average.
    Exact for L1-normalised histograms, because a histogram times its region size is a count."""
    return (size_a * hist_a + size_b * hist_b) / (size_a + size_b)


def similarity(measures: str, colour, texture, sizes, boxes, a, b, image_size: float) -> np.ndarray:
    """Sum of the measures named in `measures` (letters of "CTSF") between regions a[i] and b[i].

    colour [R, Dc], texture [R, Dt], sizes [R], boxes [R, 4] are per-region arrays; a, b int [P].
    Returns float64 [P] in [0, len(measures)].
    """
    total = np.zeros(len(a))
    if "C" in measures:
        total += histogram_intersection(colour[a], colour[b])
    if "T" in measures:
        total += histogram_intersection(texture[a], texture[b])
    if "S" in measures:
        total += size_similarity(sizes[a], sizes[b], image_size)
    if "F" in measures:
        total += fill_similarity(boxes[a], boxes[b], sizes[a], sizes[b], image_size)
    return total
# --8<-- [end:similarities]


# ----------------------------------------------------------------------------------------------
# --8<-- [start:hierarchical_grouping]
def hierarchical_grouping(colour, texture, sizes, boxes, pairs, image_size: float, measures: str):
    """Greedy bottom-up grouping of n initial regions into one (paper Algorithm 1).

    colour [n, Dc], texture [n, Dt] (L1-normalised histograms), sizes [n] (pixels), boxes [n, 4]
    xyxy, pairs int [P, 2] adjacent regions. Returns float64 [2n - 1, 4]: the boxes of all regions
    in creation order (initial regions, then one per merge; the last one is the whole image when
    the adjacency graph is connected, which it always is for a label image).
    """
    n = len(sizes)
    capacity = 2 * n - 1  # n - 1 merges at most
    colour = np.concatenate([colour, np.empty((n - 1, colour.shape[1]))])
    texture = np.concatenate([texture, np.empty((n - 1, texture.shape[1]))])
    sizes = np.concatenate([sizes.astype(np.float64), np.empty(n - 1)])
    boxes = np.concatenate([boxes, np.empty((n - 1, 4))])
    alive = np.zeros(capacity, dtype=bool)
    alive[:n] = True

    neighbours: list[set[int] | None] = [set() for _ in range(n)]
    for i, j in pairs.tolist():
        neighbours[i].add(j)
        neighbours[j].add(i)

    # Max-heap of pair similarities (negated for heapq). Entries of merged regions are not
    # removed, just skipped when popped ("lazy deletion"): cheaper than searching the heap.
    scores = similarity(measures, colour, texture, sizes, boxes, pairs[:, 0], pairs[:, 1], image_size)
    heap = list(zip((-scores).tolist(), pairs[:, 0].tolist(), pairs[:, 1].tolist()))
    heapq.heapify(heap)

    new = n
    while heap:
        _, i, j = heapq.heappop(heap)
        if not (alive[i] and alive[j]):
            continue
        # r_new = r_i U r_j: features follow from the parts' features, no pixel is revisited
        sizes[new] = sizes[i] + sizes[j]
        colour[new] = merge_histograms(colour[i], sizes[i], colour[j], sizes[j])
        texture[new] = merge_histograms(texture[i], sizes[i], texture[j], sizes[j])
        boxes[new, :2] = np.minimum(boxes[i, :2], boxes[j, :2])
        boxes[new, 2:] = np.maximum(boxes[i, 2:], boxes[j, 2:])
        alive[i] = alive[j] = False
        alive[new] = True

        # neighbours of r_new = neighbours of r_i or r_j; they now point at r_new instead
        around = (neighbours[i] | neighbours[j]) - {i, j}
        neighbours[i] = neighbours[j] = None
        for k in around:
            neighbours[k].discard(i)
            neighbours[k].discard(j)
            neighbours[k].add(new)
        neighbours.append(around)

        # only the similarities between r_new and its neighbours are new
        if around:
            others = np.fromiter(around, dtype=np.int64, count=len(around))
            mine = np.full(len(others), new)
            scores = similarity(measures, colour, texture, sizes, boxes, mine, others, image_size)
            for score, k in zip((-scores).tolist(), others.tolist()):
                heapq.heappush(heap, (score, k, new))
        new += 1
    return boxes[:new]
# --8<-- [end:hierarchical_grouping]


# ----------------------------------------------------------------------------------------------


def _as_rgb_uint8(image) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8:
            raise TypeError(f"image tensor must be uint8, got {image.dtype}")
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image tensor must be 3xHxW (CHW), got shape {tuple(image.shape)}")
        return image.detach().cpu().permute(1, 2, 0).contiguous().numpy()
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array or a torch tensor, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"image array must be uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image array must be HxWx3 (HWC, RGB), got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image must not be empty, got shape {image.shape}")
    return image


def selective_search(
    image,
    strategy: str = "fast",
    min_size: int | None = None,
    max_proposals: int | None = 2000,
    sigma: float = 0.8,
    seed: int = 0,
) -> np.ndarray:
    """Selective Search proposals for one RGB image.

    Args:
        image: HxWx3 uint8 numpy array (RGB), or a 3xHxW uint8 torch tensor (any device).
        strategy: "single", "fast" or "quality" (see the module docstring and ``STRATEGIES``).
        min_size: minimum component size (pixels) of the initial Felzenszwalb segmentation;
            None uses k itself, as the authors' code does.
        max_proposals: keep at most this many of the best-ranked proposals (None keeps all).
        sigma: Gaussian smoothing of the initial segmentation.
        seed: seed of the random ranking; the result is deterministic for a fixed seed.

    Returns:
        float32 numpy array [N, 4] of unique xyxy boxes (x2, y2 exclusive), best-ranked first.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use one of {sorted(STRATEGIES)}")
    if max_proposals is not None and max_proposals < 1:
        raise ValueError(f"max_proposals must be >= 1 or None, got {max_proposals}")
    rgb = _as_rgb_uint8(image)
    height, width = rgb.shape[:2]
    image_size = float(height * width)
    config = STRATEGIES[strategy]
    rng = np.random.default_rng(seed)

    all_boxes, all_ranks = [], []
    for space in config["colour_spaces"]:
        converted = convert_colour_space(rgb, space)  # H, W, C in [0, 1]
        texture_bins = texture_maps(converted)  # H, W, C*8
        for k in config["ks"]:
            smallest = k if min_size is None else min_size
            labels = felzenszwalb(converted, scale=k, sigma=sigma, min_size=smallest)  # H, W in [0, n)
            n = int(labels.max()) + 1
            colour = colour_histograms(converted, labels, n)
            texture = texture_histograms(texture_bins, labels, n)
            sizes = np.bincount(labels.ravel(), minlength=n)
            boxes = region_boxes(labels, n)
            pairs = adjacent_pairs(labels) if n > 1 else np.zeros((0, 2), dtype=np.int64)
            for measures in config["similarities"]:
                hierarchy = hierarchical_grouping(colour, texture, sizes, boxes, pairs, image_size, measures)
                # position 1 = last region formed (whole image); randomised as in the paper
                position = np.arange(len(hierarchy), 0, -1, dtype=np.float64)
                all_boxes.append(hierarchy)
                all_ranks.append(position * rng.random(len(hierarchy)))

    boxes = np.concatenate(all_boxes)
    order = np.argsort(np.concatenate(all_ranks), kind="stable")
    boxes = boxes[order]
    # first occurrence of each distinct box = its best-ranked copy
    _, first = np.unique(boxes, axis=0, return_index=True)
    boxes = boxes[np.sort(first)]
    if max_proposals is not None:
        boxes = boxes[:max_proposals]
    return boxes.astype(np.float32)


def _box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU matrix of xyxy boxes: [N, 4], [M, 4] -> float64 [N, M]."""
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])
    lt = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])  # N, M, 2
    rb = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])  # N, M, 2
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def proposal_recall(proposals, gt_boxes, iou_threshold: float = 0.5) -> float:
    """Fraction of ground-truth boxes matched by at least one proposal with IoU >= iou_threshold.

    proposals: [N, 4], gt_boxes: [M, 4], both xyxy (numpy arrays or tensors, any float/int dtype).
    Returns a Python float in [0, 1]; NaN when there is no ground-truth box (recall is undefined).
    """
    arrays = []
    for name, boxes in (("proposals", proposals), ("gt_boxes", gt_boxes)):
        if isinstance(boxes, torch.Tensor):
            boxes = boxes.detach().cpu().numpy()
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"{name} must have shape [N, 4], got {boxes.shape}")
        arrays.append(boxes)
    proposals, gt_boxes = arrays
    if len(gt_boxes) == 0:
        return float("nan")
    if len(proposals) == 0:
        return 0.0
    best = _box_iou(gt_boxes, proposals).max(axis=1)  # M
    return float((best >= iou_threshold).mean())
