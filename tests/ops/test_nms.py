"""nms / nms_simple / batched_nms against torchvision.ops (the oracle): exact index equality."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
import torchvision
from torchvision.ops.boxes import _batched_nms_coordinate_trick, _batched_nms_vanilla

from lectures_code.ops.nms import batched_nms, nms, nms_simple

# The module itself (``lectures_code.ops.nms`` the attribute is the function, re-exported by the package).
nms_module = importlib.import_module("lectures_code.ops.nms")

DTYPES = [torch.float32, torch.float64]
NMS_FUNCTIONS = [nms, nms_simple]


def random_boxes(n: int, g: torch.Generator, integer: bool = False, offset: float = 0.0):
    """Centers uniform in a 1000 x 1000 image, sides 10-200 (integer boxes give many exact ties)."""
    centers = torch.rand(n, 2, generator=g, dtype=torch.float64) * 1000 + offset
    sizes = torch.rand(n, 2, generator=g, dtype=torch.float64) * 190 + 10
    boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], dim=1)
    return boxes.round() if integer else boxes


def check_nms(fn, boxes, scores, threshold):
    ours = fn(boxes, scores, threshold)
    ref = torchvision.ops.nms(boxes, scores, threshold)
    assert ours.dtype == torch.int64 and ours.device == boxes.device
    assert torch.equal(ours, ref), f"{fn.__name__} differs from torchvision at threshold {threshold}"


@pytest.mark.parametrize("fn", NMS_FUNCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(10))
def test_random_boxes_match_torchvision(device, fn, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    n = [5, 60, 300, 700][seed % 4]
    boxes = random_boxes(n, g, integer=seed % 2 == 1, offset=-500 * (seed % 3 == 0))
    # Scores rounded to 2 decimals: many ties, decided by the index.
    scores = torch.rand(n, generator=g, dtype=torch.float64)
    scores = scores.round(decimals=2) if seed % 2 else scores
    boxes, scores = boxes.to(device=device, dtype=dtype), scores.to(device=device, dtype=dtype)
    for threshold in (0.0, 0.1, 0.3, 0.5, 0.7, 1.0):
        check_nms(fn, boxes, scores, threshold)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_clusters_and_wide_boxes(device, dtype):
    # Boxes piled around a few objects (like a detector's raw output) plus a few very wide boxes.
    g = torch.Generator().manual_seed(0)
    objects = random_boxes(5, g)
    boxes = objects.repeat(200, 1) + torch.randn(1000, 4, generator=g, dtype=torch.float64) * 8
    boxes = torch.cat([boxes, torch.tensor([[0.0, 0, 1000, 1000], [0, 400, 1000, 600]])])
    scores = torch.rand(len(boxes), generator=g, dtype=torch.float64)
    boxes, scores = boxes.to(device=device, dtype=dtype), scores.to(device=device, dtype=dtype)
    for threshold in (0.3, 0.5, 0.9):
        check_nms(nms, boxes, scores, threshold)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
@pytest.mark.parametrize("one_row_blocks", [False, True])
def test_pairs_at_the_threshold_inside_and_outside_the_band(device, dtype, scale, one_row_blocks, monkeypatch):
    # nms compares box p only with the boxes q that start before x2[p] - threshold * width[p] (sorted by
    # x1): IoU <= intersection / area[p] <= (x2[p] - x1[q]) / width[p]. A box q inside p that shares its
    # height and right edge reaches that bound: IoU = (x2[p] - x1[q]) / width[p]. Such pairs, and pairs of
    # equal boxes shifted to IoU = threshold, with x1[q] moved a few ulps either way, must give
    # torchvision's answer. With blocks of one row the band of each box alone decides what is compared.
    if one_row_blocks:
        monkeypatch.setattr(nms_module, "block_numel", lambda device: 1)
    g = torch.Generator().manual_seed(int(scale * 7) + 1)
    pairs = []  # (box p, box q, threshold at which their IoU sits)
    for i in range(150):
        t = float(torch.rand(1, generator=g)) * 0.9 + 0.05
        t = round(t * 64) / 64 if i % 4 < 2 else t  # half of them exact in float32: no rounding of the threshold
        width = float(torch.rand(1, generator=g)) * 90 + 10
        x1 = 200.0 * i
        nested = i % 2 == 0
        start = x1 + width * (1 - t) if nested else x1 + width * (1 - t) / (1 + t)
        start = torch.tensor(start * scale, dtype=dtype)
        for k in (-2, -1, 0, 1, 2):
            moved = start
            for _ in range(abs(k)):
                moved = torch.nextafter(moved, torch.tensor(math.copysign(math.inf, k), dtype=dtype))
            q_x1 = float(moved)
            q_x2 = (x1 + width) * scale if nested else q_x1 + width * scale
            pairs.append(([x1 * scale, 0, (x1 + width) * scale, scale], [q_x1, 0, q_x2, scale], t))
    first_boxes, second_boxes = (torch.tensor(b, dtype=dtype).double() for b in zip(*[(p, q) for p, q, _ in pairs]))
    ious = torchvision.ops.box_iou(first_boxes, second_boxes)
    offsets = ious.diagonal().double() - torch.tensor([t for _, _, t in pairs], dtype=torch.float64)
    assert offsets.abs().max() < 1e-3 and (offsets > 0).any() and (offsets <= 0).any()  # the pairs straddle t
    for p, q, t in pairs[::3]:
        boxes = torch.tensor([p, q], dtype=dtype, device=device)
        for scores in ([0.9, 0.8], [0.8, 0.9]):
            check_nms(nms, boxes, torch.tensor(scores, dtype=dtype, device=device), t)
    # All pairs at once, spread along x (pair i at 200 * i): the blocks cover many bands.
    boxes = torch.tensor([box for p, q, _ in pairs for box in (p, q)], dtype=dtype, device=device)
    scores = torch.rand(len(boxes), generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    for t in (0.05, 0.3, 0.5, 0.7, 0.95):
        check_nms(nms, boxes, scores, t)


@pytest.mark.parametrize("dtype", DTYPES)
def test_many_blocks_with_wide_and_narrow_bands(device, dtype):
    # 4000 boxes: narrow ones in a few dense piles, wide ones across the image, so that the blocks of the
    # band search (fewer than 32768 IoUs each on the CPU) have very different shapes.
    g = torch.Generator().manual_seed(5)
    piles = random_boxes(8, g).repeat(400, 1) + torch.randn(3200, 4, generator=g, dtype=torch.float64) * 6
    wide = random_boxes(800, g) * torch.tensor([0.2, 1, 5, 1], dtype=torch.float64)
    boxes = torch.cat([piles, wide]).to(device=device, dtype=dtype)
    scores = torch.rand(len(boxes), generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    for threshold in (0.0, 0.5, 0.8):
        check_nms(nms, boxes, scores, threshold)


@pytest.mark.parametrize("fn", NMS_FUNCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_edge_cases(device, fn, dtype):
    def t(rows):
        return torch.tensor(rows, dtype=dtype, device=device)

    square, half = [0, 0, 10, 10], [0, 0, 10, 5]
    cases = [
        # IoU exactly 0.5 is kept (strictly greater suppresses); just above / just below.
        (t([square, half]), t([1.0, 0.9]), [0.5, 0.4999, 0.5001]),
        (t([square, [0, 0, 10, 5.01]]), t([1.0, 0.9]), [0.5]),
        (t([square, [0, 0, 10, 4.99]]), t([1.0, 0.9]), [0.5]),
        # IoU exactly 1/10 at threshold 0.1: 0.1f > 0.1 on the CPU kernel, not on the CUDA one.
        (t([[0, 0, 10, 1], [0, 0, 1, 1]]), t([1.0, 0.9]), [0.1]),
        (t([[0, 0, 10, 1], [0, 0, 1, 1]]), t([0.9, 1.0]), [0.1]),
        # All scores tied: the lower index wins.
        (t([square, square, [1, 1, 11, 11], [50, 50, 60, 60]]), t([0.5] * 4), [0.0, 0.5, 1.0]),
        # Duplicates, zero-area and inverted boxes, touching edges.
        (t([square, square, square, [3, 3, 3, 3], [3, 3, 3, 3], [10, 10, 0, 0], [10, 0, 20, 10]]),
         t([0.3, 0.9, 0.3, 0.8, 0.7, 0.6, 0.5]), [0.0, 0.5, 1.0]),
        # n = 1 and n = 0.
        (t([square]), t([0.3]), [0.0, 0.5, 1.0]),
        (torch.zeros(0, 4, dtype=dtype, device=device), torch.zeros(0, dtype=dtype, device=device), [0.5]),
    ]
    for boxes, scores, thresholds in cases:
        for threshold in thresholds:
            check_nms(fn, boxes, scores, threshold)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(device, dtype):
    g = torch.Generator().manual_seed(0)
    boxes = random_boxes(200, g).to(device=device, dtype=dtype)
    scores = torch.rand(200, generator=g).to(device)
    expected = torchvision.ops.nms(boxes.float(), scores, 0.5)
    assert torch.equal(nms(boxes, scores, 0.5), expected)
    assert torch.equal(nms_simple(boxes, scores, 0.5), expected)


def labelled(n: int, seed: int, device, dtype, offset: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(n, g, offset=offset)
    # Clipped to the image like a detector's boxes, so that the offset trick is not ruled out.
    boxes = (boxes.clamp(min=0) if offset >= 0 else boxes).to(device=device, dtype=dtype)
    # Distinct scores: torchvision's per-class loop orders equal scores arbitrarily.
    scores = (torch.randperm(n, generator=g) / n).to(device=device, dtype=dtype)
    labels = torch.randint(0, 5, (n,), generator=g).to(device)
    return boxes, scores, labels


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 50, 999, 1001])
def test_batched_matches_torchvision_on_both_code_paths(device, dtype, n):
    # On CPU 999 boxes (numel 3996) take the offset trick and 1001 boxes the per-class loop.
    for seed in range(3):
        boxes, scores, labels = labelled(n, seed, device, dtype)
        for threshold in (0.3, 0.5, 0.7):
            ours = batched_nms(boxes, scores, labels, threshold)
            assert torch.equal(ours, torchvision.ops.batched_nms(boxes, scores, labels, threshold))
            if device == "cpu" and n == 999:
                assert bool(boxes.min() >= 0)  # so our batched_nms takes the offset trick too
                assert torch.equal(ours, _batched_nms_coordinate_trick(boxes, scores, labels, threshold))
            if device == "cpu" and n == 1001:
                assert torch.equal(ours, _batched_nms_vanilla(boxes, scores, labels, threshold))


def test_batched_negative_coordinates_use_the_correct_per_class_loop(device):
    boxes = torch.tensor([[-60.0, -60, -20, -20], [-40, -40, 10, 10]], device=device)
    scores, labels = torch.tensor([0.9, 0.8], device=device), torch.tensor([1, 0], device=device)
    assert batched_nms(boxes, scores, labels, 0.1).tolist() == [0, 1]
    assert _batched_nms_vanilla(boxes, scores, labels, 0.1).tolist() == [0, 1]
    assert torchvision.ops.batched_nms(boxes, scores, labels, 0.1).tolist() == [0]  # the reference bug

    for seed in range(5):
        boxes, scores, labels = labelled(400, seed, device, torch.float32, offset=-500.0)
        for threshold in (0.1, 0.5):
            ours = batched_nms(boxes, scores, labels, threshold)
            assert torch.equal(ours, _batched_nms_vanilla(boxes, scores, labels, threshold))


def test_batched_tied_scores_keep_the_same_set(device):
    # torchvision's per-class loop re-sorts with a non-stable sort; ours is stable, so with ties only
    # the kept set and the score order are comparable.
    g = torch.Generator().manual_seed(0)
    boxes = random_boxes(1200, g, integer=True).float().to(device)
    scores = torch.rand(1200, generator=g).round(decimals=1).to(device)
    labels = torch.randint(0, 3, (1200,), generator=g).to(device)
    ours = batched_nms(boxes, scores, labels, 0.5)
    ref = torchvision.ops.batched_nms(boxes, scores, labels, 0.5)
    assert sorted(ours.tolist()) == sorted(ref.tolist())
    assert torch.all(scores[ours][:-1] >= scores[ours][1:])


def test_batched_empty(device):
    empty = torch.zeros(0, 4, device=device)
    labels = torch.zeros(0, dtype=torch.int64, device=device)
    kept = batched_nms(empty, torch.zeros(0, device=device), labels, 0.5)
    assert kept.shape == (0,) and kept.dtype == torch.int64


def test_bad_input_raises():
    boxes, scores = torch.rand(3, 4), torch.rand(3)
    with pytest.raises(ValueError):
        nms(boxes, torch.rand(4), 0.5)
    with pytest.raises(ValueError):
        nms(torch.rand(3, 5), scores, 0.5)
    with pytest.raises(ValueError):
        nms(boxes, scores, -0.1)
    with pytest.raises(TypeError):
        nms(boxes.long(), scores, 0.5)
    with pytest.raises(TypeError):
        batched_nms(boxes, scores, torch.zeros(3), 0.5)
    with pytest.raises(ValueError):
        batched_nms(boxes, scores, torch.zeros(2, dtype=torch.int64), 0.5)
