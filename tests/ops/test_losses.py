"""Focal loss and the IoU-family box losses against torchvision.ops (values and gradients)."""

from __future__ import annotations

import pytest
import torch
import torchvision.ops as tvops

from lectures_code.ops.losses import (
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou,
    generalized_box_iou_loss,
    sigmoid_focal_loss,
)

DTYPES = [torch.float32, torch.float64]
SEEDS = range(10)


def _random_boxes(n: int, generator: torch.Generator, dtype, device, max_xy: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * max_xy
    wh = torch.rand(n, 2, generator=generator, dtype=torch.float64) * max_xy / 2
    return torch.cat((xy, xy + wh), dim=1).to(dtype=dtype, device=device)


def _value_and_grads(fn, *inputs, **kwargs):
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves, **kwargs)
    # A random weighting of the outputs makes every output element's gradient count.
    weights = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
    grads = torch.autograd.grad((out * weights).sum(), leaves, allow_unused=True)
    return out.detach(), grads


def _assert_same(ours, theirs, dtype):
    tol = {} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    out_a, grads_a = ours
    out_b, grads_b = theirs
    assert out_a.dtype == out_b.dtype and out_a.shape == out_b.shape
    torch.testing.assert_close(out_a, out_b, equal_nan=True, **tol)
    for grad_a, grad_b in zip(grads_a, grads_b):
        assert (grad_a is None) == (grad_b is None)
        if grad_a is not None:
            torch.testing.assert_close(grad_a, grad_b, equal_nan=True, **tol)


