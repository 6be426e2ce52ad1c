"""Lecture 15 figures: in-network upsampling, drawn from our own ops (``lectures_code.ops.upsample``).

Every ``figure_*`` returns the bytes of one deterministic file. The numbers in the cells are computed by
the ops the page explains, not typed: the 1-D transposed convolution, the convolution matrix and its
transpose, the three unpoolings, the checkerboard of overlapping transposed-convolution stamps.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

import lectures_code.plotting  # noqa: F401  (Agg off-screen backend and the CJK font)
from lectures_code.figures.lecture13 import _png, _svg
from lectures_code.ops.upsample import (
    bed_of_nails,
    conv_transpose1d,
    conv_transpose2d,
    convolution_matrix,
    interpolate,
    max_unpool2d,
)


def _grid(ax, values: torch.Tensor, title: str, highlight: torch.Tensor | None = None, fmt: str = "{:g}",
          cmap: str = "Blues") -> None:
    """A small matrix as coloured cells with its numbers written in."""
    array = values.detach().double().numpy()
    ax.imshow(array, cmap=cmap, vmin=min(0.0, float(array.min())), vmax=max(1e-9, float(array.max())))
    for (row, col), value in np.ndenumerate(array):
        ax.text(col, row, fmt.format(value), ha="center", va="center", fontsize=10,
                color="white" if value > 0.6 * array.max() and array.max() > 0 else "black")
        if highlight is not None and bool(highlight[row, col]):
            ax.add_patch(Rectangle((col - 0.45, row - 0.45), 0.9, 0.9, fill=False, edgecolor="#d62728", linewidth=2))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)


def unpooling_example() -> dict[str, torch.Tensor]:
    """The three unpoolings of one 2x2 map, and the max pooling whose positions max unpooling remembers."""
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # [1, 1, 2, 2]
    before_pooling = torch.tensor([[[[1.0, 6.0, 3.0, 4.0], [5.0, 2.0, 0.0, 8.0],
                                     [7.0, 3.0, 9.0, 1.0], [2.0, 4.0, 5.0, 6.0]]]])  # [1, 1, 4, 4]
    # The positions of the maxima of a 2x2, stride-2 max pooling (the encoder's pooling).
    blocks = before_pooling.unfold(2, 2, 2).unfold(3, 2, 2).reshape(1, 1, 2, 2, 4)  # [1, 1, 2, 2, 4]
    within = blocks.argmax(-1)  # [1, 1, 2, 2]: 0..3 inside each block
    rows = torch.arange(2).view(2, 1) * 2 + within // 2
    cols = torch.arange(2).view(1, 2) * 2 + within % 2
    indices = rows * 4 + cols  # flat position in the 4x4 plane, as max_pool2d(return_indices=True) gives
    return {
        "input": features,
        "nearest": interpolate(features, scale_factor=2, mode="nearest"),
        "bed_of_nails": bed_of_nails(features, 2),
        "before_pooling": before_pooling,
        "indices": indices,
        "max_unpool": max_unpool2d(features, indices, kernel_size=2, output_size=(4, 4)),
    }


def figure_unpooling() -> bytes:
    """SVG: nearest-neighbour unpooling, bed of nails, and max unpooling with the remembered positions."""
    example = unpooling_example()
    fig = Figure(figsize=(12.5, 3.4), layout="constrained")
    axes = fig.subplots(1, 5)
    _grid(axes[0], example["input"][0, 0], "输入 2×2")
    _grid(axes[1], example["nearest"][0, 0], "最近邻反池化\n(Nearest Neighbor)")
    _grid(axes[2], example["bed_of_nails"][0, 0], "钉床反池化\n(Bed of Nails)")
    before = example["before_pooling"][0, 0]
    maxima = torch.zeros(16, dtype=torch.bool)
    maxima[example["indices"].flatten()] = True
    _grid(axes[3], before, "编码器里最大池化之前\n(红框：每块的最大值)", highlight=maxima.view(4, 4), cmap="Greys")
    _grid(axes[4], example["max_unpool"][0, 0], "最大反池化\n(放回记下的位置)", highlight=maxima.view(4, 4))
    fig.suptitle("三种反池化：把 2×2 放大到 4×4", fontsize=11)
    return _svg(fig)


def transposed_conv_1d_example() -> dict[str, torch.Tensor]:
    """The slide's example with numbers that keep the terms apart: input [a, b] = [2, 3], kernel
    [x, y, z] = [1, 10, 100], stride 2 -> [ax, ay, az + bx, by, bz] = [2, 20, 203, 30, 300]."""
    x = torch.tensor([[[2.0, 3.0]]])  # [N=1, C=1, L=2]
    kernel = torch.tensor([[[1.0, 10.0, 100.0]]])  # [C_in=1, C_out=1, k=3]
    stamps = torch.zeros(2, 5)
    for i in range(2):  # each input value stamps value * kernel, 2 cells (the stride) further along
        stamps[i, 2 * i:2 * i + 3] = x[0, 0, i] * kernel[0, 0]
    return {"input": x, "kernel": kernel, "stamps": stamps, "output": conv_transpose1d(x, kernel, stride=2)}


def figure_transposed_conv_1d() -> bytes:
    """SVG: each input value stamps a scaled copy of the kernel; the stamps overlap and add up."""
    example = transposed_conv_1d_example()
    output = example["output"][0, 0]
    fig = Figure(figsize=(8.5, 3.2), layout="constrained")
    ax = fig.subplots()
    rows = [("a · [x, y, z]  (a = 2)", example["stamps"][0]), ("b · [x, y, z]  (b = 3)", example["stamps"][1]),
            ("输出 = 两行之和", output)]
    symbols = [["ax", "ay", "az", "", ""], ["", "", "bx", "by", "bz"], ["ax", "ay", "az+bx", "by", "bz"]]
    for r, ((label, values), names) in enumerate(zip(rows, symbols)):
        for c, value in enumerate(values.tolist()):
            filled = names[c] != ""
            colour = "#fdd0a2" if r == 2 else ("#c6dbef" if filled else "white")
            ax.add_patch(Rectangle((c, -r - 0.9), 0.95, 0.8, facecolor=colour, edgecolor="#555555"))
            if filled:
                ax.text(c + 0.47, -r - 0.5, f"{names[c]}\n= {value:g}", ha="center", va="center", fontsize=9)
        ax.text(-0.15, -r - 0.5, label, ha="right", va="center", fontsize=10)
    ax.set_xlim(-3.4, 5.1)
    ax.set_ylim(-3.1, 0.2)
    ax.axis("off")
    ax.set_title("转置卷积（一维，步长 2）：输入 [a, b]，卷积核 [x, y, z]，重叠处相加", fontsize=11)
    return _svg(fig)


def convolution_matrix_example() -> dict[str, torch.Tensor]:
    """A 1-D convolution (kernel [1, 2, 3], stride 2, padding 1) on 5 inputs as its matrix M [3, 5]; M.T
    applied to 3 values equals the transposed convolution with the same kernel."""
    kernel = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=torch.float64)  # conv weight [C_out, C_in, k]
    matrix = convolution_matrix(kernel, 5, stride=2, padding=1)  # [3, 5]
    y = torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64)
    transposed = conv_transpose1d(y.view(1, 1, 3), kernel, stride=2, padding=1).flatten()  # [5]
    return {"kernel": kernel, "matrix": matrix, "y": y, "matrix_t_y": matrix.T @ y, "transposed": transposed}


def figure_convolution_matrix() -> bytes:
    """SVG: the matrix of a stride-2 convolution and its transpose, the matrix of the transposed convolution."""
    example = convolution_matrix_example()
    fig = Figure(figsize=(9.5, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[5, 3])
    _grid(left, example["matrix"], "卷积（核 [1, 2, 3]，步长 2，填充 1）的矩阵 M：3×5\n输出 = M · 输入")
    _grid(right, example["matrix"].T, "转置 $M^\\top$：5×3\n转置卷积的输出 = $M^\\top$ · 输入")
    return _svg(fig)


def checkerboard_example(size: int = 8) -> dict[str, torch.Tensor]:
    """A constant map upsampled x2 by transposed convolutions with an all-ones kernel: kernel 3 (not a
    multiple of the stride: the stamps overlap unevenly) and kernel 4 (even overlap), and by bilinear
    interpolation."""
    ones = torch.ones(1, 1, size, size)
    return {
        "kernel3": conv_transpose2d(ones, torch.ones(1, 1, 3, 3), stride=2, padding=1, output_padding=1),
        "kernel4": conv_transpose2d(ones, torch.ones(1, 1, 4, 4), stride=2, padding=1),
        "bilinear": interpolate(ones, scale_factor=2, mode="bilinear", align_corners=False),
    }


def figure_checkerboard() -> bytes:
    """PNG: the checkerboard artefact of a transposed convolution whose kernel size the stride does not divide."""
    example = checkerboard_example()
    fig = Figure(figsize=(11.5, 4.0), layout="constrained")
    axes = fig.subplots(1, 3)
    titles = {"kernel3": "转置卷积 3×3，步长 2：重叠不均 → 棋盘格", "kernel4": "转置卷积 4×4，步长 2：内部重叠均匀",
              "bilinear": "双线性插值 ×2：处处相同"}
    for ax, (name, title) in zip(axes, titles.items()):
        values = example[name][0, 0]
        image = ax.imshow(values.numpy(), cmap="viridis", vmin=0, vmax=float(example["kernel4"].max()))
        interior = values[2:-2, 2:-2].unique().tolist()  # the border has fewer overlapping stamps anyway
        ax.set_title(f"{title}\n（内部取值 {', '.join(f'{v:g}' for v in interior)}）", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes, shrink=0.8)
    fig.suptitle("输入是常数图、卷积核全为 1：输出若不是常数，就是卷积核的叠加不均匀", fontsize=11)
    return _png(fig)


def figure_interpolation() -> bytes:
    """PNG: a 6x6 patch of a digit upsampled x8 by nearest neighbour, bilinear and bicubic interpolation."""
    from lectures_code.data.digit_canvases import load_mnist_subset

    digits, _ = load_mnist_subset()
    patch = torch.from_numpy(digits[0].astype(np.float32) / 255)[8:14, 8:14][None, None]  # [1, 1, 6, 6]
    fig = Figure(figsize=(12.0, 3.4), layout="constrained")
    axes = fig.subplots(1, 4)
    panels = [("输入 6×6", patch)] + [
        (f"{label} ×8", interpolate(patch, scale_factor=8, mode=mode,
                                    align_corners=None if mode == "nearest" else False))
        for label, mode in (("最近邻", "nearest"), ("双线性", "bilinear"), ("双三次", "bicubic"))]
    for ax, (title, values) in zip(axes, panels):
        ax.imshow(values[0, 0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{title}（取值 {float(values.min()):.2f}–{float(values.max()):.2f}）", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("插值放大：双三次比双线性更平滑，但可能越过输入的取值范围", fontsize=11)
    return _png(fig)


FIGURES = {
    "lecture15-unpooling.svg": figure_unpooling,
    "lecture15-transposed-conv-1d.svg": figure_transposed_conv_1d,
    "lecture15-convolution-matrix.svg": figure_convolution_matrix,
    "lecture15-checkerboard.png": figure_checkerboard,
    "lecture15-interpolation.png": figure_interpolation,
}
