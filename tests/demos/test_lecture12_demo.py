"""The Lecture 12 demo handler: results for good input, a message (never an exception) for bad input."""

from __future__ import annotations

import math

import pytest

from lectures_code.demos.lecture12_training import VARIANTS, build_demo, train


def test_good_input_gives_a_figure_and_a_summary():
    figure, summary = train("sequential", 1e-2, 40, 0)
    assert figure is not None and len(figure.axes) == 1
    assert len(figure.axes[0].lines[0].get_ydata()) == 40
    assert "缩小" in summary


@pytest.mark.parametrize("args, message", [
    (("autograd", "abc", 10, 0), "学习率 必须是数字"),
    (("autograd", None, 10, 0), "学习率 必须是数字"),
    (("autograd", math.inf, 10, 0), "有限的正数"),
    (("autograd", 100.0, 10, 0), "不能超过"),
    (("autograd", 1e-6, 2.5, 0), "步数 必须是整数"),
    (("autograd", 1e-6, None, 0), "步数 必须是整数"),
    (("autograd", 1e-6, -5, 0), "步数 必须在 1 到"),
    (("autograd", 1e-6, 10, -1), "随机种子"),
    (("compile", 1e-6, 10, 0), "未知的训练方式"),
])
def test_bad_input_gives_a_message(args, message):
    figure, summary = train(*args)
    assert figure is None and message in summary


def test_every_variant_runs_in_the_demo():
    for name in VARIANTS:
        figure, summary = train(name, 1e-6 if name in ("tensors", "autograd", "jit-script") else 1e-3, 3, 0)
        assert figure is not None, summary


def test_demo_builds():
    assert build_demo() is not None
