"""roi_pool against torchvision.ops.roi_pool (the oracle): exact values, matching gradients."""

from __future__ import annotations

import pytest
import torch
import torchvision

from lectures_code.ops.roi_pool import roi_pool

DTYPES = [torch.float32, torch.float64]


def random_rois(k: int, n: int, h: int, w: int, scale: float, g: torch.Generator, dtype=torch.float64):
    """[k, 5] rois in image pixels: corners anywhere from 5 cells before the map to 5 cells past it."""
    corners = torch.rand(k, 4, generator=g, dtype=torch.float64) * torch.tensor([w, h, w, h]) * 1.4 - 5
    top_left, bottom_right = corners[:, :2], corners[:, 2:]
    corners = torch.cat([torch.minimum(top_left, bottom_right), torch.maximum(top_left, bottom_right)], 1)
    batch = torch.randint(0, n, (k, 1), generator=g).double()
    return torch.cat([batch, corners / scale], 1).to(dtype)


def check(input, rois, output_size, spatial_scale=1.0, grad=True):
    """Our values equal torchvision's exactly; the input gradients of a random upstream gradient match."""
    input = input.detach().requires_grad_(grad)
    ours = roi_pool(input, rois, output_size, spatial_scale)
    ref = torchvision.ops.roi_pool(input, rois, output_size, spatial_scale)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype and ours.device == ref.device
    assert torch.equal(ours, ref), f"max abs diff {(ours - ref).abs().max()}"
    if grad and ref.numel():
        upstream = torch.randn(ref.shape, generator=torch.Generator().manual_seed(0), dtype=ref.dtype).to(ref.device)
        (g_ours,) = torch.autograd.grad(ours, input, upstream)
        (g_ref,) = torch.autograd.grad(ref, input, upstream)
        # Overlapping bins add into one cell in a different order: equal up to rounding.
        tol = 1e-12 if input.dtype == torch.float64 else 1e-5
        torch.testing.assert_close(g_ours, g_ref, atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(12))
