"""Box regression targets: encode a box relative to a proposal, and decode it back (Lecture 13).

A detector does not predict box corners directly. It predicts a *transform* (tx, ty, tw, th) of a
proposal (an anchor, or a region proposal) that moves its center and scales its size. With the
proposal's center (px, py) and size (pw, ph), and the target's (gx, gy, gw, gh), all from xyxy
boxes with center = x1 + 0.5 * w (no "+1"):

    encode:  tx = wx * (gx - px) / pw        ty = wy * (gy - py) / ph
             tw = ww * log(gw / pw)          th = wh * log(gh / ph)

    decode:  dw = min(tw / ww, clamp)        dh = min(th / wh, clamp)
             cx = tx / wx * pw + px          cy = ty / wy * ph + py
             w  = exp(dw) * pw               h  = exp(dh) * ph
             box = (cx - 0.5 w, cy - 0.5 h, cx + 0.5 w, cy + 0.5 h)

Shifts are measured in proposal widths and sizes on a log scale, so the targets do not depend on
the box size ("scale invariant"). The weights (wx, wy, ww, wh) only rescale the targets to about
unit variance: (1, 1, 1, 1) for an RPN or RetinaNet, (10, 10, 5, 5) for the Fast R-CNN box head.
Decoding clamps dw, dh from above at log(1000 / 16), so exp() cannot overflow on a wild prediction.
The formulas and the order of floating-point operations are those of torchvision's ``BoxCoder``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

DEFAULT_CLAMP = math.log(1000.0 / 16)


def _check(name: str, boxes: Tensor) -> None:
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(boxes).__name__}")
    if not boxes.is_floating_point():
        raise TypeError(f"{name} must be floating point, got dtype {boxes.dtype}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4], got {list(boxes.shape)}")


def _check_weights(weights) -> tuple[float, float, float, float]:
    if len(weights) != 4:
        raise ValueError(f"weights must be 4 numbers (wx, wy, ww, wh), got {weights!r}")
    return tuple(float(w) for w in weights)


# --8<-- [start:encode]
def encode_boxes(
    proposals: Tensor, targets: Tensor, weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
) -> Tensor:
    """Regression targets (tx, ty, tw, th) that turn each proposal into its target box.

    Args:
        proposals: [N, 4] xyxy proposals or anchors (floating point).
        targets: [N, 4] xyxy ground-truth boxes matched to them, same dtype and device.
        weights: (wx, wy, ww, wh) multiplied into the targets.

    Returns:
        [N, 4] deltas (tx, ty, tw, th) in the dtype of ``targets``.
    """
    _check("proposals", proposals)
    _check("targets", targets)
    if proposals.shape[0] != targets.shape[0]:
        raise ValueError(f"need one target per proposal, got {proposals.shape[0]} and {targets.shape[0]}")
    wx, wy, ww, wh = _check_weights(weights)

    pw = proposals[:, 2] - proposals[:, 0]  # [N]
    ph = proposals[:, 3] - proposals[:, 1]
    px = proposals[:, 0] + 0.5 * pw
    py = proposals[:, 1] + 0.5 * ph

    gw = targets[:, 2] - targets[:, 0]
    gh = targets[:, 3] - targets[:, 1]
    gx = targets[:, 0] + 0.5 * gw
    gy = targets[:, 1] + 0.5 * gh

    tx = wx * (gx - px) / pw
    ty = wy * (gy - py) / ph
    tw = ww * torch.log(gw / pw)
    th = wh * torch.log(gh / ph)
    return torch.stack((tx, ty, tw, th), dim=1)  # [N, 4]
# --8<-- [end:encode]


# --8<-- [start:decode]
def decode_boxes(
    deltas: Tensor,
    proposals: Tensor,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
    clamp: float = DEFAULT_CLAMP,
) -> Tensor:
    """Apply predicted deltas (tx, ty, tw, th) to proposals; the inverse of :func:`encode_boxes`.

    Args:
        deltas: [N, 4] predicted (tx, ty, tw, th), floating point.
        proposals: [N, 4] xyxy proposals or anchors (cast to the dtype of ``deltas``).
        weights: the (wx, wy, ww, wh) used when encoding; the deltas are divided by them.
        clamp: upper bound on dw, dh (after dividing by the weights) before ``exp``.

    Returns:
        [N, 4] xyxy boxes in the dtype of ``deltas``.
    """
    _check("deltas", deltas)
    _check("proposals", proposals)
    if proposals.shape[0] != deltas.shape[0]:
        raise ValueError(f"need one proposal per delta row, got {proposals.shape[0]} and {deltas.shape[0]}")
    wx, wy, ww, wh = _check_weights(weights)
    proposals = proposals.to(deltas.dtype)

    pw = proposals[:, 2] - proposals[:, 0]  # [N]
    ph = proposals[:, 3] - proposals[:, 1]
    px = proposals[:, 0] + 0.5 * pw
    py = proposals[:, 1] + 0.5 * ph

    dx = deltas[:, 0] / wx
    dy = deltas[:, 1] / wy
    # A huge predicted log-scale would overflow exp(); the clamp caps a box at 62.5x its proposal.
    dw = torch.clamp(deltas[:, 2] / ww, max=clamp)
    dh = torch.clamp(deltas[:, 3] / wh, max=clamp)

    cx = dx * pw + px
    cy = dy * ph + py
    half_w = 0.5 * (torch.exp(dw) * pw)
    half_h = 0.5 * (torch.exp(dh) * ph)
    return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=1)  # [N, 4]
# --8<-- [end:decode]
