"""project_masks_on_boxes and paste_masks_in_image against torchvision.models.detection.roi_heads' functions of the
same names (the oracles), on random and edge boxes, CPU and CUDA, float32 and float64."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import roi_heads

from lectures_code.ops.masks import paste_masks_in_image, project_masks_on_boxes
from lectures_code.ops.roi_align import roi_align

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.fixture(autouse=True)
def _nondeterministic_torchvision():
    # With deterministic algorithms on, torchvision's CUDA roi_align is a Python fallback with other
    # border rules (detection-semantics.md): the oracle is the kernel.
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)
    yield
    torch.use_deterministic_algorithms(was)


def random_boxes(n: int, h: int, w: int, g: torch.Generator, dtype, max_side: float = 60.0) -> torch.Tensor:
    """[n, 4] xyxy boxes with centres anywhere in the image (so some cross its border), sides up to max_side."""
    centres = torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([w, h])
    sides = torch.rand(n, 2, generator=g, dtype=torch.float64) * max_side
    return torch.cat([centres - sides / 2, centres + sides / 2], 1).to(dtype)


# ----------------------------------------------------------------------------------------------
# project_masks_on_boxes


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(4))
def test_project_masks_matches_torchvision(device, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    h, w = (int(v) for v in torch.randint(8, 70, (2,), generator=g))
    gt_masks = (torch.rand(5, h, w, generator=g) > 0.6).to(device)  # bool, as in the targets
    proposals = random_boxes(40, h, w, g, dtype, max_side=50).to(device)
    matched = torch.randint(0, 5, (40,), generator=g).to(device)
    for M in (28, 14, 1):
        ours = project_masks_on_boxes(gt_masks, proposals, matched, M)
        ref = roi_heads.project_masks_on_boxes(gt_masks, proposals, matched, M)
        assert ours.shape == ref.shape == (40, M, M) and ours.dtype == ref.dtype == dtype
        torch.testing.assert_close(ours, ref, atol=TOL[dtype], rtol=0)
    # the factorized form is our roi_align on the masks as one-channel maps
    rois = torch.cat([matched.to(proposals)[:, None], proposals], 1)
    same = roi_align(gt_masks[:, None].to(dtype), rois, (14, 14), 1.0)[:, 0]
    torch.testing.assert_close(project_masks_on_boxes(gt_masks, proposals, matched, 14), same, atol=TOL[dtype], rtol=0)


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.uint8, torch.float32])
def test_project_masks_edge_boxes(device, mask_dtype):
    h, w = 20, 30
    gt_masks = torch.zeros(2, h, w, dtype=torch.float32)
    gt_masks[0] = 1  # all ones, touching every border
    gt_masks[1, 5:15, :10] = 1  # touching the left border
    boxes = torch.tensor([
        [0, 0, w, h],  # the whole image
        [-5, -5, 10, 10],  # crossing the top-left corner
        [w - 3, h - 3, w + 10, h + 10],  # crossing the bottom-right corner
        [40, 30, 60, 50],  # wholly outside
        [3, 4, 3, 4],  # zero size (aligned=False widens it to 1 pixel)
        [10, 5, 4, 2],  # inverted
    ], dtype=torch.float64, device=device)
    matched = torch.tensor([0, 1, 0, 1, 0, 1], device=device)
    masks = gt_masks.to(mask_dtype).to(device)
    ours = project_masks_on_boxes(masks, boxes, matched, 7)
    torch.testing.assert_close(ours, roi_heads.project_masks_on_boxes(masks, boxes, matched, 7), atol=1e-10, rtol=0)
    torch.testing.assert_close(ours[0], torch.ones_like(ours[0]), atol=1e-12, rtol=0)  # all ones, seen inside
    empty = project_masks_on_boxes(masks, boxes[:0], matched[:0], 7)
    assert empty.shape == (0, 7, 7)


# ----------------------------------------------------------------------------------------------
# paste_masks_in_image


def check_paste(masks, boxes, img_shape, padding=1):
    ours = paste_masks_in_image(masks, boxes, img_shape, padding)
    ref = roi_heads.paste_masks_in_image(masks, boxes, img_shape, padding)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype and ours.device == ref.device
    torch.testing.assert_close(ours, ref, atol=TOL[masks.dtype], rtol=0)
    return ours


def inside(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Boxes clipped to the image (torchvision raises for some boxes wholly outside it, see below)."""
    limits = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
    return torch.minimum(boxes.clamp(min=0), limits)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(6))
