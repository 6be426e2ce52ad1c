"""Window counts against brute-force enumeration (and an independent double loop)."""

from __future__ import annotations

import itertools
import random

import pytest

from lectures_code.detection.sliding_window import count_all_windows, count_windows, enumerate_windows


def brute_force_positions(H: int, W: int, h: int, w: int) -> int:
    # Independent of enumerate_windows: test every top-left corner of the image, keep those that fit.
    return sum(1 for y in range(H) for x in range(W) if x + w <= W and y + h <= H)


SIZES = [(1, 1, 1, 1), (5, 7, 2, 3), (7, 5, 7, 5), (4, 4, 5, 1), (4, 4, 1, 5), (3, 9, 4, 10), (10, 3, 1, 3)]
rng = random.Random(0)
SIZES += [(rng.randint(1, 12), rng.randint(1, 12), rng.randint(1, 14), rng.randint(1, 14)) for _ in range(60)]


@pytest.mark.parametrize("H, W, h, w", SIZES)
def test_count_windows_matches_enumeration(H, W, h, w):
    windows = list(enumerate_windows(H, W, h, w))
    assert count_windows(H, W, h, w) == len(windows) == brute_force_positions(H, W, h, w)
    assert len(set(windows)) == len(windows)
    for x1, y1, x2, y2 in windows:
        assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H
        assert (x2 - x1, y2 - y1) == (w, h)


def test_window_larger_than_image_fits_nowhere():
    assert count_windows(4, 4, 5, 4) == 0
    assert count_windows(4, 4, 4, 5) == 0
    assert count_windows(4, 4, 9, 9) == 0  # both too large: 0, not a positive product of negatives
    assert list(enumerate_windows(4, 4, 9, 9)) == []


@pytest.mark.parametrize("H, W", [(1, 1), (1, 6), (6, 1), (3, 4), (5, 5), (8, 9)])
def test_count_all_windows_matches_enumeration(H, W):
    windows = list(enumerate_windows(H, W))
    assert len(set(windows)) == len(windows) == count_all_windows(H, W)
    all_sizes = itertools.product(range(1, H + 1), range(1, W + 1))
    by_size = sum(brute_force_positions(H, W, h, w) for h, w in all_sizes)
    assert by_size == count_all_windows(H, W)
    # Every integer box inside the image, enumerated by corners, is a window exactly once.
    corners = {(x1, y1, x2, y2) for x1 in range(W) for x2 in range(x1 + 1, W + 1)
               for y1 in range(H) for y2 in range(y1 + 1, H + 1)}
    assert corners == set(windows)


def test_fixed_height_or_width_only():
    H, W = 6, 5
    assert len(list(enumerate_windows(H, W, h=2))) == sum(count_windows(H, W, 2, w) for w in range(1, W + 1))
    assert len(list(enumerate_windows(H, W, w=3))) == sum(count_windows(H, W, h, 3) for h in range(1, H + 1))


def test_lecture_example_800x600():
    # Sum over all sizes (independent of the closed form): sum_h (H-h+1) * sum_w (W-w+1).
    H, W = 600, 800
    assert count_all_windows(H, W) == sum(H - h + 1 for h in range(1, H + 1)) * sum(
        W - w + 1 for w in range(1, W + 1)
    )
    assert count_all_windows(H, W) == 57_768_120_000
    assert count_windows(H, W, 100, 100) == 501 * 701


@pytest.mark.parametrize("args", [(0, 5, 1, 1), (5, 5, 0, 1), (5, -1, 1, 1)])
def test_bad_sizes_raise_value_error(args):
    with pytest.raises(ValueError):
        count_windows(*args)


def test_non_int_sizes_raise_type_error():
    with pytest.raises(TypeError):
        count_windows(5.0, 5, 1, 1)
    with pytest.raises(TypeError):
        count_all_windows(5, True)
    with pytest.raises(TypeError):
        next(enumerate_windows(5, 5, h=1.5))
