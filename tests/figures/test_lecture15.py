"""Lecture 15 figures: every number they show is computed by our ops, and agrees with PyTorch's."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lectures_code.figures import FIGURES as ALL_FIGURES
from lectures_code.figures import lecture15


def test_the_slides_1d_example_keeps_its_terms_apart():
    example = lecture15.transposed_conv_1d_example()
    a, b = example["input"][0, 0].tolist()
    x, y, z = example["kernel"][0, 0].tolist()
    assert example["output"][0, 0].tolist() == [a * x, a * y, a * z + b * x, b * y, b * z]  # [ax, ay, az+bx, by, bz]
    assert torch.equal(example["stamps"].sum(0), example["output"][0, 0])
    assert torch.equal(example["output"], F.conv_transpose1d(example["input"], example["kernel"], stride=2))


def test_the_transposed_convolution_is_the_transposed_matrix():
    example = lecture15.convolution_matrix_example()
    kernel, matrix = example["kernel"], example["matrix"]
    x = torch.arange(5.0, dtype=torch.float64)
    assert torch.equal(matrix @ x, F.conv1d(x.view(1, 1, 5), kernel, stride=2, padding=1).flatten())
    assert torch.equal(example["matrix_t_y"], example["transposed"])
    assert torch.equal(example["transposed"],
                       F.conv_transpose1d(example["y"].view(1, 1, 3), kernel, stride=2, padding=1).flatten())


def test_unpooling_example_matches_pytorchs_pooling_and_unpooling():
    example = lecture15.unpooling_example()
    _, indices = F.max_pool2d(example["before_pooling"], 2, return_indices=True)
    assert torch.equal(example["indices"], indices)
    assert torch.equal(example["max_unpool"], F.max_unpool2d(example["input"], indices, 2, output_size=(4, 4)))
    assert torch.equal(example["nearest"], F.interpolate(example["input"], scale_factor=2, mode="nearest"))
    nails = example["bed_of_nails"][0, 0]
    assert nails[::2, ::2].tolist() == [[1.0, 2.0], [3.0, 4.0]] and nails.sum() == 10


def test_checkerboard_only_where_the_stride_does_not_divide_the_kernel():
    example = lecture15.checkerboard_example()
    assert example["kernel3"][0, 0, 2:-2, 2:-2].unique().tolist() == [1.0, 2.0, 4.0]
    assert example["kernel4"][0, 0, 2:-2, 2:-2].unique().tolist() == [4.0]
    assert example["bilinear"].unique().tolist() == [1.0]
    reference = F.conv_transpose2d(torch.ones(1, 1, 8, 8), torch.ones(1, 1, 3, 3), stride=2, padding=1,
                                   output_padding=1)
    assert torch.equal(example["kernel3"], reference)


@pytest.mark.parametrize("name", sorted(lecture15.FIGURES))
def test_every_figure_renders_and_is_registered(name):
    data = lecture15.FIGURES[name]()
    assert ALL_FIGURES[name]() == data  # deterministic, and the site draws it
    if name.endswith(".png"):
        assert Image.open(io.BytesIO(data)).size[0] > 600
    else:
        assert data.lstrip().startswith(b"<?xml") and b"<svg" in data