def test_paste_matches_torchvision(device, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    h, w = (int(v) for v in torch.randint(1, 90, (2,), generator=g))
    M = [28, 14, 5, 1, 28, 2][seed]
    masks = torch.rand(25, 1, M, M, generator=g, dtype=dtype).to(device)
    boxes = inside(random_boxes(25, h, w, g, dtype), h, w).to(device)
    if seed % 2:  # integer and half-integer corners: the truncation to int64 and exact sizes
        boxes = (boxes * 2).round() / 2
    for padding in (0, 1, 2):
        check_paste(masks, boxes, (h, w), padding)


@pytest.mark.parametrize("dtype", DTYPES)
def test_paste_non_square_masks_and_large_boxes(device, dtype):
    # torchvision grows the box by (M + 2 padding) / M with M the mask's WIDTH, and pads both sides
    g = torch.Generator().manual_seed(7)
    masks = torch.rand(6, 1, 9, 14, generator=g, dtype=dtype).to(device)
    boxes = torch.tensor([[0, 0, 300, 200], [10, 20, 250, 40], [5, 5, 6, 300], [100, 100, 101, 101],
                          [0, 0, 299, 199], [50.7, 60.2, 170.9, 130.4]], dtype=dtype, device=device)
    check_paste(masks, boxes, (200, 300))


@pytest.mark.parametrize("dtype", DTYPES)
def test_paste_edge_boxes(device, dtype):
    h, w = 24, 32
    g = torch.Generator().manual_seed(8)
    masks = torch.rand(10, 1, 28, 28, generator=g, dtype=dtype)
    masks[0] = 1  # all ones: after padding it still fades out at the border of the pasted box
    boxes = torch.tensor([
        [0, 0, w, h],  # the whole image: the grown box crosses every border
        [0, 0, w - 1, h - 1],  # touching the last row and column
        [-3, -2, 10, 9],  # crossing the top-left corner
        [w - 5, h - 4, w + 6, h + 7],  # crossing the bottom-right corner
        [7, 8, 7, 8],  # zero size: a 1 x 1 paste
        [12.5, 3.2, 12.9, 3.4],  # tiny
        [20, 10, 5, 2],  # inverted: nothing is pasted
        [-10, -10, -0.5, -0.5],  # just outside the top-left: truncation towards zero reaches row/column 0
        [10, -50, 20, -1],  # above the image
        [3, 4, 30, 5],  # one row high
    ], dtype=dtype)
    ours = check_paste(masks.to(device), boxes.to(device), (h, w))
    assert ours[6].eq(0).all() and ours[8].eq(0).all()
    assert ours[0, 0, h // 2, w // 2] == 1 and ours[0, 0, 0, 0] < 1  # the padding fades the border


@pytest.mark.parametrize("box", [[-10.0, -10, -4, -4], [600, 600, 700, 700], [515, 0, 520, 10], [-20, 5, -3, 40]])
def test_boxes_wholly_outside_paste_nothing_where_torchvision_raises(device, box):
    # torchvision slices the image with negative indices for such boxes and fails to assign the pieces;
    # we paste nothing (see the module docstring)
    masks = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(device)
    boxes = torch.tensor([box], device=device)
    with pytest.raises(RuntimeError, match="expanded size"):
        roi_heads.paste_masks_in_image(masks, boxes, (512, 512))
    ours = paste_masks_in_image(masks, boxes, (512, 512))
    assert ours.shape == (1, 1, 512, 512) and ours.eq(0).all()


def test_paste_gradient_matches_torchvision(device):
    g = torch.Generator().manual_seed(9)
    masks = torch.rand(4, 1, 7, 7, generator=g, dtype=torch.float64).to(device)
    boxes = inside(random_boxes(4, 20, 25, g, torch.float64, max_side=30), 20, 25).to(device)
    upstream = torch.randn(4, 1, 20, 25, generator=g, dtype=torch.float64).to(device)
    grads = []
    for paste in (paste_masks_in_image, roi_heads.paste_masks_in_image):
        leaf = masks.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(paste(leaf, boxes, (20, 25)), leaf, upstream)
        grads.append(grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-10, rtol=0)


def test_paste_empty_and_bad_input(device):
    masks = torch.rand(3, 1, 5, 5, device=device)
    boxes = torch.tensor([[0.0, 0, 4, 4]] * 3, device=device)
    empty = paste_masks_in_image(masks[:0], boxes[:0], (6, 7))
    reference = roi_heads.paste_masks_in_image(masks[:0], boxes[:0], (6, 7))
    assert empty.shape == reference.shape == (0, 1, 6, 7) and empty.dtype == reference.dtype
    with pytest.raises(ValueError, match=r"\[N, 1, M, M\]"):
        paste_masks_in_image(masks[:, 0], boxes, (6, 7))
    with pytest.raises(ValueError, match="boxes"):
        paste_masks_in_image(masks, boxes[:2], (6, 7))
    with pytest.raises(TypeError, match="floating"):
        paste_masks_in_image(masks.gt(0.5), boxes, (6, 7))
    with pytest.raises(ValueError, match="padding"):
        paste_masks_in_image(masks, boxes, (6, 7), padding=-1)
    nan = masks.clone()
    nan[0, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        paste_masks_in_image(nan, boxes, (6, 7))
    with pytest.raises(ValueError, match="matched_idxs"):
        project_masks_on_boxes(masks[:, 0], boxes, torch.zeros(2, dtype=torch.long, device=device), 7)
    with pytest.raises(ValueError, match="index the 3 GT masks"):
        project_masks_on_boxes(masks[:, 0], boxes, torch.tensor([0, 3, 1], device=device), 7)
