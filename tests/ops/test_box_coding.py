"""encode_boxes / decode_boxes against torchvision's BoxCoder (the oracle)."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder

from lectures_code.ops.box_coding import decode_boxes, encode_boxes

DTYPES = [torch.float32, torch.float64]
WEIGHTS = [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]


def random_boxes(n: int, g: torch.Generator, dtype, device):
    centers = torch.rand(n, 2, generator=g, dtype=torch.float64) * 800
    sizes = torch.rand(n, 2, generator=g, dtype=torch.float64) * 300 + 1
    return torch.cat([centers - sizes / 2, centers + sizes / 2], dim=1).to(dtype=dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("seed", range(6))
def test_encode_matches_box_coder(device, dtype, weights, seed):
    g = torch.Generator().manual_seed(seed)
    proposals, targets = random_boxes(200, g, dtype, device), random_boxes(200, g, dtype, device)
    ours = encode_boxes(proposals, targets, weights)
    ref = BoxCoder(weights).encode_single(targets, proposals)
    assert ours.shape == (200, 4) and ours.dtype == dtype
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("seed", range(6))
def test_decode_matches_box_coder(device, dtype, weights, seed):
    g = torch.Generator().manual_seed(seed)
    proposals = random_boxes(200, g, dtype, device)
    # Up to +-12 so that dw, dh / weights also go past the clamp at log(1000/16) = 4.135.
    deltas = (torch.rand(200, 4, generator=g, dtype=torch.float64) - 0.5) * 24
    deltas = deltas.to(dtype=dtype, device=device)
    ours = decode_boxes(deltas, proposals, weights)
    ref = BoxCoder(weights).decode_single(deltas, proposals)
    assert ours.shape == (200, 4) and ours.dtype == dtype
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    # A different clamp is honoured the same way.
    ref_clamped = BoxCoder(weights, bbox_xform_clip=1.0).decode_single(deltas, proposals)
    ours_clamped = decode_boxes(deltas, proposals, weights, clamp=1.0)
    torch.testing.assert_close(ours_clamped, ref_clamped, rtol=0, atol=0)


@pytest.mark.parametrize("weights", WEIGHTS)
def test_decode_inverts_encode(device, weights):
    g = torch.Generator().manual_seed(0)
    proposals = random_boxes(100, g, torch.float64, device)
    # Targets shifted and scaled by at most 3x, far from the clamp (62.5x).
    size = (proposals[:, 2:] - proposals[:, :2]).repeat(1, 2)
    jitter = (torch.rand(100, 4, generator=g, dtype=torch.float64).to(device) - 0.5) * size
    targets = proposals + jitter
    decoded = decode_boxes(encode_boxes(proposals, targets, weights), proposals, weights)
    torch.testing.assert_close(decoded, targets, rtol=0, atol=1e-9)


def test_clamp_caps_the_size(device):
    proposals = torch.tensor([[0.0, 0.0, 16.0, 16.0]], device=device)
    deltas = torch.tensor([[0.0, 0.0, 100.0, 100.0]], device=device)
    box = decode_boxes(deltas, proposals)[0]
    width = (box[2] - box[0]).item()
    torch.testing.assert_close(width, 16 * math.exp(math.log(1000 / 16)), rtol=1e-6, atol=0)


def test_half_precision_proposals_follow_deltas_dtype():
    g = torch.Generator().manual_seed(1)
    proposals = random_boxes(10, g, torch.float16, "cpu")
    deltas = torch.randn(10, 4, generator=g)
    ours = decode_boxes(deltas, proposals)
    assert ours.dtype == torch.float32
    ref = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(deltas, proposals)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_empty_inputs(device):
    empty = torch.zeros(0, 4, device=device)
    assert encode_boxes(empty, empty).shape == (0, 4)
    assert decode_boxes(empty, empty).shape == (0, 4)


def test_bad_input_raises():
    boxes = torch.rand(3, 4)
    with pytest.raises(ValueError):
        encode_boxes(boxes, torch.rand(2, 4))
    with pytest.raises(ValueError):
        decode_boxes(torch.rand(3, 8), boxes)
    with pytest.raises(TypeError):
        encode_boxes(boxes.long(), boxes)
    with pytest.raises(ValueError):
        encode_boxes(boxes, boxes, weights=(1.0, 1.0))
