"""R-CNN proposal labelling and crop-and-warp, against torchvision oracles and exact constructions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou as tv_box_iou
from torchvision.ops import roi_align

from lectures_code.detection.rcnn_targets import crop_and_warp, label_proposals

DTYPES = [torch.float32, torch.float64]


def random_boxes(n: int, size: float, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * size
    wh = torch.rand(n, 2, generator=generator, dtype=torch.float64) * size / 2 + 1
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


def expected_labels(proposals, gt_boxes, gt_labels, pos_iou, neg_iou):
    """Per-proposal loop over torchvision's IoU (the oracle), first gt wins ties."""
    iou = tv_box_iou(proposals.double(), gt_boxes.double())
    labels, matched, best = [], [], []
    for row in iou.tolist():
        j = max(range(len(row)), key=lambda k: (row[k], -k))
        best.append(row[j])
        matched.append(j)
        labels.append(int(gt_labels[j]) + 1 if row[j] >= pos_iou else (0 if row[j] < neg_iou else -1))
    return labels, matched, best


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("dtype", DTYPES)
def test_label_proposals_matches_oracle(seed, dtype, device):
    g = torch.Generator().manual_seed(seed)
    gt_boxes = random_boxes(int(torch.randint(1, 6, (1,), generator=g)), 50, g, dtype)
    gt_labels = torch.randint(0, 10, (len(gt_boxes),), generator=g)
    # Proposals: jittered copies of the gt boxes (so all three bands occur) plus random boxes.
    # R-CNN also adds the gt boxes themselves as proposals.
    base = gt_boxes.repeat(8, 1)
    wh = (base[:, 2:] - base[:, :2]).repeat(1, 2)
    jitter = base + torch.randn(len(base), 4, generator=g, dtype=dtype) * wh * 0.2
    jitter[:, 2:] = torch.maximum(jitter[:, 2:], jitter[:, :2] + 0.5)
    proposals = torch.cat([gt_boxes, jitter, random_boxes(40, 50, g, dtype)])
    pos_iou, neg_iou = (0.5, 0.3) if seed % 2 == 0 else (0.7, 0.1)
    labels, matched, best = label_proposals(
        proposals.to(device), gt_boxes.to(device), gt_labels.to(device), pos_iou, neg_iou
    )
    exp_labels, exp_matched, exp_best = expected_labels(proposals, gt_boxes, gt_labels, pos_iou, neg_iou)
    assert labels.device.type == torch.device(device).type
    assert labels.dtype == matched.dtype == torch.int64 and best.dtype == dtype
    assert matched.cpu().tolist() == exp_matched
    torch.testing.assert_close(best.cpu().double(), torch.tensor(exp_best, dtype=torch.float64),
                               rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-12)
    # Labels may only differ where float32 rounding puts the IoU within 1e-6 of a threshold.
    near = [min(abs(b - pos_iou), abs(b - neg_iou)) < 1e-6 for b in exp_best]
    for got, exp, is_near in zip(labels.cpu().tolist(), exp_labels, near):
        assert got == exp or is_near
    assert {0, -1} <= set(labels.tolist()) or seed % 2 == 1
    assert (labels > 0).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_thresholds(dtype, device):
    gt = torch.tensor([[0, 0, 10, 10]], dtype=dtype, device=device)
    gt_labels = torch.tensor([7], device=device)
    proposals = torch.tensor(
        [
            [0, 0, 10, 5],  # IoU 50/100 = 0.5 exactly -> positive (>=)
            [0, 0, 10, 3],  # 30/100 = 0.3 exactly -> neutral (negative needs < 0.3)
            [0, 0, 10, 4],  # 0.4 -> neutral
            [0, 0, 10, 2],  # 0.2 -> background
            [5, 0, 15, 10],  # 50 / 150 = 1/3 -> neutral
            [0, 0, 20, 4],  # 40 / 140 = 0.2857 -> background
            [0, 0, 20, 10],  # 100 / 200 = 0.5 exactly -> positive
            [20, 20, 30, 30],  # disjoint -> background
            [0, 0, 10, 10],  # identical -> positive
        ],
        dtype=dtype,
        device=device,
    )
    labels, matched, best = label_proposals(proposals, gt, gt_labels)
    assert labels.tolist() == [8, -1, -1, 0, -1, 0, 8, 0, 8]
    assert matched.tolist() == [0] * 9
    assert best[0].item() == 0.5 and best[1].item() == torch.tensor(0.3, dtype=dtype).item()
    # The same boxes with the thresholds moved onto those IoUs flip sides as documented.
    labels, _, _ = label_proposals(proposals, gt, gt_labels, pos_iou=0.4, neg_iou=0.25)
    assert labels.tolist() == [8, -1, 8, 0, -1, -1, 8, 0, 8]


def test_ties_pick_first_gt_and_empty_inputs(device):
    gt = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=torch.float32, device=device)
    gt_labels = torch.tensor([3, 5, 1], device=device)
    proposals = torch.tensor([[0, 0, 10, 10], [0, 0, 0, 0]], dtype=torch.float32, device=device)
    labels, matched, best = label_proposals(proposals, gt, gt_labels)
    assert labels.tolist() == [4, 0] and matched.tolist() == [0, 0] and best.tolist() == [1.0, 0.0]

    labels, matched, best = label_proposals(proposals, gt[:0], gt_labels[:0])
    assert labels.tolist() == [0, 0] and matched.tolist() == [-1, -1] and best.tolist() == [0.0, 0.0]
    # A zero-area proposal against a zero-area gt: NaN IoU counts as 0 (background, not positive).
    labels, _, best = label_proposals(proposals[1:], proposals[1:], gt_labels[:1])
    assert labels.tolist() == [0] and best.tolist() == [0.0]

    labels, matched, best = label_proposals(proposals[:0], gt, gt_labels)
    assert labels.shape == matched.shape == best.shape == (0,)


