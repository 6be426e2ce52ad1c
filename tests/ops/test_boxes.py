"""box_area / box_iou / box_convert against torchvision.ops (the oracle)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from lectures_code.ops.boxes import box_area, box_convert, box_iou

DTYPES = [torch.float32, torch.float64]
FORMATS = ["xyxy", "xywh", "cxcywh"]


def random_boxes(n: int, seed: int, dtype=torch.float32, device="cpu", scale: float = 1000.0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(n, 2, generator=g, dtype=torch.float64) * scale
    sizes = torch.rand(n, 2, generator=g, dtype=torch.float64) * scale / 5
    boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], dim=1)
    return boxes.to(dtype=dtype, device=device)


def tolerance(dtype):
    return {"atol": 1e-12, "rtol": 0} if dtype == torch.float64 else {"atol": 1e-6, "rtol": 1e-6}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(8))
def test_area_and_iou_match_torchvision_on_random_boxes(device, dtype, seed):
    boxes1 = random_boxes(37 + seed, seed, dtype, device)
    boxes2 = random_boxes(23, seed + 100, dtype, device)
    torch.testing.assert_close(box_area(boxes1), torchvision.ops.box_area(boxes1), **tolerance(dtype))
    ours = box_iou(boxes1, boxes2)
    assert ours.shape == (boxes1.shape[0], boxes2.shape[0]) and ours.dtype == dtype
    torch.testing.assert_close(ours, torchvision.ops.box_iou(boxes1, boxes2), **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_iou_edge_cases(device, dtype):
    boxes = torch.tensor(
        [
            [0, 0, 10, 10],  # reference
            [0, 0, 10, 10],  # identical
            [10, 0, 20, 10],  # touching edge
            [2, 2, 5, 5],  # nested
            [3, 3, 3, 3],  # zero area (a point)
            [4, 4, 4, 9],  # zero area (a segment)
            [10, 10, 0, 0],  # inverted: positive "area", IoU 0
            [0, 0, 1e4, 1e4],  # large coordinates
            [9999, 9999, 10000, 10000],
            [-5, -5, 5, 5],  # negative coordinates
        ],
        dtype=dtype,
        device=device,
    )
    ours, ref = box_iou(boxes, boxes), torchvision.ops.box_iou(boxes, boxes)
    torch.testing.assert_close(ours, ref, equal_nan=True, **tolerance(dtype))
    assert torch.isnan(ours[4, 5]) and ours[0, 4] == 0 and ours[0, 6] == 0 and ours[0, 2] == 0
    assert ours[0, 1] == 1
    torch.testing.assert_close(box_area(boxes), torchvision.ops.box_area(boxes))


def test_iou_empty_inputs(device):
    empty, some = torch.zeros(0, 4, device=device), random_boxes(5, 0, device=device)
    assert box_iou(empty, some).shape == (0, 5) == torchvision.ops.box_iou(empty, some).shape
    assert box_iou(some, empty).shape == (5, 0)
    assert box_iou(empty, empty).shape == (0, 0)
    assert box_area(empty).shape == (0,)


@pytest.mark.parametrize("shape", [(3000, 20), (5, 40_000), (33, 1000), (1, 7)])
def test_iou_in_blocks_of_rows_matches_torchvision(device, shape):
    # On the CPU box_iou works a block of rows at a time (fewer than 32768 IoUs per block): tall, wide
    # (one row is already more than a block) and exactly-one-block-plus-a-row shapes.
    n, m = shape
    boxes1, boxes2 = random_boxes(n, 7, device=device), random_boxes(m, 8, device=device)
    ours = box_iou(boxes1, boxes2)
    torch.testing.assert_close(ours, torchvision.ops.box_iou(boxes1, boxes2), **tolerance(torch.float32))
    assert box_iou(boxes1[:0], boxes2).shape == (0, m) and box_iou(boxes1, boxes2[:0]).shape == (n, 0)


def test_iou_is_differentiable():
    boxes1 = random_boxes(40, 9, torch.float64).requires_grad_()
    boxes2 = random_boxes(30, 10, torch.float64)
    (grad,) = torch.autograd.grad(box_iou(boxes1, boxes2).sum(), boxes1)
    (ref,) = torch.autograd.grad(torchvision.ops.box_iou(boxes1, boxes2).sum(), boxes1)
    torch.testing.assert_close(grad, ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int32, torch.int64, torch.uint8])
def test_small_and_integer_dtypes_are_upcast_like_torchvision(device, dtype):
    boxes = (random_boxes(20, 3, torch.float64, device, scale=200.0)).round().clamp(0, 255).to(dtype)
    ours, ref = box_iou(boxes, boxes), torchvision.ops.box_iou(boxes, boxes)
    assert ours.dtype == ref.dtype
    torch.testing.assert_close(ours, ref, equal_nan=True)
    area, ref_area = box_area(boxes), torchvision.ops.box_area(boxes)
    assert area.dtype == ref_area.dtype
    torch.testing.assert_close(area, ref_area)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("in_fmt", FORMATS)
@pytest.mark.parametrize("out_fmt", FORMATS)
@pytest.mark.parametrize("seed", range(3))
def test_box_convert_matches_torchvision(device, dtype, in_fmt, out_fmt, seed):
    boxes = random_boxes(50, seed, dtype, device)
    ours = box_convert(boxes, in_fmt, out_fmt)
    torch.testing.assert_close(ours, torchvision.ops.box_convert(boxes, in_fmt, out_fmt), rtol=0, atol=0)
    # A round trip gives the boxes back.
    torch.testing.assert_close(box_convert(ours, out_fmt, in_fmt), boxes, **tolerance(dtype))
    assert ours.data_ptr() != boxes.data_ptr()


def test_box_convert_integer_boxes_match_torchvision():
    boxes = torch.tensor([[1, 2, 4, 7], [0, 0, 3, 3]])
    for in_fmt in FORMATS:
        for out_fmt in FORMATS:
            ours = box_convert(boxes, in_fmt, out_fmt)
            ref = torchvision.ops.box_convert(boxes, in_fmt, out_fmt)
            assert ours.dtype == ref.dtype
            torch.testing.assert_close(ours, ref)


def test_bad_input_raises():
    with pytest.raises(ValueError):
        box_iou(torch.zeros(3, 5), torch.zeros(2, 4))
    with pytest.raises(ValueError):
        box_area(torch.zeros(4))
    with pytest.raises(TypeError):
        box_area([[0, 0, 1, 1]])
    with pytest.raises(TypeError):
        box_iou(torch.zeros(2, 4, dtype=torch.bool), torch.zeros(2, 4))
    with pytest.raises(ValueError):
        box_convert(torch.zeros(2, 4), "xyxy", "yxyx")
