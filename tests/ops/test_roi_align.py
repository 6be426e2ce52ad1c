"""roi_align against torchvision.ops.roi_align (the oracle), box gradients by gradcheck, and the FPN level
mapping against torchvision.ops.poolers.LevelMapper."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.ops.poolers import LevelMapper

from lectures_code.ops.roi_align import map_rois_to_levels, roi_align

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def random_rois(k: int, n: int, h: int, w: int, scale: float, g: torch.Generator, dtype=torch.float64):
    """[k, 5] rois in image pixels, x1 <= x2 and y1 <= y2, from 5 cells before the map to 5 past it."""
    corners = torch.rand(k, 4, generator=g, dtype=torch.float64) * torch.tensor([w, h, w, h]) * 1.4 - 5
    top_left, bottom_right = corners[:, :2], corners[:, 2:]
    corners = torch.cat([torch.minimum(top_left, bottom_right), torch.maximum(top_left, bottom_right)], 1)
    batch = torch.randint(0, n, (k, 1), generator=g).double()
    return torch.cat([batch, corners / scale], 1).to(dtype)


def check(input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False, grad=True):
    """Values and input gradients (of a random upstream gradient) match torchvision's."""
    input = input.detach().requires_grad_(grad)
    args = (output_size, spatial_scale, sampling_ratio, aligned)
    ours = roi_align(input, rois, *args)
    ref = torchvision.ops.roi_align(input, rois, *args)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype and ours.device == ref.device
    tol = TOL[input.dtype]
    torch.testing.assert_close(ours, ref, atol=tol, rtol=0)
    if grad and ref.numel():
        upstream = torch.randn(ref.shape, generator=torch.Generator().manual_seed(0), dtype=ref.dtype).to(ref.device)
        (g_ours,) = torch.autograd.grad(ours, input, upstream)
        (g_ref,) = torch.autograd.grad(ref, input, upstream)
        # Many bins add into a border cell, in another order: equal up to rounding.
        torch.testing.assert_close(g_ours, g_ref, atol=tol, rtol=tol)


@pytest.fixture(autouse=True)
def _nondeterministic_torchvision():
    # With deterministic algorithms on, torchvision's CUDA roi_align is a Python fallback with other
    # border rules (detection-semantics.md): the oracle is the kernel.
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)
    yield
    torch.use_deterministic_algorithms(was)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(8))