def test_random_boxes_match_torchvision(device, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    n, c = 2, 3
    h, w = (int(v) for v in torch.randint(1, 24, (2,), generator=g))
    input = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    if seed % 3 == 0:  # many ties: the first maximum in row-major order must win (and get the gradient)
        input = input.round()
    scale = [1.0, 0.5, 1 / 16, 0.25][seed % 4]
    rois = random_rois(40, n, h, w, scale, g, dtype)
    if seed % 2:  # coordinates on multiples of 0.5 / scale: every x * scale lands on a .5
        rois[:, 1:] = (rois[:, 1:] * scale * 2).round() / 2 / scale
    output_size = [(7, 7), (1, 1), (2, 3), (5, 1)][seed % 4]
    check(input.to(device, dtype), rois.to(device), output_size, scale)


@pytest.mark.parametrize("channels", [40, 600])
def test_many_boxes_and_big_bins_match_torchvision(device, channels):
    # Bins of every size, from one cell to a few hundred. On the CPU the bins of one size are gathered a
    # block of fewer than 32768 values at a time; a bin bigger than that is a block of its own.
    g = torch.Generator().manual_seed(6)
    input = torch.randn(2, channels, 30, 40, generator=g, dtype=torch.float64)
    if channels == 40:
        input = input.round()  # many ties
    rois = random_rois(300 if channels == 40 else 20, 2, 30, 40, 1 / 8, g, torch.float32)
    output_size = (7, 7) if channels == 40 else (2, 3)
    check(input.to(device, torch.float32), rois.to(device), output_size, 1 / 8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_worked_example_from_the_notes(device, dtype):
    # A 10 x 10 map with value 10 * row + col; box [1.4, 1.6, 4.5, 4.4] pooled to 2 x 2.
    input = (10 * torch.arange(10.0)[:, None] + torch.arange(10.0)).view(1, 1, 10, 10).to(device, dtype)
    rois = torch.tensor([[0, 1.4, 1.6, 4.5, 4.4]], device=device, dtype=dtype)
    out = roi_pool(input, rois, 2)
    assert out.tolist() == [[[[33, 35], [43, 45]]]]
    check(input, rois, 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_half_coordinates_round_away_from_zero(device, dtype):
    # round(2.5) = 3 and round(-0.5) = -1 in C; torch.round would give 2 and 0.
    g = torch.Generator().manual_seed(1)
    input = torch.randn(1, 2, 12, 12, generator=g, dtype=dtype).to(device)
    rows = [
        [0.5, 0.5, 2.5, 2.5],
        [-0.5, -1.5, 3.5, 4.5],
        [1.5, 2.5, 6.5, 9.5],
        [-2.5, 10.5, 11.5, 12.5],
        [4.5, 4.5, 4.5, 4.5],
    ]
    for scale in (1.0, 0.5, 1 / 16):
        rois = torch.tensor([[0.0, *(v / scale for v in r)] for r in rows], dtype=dtype, device=device)
        check(input, rois, (3, 2), scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_edge_boxes(device, dtype):
    g = torch.Generator().manual_seed(2)
    h, w = 9, 13
    input = torch.randn(3, 4, h, w, generator=g, dtype=dtype).to(device)
    rows = [
        [0, 0, 0, w - 1, h - 1],  # whole map (inclusive end cells)
        [1, 0, 0, w, h],  # whole map, one past the end
        [2, -20, -20, 100, 100],  # much larger than the map
        [0, -10, -10, -3, -2],  # entirely outside (top-left): empty bins -> 0
        [1, w + 2, h + 3, w + 9, h + 9],  # entirely outside (bottom-right)
        [2, -3, 2, 2, 5],  # partly outside
        [0, 5, 5, 5, 5],  # a single cell
        [1, 6, 4, 2, 1],  # inverted: treated as one cell
        [2, 3.7, 1.2, 3.9, 8.8],  # thinner than a cell
    ]
    rois = torch.tensor(rows, dtype=dtype, device=device)
    for output_size in [1, (1, 1), 7, (3, 5), (12, 2)]:
        check(input, rois, output_size)
    rois_in_pixels = torch.cat([rois[:, :1], rois[:, 1:] * 16], 1)  # a stride-16 feature map
    check(input, rois_in_pixels, (2, 2), 1 / 16)


def test_all_values_below_minus_flt_max(device):
    # torchvision's max starts at -FLT_MAX: a bin of -inf values outputs -FLT_MAX and gets no gradient.
    input = torch.full((1, 2, 4, 4), -float("inf"), device=device)
    input[0, 1, 2:, 2:] = 1.0
    rois = torch.tensor([[0, 0, 0, 3, 3]], dtype=torch.float32, device=device)
    out = roi_pool(input, rois, 2)
    assert out[0, 0, 0, 0] == -torch.finfo(torch.float32).max
    check(input, rois, 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_list_of_boxes_and_batch_index(device, dtype):
    g = torch.Generator().manual_seed(3)
    input = torch.randn(3, 2, 15, 15, generator=g, dtype=dtype).to(device)
    boxes = [random_rois(k, 1, 15, 15, 1.0, g, dtype)[:, 1:].to(device) for k in (4, 0, 6)]
    ours = roi_pool(input, boxes, 3)
    torch.testing.assert_close(ours, torchvision.ops.roi_pool(input, boxes, 3), atol=0, rtol=0)
    # The same boxes as a [K, 5] tensor with batch indices 0 and 2.
    rois = torch.cat(
        [torch.cat([torch.full((len(b), 1), float(i), dtype=dtype, device=device), b], 1) for i, b in enumerate(boxes)]
    )
    assert torch.equal(ours, roi_pool(input, rois, 3))
    assert (rois[:, 0] == 2).any()


def test_no_boxes(device):
    input = torch.randn(2, 3, 8, 8, device=device, requires_grad=True)
    rois = torch.zeros(0, 5, device=device)
    out = roi_pool(input, rois, (2, 4))
    assert out.shape == torchvision.ops.roi_pool(input, rois, (2, 4)).shape == (0, 3, 2, 4)
    out.sum().backward()
    assert torch.equal(input.grad, torch.zeros_like(input))
    assert roi_pool(input, [torch.zeros(0, 4, device=device)] * 2, 2).shape == (0, 3, 2, 2)


def test_gradcheck():
    g = torch.Generator().manual_seed(4)
    input = torch.randn(2, 2, 8, 9, generator=g, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 1.2, 0.3, 6.6, 5.1], [1, -2, 3, 4, 12], [1, 0, 0, 8, 7]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: roi_pool(x, rois, (3, 2), 1.0), (input,))


def test_bad_input():
    x = torch.randn(1, 2, 5, 5)
    rois = torch.tensor([[0, 0, 0, 3, 3.0]])
    with pytest.raises(ValueError):
        roi_pool(x[0], rois, 2)  # not [N, C, H, W]
    with pytest.raises(TypeError):
        roi_pool(x.long(), rois.long(), 2)
    with pytest.raises(ValueError):
        roi_pool(x, rois[:, 1:], 2)  # [K, 4] tensor: which image?
    with pytest.raises(TypeError):
        roi_pool(x, rois.double(), 2)  # dtype differs from input
    with pytest.raises(ValueError):
        roi_pool(x, torch.tensor([[1, 0, 0, 3, 3.0]]), 2)  # batch index out of range
    with pytest.raises(ValueError):
        roi_pool(x, rois, (2, 0))
    with pytest.raises(ValueError):
        roi_pool(x, rois, 2, spatial_scale=0.0)
