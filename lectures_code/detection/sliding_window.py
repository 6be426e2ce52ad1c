"""Why sliding windows do not scale: how many boxes a brute-force detector would have to classify.

Windows are integer boxes in xyxy pixel coordinates with exclusive x2/y2: a window of width w and
height h at column x, row y covers pixels x..x+w-1, y..y+h-1 and is written (x, y, x + w, y + h).
It must lie fully inside an image of H rows and W columns.

Lecture 13's example: an 800x600 image. ``count_all_windows(600, 800)`` = 180,300 * 320,400 =
57,768,120,000, about 58 BILLION windows (the slide writes "~58M"; the formula on the same slide gives
58e9), far too many to run a CNN on each one. Even one fixed 100x100 size has 351,201 positions.
"""

from __future__ import annotations

from collections.abc import Iterator


def _check_size(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


# --8<-- [start:count]
def count_windows(H: int, W: int, h: int, w: int) -> int:
    """Number of positions of an h x w window inside an H x W image: (W - w + 1)(H - h + 1).

    A window larger than the image fits nowhere: 0.
    """
    _check_size(H=H, W=W, h=h, w=w)
    # x can be 0 .. W - w and y can be 0 .. H - h: W - w + 1 and H - h + 1 choices.
    return max(W - w + 1, 0) * max(H - h + 1, 0)


def count_all_windows(H: int, W: int) -> int:
    """Number of windows of every size h = 1..H, w = 1..W in an H x W image: H(H+1)/2 * W(W+1)/2.

    Sum over h and w of (H - h + 1)(W - w + 1) = (1 + 2 + ... + H)(1 + 2 + ... + W).
    """
    _check_size(H=H, W=W)
    return H * (H + 1) // 2 * (W * (W + 1) // 2)
# --8<-- [end:count]


def enumerate_windows(H: int, W: int, h: int | None = None, w: int | None = None) -> Iterator[
    tuple[int, int, int, int]
]:
    """Yield every window (x1, y1, x2, y2) (xyxy, exclusive x2/y2) inside an H x W image.

    ``h`` / ``w`` fix the window height / width; ``None`` means every height 1..H / width 1..W.
    Order: height, width, then y, then x (row-major sliding).
    """
    _check_size(H=H, W=W)
    if h is not None:
        _check_size(h=h)
    if w is not None:
        _check_size(w=w)
    heights = range(1, H + 1) if h is None else [h]
    widths = range(1, W + 1) if w is None else [w]
    for win_h in heights:
        for win_w in widths:
            for y in range(H - win_h + 1):
                for x in range(W - win_w + 1):
                    yield (x, y, x + win_w, y + win_h)
