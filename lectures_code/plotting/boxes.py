"""Drawing helpers for Lecture 13's figures and demos: images and xyxy boxes on a matplotlib Axes.

Boxes are [N, 4] xyxy in pixel coordinates (x1, y1, x2, y2), as everywhere in ``lectures_code.detection``.
A pixel (column c, row r) of an image shown by :func:`show_image` covers [c, c + 1] x [r, r + 1] in the
axes' data coordinates, so a box [x1, y1, x2, y2] with exclusive x2/y2 (the tight box of a mask) is drawn
exactly around its pixels.

Only the object-oriented matplotlib API is used (no pyplot state): the demos draw from worker threads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.patches import Rectangle

# Colour-blind friendly qualitative palette (matplotlib "tab10").
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def to_rgb_uint8(image) -> np.ndarray:
    """Any image this project handles -> HxWx3 uint8 RGB numpy array.

    Accepts a torch tensor [3, H, W] or [H, W] (float in [0, 1] or uint8, any device), or a numpy array
    [H, W, 3], [H, W, 4] (alpha dropped) or [H, W] (grey, repeated to 3 channels), float in [0, 1] or uint8.
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.dim() == 3:
            image = image.permute(1, 2, 0)  # CHW -> HWC
        image = image.numpy()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"image must be [3, H, W], [H, W, 3/4] or [H, W], got shape {image.shape}")
    image = image[:, :, :3]
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == np.bool_ or not np.issubdtype(image.dtype, np.number):
        raise TypeError(f"image must be uint8 or float in [0, 1], got dtype {image.dtype}")
    return (np.clip(image.astype(np.float64), 0.0, 1.0) * 255).round().astype(np.uint8)


def show_image(ax, image) -> None:
    """Show an image (see :func:`to_rgb_uint8` for accepted forms) with pixel (c, r) at [c, c+1] x [r, r+1].

    The axes ticks are hidden; y grows downwards, as in image coordinates.
    """
    rgb = to_rgb_uint8(image)  # [H, W, 3]
    height, width = rgb.shape[:2]
    # extent puts pixel edges on integers, so exclusive-x2 boxes line up with the pixels they cover
    ax.imshow(rgb, extent=(0, width, height, 0), interpolation="nearest")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xticks([])
    ax.set_yticks([])


def _as_boxes(boxes) -> np.ndarray:
    if isinstance(boxes, torch.Tensor):
        boxes = boxes.detach().cpu().double().numpy()
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim == 1 and boxes.shape[0] == 4:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4] (xyxy), got {boxes.shape}")
    return boxes


def _per_box(values, n: int, name: str) -> list:
    if values is None:
        return [None] * n
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().tolist()
    if isinstance(values, str) or not isinstance(values, (Sequence, np.ndarray)):
        return [values] * n  # one value for every box
    values = list(values)
    if len(values) != n:
        raise ValueError(f"{name} must have one entry per box ({n}), got {len(values)}")
    return values


def _text_colour(background) -> str:
    """Black on a light tag (e.g. a white ground-truth box), white on a dark one."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(background)
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.6 else "white"


def draw_boxes(
    ax,
    boxes_xyxy,
    labels=None,
    scores=None,
    colors=None,
    linestyle: str = "-",
    linewidth: float = 2.0,
    alpha: float = 1.0,
    fill_alpha: float = 0.0,
    fontsize: float = 8.0,
    text_inside: bool = False,
) -> list:
    """Draw [N, 4] xyxy boxes, each with an optional "label score" tag at its top-left corner.

    Args:
        ax: a matplotlib Axes (typically after :func:`show_image`).
        boxes_xyxy: [N, 4] (or [4]) xyxy boxes, numpy / list / torch tensor on any device.
        labels: None, one label for all boxes, or N labels (str or int).
        scores: None or N scores (floats), shown with 2 decimals after the label.
        colors: None (the palette, one colour per box), one matplotlib colour, or N colours.
        linestyle, linewidth, alpha: edge style of every box ("--" for suppressed boxes, say).
        fill_alpha: opacity of a fill in the box colour (0 = outline only).
        fontsize: size of the tags; text_inside puts the tag inside the box instead of above it.

    Returns:
        the list of Rectangle patches added, in box order.
    """
    boxes = _as_boxes(boxes_xyxy)  # [N, 4] float64
    n = boxes.shape[0]
    if colors is None:
        colors = [PALETTE[i % len(PALETTE)] for i in range(n)]
    elif isinstance(colors, str) or (isinstance(colors, tuple) and len(colors) in (3, 4)
                                     and all(isinstance(c, (int, float)) for c in colors)):
        colors = [colors] * n
    colors = _per_box(colors, n, "colors")
    labels = _per_box(labels, n, "labels")
    scores = _per_box(scores, n, "scores")

    patches = []
    for (x1, y1, x2, y2), color, label, score in zip(boxes, colors, labels, scores):
        if fill_alpha > 0:
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, facecolor=color, edgecolor="none",
                                   alpha=fill_alpha))
        patch = Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linestyle=linestyle,
                          linewidth=linewidth, alpha=alpha)
        ax.add_patch(patch)
        patches.append(patch)
        parts = [] if label is None else [str(label)]
        if score is not None:
            parts.append(f"{float(score):.2f}")
        if parts:
            ax.text(x1, y1, " ".join(parts), fontsize=fontsize, color=_text_colour(color), alpha=alpha,
                    va="top" if text_inside else "bottom", ha="left", clip_on=True,
                    bbox={"facecolor": color, "edgecolor": "none", "pad": 1.0, "alpha": 0.85 * alpha})
    return patches


def detection_figure(image, detections: dict, proposals=None, target: dict | None = None, size: float = 5.2):
    """A Figure of one image with a detector's output, as the demos show it: (Figure, its Axes).

    ``detections`` {"boxes" [D, 4] xyxy, "scores" [D], "labels" [D]} drawn in the digit's colour with
    "digit score" tags; ``proposals`` [P, 4] as thin grey boxes under them; the ground truth ``target``
    {"boxes"} as white dotted boxes. The Axes is returned so that a demo can draw more on it.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(size, size), dpi=100)
    ax = figure.add_subplot(1, 1, 1)
    show_image(ax, image)
    if proposals is not None and len(proposals):
        draw_boxes(ax, proposals, colors="#bbbbbb", linewidth=0.6, alpha=0.65)
    if target is not None:
        draw_boxes(ax, target["boxes"], colors="white", linestyle=":", linewidth=1.0)
    labels = [int(label) for label in detections["labels"].tolist()]
    draw_boxes(ax, detections["boxes"], labels=labels, scores=detections["scores"].tolist(),
               colors=[PALETTE[label % len(PALETTE)] for label in labels], linewidth=2.0, fontsize=9)
    return figure, ax
