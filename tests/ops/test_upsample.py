"""In-network upsampling against torch.nn.functional (the oracle): conv_transpose2d / conv_transpose1d,
max_unpool2d and interpolate, values and gradients; the convolution matrix against F.conv2d; bed of nails and
the FCN kernel by hand-worked cases and by their relations to the other ops."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from lectures_code.ops.upsample import (
    INTERPOLATE_MODES,
    bed_of_nails,
    bilinear_filter,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose2d_loop,
    conv_transpose_output_size,
    convolution_matrix,
    fcn_bilinear_kernel,
    interpolate,
    max_unpool2d,
    nearest_index,
)

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def assert_same_with_grads(ours_fn, ref_fn, inputs: list[torch.Tensor], seed: int = 0, grads: bool = True):
    """ours_fn(*inputs) equals ref_fn(*inputs) (shape, dtype, values), and so do the gradients w.r.t. every
    input that requires grad, for a random upstream gradient (unless ``grads`` is False)."""
    ours, ref = ours_fn(*inputs), ref_fn(*inputs)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype and ours.device == ref.device
    tol = TOL.get(ref.dtype, 0)
    torch.testing.assert_close(ours, ref, atol=tol, rtol=tol)
    wanted = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    if grads and wanted and ref.numel():
        upstream = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed), dtype=ref.dtype)
        upstream = upstream.to(ref.device)
        grads = zip(torch.autograd.grad(ours, wanted, upstream), torch.autograd.grad(ref, wanted, upstream))
        for g_ours, g_ref in grads:
            torch.testing.assert_close(g_ours, g_ref, atol=tol, rtol=tol)


# ----------------------------------------------------------------------------------------------
# conv_transpose2d
# ----------------------------------------------------------------------------------------------


def random_config(rng: random.Random) -> dict:
    """Random settings of a small transposed convolution that F accepts."""
    groups = rng.choice([1, 1, 2, 3])
    stride, dilation = (rng.randint(1, 3), rng.randint(1, 3)), (rng.randint(1, 3), rng.randint(1, 3))
    output_padding = tuple(rng.randint(0, max(s, d) - 1) for s, d in zip(stride, dilation))
    kernel = (rng.randint(1, 4), rng.randint(1, 4))
    size = (rng.randint(1, 7), rng.randint(1, 7))
    padding = []
    for axis in range(2):  # at most what keeps the output non-empty
        most = (conv_transpose_output_size(size[axis], kernel[axis], stride[axis], 0, output_padding[axis],
                                           dilation[axis]) - 1) // 2
        padding.append(rng.randint(0, min(most, 3)))
    return {"groups": groups, "stride": stride, "padding": tuple(padding), "output_padding": output_padding,
            "dilation": dilation, "kernel": kernel, "size": size,
            "channels": (groups * rng.randint(1, 3), groups * rng.randint(1, 3))}


def conv_inputs(config: dict, dtype, device, seed: int, batch: int = 2, bias: bool = True):
    g = torch.Generator().manual_seed(seed)
    (c_in, c_out), (kh, kw) = config["channels"], config["kernel"]
    x = torch.randn(batch, c_in, *config["size"], generator=g, dtype=dtype)
    w = torch.randn(c_in, c_out // config["groups"], kh, kw, generator=g, dtype=dtype)
    b = torch.randn(c_out, generator=g, dtype=dtype) if bias else None
    return [t.to(device).requires_grad_() if t is not None else None for t in (x, w, b)]


def settings(config: dict) -> dict:
    return {k: config[k] for k in ("stride", "padding", "output_padding", "groups", "dilation")}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(6))
def test_conv_transpose2d_random_settings_match_torch(device, dtype, seed):
    rng = random.Random(seed)
    for case in range(12):
        config = random_config(rng)
        x, w, b = conv_inputs(config, dtype, device, seed * 100 + case, bias=case % 3 != 0)
        kwargs = settings(config)
        inputs = [x, w] + ([b] if b is not None else [])

        def ref(*t, kwargs=kwargs):
            return F.conv_transpose2d(*t, **kwargs)

        def ours(*t, kwargs=kwargs):
            return conv_transpose2d(*t, **kwargs)

        def loop(*t, kwargs=kwargs):
            return conv_transpose2d_loop(*t, **kwargs)

        assert_same_with_grads(ours, ref, inputs, seed)
        assert_same_with_grads(loop, ref, inputs, seed)


EDGE_CONFIGS = {
    "decoder k4 s2 p1": dict(kernel=(4, 4), stride=2, padding=1),
    "odd sizes, k3 s2 p1 op1": dict(size=(5, 7), kernel=(3, 3), stride=2, padding=1, output_padding=1),
    "output_padding >= stride (dilation 3)": dict(kernel=(2, 3), stride=2, dilation=3, output_padding=2, padding=1),
    "output_padding > padding": dict(kernel=(3, 3), stride=3, padding=(0, 1), output_padding=2),
    "depthwise (groups = C_in)": dict(channels=(4, 4), groups=4, kernel=(3, 3), stride=2),
    "groups, C_out per group 2": dict(channels=(6, 6), groups=3, kernel=(2, 2), stride=(1, 2)),
    "1x1 kernel, stride 3": dict(kernel=(1, 1), stride=3),
    "kernel larger than input": dict(size=(2, 1), kernel=(5, 4), stride=2, padding=(2, 1)),
    "padding cuts to a 1x1 output": dict(size=(2, 2), kernel=(2, 2), stride=1, padding=1),
    "one input cell": dict(size=(1, 1), kernel=(3, 2), stride=4),
    "stride larger than kernel (gaps)": dict(kernel=(2, 2), stride=3),
    "asymmetric everything": dict(size=(3, 6), kernel=(2, 4), stride=(3, 1), padding=(1, 2), dilation=(2, 1),
                                  output_padding=(1, 0)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(EDGE_CONFIGS))
def test_conv_transpose2d_edge_cases_match_torch(device, dtype, name):
    config = {"groups": 1, "stride": 1, "padding": 0, "output_padding": 0, "dilation": 1, "size": (4, 5),
              "channels": (3, 2), **EDGE_CONFIGS[name]}
    x, w, b = conv_inputs(config, dtype, device, 7)
    kwargs = settings(config)
    for fn in (conv_transpose2d, conv_transpose2d_loop):
        assert_same_with_grads(lambda *t, fn=fn: fn(*t, **kwargs), lambda *t: F.conv_transpose2d(*t, **kwargs),
                               [x, w, b])


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_transpose2d_unbatched_empty_batch_and_strided_input(device, dtype):
    config = {"groups": 1, "stride": 2, "padding": 1, "output_padding": 1, "dilation": 1, "size": (4, 5),
              "channels": (3, 2), "kernel": (3, 3)}
    x, w, b = conv_inputs(config, dtype, device, 8)
    kwargs = settings(config)

    def ref(*t):
        return F.conv_transpose2d(*t, **kwargs)

    def ours(*t):
        return conv_transpose2d(*t, **kwargs)

    assert_same_with_grads(ours, ref, [x[0], w, b])  # unbatched [C, H, W]
    assert_same_with_grads(ours, ref, [x[:0], w, b])  # no images
    # Channels-last and transposed (non-contiguous) inputs and weights.
    assert_same_with_grads(ours, ref, [x.contiguous(memory_format=torch.channels_last), w.transpose(2, 3), b])
    assert ours(x, w, b).is_contiguous()


def test_conv_transpose2d_gradcheck():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 4, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    for kwargs in [dict(stride=2, padding=1, output_padding=1, groups=2), dict(stride=(1, 2), dilation=(3, 2),
                                                                                  output_padding=(2, 1))]:
        b = torch.randn(3 * kwargs.get("groups", 1), generator=g, dtype=torch.float64, requires_grad=True)
        for fn in (conv_transpose2d, conv_transpose2d_loop):
            assert torch.autograd.gradcheck(lambda *t, fn=fn, kwargs=kwargs: fn(*t, **kwargs), (x, w, b))


def test_conv_transpose2d_is_the_gradient_of_conv2d():
    # The name: conv_transpose2d(g, w) is what backpropagation through conv2d(x, w) sends to x.
    g = torch.Generator().manual_seed(10)
    x = torch.randn(2, 3, 9, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 3, 3, 3, generator=g, dtype=torch.float64)
    y = F.conv2d(x, w, stride=2, padding=1)
    upstream = torch.randn(y.shape, generator=g, dtype=torch.float64)
    (grad_x,) = torch.autograd.grad(y, x, upstream)
    # 9 and 8 rows / columns both give a 5 x 4 output: output_padding says which one to give back.
    ours = conv_transpose2d(upstream, w, stride=2, padding=1, output_padding=(0, 1))
    torch.testing.assert_close(ours, grad_x, atol=1e-12, rtol=0)


def test_slide_1d_example():
    # [a, b] * [x, y, z] with stride 2 = [ax, ay, az + bx, by, bz] (Lecture 15's 1-D transposed convolution).
    g = torch.Generator().manual_seed(11)
    a, b, x, y, z = torch.randn(5, generator=g, dtype=torch.float64).tolist()
    out = conv_transpose1d(torch.tensor([[[a, b]]], dtype=torch.float64),
                           torch.tensor([[[x, y, z]]], dtype=torch.float64), stride=2)
    expected = torch.tensor([[[a * x, a * y, a * z + b * x, b * y, b * z]]], dtype=torch.float64)
    torch.testing.assert_close(out, expected, atol=1e-15, rtol=0)
    torch.testing.assert_close(out, F.conv_transpose1d(torch.tensor([[[a, b]]], dtype=torch.float64),
                                                       torch.tensor([[[x, y, z]]], dtype=torch.float64), stride=2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_transpose1d_matches_torch(device, dtype):
    g = torch.Generator().manual_seed(12)
    for length, k, kwargs in [(5, 3, dict(stride=2)), (4, 4, dict(stride=2, padding=1)),
                              (6, 2, dict(stride=3, padding=1, output_padding=2, groups=2)),
                              (3, 3, dict(dilation=2, output_padding=1))]:
        groups = kwargs.get("groups", 1)
        x = torch.randn(2, 2 * groups, length, generator=g, dtype=dtype).to(device).requires_grad_()
        w = torch.randn(2 * groups, 3, k, generator=g, dtype=dtype).to(device).requires_grad_()
        b = torch.randn(3 * groups, generator=g, dtype=dtype).to(device).requires_grad_()
        assert_same_with_grads(lambda *t, kw=kwargs: conv_transpose1d(*t, **kw),
                               lambda *t, kw=kwargs: F.conv_transpose1d(*t, **kw), [x, w, b])
        assert_same_with_grads(lambda *t, kw=kwargs: conv_transpose1d(*t, **kw),
                               lambda *t, kw=kwargs: F.conv_transpose1d(*t, **kw), [x[0], w])


def test_checkerboard_from_uneven_overlap():
    # A 3x3 kernel of ones with stride 2 on an all-ones input: a cell is covered by 1 or 2 stamps per axis,
    # so the output alternates 1, 2, 4 (the checkerboard artefact); a 4x4 kernel with stride 2 covers every
    # interior cell twice per axis: a flat 4.
    ones = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    out = conv_transpose2d(ones, torch.ones(1, 1, 3, 3, dtype=torch.float64), stride=2)
    per_axis = torch.tensor([1, 1, 2, 1, 2, 1, 2, 1, 1], dtype=torch.float64)
    torch.testing.assert_close(out[0, 0], per_axis[:, None] * per_axis[None, :], atol=0, rtol=0)
    even = conv_transpose2d(ones, torch.ones(1, 1, 4, 4, dtype=torch.float64), stride=2, padding=1)
    assert torch.equal(even[0, 0, 1:-1, 1:-1], torch.full((6, 6), 4.0, dtype=torch.float64))


def error_cases():
    x, w = torch.randn(2, 4, 5, 5), torch.randn(4, 3, 3, 3)
    return {
        "output_padding == stride": ((x, w), dict(stride=2, output_padding=2), "output_padding must be smaller"),
        "output_padding with stride 1": ((x, w), dict(output_padding=1), "output_padding must be smaller"),
        "channels not divisible by groups": ((x, w), dict(groups=3), "multiple of groups"),
        "input channels != weight's": ((x, torch.randn(3, 3, 3, 3)), {}, "expects 3"),
        "5-D input": ((x[None], w), {}, "3-D"),
        "2-D input": ((x[0, 0], w), {}, "3-D"),
        "3-D weight": ((x, w[0]), {}, "weight must have shape"),
        "stride 0": ((x, w), dict(stride=0), "positive"),
        "dilation 0": ((x, w), dict(dilation=0), "positive"),
        "groups 0": ((x, w), dict(groups=0), "positive"),
        "negative padding": ((x, w), dict(padding=-1), ">= 0"),
        "negative output_padding": ((x, w), dict(output_padding=-1), ">= 0"),
        "padding larger than the output": ((x, w), dict(padding=5), "the output would be"),
        "empty output": ((torch.randn(1, 4, 1, 1), torch.randn(4, 1, 2, 2)), dict(padding=1), "the output would be"),
        "bias of the wrong size": ((x, w, torch.randn(4)), {}, "bias must have shape"),
        "dtypes differ": ((x, w.double()), {}, "dtype"),
        "empty map": ((x[:, :, :0], w), {}, "non-empty"),
        "no input channels": ((torch.randn(2, 0, 3, 3), torch.randn(0, 3, 3, 3)), {}, "positive multiple"),
        "three strides": ((x, w), dict(stride=(1, 1, 1)), "sequence of 2 ints"),
        "float stride": ((x, w), dict(stride=1.5), "sequence of 2 ints"),
        "string padding": ((x, w), dict(padding="same"), "sequence of 2 ints"),
    }


@pytest.mark.parametrize("name", list(error_cases()))
def test_conv_transpose2d_bad_arguments_raise_like_torch(name):
    args, kwargs, message = error_cases()[name]
    with pytest.raises(Exception):  # noqa: B017 - the reference raises RuntimeError, TypeError, ...
        F.conv_transpose2d(*args, **kwargs)
    for fn in (conv_transpose2d, conv_transpose2d_loop):
        with pytest.raises((ValueError, TypeError), match=message):
            fn(*args, **kwargs)


def test_conv_transpose2d_refuses_integer_tensors():
    # A difference on purpose: F computes integer transposed convolutions on the CPU.
    x, w = torch.ones(1, 1, 2, 2, dtype=torch.int64), torch.ones(1, 1, 2, 2, dtype=torch.int64)
    assert F.conv_transpose2d(x, w).dtype == torch.int64
    with pytest.raises(TypeError, match="floating point"):
        conv_transpose2d(x, w)


# ----------------------------------------------------------------------------------------------
# The matrix view
# ----------------------------------------------------------------------------------------------


def pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


@pytest.mark.parametrize("dtype", DTYPES)
def test_convolution_matrix_times_x_is_conv2d(device, dtype):
    g = torch.Generator().manual_seed(13)
    for size, w_shape, kwargs in [((5, 6), (4, 3, 3, 3), dict(padding=1)),
                                  ((7, 5), (4, 3, 3, 2), dict(stride=2, padding=(1, 0))),
                                  ((6, 6), (4, 2, 2, 2), dict(stride=(1, 2), dilation=(2, 1), groups=2)),
                                  ((4, 4), (3, 1, 4, 4), dict(stride=2, padding=2, groups=3))]:
        groups = kwargs.get("groups", 1)
        w = torch.randn(*w_shape, generator=g, dtype=dtype).to(device)
        x = torch.randn(2, w_shape[1] * groups, *size, generator=g, dtype=dtype).to(device)
        matrix = convolution_matrix(w, size, **kwargs)
        y = F.conv2d(x, w, **kwargs)
        assert matrix.shape == (y[0].numel(), x[0].numel())
        torch.testing.assert_close(x.flatten(1) @ matrix.T, y.flatten(1), atol=TOL[dtype], rtol=TOL[dtype])
        # The transpose of the matrix is the transposed convolution with the same weight (output_padding picks
        # the input's size among those that give y's size).
        upstream = torch.randn(y.shape, generator=g, dtype=dtype).to(device)
        stride, padding, dilation = (pair(kwargs.get(name, default)) for name, default in
                                     (("stride", 1), ("padding", 0), ("dilation", 1)))
        natural = [conv_transpose_output_size(*args) for args in zip(y.shape[2:], w_shape[2:], stride, padding,
                                                                      (0, 0), dilation)]
        output_padding = tuple(n - m for n, m in zip(size, natural))
        ours = conv_transpose2d(upstream, w, output_padding=output_padding, **kwargs)
        ref = F.conv_transpose2d(upstream, w, output_padding=output_padding, **kwargs)
        via_matrix = (upstream.flatten(1) @ matrix).reshape(ours.shape)
        torch.testing.assert_close(via_matrix, ref, atol=TOL[dtype], rtol=TOL[dtype])
        torch.testing.assert_close(ours, via_matrix, atol=TOL[dtype], rtol=TOL[dtype])


def test_convolution_matrix_slide_examples():
    # Lecture 15: a 1-D convolution with kernel [x, y, z] on a length-4 input, padding 1, as a matrix; with
    # stride 1 it is a band of shifted kernels, with stride 2 every other row of it.
    x, y, z = 2.0, 3.0, 5.0
    kernel = torch.tensor([[[x, y, z]]], dtype=torch.float64)
    band = torch.tensor([[y, z, 0, 0], [x, y, z, 0], [0, x, y, z], [0, 0, x, y]], dtype=torch.float64)
    torch.testing.assert_close(convolution_matrix(kernel, 4, padding=1), band, atol=0, rtol=0)
    torch.testing.assert_close(convolution_matrix(kernel, 4, stride=2, padding=1), band[::2], atol=0, rtol=0)
    # Its transpose spreads each of the 2 values over 3 cells: a transposed convolution with stride 2.
    a = torch.tensor([[[7.0, 11.0]]], dtype=torch.float64)
    spread = (a.flatten(1) @ band[::2]).reshape(1, 1, 4)
    torch.testing.assert_close(spread, conv_transpose1d(a, kernel, stride=2, padding=1, output_padding=1),
                               atol=0, rtol=0)


def test_convolution_matrix_is_differentiable_in_the_weight():
    g = torch.Generator().manual_seed(14)
    w = torch.randn(2, 2, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: convolution_matrix(w, (3, 4), stride=(1, 2), padding=1), (w,))


# ----------------------------------------------------------------------------------------------
# Unpooling
# ----------------------------------------------------------------------------------------------


def test_bed_of_nails_by_hand():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    expected = torch.tensor([[[[1.0, 0, 2.0, 0], [0, 0, 0, 0], [3.0, 0, 4.0, 0], [0, 0, 0, 0]]]])
    assert torch.equal(bed_of_nails(x), expected)
    wide = bed_of_nails(x, (1, 3))
    assert torch.equal(wide, torch.tensor([[[[1.0, 0, 0, 2.0, 0, 0], [3.0, 0, 0, 4.0, 0, 0]]]]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bed_of_nails_is_max_unpool_at_the_corners(device, dtype):
    g = torch.Generator().manual_seed(15)
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=dtype).to(device).requires_grad_()
    for s in ((2, 2), (3, 2)):
        rows = torch.arange(4, device=device)[:, None] * s[0]
        columns = torch.arange(5, device=device)[None, :] * s[1]
        corners = (rows * 5 * s[1] + columns).expand(2, 3, 4, 5)  # flat index of each block's top-left cell
        assert_same_with_grads(lambda x, s=s: bed_of_nails(x, s),
                               lambda x, s=s, c=corners: F.max_unpool2d(x, c, s), [x])
        assert_same_with_grads(lambda x, s=s: bed_of_nails(x, s),
                               lambda x, s=s, c=corners: max_unpool2d(x, c, s), [x])
        # ... and a depthwise transposed convolution whose kernel is 1 at its top-left corner.
        nail = torch.zeros(3, 1, *s, dtype=dtype, device=device)
        nail[:, :, 0, 0] = 1
        assert_same_with_grads(lambda x, s=s: bed_of_nails(x, s),
                               lambda x, s=s, n=nail: conv_transpose2d(x, n, stride=s, groups=3), [x])


POOLINGS = [  # kernel, stride, padding, input size
    (2, 2, 0, (6, 8)),
    (2, 2, 0, (7, 9)),  # odd: the output size must be given back
    (3, 2, 1, (7, 6)),  # overlapping windows: one cell can win two windows
    (3, 1, 1, (5, 5)),
    ((2, 3), (2, 3), (1, 0), (5, 9)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pooling", POOLINGS, ids=str)
def test_max_unpool2d_matches_torch(device, dtype, pooling):
    kernel, stride, padding, size = pooling
    g = torch.Generator().manual_seed(16)
    x = torch.randn(2, 3, *size, generator=g, dtype=dtype).to(device)
    pooled, indices = F.max_pool2d(x, kernel, stride, padding, return_indices=True)
    pooled = pooled.detach().requires_grad_()
    for output_size in (size, (2, 3, *size)):
        kwargs = dict(kernel_size=kernel, stride=stride, padding=padding, output_size=output_size)
        assert_same_with_grads(lambda p, kw=kwargs: max_unpool2d(p, indices, **kw),
                               lambda p, kw=kwargs: F.max_unpool2d(p, indices, **kw), [pooled])
    assert_same_with_grads(lambda p: max_unpool2d(p, indices[0], kernel, stride, padding, size),
                           lambda p: F.max_unpool2d(p, indices[0], kernel, stride, padding, size), [pooled[0]])
    # Unpooling puts every maximum back where it was, and nothing anywhere else.
    unpooled = max_unpool2d(pooled, indices, kernel, stride, padding, size)
    assert torch.equal(unpooled.flatten(2).gather(2, indices.flatten(2)), pooled.flatten(2))
    assert torch.equal(unpooled != 0, x == torch.where(unpooled != 0, x, torch.nan))


def test_max_unpool2d_default_size_and_ties():
    x = torch.tensor([[[[1.0, 5.0, 2.0, 0.0], [3.0, 4.0, 8.0, 1.0]]]], requires_grad=True)
    pooled, indices = F.max_pool2d(x, 2, return_indices=True)
    assert indices.tolist() == [[[[1, 6]]]]
    out = max_unpool2d(pooled, indices, 2)
    assert torch.equal(out, torch.tensor([[[[0.0, 5.0, 0.0, 0.0], [0.0, 0.0, 8.0, 0.0]]]]))
    # A cell that wins two overlapping windows gets its value once, and its gradient from both windows.
    row = torch.tensor([[[[0.0, 9.0, 1.0]]]])
    pooled, indices = F.max_pool2d(row, (1, 2), stride=1, return_indices=True)
    assert indices.tolist() == [[[[1, 1]]]]
    pooled = pooled.requires_grad_()
    ours = max_unpool2d(pooled, indices, (1, 2), 1)
    ref = F.max_unpool2d(pooled, indices, (1, 2), 1)
    assert torch.equal(ours, ref) and ours.tolist() == [[[[0.0, 9.0, 0.0]]]]
    upstream = torch.tensor([[[[1.0, 2.0, 3.0]]]])
    assert torch.equal(torch.autograd.grad(ours, pooled, upstream)[0], torch.autograd.grad(ref, pooled, upstream)[0])


def test_max_unpool2d_gradcheck():
    g = torch.Generator().manual_seed(17)
    x = torch.randn(2, 2, 5, 7, generator=g, dtype=torch.float64)
    # Non-overlapping windows: a cell won twice is written twice, and only one write shows in the output.
    pooled, indices = F.max_pool2d(x, (2, 3), (2, 3), (1, 0), return_indices=True)
    pooled = pooled.requires_grad_()
    assert torch.autograd.gradcheck(lambda p: max_unpool2d(p, indices, (2, 3), (2, 3), (1, 0), (5, 7)), (pooled,))


def unpool_error_cases():
    x = torch.randn(2, 3, 6, 7)
    pooled, indices = F.max_pool2d(x, 2, return_indices=True)
    return {
        "odd map without output_size": ((pooled, indices, 2), {}, "outside the 6 x 6"),
        "output_size too large": ((pooled, indices, 2), dict(output_size=(8, 7)), "strictly between"),
        "output_size of 3 numbers": ((pooled, indices, 2), dict(output_size=(3, 6, 7)), "output_size must be"),
        "indices of another shape": ((pooled, indices[:, :, :1], 2), {}, "indices must have input's shape"),
        "int32 indices": ((pooled, indices.int(), 2), {}, "int64"),
        "negative index": ((pooled, indices - 100, 2), dict(output_size=(6, 7)), "outside"),
        "2-D input": ((pooled[0, 0], indices[0, 0], 2), {}, "3-D"),
        "5-D input": ((pooled[None], indices[None], 2), {}, "3-D"),
        "stride 0": ((pooled, indices, 2), dict(stride=0), "positive"),
        "integer values": ((pooled.long(), indices, 2), dict(output_size=(6, 7)), "floating point"),
    }


@pytest.mark.parametrize("name", list(unpool_error_cases()))
def test_max_unpool2d_bad_arguments_raise_like_torch(name):
    args, kwargs, message = unpool_error_cases()[name]
    with pytest.raises(Exception):  # noqa: B017 - the reference raises RuntimeError, ValueError, ...
        F.max_unpool2d(*args, **kwargs)
    with pytest.raises((ValueError, TypeError), match=message):
        max_unpool2d(*args, **kwargs)


# ----------------------------------------------------------------------------------------------
# Interpolation
# ----------------------------------------------------------------------------------------------

# (size, scale_factor) pairs valid on a 5 x 7 map; every mode and align_corners runs on each.
RESIZES = [
    ((10, 14), None),  # x2
    ((3, 4), None),  # shrink
    ((1, 1), None),  # a single cell (align_corners: step 0)
    ((11, 3), None),  # up in H, down in W
    ((5, 7), None),  # same size: a copy
    (None, 2),
    (None, 3),
    (None, 1.7),  # H * 1.7 = 8.5 -> 8 rows, but the coordinates use 1 / 1.7, not 5 / 8
    (None, (0.5, 2.3)),
    (None, 0.34),
]
# PyTorch's CPU kernels take shortcuts its CUDA kernels do not (they compute with 1 / scale_factor): "nearest"
# and "bilinear" copy an axis whose size a scale_factor != 1 left unchanged, "nearest" takes dst // 2 when the
# size doubles. Our semantics are the CPU's; these cases are compared on the CPU only.
CPU_RESIZES = [
    (None, 1.1),  # 5 * 1.1 -> 5 rows: copied, not sampled at 1 / 1.1
    (None, 2.1),  # 5 * 2.1 -> 10 rows: "nearest" copies row dst // 2
    (None, (1.15, 2.05)),
]


def resize_kwargs(mode: str, size, scale_factor):
    kwargs = {"size": size} if size is not None else {"scale_factor": scale_factor}
    corners = [None] if mode.startswith("nearest") else [None, False, True]
    return [dict(kwargs, mode=mode, align_corners=ac) if ac is not None else dict(kwargs, mode=mode)
            for ac in corners]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", INTERPOLATE_MODES)
def test_interpolate_matches_torch(device, dtype, mode):
    g = torch.Generator().manual_seed(18)
    x = torch.randn(2, 3, 5, 7, generator=g, dtype=dtype).to(device).requires_grad_()
    resizes = RESIZES + (CPU_RESIZES if device == "cpu" else [])
    for size, scale_factor in resizes:
        # F's bicubic backward copies the gradient when neither axis changes size, but its forward
        # interpolates at 1 / scale_factor: there F's gradient is not its forward's (next test).
        grads = not (mode == "bicubic" and scale_factor == 1.1)
        for kwargs in resize_kwargs(mode, size, scale_factor):
            assert_same_with_grads(lambda t, kw=kwargs: interpolate(t, **kw),
                                   lambda t, kw=kwargs: F.interpolate(t, **kw), [x], grads=grads)


def test_bicubic_gradient_where_torch_copies_it():
    # 5 x 4 with scale_factor 1.1 stays 5 x 4; the forward samples at 1 / 1.1 (ours equals F's), so the
    # gradient is not the identity. F's backward copies it: its finite differences disagree with it, ours agree.
    x = torch.randn(1, 1, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(23), requires_grad=True)
    torch.testing.assert_close(interpolate(x, scale_factor=1.1, mode="bicubic"),
                               F.interpolate(x, scale_factor=1.1, mode="bicubic"), atol=1e-10, rtol=0)
    assert torch.autograd.gradcheck(lambda t: interpolate(t, scale_factor=1.1, mode="bicubic"), (x,))
    assert not torch.autograd.gradcheck(lambda t: F.interpolate(t, scale_factor=1.1, mode="bicubic"), (x,),
                                        raise_exception=False)


@pytest.mark.parametrize("mode", INTERPOLATE_MODES)
def test_interpolate_odd_and_tiny_maps(device, mode):
    g = torch.Generator().manual_seed(19)
    for h, w in [(1, 1), (1, 6), (2, 3), (13, 1)]:
        x = torch.randn(1, 2, h, w, generator=g, dtype=torch.float64).to(device).requires_grad_()
        for size in [(1, 1), (4, 5), (2 * h + 1, 3 * w)]:
            for kwargs in resize_kwargs(mode, size, None):
                assert_same_with_grads(lambda t, kw=kwargs: interpolate(t, **kw),
                                       lambda t, kw=kwargs: F.interpolate(t, **kw), [x])


def test_nearest_rules_from_the_reference_notes():
    # 5 -> 3: "nearest" picks [0, 1, 3] (floor(dst * 5/3)), "nearest-exact" picks [0, 2, 4] (nearest centre).
    assert nearest_index(5, 3, None, exact=False).tolist() == [0, 1, 3]
    assert nearest_index(5, 3, None, exact=True).tolist() == [0, 2, 4]
    row = torch.arange(5.0).reshape(1, 1, 1, 5)
    assert interpolate(row, size=(1, 3)).flatten().tolist() == [0, 1, 3]
    assert interpolate(row, size=(1, 3), mode="nearest-exact").flatten().tolist() == [0, 2, 4]
    # Nearest upsampling by 2 repeats every value twice ("nearest neighbor" unpooling).
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert torch.equal(interpolate(x, scale_factor=2), x.repeat_interleave(2, 2).repeat_interleave(2, 3))


def test_interpolate_integer_images_in_nearest_modes():
    x = torch.randint(0, 255, (1, 3, 5, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(20))
    for mode in ("nearest", "nearest-exact"):
        for kwargs in (dict(size=(9, 4)), dict(scale_factor=1.5)):
            assert torch.equal(interpolate(x, mode=mode, **kwargs), F.interpolate(x, mode=mode, **kwargs))


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_interpolate_gradcheck(mode, align_corners):
    g = torch.Generator().manual_seed(21)
    x = torch.randn(1, 2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: interpolate(t, size=(7, 5), mode=mode, align_corners=align_corners),
                                    (x,))
    assert torch.autograd.gradcheck(lambda t: interpolate(t, scale_factor=0.6, mode=mode,
                                                          align_corners=align_corners), (x,))


def test_bicubic_overshoots_and_bilinear_does_not():
    # A step edge: bicubic's negative lobes ring past the input's range, bilinear stays inside it.
    step = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]).reshape(1, 1, 1, 6)
    cubic = interpolate(step, size=(1, 24), mode="bicubic")
    linear = interpolate(step, size=(1, 24), mode="bilinear")
    assert cubic.min() < 0 and cubic.max() > 1
    assert linear.min() == 0 and linear.max() == 1


def interpolate_error_cases():
    x = torch.randn(1, 2, 5, 5)
    return {
        "size and scale_factor": ((x,), dict(size=3, scale_factor=2), "exactly one"),
        "neither": ((x,), {}, "exactly one"),
        "align_corners with nearest": ((x,), dict(size=3, align_corners=True), "align_corners applies"),
        "unknown mode": ((x,), dict(size=3, mode="foo"), "mode must be one of"),
        "linear on 4-D": ((x,), dict(size=3, mode="linear"), "mode must be one of"),
        "size 0": ((x,), dict(size=0, mode="bilinear"), "positive"),
        "negative size": ((x,), dict(size=-1), "positive"),
        "scale to nothing": ((x,), dict(scale_factor=0.1), "shrinks"),
        "negative scale": ((x,), dict(scale_factor=-2), "positive"),
        "three sizes": ((x,), dict(size=(3, 3, 3)), "sequence of 2 ints"),
        "float size": ((x,), dict(size=3.5), "sequence of 2 ints"),
        "3-D bilinear": ((x[0],), dict(size=3, mode="bilinear"), "4-D"),
        "integer bilinear": ((x.long(),), dict(size=3, mode="bilinear"), "floating point"),
        "empty map": ((torch.randn(1, 2, 0, 3),), dict(size=3), "non-empty"),
        "nan scale": ((x,), dict(scale_factor=float("nan")), "finite"),
        "inf scale": ((x,), dict(scale_factor=float("inf")), "finite"),
    }


@pytest.mark.parametrize("name", list(interpolate_error_cases()))
def test_interpolate_bad_arguments_raise_like_torch(name):
    args, kwargs, message = interpolate_error_cases()[name]
    with pytest.raises(Exception):  # noqa: B017 - the reference raises ValueError, RuntimeError, ...
        F.interpolate(*args, **kwargs)
    with pytest.raises((ValueError, TypeError), match=message):
        interpolate(*args, **kwargs)


# ----------------------------------------------------------------------------------------------
# FCN's bilinear initialisation
# ----------------------------------------------------------------------------------------------


def test_bilinear_filter_by_hand():
    taps4 = torch.tensor([0.25, 0.75, 0.75, 0.25], dtype=torch.float64)
    torch.testing.assert_close(bilinear_filter(4, torch.float64), taps4[:, None] * taps4, atol=0, rtol=0)
    taps3 = torch.tensor([0.5, 1.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(bilinear_filter(3, torch.float64), taps3[:, None] * taps3, atol=0, rtol=0)
    weight = fcn_bilinear_kernel(3, 4, torch.float64)
    assert weight.shape == (3, 3, 4, 4)
    for i in range(3):
        for j in range(3):
            expected = bilinear_filter(4, torch.float64) if i == j else torch.zeros(4, 4, dtype=torch.float64)
            assert torch.equal(weight[i, j], expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_fcn_kernel_is_bilinear_interpolation_inside(device, dtype, factor):
    g = torch.Generator().manual_seed(22)
    x = torch.randn(2, 3, 6, 5, generator=g, dtype=dtype).to(device)
    kernel_size, padding = 2 * factor - factor % 2, (factor - 1 + 1) // 2
    up = conv_transpose2d(x, fcn_bilinear_kernel(3, kernel_size, dtype, device), stride=factor, padding=padding)
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert up.shape == ref.shape
    # Inside: output cells whose source coordinate (dst + 0.5) / f - 0.5 lies in [0, size - 1], where
    # interpolate does not clamp to the border.
    rows = [i for i in range(ref.shape[2]) if 0 <= (i + 0.5) / factor - 0.5 <= x.shape[2] - 1]
    columns = [j for j in range(ref.shape[3]) if 0 <= (j + 0.5) / factor - 0.5 <= x.shape[3] - 1]
    inside = (slice(None), slice(None), slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))
    torch.testing.assert_close(up[inside], ref[inside], atol=TOL[dtype], rtol=TOL[dtype])
    torch.testing.assert_close(up[inside], interpolate(x, scale_factor=factor, mode="bilinear")[inside],
                               atol=TOL[dtype], rtol=TOL[dtype])
    # At the border the transposed convolution blends in the zero padding: a constant map fades there.
    ones = torch.ones(1, 3, 6, 5, dtype=dtype, device=device)
    faded = conv_transpose2d(ones, fcn_bilinear_kernel(3, kernel_size, dtype, device), stride=factor,
                             padding=padding)
    torch.testing.assert_close(faded[inside], torch.ones_like(faded[inside]))
    assert faded[0, 0, 0, columns[0]] < 1 - 0.1 and F.interpolate(ones, scale_factor=factor, mode="bilinear").min() == 1
