"""In-network upsampling (Lecture 15): transposed convolution, unpooling and interpolation.

Every op takes feature maps ``input`` [N, C, H, W] (the convolution and max unpooling also take an
unbatched [C, H, W]) on any device and returns a new tensor in ``input``'s dtype and on its device.
The semantics are those of ``torch.nn.functional`` (the tests compare to 1e-10 in float64, 1e-5 in
float32, values and gradients), which is never called here:

- ``conv_transpose2d`` / ``conv_transpose1d``: ``F.conv_transpose2d`` / ``F.conv_transpose1d``.
  Weight [C_in, C_out / groups, kH, kW] (the reverse of ``conv2d``'s [C_out, C_in / groups, kH, kW]).
  Output size per axis ``(H - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``.
  The idea is a scatter-add: input cell (i, j) stamps ``input[i, j] * kernel`` onto the output at
  (i * stride, j * stride), stamps add where they overlap, then ``padding`` cells are cut from each
  border (``output_padding`` adds zero rows / columns at the bottom / right, before the bias).
  ``conv_transpose2d_loop`` is exactly that loop, for reading; ``conv_transpose2d`` computes the
  same stamps for all cells with one matrix product and adds them with one ``scatter_add`` (below).
- ``convolution_matrix``: the matrix M of ``conv2d`` for one input size, so that ``conv2d(x)`` is
  ``M @ x.flatten()``; ``M.T @ y`` is then ``conv_transpose2d(y)`` with the same weight (the name
  "transposed convolution").
- ``bed_of_nails``: unpooling that puts each value at the top-left of its s x s block, zeros
  elsewhere (no torch counterpart: it is ``max_unpool2d`` with every index at the block's corner).
- ``max_unpool2d``: ``F.max_unpool2d``, the values go back to the positions ``max_pool2d`` took them
  from (indices flat within each [H_out, W_out] plane); everything else is 0.
- ``interpolate``: ``F.interpolate`` on [N, C, H, W] for the modes "nearest", "nearest-exact",
  "bilinear" and "bicubic" (both ``align_corners``), including PyTorch's CPU rules for the corner
  cases listed in ``interpolate``'s docstring. Each mode is separable: every output row reads a few
  input rows with weights, then every output column a few input columns.
- ``fcn_bilinear_kernel``: the initial weight of FCN's upsampling layers (Long, Shelhamer & Darrell,
  "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015, initialise them to bilinear
  interpolation; ``upsample_filt`` in their code), bilinear interpolation by an integer factor: equal
  to ``interpolate(..., "bilinear")`` except along a border about factor / 2 cells wide, where the
  transposed convolution blends in zero padding instead of repeating the edge.

Gradients: every op is a composition of differentiable torch ops (matrix products, ``scatter_add``,
``gather``, ``scatter``, slicing), so autograd gives the gradients w.r.t. the input, the weight and the
bias; there is no hand-written backward.

Speed of ``conv_transpose2d``: the stamps of all cells are one batched matrix product, weight^T
[C_out * kH * kW, C_in] times the input [C_in, H * W] per image (the multiply-adds of the convolution
itself), and one ``scatter_add`` adds each stamp value into its output cell. The backward is a
``gather`` (each stamp value's output gradient) and two matrix products. All are PyTorch's
multi-threaded kernels, like the reference's oneDNN kernel, so on a busy machine both wait for cores
alike (see ``boxes.py`` for ops that must not). The reference never materialises the stamps
(C_out * kH * kW values per input cell), so it stays faster; ``benchmarks/upsample.py`` measures by how much.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

INTERPOLATE_MODES = ("nearest", "nearest-exact", "bilinear", "bicubic")
CUBIC_A = -0.75  # the cubic kernel's free parameter, as in PyTorch (Keys, "Cubic convolution interpolation
# for digital image processing", IEEE Trans. ASSP 1981, derives -0.5 for third-order accuracy)


# ----------------------------------------------------------------------------------------------
# Argument checks shared by the ops
# ----------------------------------------------------------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ints(value, name: str, n: int = 2) -> tuple[int, ...]:
    """An int or a sequence of ``n`` ints -> a tuple of ``n`` ints (TypeError otherwise)."""
    if _is_int(value):
        return (value,) * n
    if isinstance(value, Sequence) and len(value) == n and all(_is_int(v) for v in value):
        return tuple(value)
    raise TypeError(f"{name} must be an int or a sequence of {n} ints, got {value!r}")


def _check_tensor(value, name: str) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def _check_same(input: Tensor, other: Tensor, name: str) -> None:
    if other.dtype != input.dtype:
        raise TypeError(f"{name} must have input's dtype {input.dtype}, got {other.dtype}")
    if other.device != input.device:
        raise ValueError(f"{name} is on {other.device} but input is on {input.device}")


def _batched(input: Tensor, name: str) -> tuple[Tensor, bool]:
    """Accept [N, C, H, W] or an unbatched [C, H, W]; return the 4-D tensor and whether it was unbatched."""
    if input.dim() not in (3, 4):
        raise ValueError(f"{name} expects a 3-D [C, H, W] or 4-D [N, C, H, W] input, got shape {list(input.shape)}")
    return (input.unsqueeze(0), True) if input.dim() == 3 else (input, False)


def conv_transpose_output_size(
    in_size: int, kernel_size: int, stride: int = 1, padding: int = 0, output_padding: int = 0, dilation: int = 1
) -> int:
    """Length of a transposed convolution's output along one axis (the inverse of conv2d's formula)."""
    return (in_size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1


def _conv_transpose_args(input, weight, bias, stride, padding, output_padding, groups, dilation):
    """Validate ``conv_transpose2d``'s arguments. Returns the input as [N, C, H, W], whether it was
    unbatched, stride, padding, output_padding and dilation as pairs of ints, and the output's (H, W)."""
    _check_tensor(input, "input")
    _check_tensor(weight, "weight")
    input, unbatched = _batched(input, "conv_transpose2d")
    if not input.is_floating_point():
        raise TypeError(f"input must be floating point, got dtype {input.dtype}")
    _check_same(input, weight, "weight")
    if weight.dim() != 4:
        raise ValueError(f"weight must have shape [C_in, C_out / groups, kH, kW], got {list(weight.shape)}")
    stride, padding = _ints(stride, "stride"), _ints(padding, "padding")
    output_padding, dilation = _ints(output_padding, "output_padding"), _ints(dilation, "dilation")
    if not _is_int(groups):
        raise TypeError(f"groups must be an int, got {groups!r}")
    if min(stride) < 1 or min(dilation) < 1 or groups < 1:
        raise ValueError(f"stride, dilation and groups must be positive, got stride={stride}, dilation={dilation}, "
                         f"groups={groups}")
    if min(padding) < 0 or min(output_padding) < 0:
        raise ValueError(f"padding and output_padding must be >= 0, got {padding} and {output_padding}")
    for axis in range(2):
        if output_padding[axis] >= max(stride[axis], dilation[axis]):
            raise ValueError(
                f"output_padding must be smaller than stride or dilation (the extra rows are a remainder of the "
                f"stride), got output_padding={output_padding}, stride={stride}, dilation={dilation}"
            )
    c_in, c_out_per_group, kh, kw = weight.shape
    n, channels, h, w = input.shape
    if c_in == 0 or c_in % groups:
        raise ValueError(f"weight's first dimension (input channels, {c_in}) must be a positive multiple of "
                         f"groups={groups}")
    if channels != c_in:
        raise ValueError(f"input has {channels} channels but weight {list(weight.shape)} expects {c_in}")
    if h == 0 or w == 0:
        raise ValueError(f"input must have a non-empty H x W map, got shape {list(input.shape)}")
    if bias is not None:
        _check_tensor(bias, "bias")
        _check_same(input, bias, "bias")
        if bias.shape != (c_out_per_group * groups,):
            raise ValueError(f"bias must have shape [{c_out_per_group * groups}] (output channels), got "
                             f"{list(bias.shape)}")
    out_h = conv_transpose_output_size(h, kh, stride[0], padding[0], output_padding[0], dilation[0])
    out_w = conv_transpose_output_size(w, kw, stride[1], padding[1], output_padding[1], dilation[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"the output would be {out_h} x {out_w}: padding {padding} cuts more than the "
                         f"{h} x {w} input spreads to")
    return input, unbatched, stride, padding, output_padding, dilation, (out_h, out_w)


# ----------------------------------------------------------------------------------------------
# Transposed convolution
# ----------------------------------------------------------------------------------------------


def _landing(size: int, k: int, stride: int, dilation: int, padding: int, out_size: int, device) -> Tensor:
    """Output row [k, size] where tap a of input row i lands, ``i * stride + a * dilation - padding``; -1 for
    rows outside [0, out_size) (cut off by the padding)."""
    position = torch.arange(size, device=device)[None, :] * stride + torch.arange(k, device=device)[:, None] * dilation
    position = position - padding
    return torch.where((position >= 0) & (position < out_size), position, -1)


# --8<-- [start:conv_transpose_teaching]
def conv_transpose2d_loop(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    groups: int = 1,
    dilation: int | Sequence[int] = 1,
) -> Tensor:
    """Transposed convolution as the lecture draws it: each input cell stamps "its value times the kernel"
    onto the output, ``stride`` cells further than its neighbour's stamp; overlapping stamps add up.

    One Python iteration per input cell: for reading, not for speed. Same arguments and result as
    ``conv_transpose2d``.
    """
    batched, unbatched, (sh, sw), (ph, pw), _, (dh, dw), (out_h, out_w) = _conv_transpose_args(
        input, weight, bias, stride, padding, output_padding, groups, dilation)
    n, c_in, h, w = batched.shape
    _, c_out_g, kh, kw = weight.shape
    x = batched.reshape(n, groups, c_in // groups, h, w)  # the channels of group g see only group g's kernels
    kernels = weight.reshape(groups, c_in // groups, c_out_g, kh, kw)
    # The whole canvas before cropping: the last stamp starts at (h - 1) * stride and spans a dilated kernel.
    canvas = batched.new_zeros(n, groups, c_out_g, (h - 1) * sh + dh * (kh - 1) + 1, (w - 1) * sw + dw * (kw - 1) + 1)
    for i in range(h):
        for j in range(w):
            # The cell's C_in values times the kernels, summed over the input channels: [n, groups, c_out_g, kh, kw].
            stamp = torch.einsum("ngc,gcokl->ngokl", x[:, :, :, i, j], kernels)
            canvas[:, :, :, i * sh: i * sh + dh * (kh - 1) + 1: dh, j * sw: j * sw + dw * (kw - 1) + 1: dw] += stamp
    canvas = canvas.reshape(n, groups * c_out_g, *canvas.shape[-2:])
    # ``padding`` cuts cells off every border; ``output_padding`` then adds zero rows / columns at the
    # bottom / right. F.pad with a negative amount cuts.
    out = F.pad(canvas, (-pw, out_w + pw - canvas.shape[-1], -ph, out_h + ph - canvas.shape[-2]))
    if bias is not None:
        out = out + bias[:, None, None]
    return out[0] if unbatched else out
# --8<-- [end:conv_transpose_teaching]


def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    groups: int = 1,
    dilation: int | Sequence[int] = 1,
) -> Tensor:
    """2-D transposed convolution, equal to ``torch.nn.functional.conv_transpose2d``.

    Args:
        input: [N, C_in, H, W] or unbatched [C_in, H, W], floating point; H, W >= 1.
        weight: [C_in, C_out / groups, kH, kW], input's dtype and device.
        bias: None or [C_out].
        stride: spacing of the stamps on the output (the upsampling factor), int or (sH, sW), >= 1.
        padding: cells cut off each border of the output, >= 0 (conv2d with the same padding maps the
            output's size back to the input's).
        output_padding: extra zero rows / columns at the bottom / right, < max(stride, dilation): picks
            one of the ``stride`` output sizes that conv2d maps back to the same input size.
        groups: C_in and C_out are split into ``groups`` blocks; block g of the output sees only block
            g of the input.
        dilation: spacing of the kernel taps, >= 1.

    Returns:
        [N, C_out, H_out, W_out] (or [C_out, H_out, W_out]) with H_out =
        ``(H - 1) * sH - 2 * pH + dH * (kH - 1) + output_padding_h + 1`` (>= 1, else ValueError).

    Raises TypeError / ValueError, with the reason, where F raises: wrong ranks or channel counts,
    channels not divisible by groups, non-positive stride / dilation / groups, negative padding,
    output_padding too large, an empty output. Integer tensors are refused (F accepts them on the CPU).
    """
    batched, unbatched, (sh, sw), (ph, pw), _, (dh, dw), (out_h, out_w) = _conv_transpose_args(
        input, weight, bias, stride, padding, output_padding, groups, dilation)
    n, c_in, h, w = batched.shape
    _, c_out_g, kh, kw = weight.shape
    c_in_g = c_in // groups

    # --8<-- [start:conv_transpose_fast]
    # Every cell's stamp at once: stamps[n, g, (o, a, b), (i, j)] = sum_c kernel[g, c, o, a, b] * x[n, g, c, i, j].
    kernels = weight.reshape(groups, c_in_g, c_out_g * kh * kw).transpose(1, 2)  # [G, C_out_g*kH*kW, C_in_g]
    stamps = torch.matmul(kernels, batched.reshape(n, groups, c_in_g, h * w))  # [N, G, C_out_g*kH*kW, H*W]
    stamps = stamps.reshape(n, groups * c_out_g, kh * kw * h * w)  # per output channel: (a, b, i, j)
    # Tap (a, b) of cell (i, j) lands on output cell (i*s + a*d - p, j*s + b*d - p), a flat index into the
    # output plane; taps that the padding cuts off land in a spare slot past its end, dropped afterwards.
    rows = _landing(h, kh, sh, dh, ph, out_h, input.device)  # [kH, H], -1 where cut off
    columns = _landing(w, kw, sw, dw, pw, out_w, input.device)  # [kW, W]
    inside = (rows[:, None, :, None] >= 0) & (columns[None, :, None, :] >= 0)  # [kH, kW, H, W]
    target = torch.where(inside, rows[:, None, :, None] * out_w + columns[None, :, None, :], out_h * out_w)
    canvas = stamps.new_zeros(n, groups * c_out_g, out_h * out_w + 1)
    canvas = canvas.scatter_add(2, target.reshape(1, 1, -1).expand_as(stamps), stamps)  # the overlapping stamps add
    out = canvas[:, :, :-1].reshape(n, groups * c_out_g, out_h, out_w)
    # --8<-- [end:conv_transpose_fast]
    out = out + bias[:, None, None] if bias is not None else out.contiguous()
    return out[0] if unbatched else out


def conv_transpose1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    groups: int = 1,
    dilation: int | Sequence[int] = 1,
) -> Tensor:
    """1-D transposed convolution, equal to ``torch.nn.functional.conv_transpose1d``: the slide's example
    ``conv_transpose1d([a, b], [x, y, z], stride=2) = [ax, ay, az + bx, by, bz]``.

    input [N, C_in, L] or [C_in, L], weight [C_in, C_out / groups, k], bias None or [C_out]; computed as
    ``conv_transpose2d`` on maps of height 1.
    """
    _check_tensor(input, "input")
    _check_tensor(weight, "weight")
    if input.dim() not in (2, 3):
        raise ValueError(f"conv_transpose1d expects a 2-D [C, L] or 3-D [N, C, L] input, got shape "
                         f"{list(input.shape)}")
    if weight.dim() != 3:
        raise ValueError(f"weight must have shape [C_in, C_out / groups, k], got {list(weight.shape)}")
    args = {name: (1, *_ints(value, name, 1)) for name, value in
            (("stride", stride), ("padding", padding), ("output_padding", output_padding), ("dilation", dilation))}
    args["padding"] = (0, args["padding"][1])
    args["output_padding"] = (0, args["output_padding"][1])
    out = conv_transpose2d(input.unsqueeze(-2), weight.unsqueeze(-2), bias, groups=groups, **args)
    return out.squeeze(-2)


# --8<-- [start:convolution_matrix]
def convolution_matrix(
    weight: Tensor,
    input_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> Tensor:
    """The matrix M of a convolution: ``conv2d(x, weight, None, stride, padding, dilation, groups)`` is
    ``M @ x.flatten()`` for one x of shape [C_in, H, W] (batched: ``x.flatten(1) @ M.T``).

    Args:
        weight: conv2d's weight [C_out, C_in / groups, kH, kW], or a 1-D convolution's [C_out, C_in / groups, k]
            (then ``input_size`` is the length L and the settings are single ints).
        input_size: (H, W) of the input (or L).

    Returns:
        M [C_out * H_out * W_out, C_in * H * W] in weight's dtype, on its device, differentiable w.r.t. weight.
        Row (o, y, x) holds kernel o's taps at the input cells the window at (y, x) covers; cells in the
        zero padding have no column, so their taps are dropped. ``M.T @ y.flatten()`` is
        ``conv_transpose2d(y, weight, None, stride, padding, output_padding, groups, dilation)`` with the
        output_padding that gives back H x W.
    """
    _check_tensor(weight, "weight")
    one_d = weight.dim() == 3
    if one_d:  # a 1-D convolution is a 2-D one on maps of height 1
        weight = weight.unsqueeze(-2)
        input_size, stride, padding, dilation = ((1, *_ints(v, name, 1)) for v, name in (
            (input_size, "input_size"), (stride, "stride"), (padding, "padding"), (dilation, "dilation")))
        padding = (0, padding[1])
    if weight.dim() != 4:
        raise ValueError(f"weight must have shape [C_out, C_in / groups, kH, kW], got {list(weight.shape)}")
    (h, w), (sh, sw) = _ints(input_size, "input_size"), _ints(stride, "stride")
    (ph, pw), (dh, dw) = _ints(padding, "padding"), _ints(dilation, "dilation")
    c_out, c_in_g, kh, kw = weight.shape
    if not _is_int(groups) or groups < 1 or c_out % groups:
        raise ValueError(f"groups must be a positive divisor of C_out={c_out}, got {groups!r}")
    if min(h, w, sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
        raise ValueError("input_size, stride and dilation must be positive and padding >= 0")
    out_h, out_w = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"the kernel does not fit in the padded {h} x {w} input")

    def arange(size: int) -> Tensor:
        return torch.arange(size, device=weight.device)

    # One entry per (output channel o, output cell (y, x), input channel c of o's group, tap (a, b)),
    # as broadcast index grids [C_out, H_out, W_out, C_in_g, kH, kW].
    o, y, x = arange(c_out)[:, None, None, None, None, None], arange(out_h)[:, None, None, None, None], \
        arange(out_w)[:, None, None, None]
    c, a, b = arange(c_in_g)[:, None, None], arange(kh)[:, None], arange(kw)
    in_y, in_x = y * sh - ph + a * dh, x * sw - pw + b * dw  # the input cell tap (a, b) of window (y, x) reads
    in_c = (o // (c_out // groups)) * c_in_g + c
    row = (o * out_h + y) * out_w + x
    column = (in_c * h + in_y) * w + in_x
    inside = (in_y >= 0) & (in_y < h) & (in_x >= 0) & (in_x < w)  # taps on the zero padding read nothing
    shape = (c_out, out_h, out_w, c_in_g, kh, kw)
    row, column, inside = row.expand(shape), column.expand(shape), inside.expand(shape)
    taps = weight[:, None, None].expand(shape)  # weight[o, c, a, b] at every (y, x)
    matrix = weight.new_zeros(c_out * out_h * out_w, c_in_g * groups * h * w)
    return matrix.index_put((row[inside], column[inside]), taps[inside])
# --8<-- [end:convolution_matrix]


# ----------------------------------------------------------------------------------------------
# Unpooling
# ----------------------------------------------------------------------------------------------


# --8<-- [start:bed_of_nails]
def bed_of_nails(input: Tensor, scale_factor: int | Sequence[int] = 2) -> Tensor:
    """Bed-of-nails unpooling: each value goes to the top-left cell of its s x s block, the rest is 0.

    input [N, C, H, W] (any dtype) -> [N, C, H * sH, W * sW]; differentiable (the gradient of a value is
    the output gradient at its nail). Equal to ``max_unpool2d`` with every index at its block's corner.
    """
    _check_tensor(input, "input")
    if input.dim() != 4:
        raise ValueError(f"bed_of_nails expects a 4-D [N, C, H, W] input, got shape {list(input.shape)}")
    sh, sw = _ints(scale_factor, "scale_factor")
    if min(sh, sw) < 1:
        raise ValueError(f"scale_factor must be >= 1, got {scale_factor}")
    n, c, h, w = input.shape
    out = input.new_zeros(n, c, h * sh, w * sw)
    out[:, :, ::sh, ::sw] = input  # the nails; autograd records the copy into the slice
    return out
# --8<-- [end:bed_of_nails]


def max_unpool2d(
    input: Tensor,
    indices: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    output_size: Sequence[int] | None = None,
) -> Tensor:
    """Max unpooling, equal to ``torch.nn.functional.max_unpool2d``: the partial inverse of max pooling.

    Args:
        input: [N, C, H, W] or [C, H, W], the pooled values, floating point.
        indices: int64, input's shape: from ``max_pool2d(..., return_indices=True)``, the flat position
            ``y * W_out + x`` of each value's maximum within its [H_out, W_out] plane.
        kernel_size, stride (default: kernel_size), padding: those of the max pooling, used only for the
            default output size ``(H - 1) * stride - 2 * padding + kernel_size``.
        output_size: (H_out, W_out) or (N, C, H_out, W_out), strictly between default - stride and
            default + stride per axis: pooling an odd-sized map loses its size, give it back here.

    Returns:
        [N, C, H_out, W_out] zeros with ``input``'s values at ``indices``. Positions that two pooling
        windows both picked (overlapping pooling) receive the same value twice; the gradient of each
        value is the output gradient at its position.

    Raises ValueError for an index outside [0, H_out * W_out) (F says "Found an invalid max index").
    """
    _check_tensor(input, "input")
    _check_tensor(indices, "indices")
    batched, unbatched = _batched(input, "max_unpool2d")
    if not input.is_floating_point():
        raise TypeError(f"input must be floating point, got dtype {input.dtype}")
    if indices.dtype != torch.int64:
        raise TypeError(f"indices must be int64 (max_pool2d's return_indices), got {indices.dtype}")
    if indices.shape != input.shape:
        raise ValueError(f"indices must have input's shape {list(input.shape)}, got {list(indices.shape)}")
    if indices.device != input.device:
        raise ValueError(f"indices are on {indices.device} but input is on {input.device}")
    kernel_size = _ints(kernel_size, "kernel_size")
    stride = kernel_size if stride is None else _ints(stride, "stride")
    padding = _ints(padding, "padding")
    if min(kernel_size) < 1 or min(stride) < 1 or min(padding) < 0:
        raise ValueError(f"kernel_size and stride must be positive and padding >= 0, got {kernel_size}, {stride}, "
                         f"{padding}")
    n, c, h, w = batched.shape
    default = [(size - 1) * s + k - 2 * p for size, s, k, p in zip((h, w), stride, kernel_size, padding)]
    if output_size is None:
        out_h, out_w = default
    else:
        sizes = list(output_size)
        if len(sizes) == 4:
            sizes = sizes[2:]
        if len(sizes) != 2 or not all(_is_int(v) for v in sizes):
            raise ValueError(f"output_size must be (H_out, W_out) or (N, C, H_out, W_out) ints, got {output_size!r}")
        for axis in range(2):
            low, high = default[axis] - stride[axis], default[axis] + stride[axis]
            if not low < sizes[axis] < high:
                raise ValueError(f"output_size {tuple(sizes)}: dim {axis} must be strictly between {low} and {high} "
                                 f"(the sizes max pooling could have come from)")
        out_h, out_w = sizes
    # --8<-- [start:max_unpool]
    flat = indices.reshape(n, c, h * w)
    if flat.numel() and (flat.min() < 0 or flat.max() >= out_h * out_w):  # one sync, for a clear message
        bad = flat[(flat < 0) | (flat >= out_h * out_w)][0].item()
        raise ValueError(f"index {bad} is outside the {out_h} x {out_w} output plane: pass the pooled map's size "
                         f"as output_size")
    out = batched.new_zeros(n, c, out_h * out_w)
    out = out.scatter(2, flat, batched.reshape(n, c, h * w))  # each value back where its maximum was
    out = out.reshape(n, c, out_h, out_w)
    # --8<-- [end:max_unpool]
    return out[0] if unbatched else out


# ----------------------------------------------------------------------------------------------
# Interpolation
# ----------------------------------------------------------------------------------------------


def _opmath(dtype: torch.dtype) -> torch.dtype:
    """The dtype PyTorch computes coordinates in: float64 for float64 input, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _step(in_size: int, out_size: int, scale: float | None, align_corners: bool, dtype: torch.dtype) -> Tensor:
    """Input cells per output cell (PyTorch's ``area_pixel_compute_scale``), in ``dtype`` as its kernels.

    align_corners: the corner cells' centres map onto each other, (in - 1) / (out - 1). Otherwise the
    whole extent is scaled: 1 / scale_factor when one was given (even if in * scale was rounded down to
    the output size), else in / out.
    """
    if align_corners:
        if out_size == 1:
            return torch.tensor(0.0, dtype=dtype)
        return torch.tensor(float(in_size - 1), dtype=dtype) / (out_size - 1)
    if scale is not None and scale > 0:
        return torch.tensor(1.0 / scale, dtype=dtype)
    return torch.tensor(float(in_size), dtype=dtype) / out_size


# --8<-- [start:interpolation_weights]
def source_coordinates(in_size: int, out_size: int, scale: float | None, align_corners: bool, dtype: torch.dtype,
                       device=None) -> Tensor:
    """Where each output cell's centre falls on the input axis, in input cells [out_size] (cell i has its
    centre at i). align_corners=False treats a cell as a unit square: src + 0.5 = (dst + 0.5) * step."""
    dst = torch.arange(out_size, dtype=dtype, device=device)
    step = _step(in_size, out_size, scale, align_corners, dtype).to(device)
    return step * dst if align_corners else step * (dst + 0.5) - 0.5


def linear_weights(in_size: int, out_size: int, scale: float | None, align_corners: bool, dtype: torch.dtype,
                   device=None) -> tuple[Tensor, Tensor]:
    """Linear interpolation along one axis: output cell t reads input cells ``index[t]`` [2] with
    ``weight[t]`` [2] (summing to 1). Bilinear = linear along H, then along W."""
    if in_size == out_size:  # PyTorch's CPU kernels copy (even with a scale_factor != 1 that rounds to this)
        index = torch.arange(out_size, device=device)[:, None].repeat(1, 2)
        return index, torch.tensor([1.0, 0.0], dtype=dtype, device=device).repeat(out_size, 1)
    src = source_coordinates(in_size, out_size, scale, align_corners, dtype, device).clamp(min=0)
    low = src.floor().clamp(max=in_size - 1)  # the cell at or left of src (the last one past the end)
    frac = (src - low).clamp(0, 1)  # distance from it, 0 at the last cell
    low = low.long()
    high = (low + 1).clamp(max=in_size - 1)
    return torch.stack([low, high], 1), torch.stack([1 - frac, frac], 1)


def cubic_weights(in_size: int, out_size: int, scale: float | None, align_corners: bool, dtype: torch.dtype,
                  device=None) -> tuple[Tensor, Tensor]:
    """Cubic convolution (a = -0.75, PyTorch's choice) along one axis: 4 input cells [t, 4] around the
    source, border cells repeated; the weights sum to 1 and can be negative (overshoot at edges)."""
    src = source_coordinates(in_size, out_size, scale, align_corners, dtype, device)  # not clamped: reads cell -1
    low = src.floor().clamp(max=in_size - 1)
    t = (src - low).clamp(0, 1)
    distances = torch.stack([t + 1, t, 1 - t, 2 - t], 1)  # from the 4 cells low - 1 .. low + 2
    near = ((CUBIC_A + 2) * distances - (CUBIC_A + 3)) * distances * distances + 1  # |d| <= 1
    far = ((CUBIC_A * distances - 5 * CUBIC_A) * distances + 8 * CUBIC_A) * distances - 4 * CUBIC_A  # 1 < |d| < 2
    weight = torch.where(torch.tensor([False, True, True, False], device=device), near, far)
    index = (low.long()[:, None] + torch.arange(-1, 3, device=device)).clamp(0, in_size - 1)
    return index, weight
# --8<-- [end:interpolation_weights]


def nearest_index(in_size: int, out_size: int, scale: float | None, exact: bool, device=None) -> Tensor:
    """The input cell [out_size] each output cell copies, by PyTorch's CPU rules (coordinates in float32).

    "nearest" (legacy, as OpenCV's INTER_NEAREST): floor(dst * step), which shifts the picks to the left
    (5 -> 3 picks 0, 1, 3); "nearest-exact": floor((dst + 0.5) * step), the cell whose centre is nearest
    (5 -> 3 picks 0, 2, 4). step = 1 / scale_factor if given, else in / out.
    """
    dst = torch.arange(out_size, device=device)
    if not exact and out_size == in_size:  # PyTorch's shortcuts for "nearest", kept whatever the scale_factor
        return dst
    if not exact and out_size == 2 * in_size:
        return dst // 2
    step = _step(in_size, out_size, scale, False, torch.float32).to(device)
    src = (dst.float() + 0.5) * step if exact else dst.float() * step
    return src.floor().long().clamp(max=in_size - 1)


def _resample(x: Tensor, dim: int, index: Tensor, weight: Tensor | None) -> Tensor:
    """Along ``dim`` (2 or 3): output cell t = sum_j weight[t, j] * x[index[t, j]] (a copy when weight is None).

    ``gather`` with the index broadcast over the other axes (its backward is a ``scatter_add``): on the CPU
    several times faster than ``index_select`` along an inner axis."""
    shape = list(x.shape)
    shape[dim] = index.shape[0]
    view = [1, 1, 1, 1]
    view[dim] = -1
    if weight is None:
        return x.gather(dim, index.reshape(view).expand(shape))
    out = None
    for j in range(index.shape[1]):
        term = x.gather(dim, index[:, j].reshape(view).expand(shape)) * weight[:, j].to(x.dtype).reshape(view)
        out = term if out is None else out + term
    return out


def _output_size(input: Tensor, size, scale_factor) -> tuple[tuple[int, int], tuple[float | None, float | None]]:
    if (size is None) == (scale_factor is None):
        raise ValueError("give exactly one of size or scale_factor")
    if size is not None:
        if isinstance(size, Tensor) and size.numel() == 1:
            size = int(size)
        sizes = _ints(size, "size")
        if min(sizes) < 1:
            raise ValueError(f"size must be positive, got {size!r}")
        return sizes, (None, None)
    if isinstance(scale_factor, (int, float)) and not isinstance(scale_factor, bool):
        scale_factor = (scale_factor, scale_factor)
    if (not isinstance(scale_factor, Sequence) or len(scale_factor) != 2
            or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scale_factor)):
        raise TypeError(f"scale_factor must be a number or a pair of numbers, got {scale_factor!r}")
    scales = tuple(float(s) for s in scale_factor)
    if not all(math.isfinite(s) and s > 0 for s in scales):
        raise ValueError(f"scale_factor must be finite and positive, got {scale_factor!r}")
    sizes = tuple(math.floor(n * s) for n, s in zip(input.shape[-2:], scales))
    if min(sizes) < 1:
        raise ValueError(f"scale_factor {scale_factor!r} shrinks the {tuple(input.shape[-2:])} map to {sizes}")
    return sizes, scales


def interpolate(
    input: Tensor,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
) -> Tensor:
    """Resize feature maps, equal to ``torch.nn.functional.interpolate`` on 4-D input.

    Args:
        input: [N, C, H, W] with H, W >= 1; floating point for "bilinear" / "bicubic", any dtype for
            the nearest modes.
        size: (H_out, W_out) or an int for both; or
        scale_factor: a positive number or (sH, sW): H_out = floor(H * sH). As in PyTorch, the
            coordinates then use 1 / sH, not H / H_out (they differ when H * sH is not an integer).
        mode: "nearest" (PyTorch's legacy rule, see ``nearest_index``), "nearest-exact", "bilinear",
            "bicubic" (cubic convolution, a = -0.75; can overshoot the input's range).
        align_corners: bilinear / bicubic only (None means False). True maps the centres of the corner
            cells onto each other; False scales the cells as unit squares.

    Returns:
        [N, C, H_out, W_out] in input's dtype, differentiable for the floating modes.

    PyTorch's CPU kernels' corner cases, reproduced: "nearest" and "bilinear" copy when H_out == H even
    if a scale_factor != 1 rounds to it; "nearest" takes cell dst // 2 when H_out == 2 H; coordinates
    are float32 for every dtype but float64 (always float32 in the nearest modes). Bilinear sources left
    of cell 0 read cell 0; bicubic reads the border cells repeated. PyTorch's CUDA kernels take fewer
    shortcuts (by their source: "nearest" none, "bilinear" a copy only when both axes keep their size),
    so on CUDA these corner cases can differ from F. F's bicubic backward copies the gradient when
    neither axis changes size although its forward samples at 1 / scale_factor; ours is the gradient
    of the forward (tested with gradcheck).
    """
    _check_tensor(input, "input")
    if input.dim() != 4:
        raise ValueError(f"interpolate here takes 4-D input [N, C, H, W], got shape {list(input.shape)}")
    if mode not in INTERPOLATE_MODES:
        raise ValueError(f"mode must be one of {INTERPOLATE_MODES}, got {mode!r}")
    if align_corners is not None and mode not in ("bilinear", "bicubic"):
        raise ValueError(f"align_corners applies to the bilinear and bicubic modes, not to {mode!r}")
    if not isinstance(align_corners, (bool, type(None))):
        raise TypeError(f"align_corners must be a bool or None, got {align_corners!r}")
    if input.shape[-2] == 0 or input.shape[-1] == 0:
        raise ValueError(f"input must have a non-empty H x W map, got shape {list(input.shape)}")
    if mode in ("bilinear", "bicubic") and not input.is_floating_point():
        raise TypeError(f"mode {mode!r} needs floating point input, got dtype {input.dtype}")
    (out_h, out_w), (scale_h, scale_w) = _output_size(input, size, scale_factor)
    (_, _, h, w), device = input.shape, input.device
    if mode in ("nearest", "nearest-exact"):
        exact = mode == "nearest-exact"
        rows = nearest_index(h, out_h, scale_h, exact, device)
        columns = nearest_index(w, out_w, scale_w, exact, device)
        return _resample(_resample(input, 2, rows, None), 3, columns, None)
    weights = linear_weights if mode == "bilinear" else cubic_weights
    dtype = _opmath(input.dtype)
    rows = weights(h, out_h, scale_h, bool(align_corners), dtype, device)
    columns = weights(w, out_w, scale_w, bool(align_corners), dtype, device)
    return _resample(_resample(input, 2, *rows), 3, *columns)


# --8<-- [start:fcn_bilinear_kernel]
def bilinear_filter(kernel_size: int, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """FCN's ``upsample_filt``: a [k, k] tent, 1 at the centre, falling linearly to 0 one factor away,
    where factor = ceil(k / 2). Used with stride = factor, it interpolates bilinearly between the
    stamps of neighbouring input cells."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(kernel_size, dtype=torch.float64) - center).abs() / factor  # [k]
    return (taps[:, None] * taps[None, :]).to(dtype=dtype, device=device)


def fcn_bilinear_kernel(channels: int, kernel_size: int, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """FCN's initialisation of a ``conv_transpose2d`` weight [channels, channels, k, k]: channel c is
    upsampled on its own by ``bilinear_filter(k)``, no mixing between channels.

    For an integer factor f use k = 2f - f % 2, stride f, padding ceil((f - 1) / 2): the result then equals
    ``interpolate(x, scale_factor=f, mode="bilinear")`` (align_corners=False) wherever the latter does
    not clamp to the border, i.e. except for about f / 2 cells along each edge.
    """
    if not _is_int(channels) or not _is_int(kernel_size) or channels < 1 or kernel_size < 1:
        raise ValueError(f"channels and kernel_size must be positive ints, got {channels!r} and {kernel_size!r}")
    weight = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=dtype, device=device)
    weight[range(channels), range(channels)] = bilinear_filter(kernel_size, dtype, device)
    return weight
# --8<-- [end:fcn_bilinear_kernel]