def test_random_boxes_match_torchvision(device, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    n, c = 2, 3
    h, w = (int(v) for v in torch.randint(1, 24, (2,), generator=g))
    input = torch.randn(n, c, h, w, generator=g, dtype=dtype).to(device)
    scale = [1.0, 0.5, 1 / 16, 0.25][seed % 4]
    rois = random_rois(30, n, h, w, scale, g, dtype)
    if seed % 2:  # coordinates on multiples of 0.5 cell: samples land exactly on cells and borders
        rois[:, 1:] = (rois[:, 1:] * scale * 2).round() / 2 / scale
    output_size = [(7, 7), (1, 1), (2, 3), (5, 1)][seed % 4]
    for aligned in (False, True):
        for sampling_ratio in (-1, 1, 2):
            check(input, rois.to(device), output_size, scale, sampling_ratio, aligned)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("aligned", [False, True])
def test_edge_boxes(device, dtype, aligned):
    g = torch.Generator().manual_seed(1)
    h, w = 9, 13
    input = torch.randn(3, 4, h, w, generator=g, dtype=dtype).to(device)
    rows = [
        [0, 0, 0, w, h],  # whole map
        [1, -0.5, -0.5, w - 0.5, h - 0.5],  # whole map, pixel centers (aligned)
        [2, 0, 0, w - 1, h - 1],  # whole map, last cell at the edge
        [0, -1, -2, w + 1, h + 2],  # 1-2 px past every border
        [1, -5, -3, 4, h + 5],  # 3-5 px past some borders
        [2, -30, -30, -6, -6],  # entirely outside: samples < -1 read 0
        [0, w + 1.5, h + 2, w + 20, h + 9],  # entirely outside, bottom-right
        [1, 4.25, 3.75, 4.25, 3.75],  # zero size (aligned: no samples -> 0)
        [2, 2.0, 5.0, 2.0, 7.5],  # zero width
        [0, 3.3, 1.7, 3.4, 1.9],  # tiny
        [1, 1.37, 2.91, 8.62, 6.05],  # fractional
        [2, 12.0, 8.0, 13.0, 9.0],  # the last cell
    ]
    rois = torch.tensor(rows, dtype=dtype, device=device)
    for output_size in [1, 7, (3, 5)]:
        for sampling_ratio in (-1, 1, 2, 3):
            check(input, rois, output_size, 1.0, sampling_ratio, aligned)
    for scale in (1 / 16, 0.5):
        rois_in_pixels = torch.cat([rois[:, :1], rois[:, 1:] / scale], 1)
        check(input, rois_in_pixels, (2, 2), scale, -1, aligned)


@pytest.mark.parametrize("sampling_ratio", [1, 2])
def test_inverted_boxes(device, sampling_ratio):
    # torchvision handles an inverted box (x2 < x1) with a fixed grid: clamped to width 1 when not
    # aligned, sampled backwards when aligned. (Its adaptive grid is undefined there.)
    g = torch.Generator().manual_seed(2)
    input = torch.randn(1, 2, 10, 10, generator=g, dtype=torch.float64).to(device)
    rois = torch.tensor([[0, 6.5, 7.0, 2.2, 1.5], [0, 3, 3, 1, 8]], dtype=torch.float64, device=device)
    for aligned in (False, True):
        check(input, rois, 3, 1.0, sampling_ratio, aligned)
    check(input, rois, 3, 1.0, -1, False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_and_tiny_boxes(device, dtype):
    # Adaptive grids of about 100 x 100 samples per bin (a 300-cell box into 3 bins, a 700-cell one
    # into 7), next to boxes smaller than a cell.
    g = torch.Generator().manual_seed(3)
    input = torch.randn(1, 2, 40, 40, generator=g, dtype=dtype).to(device)
    rois = torch.tensor(
        [[0, -140, -130, 160, 170], [0, 10.2, 5.1, 10.25, 5.11], [0, -50, 3, 650, 30], [0, 1, 1, 2, 2]],
        dtype=dtype,
        device=device,
    )
    for aligned in (False, True):
        check(input, rois, 3, 1.0, -1, aligned)
        check(input, rois[1:], 7, 1.0, -1, aligned)


@pytest.mark.parametrize("dtype", DTYPES)
def test_list_of_boxes_and_batch_index(device, dtype):
    g = torch.Generator().manual_seed(4)
    input = torch.randn(3, 2, 15, 15, generator=g, dtype=dtype).to(device)
    boxes = [random_rois(k, 1, 15, 15, 1.0, g, dtype)[:, 1:].to(device) for k in (4, 0, 6)]
    ours = roi_align(input, boxes, 3, 1.0, 2, True)
    torch.testing.assert_close(ours, torchvision.ops.roi_align(input, boxes, 3, 1.0, 2, True), atol=TOL[dtype], rtol=0)
    rois = torch.cat(
        [torch.cat([torch.full((len(b), 1), float(i), dtype=dtype, device=device), b], 1) for i, b in enumerate(boxes)]
    )
    assert (rois[:, 0] == 2).any()
    torch.testing.assert_close(ours, roi_align(input, rois, 3, 1.0, 2, True), atol=0, rtol=0)


def test_no_boxes(device):
    input = torch.randn(2, 3, 8, 8, device=device, requires_grad=True)
    rois = torch.zeros(0, 5, device=device)
    out = roi_align(input, rois, (2, 4))
    assert out.shape == torchvision.ops.roi_align(input, rois, (2, 4)).shape == (0, 3, 2, 4)
    out.sum().backward()
    assert torch.equal(input.grad, torch.zeros_like(input))


def gradcheck_boxes():
    """Boxes inside an 11 x 12 map, wider than one cell, away from integer sample coordinates."""
    return torch.tensor(
        [[0, 1.37, 2.11, 8.62, 7.05], [1, 0.71, 0.33, 5.29, 9.48], [1, 3.14, 4.47, 10.23, 9.91]], dtype=torch.float64
    )


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_gradcheck_input_and_boxes(aligned, sampling_ratio):
    g = torch.Generator().manual_seed(5)
    input = torch.randn(2, 2, 11, 12, generator=g, dtype=torch.float64, requires_grad=True)
    rois = gradcheck_boxes()
    coords = rois[:, 1:].clone().requires_grad_()

    def f(x, xyxy):
        return roi_align(x, torch.cat([rois[:, :1], xyxy], 1), (3, 2), 1.0, sampling_ratio, aligned)

    assert torch.autograd.gradcheck(f, (input.detach(), coords))  # every box coordinate
    assert torch.autograd.gradcheck(f, (input, coords), fast_mode=True)  # a random projection, to be quick


def test_box_gradient_is_what_roi_pool_lacks():
    # Moving a box by a fraction of a cell changes roi_align's output smoothly: the box gradient is
    # non-zero, and equals the finite difference of torchvision's own output.
    g = torch.Generator().manual_seed(6)
    input = torch.randn(1, 3, 16, 16, generator=g, dtype=torch.float64)
    coords = torch.tensor([[2.3, 3.6, 11.2, 12.7]], dtype=torch.float64, requires_grad=True)
    batch = torch.zeros(1, 1, dtype=torch.float64)
    roi_align(input, torch.cat([batch, coords], 1), 4, 1.0, 2, True).sum().backward()
    assert coords.grad.abs().min() > 0
    eps = 1e-6
    for i in range(4):
        step = torch.zeros(1, 4, dtype=torch.float64)
        step[0, i] = eps
        plus = torchvision.ops.roi_align(input, torch.cat([batch, coords.detach() + step], 1), 4, 1.0, 2, True)
        minus = torchvision.ops.roi_align(input, torch.cat([batch, coords.detach() - step], 1), 4, 1.0, 2, True)
        torch.testing.assert_close(coords.grad[0, i], (plus.sum() - minus.sum()) / (2 * eps), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_map_rois_to_levels_matches_level_mapper(device, dtype):
    g = torch.Generator().manual_seed(7)
    sides = torch.exp(torch.rand(200, 2, generator=g, dtype=torch.float64) * 8)  # 1 to ~3000 px
    corners = torch.rand(200, 2, generator=g, dtype=torch.float64) * 500
    boxes = torch.cat([corners, corners + sides], 1)
    # Sides exactly at the level boundaries (sqrt(area) = 224 * 2^j), and a zero-area box.
    exact = torch.tensor([[0, 0, 112, 112], [0, 0, 224, 224], [10, 10, 458, 458], [0, 0, 56, 56], [5, 5, 5, 9]])
    boxes = torch.cat([boxes, exact.double()]).to(device, dtype)
    for k_min, k_max in [(2, 5), (3, 6), (4, 4)]:
        ref = LevelMapper(k_min, k_max)([boxes[:150], boxes[150:]]) + k_min
        assert torch.equal(map_rois_to_levels(boxes, k_min, k_max), ref)
        assert torch.equal(map_rois_to_levels([boxes[:150], boxes[150:]], k_min, k_max), ref)
    ref = LevelMapper(2, 5, canonical_scale=100, canonical_level=3, eps=0.01)([boxes]) + 2
    assert torch.equal(map_rois_to_levels(boxes, 2, 5, canonical_scale=100, canonical_level=3, eps=0.01), ref)


def test_bad_input():
    x = torch.randn(1, 2, 5, 5)
    rois = torch.tensor([[0, 0, 0, 3, 3.0]])
    with pytest.raises(ValueError):
        roi_align(x[0], rois, 2)
    with pytest.raises(TypeError):
        roi_align(x, rois.double(), 2)
    with pytest.raises(ValueError):
        roi_align(x, [rois], 2)  # a list holds [L, 4] tensors
    with pytest.raises(ValueError):
        roi_align(x, torch.tensor([[-1, 0, 0, 3, 3.0]]), 2)
    with pytest.raises(TypeError):
        roi_align(x, rois, 2, sampling_ratio=1.5)
    with pytest.raises(ValueError):
        roi_align(x, rois, 0)
    with pytest.raises(ValueError):
        map_rois_to_levels(rois, 2, 5)
    with pytest.raises(ValueError):
        map_rois_to_levels(rois[:, 1:], 5, 2)
