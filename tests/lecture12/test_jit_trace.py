"""Lecture 12: torch.jit.trace freezes the branch it saw; torch.jit.script keeps the if."""

from __future__ import annotations

import warnings

import pytest
import torch

from lectures_code.lecture12.jit_trace import trace_versus_script, traced_model
from lectures_code.lecture12.static_graphs import model


@pytest.fixture
def tensors():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 6, generator=g), torch.randn(4, 3, generator=g)
    w1, w2a, w2b = (torch.randn(*s, generator=g) for s in [(6, 5), (5, 3), (5, 3)])
    return x, y, w1, w2a, w2b


def test_script_follows_the_branch_and_trace_does_not(tensors):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        losses = trace_versus_script(*tensors)
    x, y, w1, w2a, w2b = tensors
    torch.testing.assert_close(losses["script"], losses["eager"])
    torch.testing.assert_close(losses["trace"], model(x, y, w1, w2a, w2b, 1.0))   # the w2a branch
    assert not torch.allclose(losses["trace"], losses["eager"])


def test_the_tracer_warns_about_the_python_bool(tensors):
    with pytest.warns(torch.jit.TracerWarning, match="Python boolean"):
        traced_model(*tensors, example_prev_loss=1.0)


@pytest.mark.parametrize("example_prev_loss, frozen", [(1.0, "w2a"), (100.0, "w2b")])
def test_the_traced_graph_holds_only_the_branch_taken(tensors, example_prev_loss, frozen):
    x, y, w1, w2a, w2b = tensors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = traced_model(*tensors, example_prev_loss=example_prev_loss)
    assert "prim::If" not in str(traced.graph)
    frozen_loss = model(x, y, w1, w2a, w2b, example_prev_loss)    # eager, on the branch seen while tracing
    for prev_loss in (0.0, 100.0):                                 # whatever prev_loss is now
        torch.testing.assert_close(traced(x, y, w1, w2a, w2b, torch.tensor(prev_loss)), frozen_loss)
    # The unused weight has no influence at all on the traced function.
    other = torch.randn(5, 3)
    args = (x, y, w1, other, w2b) if frozen == "w2b" else (x, y, w1, w2a, other)
    torch.testing.assert_close(traced(*args, torch.tensor(0.0)), traced(x, y, w1, w2a, w2b, torch.tensor(0.0)))