def test_label_proposals_bad_input():
    boxes = torch.tensor([[0.0, 0, 1, 1]])
    with pytest.raises(ValueError):
        label_proposals(boxes[:, :3], boxes, torch.tensor([0]))
    with pytest.raises(ValueError):
        label_proposals(boxes, boxes, torch.tensor([0, 1]))
    with pytest.raises(TypeError):
        label_proposals(boxes.long(), boxes, torch.tensor([0]))
    with pytest.raises(TypeError):
        label_proposals(boxes, boxes, torch.tensor([0.0]))
    with pytest.raises(ValueError):
        label_proposals(boxes, boxes, torch.tensor([0]), pos_iou=0.3, neg_iou=0.5)


@pytest.mark.parametrize("size_in, size_out", [((20, 30), (7, 11)), ((9, 13), (32, 20)), ((16, 16), (16, 16)),
                                                ((5, 40), (64, 3)), ((1, 8), (4, 4))])
@pytest.mark.parametrize("dtype", DTYPES)
def test_whole_image_box_equals_interpolate(size_in, size_out, dtype, device):
    g = torch.Generator().manual_seed(sum(size_in) + sum(size_out))
    image = torch.rand(3, *size_in, generator=g, dtype=dtype).to(device)
    H, W = size_in
    box = torch.tensor([[0, 0, W, H]], dtype=dtype, device=device)
    crops = crop_and_warp(image, box, size_out)
    expected = F.interpolate(image[None], size=size_out, mode="bilinear", align_corners=False)
    assert crops.shape == (1, 3, *size_out) and crops.dtype == dtype
    torch.testing.assert_close(crops, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_integer_box_at_scale_one_is_the_plain_crop(seed, device):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(4, 30, 25, generator=g).to(device)
    for _ in range(3):
        h, w = (int(v) for v in torch.randint(1, 12, (2,), generator=g))
        y1 = int(torch.randint(0, 30 - h + 1, (1,), generator=g))
        x1 = int(torch.randint(0, 25 - w + 1, (1,), generator=g))
        box = torch.tensor([[x1, y1, x1 + w, y1 + h]], dtype=torch.float32, device=device)
        crop = crop_and_warp(image, box, (h, w))
        assert torch.equal(crop[0], image[:, y1 : y1 + h, x1 : x1 + w])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", DTYPES)
def test_boxes_inside_match_roi_align(seed, dtype, device):
    """Inside the image our sampling = roi_align(aligned=True, sampling_ratio=1) (one sample per bin)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 24, 31, generator=g, dtype=dtype).to(device)
    xy = torch.rand(10, 2, generator=g, dtype=dtype) * torch.tensor([20.0, 14.0], dtype=dtype)
    wh = torch.rand(10, 2, generator=g, dtype=dtype) * torch.tensor([10.0, 9.0], dtype=dtype) + 0.1
    boxes = torch.cat([xy, xy + wh], dim=1).to(device)  # inside [0, 31] x [0, 24]
    out = (5, 9)
    ours = crop_and_warp(image, boxes, out)
    rois = torch.cat([torch.zeros(10, 1, dtype=dtype, device=device), boxes], dim=1)
    theirs = roi_align(image[None], rois, out, spatial_scale=1.0, sampling_ratio=1, aligned=True)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-12)


def test_boxes_outside_are_zero_padded(device):
    image = torch.rand(3, 10, 12, device=device) + 1.0  # strictly positive, so zeros mean padding
    boxes = [[-12, 0, 12, 10], [0, 5, 12, 15], [20, 20, 30, 30], [-5, -5, 17, 15]]
    boxes = torch.tensor(boxes, dtype=torch.float32, device=device)
    left, bottom, outside, around = crop_and_warp(image, boxes, (10, 24)).unbind(0)
    assert torch.equal(left[:, :, :12], torch.zeros(3, 10, 12, device=device))
    assert torch.equal(left[:, :, 12:], image)  # scale 1 on the part inside: exact
    crop = crop_and_warp(image, boxes[1:2], (10, 12))[0]
    assert torch.equal(crop[:, :5], image[:, 5:]) and torch.equal(crop[:, 5:], torch.zeros_like(crop[:, 5:]))
    assert torch.equal(outside, torch.zeros_like(outside))
    assert (around[:, 0] == 0).all() and (around[:, :, 0] == 0).all() and (around[:, 5, 5:18] > 0).all()
    del bottom


def test_crop_and_warp_gradient_and_empty(device):
    image = torch.rand(2, 6, 7, dtype=torch.float64, device=device, requires_grad=True)
    boxes = torch.tensor([[0.3, 1.2, 5.5, 4.9], [-1.0, -1.0, 3.0, 8.0]], dtype=torch.float64, device=device)
    assert torch.autograd.gradcheck(lambda im: crop_and_warp(im, boxes, (3, 4)), (image,))
    empty = crop_and_warp(image.detach(), boxes[:0], 5)
    assert empty.shape == (0, 2, 5, 5)


def test_crop_and_warp_bad_input():
    image = torch.rand(3, 8, 8)
    box = torch.tensor([[0.0, 0, 4, 4]])
    with pytest.raises(ValueError):
        crop_and_warp(image[None], box)
    with pytest.raises(TypeError):
        crop_and_warp((image * 255).to(torch.uint8), box)
    with pytest.raises(ValueError):
        crop_and_warp(image, box[:, :2])
    with pytest.raises(ValueError):
        crop_and_warp(image, torch.tensor([[4.0, 0, 0, 4]]))
    with pytest.raises(ValueError):
        crop_and_warp(image, box, (0, 3))
