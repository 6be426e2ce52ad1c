"""Anchors against torchvision's AnchorGenerator (the oracle)."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from lectures_code.detection.anchors import AnchorGenerator, base_anchors, grid_anchors

FPN_SIZES = ((32,), (64,), (128,))
FPN_RATIOS = ((0.5, 1.0, 2.0),) * 3


def reference_anchors(sizes, ratios, image_size, feature_map_sizes, dtype, device, batch=2):
    images = torch.zeros(batch, 3, *image_size, dtype=dtype, device=device)
    image_list = ImageList(images, [tuple(image_size)] * batch)
    feature_maps = [torch.zeros(batch, 1, h, w, dtype=dtype, device=device) for h, w in feature_map_sizes]
    return TVAnchorGenerator(sizes, ratios)(image_list, feature_maps)


def test_example_from_semantics(device):
    # Hand-computed: w = 32 / sqrt(r), h = 32 * sqrt(r), halves rounded half to even.
    expected = torch.tensor([[-23.0, -11.0, 23.0, 11.0], [-16.0, -16.0, 16.0, 16.0], [-11.0, -23.0, 11.0, 23.0]])
    ours = base_anchors((32,), (0.5, 1.0, 2.0), device=device)
    assert ours.device.type == torch.device(device).type
    torch.testing.assert_close(ours.cpu(), expected, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "sizes, ratios",
    [((32,), (0.5, 1.0, 2.0)), ((128, 256, 512), (0.5, 1.0, 2.0)), ((16, 24, 40, 77), (0.25, 1 / 3, 1.0, 1.7, 3.0))],
)
def test_base_anchors_match_generate_anchors(device, dtype, sizes, ratios):
    ref = TVAnchorGenerator((sizes,), (ratios,)).generate_anchors(sizes, ratios, dtype, torch.device(device))
    ours = base_anchors(sizes, ratios, dtype, device)
    assert ours.shape == (len(sizes) * len(ratios), 4) and ours.dtype == dtype
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_half_to_even_rounding():
    # Size 5, ratio 1: halves are 2.5 -> round half to even gives 2, not 3.
    torch.testing.assert_close(base_anchors((5,), (1.0,)), torch.tensor([[-2.0, -2.0, 2.0, 2.0]]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize(
    "image_size, feature_map_size",
    [((800, 800), (50, 50)), ((600, 1000), (38, 63)), ((64, 96), (64, 96)), ((37, 53), (5, 7)), ((512, 256), (1, 1))],
)
def test_single_level(device, dtype, image_size, feature_map_size):
    sizes, ratios = ((128, 256, 512),), ((0.5, 1.0, 2.0),)
    refs = reference_anchors(sizes, ratios, image_size, [feature_map_size], dtype, device)
    ours = AnchorGenerator(sizes, ratios)(image_size, [feature_map_size], dtype=dtype, device=device)
    h, w = feature_map_size
    assert ours.shape == (h * w * 9, 4) and ours.dtype == dtype
    for ref in refs:
        torch.testing.assert_close(ours, ref, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("image_size", [(256, 256), (320, 480), (333, 517)])
def test_fpn_levels(device, dtype, image_size):
    h, w = image_size
    # Ceil division like a strided conv; strides then come out as image // grid (not always 8/16/32).
    feature_map_sizes = [(-(-h // s), -(-w // s)) for s in (8, 16, 32)]
    refs = reference_anchors(FPN_SIZES, FPN_RATIOS, image_size, feature_map_sizes, dtype, device)
    generator = AnchorGenerator(FPN_SIZES, FPN_RATIOS)
    ours = generator(image_size, feature_map_sizes, dtype=dtype, device=device)
    assert generator.num_anchors_per_location() == [3, 3, 3]
    assert ours.shape[0] == sum(3 * fh * fw for fh, fw in feature_map_sizes)
    for ref in refs:
        torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_flat_sizes_shorthand(device):
    # torchvision reads sizes (32, 64) as one size per level, a flat ratio tuple as shared.
    refs = reference_anchors((32, 64), (0.5, 2.0), (128, 128), [(16, 16), (8, 8)], torch.float32, device)
    ours = AnchorGenerator((32, 64), (0.5, 2.0))((128, 128), [(16, 16), (8, 8)], device=device)
    torch.testing.assert_close(ours, refs[0], rtol=0, atol=0)


def test_grid_layout(device):
    base = base_anchors((32,), (0.5, 1.0, 2.0), device=device)
    anchors = grid_anchors(base, (3, 4), (8, 16))  # H=3, W=4, stride_h=8, stride_w=16
    assert anchors.shape == (3 * 4 * 3, 4)
    # Row (y * W + x) * K + k is base k centred at (x * stride_w, y * stride_h): no half-stride offset.
    for y in range(3):
        for x in range(4):
            for k in range(3):
                shift = torch.tensor([x * 16, y * 8, x * 16, y * 8], dtype=base.dtype, device=device)
                torch.testing.assert_close(anchors[(y * 4 + x) * 3 + k], base[k] + shift, rtol=0, atol=0)
    # An int stride means the same stride on both axes.
    torch.testing.assert_close(grid_anchors(base, (2, 2), 4), grid_anchors(base, (2, 2), (4, 4)))


def test_bad_input():
    with pytest.raises(ValueError):
        base_anchors((), (1.0,))
    with pytest.raises(ValueError):
        base_anchors((32,), (-1.0,))
    with pytest.raises(TypeError):
        base_anchors((32,), (1.0,), dtype=torch.int64)
    with pytest.raises(ValueError):
        grid_anchors(torch.zeros(3, 5), (2, 2), 4)
    with pytest.raises(ValueError):
        AnchorGenerator(((32,), (64,)), ((1.0,),) * 3)
    with pytest.raises(ValueError):
        AnchorGenerator(FPN_SIZES, FPN_RATIOS)((256, 256), [(32, 32)])