# ---------------------------------------------------------------- sigmoid_focal_loss


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_focal_loss_random(device, dtype, reduction):
    for seed in SEEDS:
        g = torch.Generator().manual_seed(seed)
        logits = (torch.randn(7, 5, generator=g, dtype=torch.float64) * 4).to(dtype=dtype, device=device)
        hard = (torch.rand(7, 5, generator=g) < 0.3).to(dtype=dtype, device=device)
        soft = torch.rand(7, 5, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
        for targets in (hard, soft):
            for alpha, gamma in [(0.25, 2.0), (-1, 0.0), (0.0, 1.0), (1.0, 3.5), (0.5, 0.5), (-1, 2.0)]:
                kwargs = {"alpha": alpha, "gamma": gamma, "reduction": reduction}
                ours = _value_and_grads(sigmoid_focal_loss, logits, targets, **kwargs)
                theirs = _value_and_grads(tvops.sigmoid_focal_loss, logits, targets, **kwargs)
                _assert_same(ours, theirs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_focal_loss_saturation_and_all_negative(device, dtype):
    # p exactly 0 or 1 in floating point, right and wrong, plus infinite logits.
    logits = torch.tensor([-1e4, -100.0, -40.0, 0.0, 40.0, 100.0, 1e4, float("inf"), -float("inf")],
                          dtype=dtype, device=device)
    for fill in (0.0, 1.0):
        targets = torch.full_like(logits, fill)
        for gamma in (0.0, 2.0):
            ours = _value_and_grads(sigmoid_focal_loss, logits, targets, gamma=gamma)
            theirs = _value_and_grads(tvops.sigmoid_focal_loss, logits, targets, gamma=gamma)
            _assert_same(ours, theirs, dtype)

    # All-negative targets (an image with no object): only the background term remains.
    logits = torch.randn(100, 4, dtype=dtype, device=device) - 3
    targets = torch.zeros_like(logits)
    ours = _value_and_grads(sigmoid_focal_loss, logits, targets, reduction="sum")
    _assert_same(ours, _value_and_grads(tvops.sigmoid_focal_loss, logits, targets, reduction="sum"), dtype)
    p = torch.sigmoid(logits)
    expected = (0.75 * p**2 * -torch.log1p(-p)).sum()  # alpha_t = 1 - alpha, p_t = 1 - p
    torch.testing.assert_close(ours[0], expected)


def test_focal_loss_downweights_easy_negatives():
    # The docstring's numbers: an easy negative shrinks ~1e4 times, a hard positive barely.
    logit = torch.logit(torch.tensor([0.01, 0.1], dtype=torch.float64))
    targets = torch.tensor([0.0, 1.0], dtype=torch.float64)
    ce = sigmoid_focal_loss(logit, targets, alpha=-1, gamma=0)
    focal = sigmoid_focal_loss(logit, targets, alpha=-1, gamma=2)
    torch.testing.assert_close(focal / ce, torch.tensor([0.01**2, 0.9**2], dtype=torch.float64))


def test_focal_loss_bad_input():
    x = torch.zeros(3)
    with pytest.raises(ValueError):
        sigmoid_focal_loss(x, x, alpha=1.5)
    with pytest.raises(ValueError):
        sigmoid_focal_loss(x, x, reduction="max")
    with pytest.raises(ValueError):
        sigmoid_focal_loss(x, torch.zeros(4))
    with pytest.raises(TypeError):
        sigmoid_focal_loss(torch.zeros(3, dtype=torch.long), x)


# ---------------------------------------------------------------- generalized_box_iou (matrix)


@pytest.mark.parametrize("dtype", DTYPES)
def test_generalized_box_iou_random(device, dtype):
    for seed in SEEDS:
        g = torch.Generator().manual_seed(seed)
        boxes1 = _random_boxes(6, g, dtype, device)
        boxes2 = _random_boxes(9, g, dtype, device)
        ours = _value_and_grads(generalized_box_iou, boxes1, boxes2)
        theirs = _value_and_grads(tvops.generalized_box_iou, boxes1, boxes2)
        _assert_same(ours, theirs, dtype)
        assert ours[0].shape == (6, 9)
        assert (ours[0] > -1).all() and (ours[0] <= 1).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_generalized_box_iou_edge_cases(device, dtype):
    boxes = torch.tensor(
        [
            [0, 0, 10, 10],
            [0, 0, 10, 10],  # identical to the first
            [20, 0, 30, 10],  # disjoint
            [2, 2, 5, 5],  # nested
            [10, 0, 20, 10],  # touching
            [4, 4, 4, 8],  # zero width
            [3, 3, 3, 3],  # a point
            [3, 3, 3, 3],  # the same point: 0 / 0
        ],
        dtype=dtype,
        device=device,
    )
    ours = generalized_box_iou(boxes, boxes)
    theirs = tvops.generalized_box_iou(boxes, boxes)
    torch.testing.assert_close(ours, theirs, equal_nan=True)
    assert ours[0, 1] == 1 and ours[0, 0] == 1
    assert ours[0, 2] < 0  # disjoint: -(30*10 - 200) / 300 = -1/3
    torch.testing.assert_close(ours[0, 2], torch.tensor(-1 / 3, dtype=dtype, device=device))
    torch.testing.assert_close(ours[0, 3], torch.tensor(9 / 100, dtype=dtype, device=device))  # = IoU
    assert ours[0, 4] == 0  # touching: IoU 0, enclosing box filled
    assert torch.isnan(ours[6, 7])

    empty = torch.zeros(0, 4, dtype=dtype, device=device)
    assert generalized_box_iou(empty, boxes).shape == (0, 8)
    assert generalized_box_iou(boxes, empty).shape == (8, 0)


def test_generalized_box_iou_bad_input():
    with pytest.raises(ValueError):
        generalized_box_iou(torch.zeros(4), torch.zeros(2, 4))
    with pytest.raises(ValueError):
        generalized_box_iou(torch.zeros(2, 5), torch.zeros(2, 4))
    with pytest.raises(TypeError):
        generalized_box_iou([[0, 0, 1, 1]], torch.zeros(2, 4))


# ---------------------------------------------------------------- element-wise box losses

LOSSES = [
    (generalized_box_iou_loss, tvops.generalized_box_iou_loss),
    (distance_box_iou_loss, tvops.distance_box_iou_loss),
    (complete_box_iou_loss, tvops.complete_box_iou_loss),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("ours_fn, theirs_fn", LOSSES, ids=["giou", "diou", "ciou"])
def test_box_losses_random(device, dtype, reduction, ours_fn, theirs_fn):
    for seed in SEEDS:
        g = torch.Generator().manual_seed(seed)
        boxes1 = _random_boxes(12, g, dtype, device)
        boxes2 = _random_boxes(12, g, dtype, device)
        for eps in (1e-7, 1e-3):
            ours = _value_and_grads(ours_fn, boxes1, boxes2, reduction=reduction, eps=eps)
            theirs = _value_and_grads(theirs_fn, boxes1, boxes2, reduction=reduction, eps=eps)
            _assert_same(ours, theirs, dtype)
        # A single pair of [4] boxes.
        ours = _value_and_grads(ours_fn, boxes1[0], boxes2[0], reduction=reduction)
        _assert_same(ours, _value_and_grads(theirs_fn, boxes1[0], boxes2[0], reduction=reduction), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ours_fn, theirs_fn", LOSSES, ids=["giou", "diou", "ciou"])
def test_box_losses_edge_cases(device, dtype, ours_fn, theirs_fn):
    boxes1 = torch.tensor(
        [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [2, 2, 5, 5], [4, 4, 4, 8], [3, 3, 3, 3]],
        dtype=dtype,
        device=device,
    )
    boxes2 = torch.tensor(
        # identical, disjoint, touching (no gradient through the intersection), nested, nested,
        # zero width, zero-area point on a zero-area point (finite thanks to eps)
        [[0, 0, 10, 10], [20, 0, 30, 10], [10, 0, 20, 10], [2, 2, 5, 5], [0, 0, 10, 10], [4, 4, 4, 8], [3, 3, 3, 3]],
        dtype=dtype,
        device=device,
    )
    ours = _value_and_grads(ours_fn, boxes1, boxes2)
    theirs = _value_and_grads(theirs_fn, boxes1, boxes2)
    _assert_same(ours, theirs, dtype)
    loss = ours[0]
    torch.testing.assert_close(loss[0], torch.tensor(0.0, dtype=dtype, device=device), atol=1e-6, rtol=0)
    if ours_fn is generalized_box_iou_loss:
        assert loss[1] > 1  # disjoint boxes: GIoU < 0
        assert torch.isfinite(loss[5:]).all()

    # No box at all: mean is 0, not NaN, and still differentiable.
    empty = torch.zeros(0, 4, dtype=dtype, device=device, requires_grad=True)
    out = ours_fn(empty, empty, reduction="mean")
    assert out.item() == 0 and out.requires_grad


def test_box_losses_bad_input():
    with pytest.raises(ValueError):
        generalized_box_iou_loss(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError):
        generalized_box_iou_loss(torch.zeros(3, 4), torch.zeros(3, 4), reduction="max")
    with pytest.raises(ValueError):
        distance_box_iou_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))
