"""Lecture 12: TorchScript and torch.compile give the eager losses; the slides' bugs are real."""

from __future__ import annotations

import warnings

import pytest
import torch

from lectures_code.lecture12.static_graphs import model, scripted_model, train_static_graph


def _eager_reference(steps, device="cpu"):
    return torch.tensor(train_static_graph("eager", steps=steps, device=device).losses)


def test_jit_script_equals_eager(device):
    scripted = torch.tensor(train_static_graph("jit_script", steps=30, device=device).losses)
    torch.testing.assert_close(scripted, _eager_reference(30, device), rtol=1e-5, atol=0)


def test_jit_script_keeps_the_python_branch():
    graph = scripted_model()
    x, y = torch.randn(4, 6), torch.randn(4, 3)
    w1, w2a, w2b = torch.randn(6, 5), torch.randn(5, 3), torch.randn(5, 3)
    for prev_loss in (0.0, 4.99, 5.0, 100.0):
        torch.testing.assert_close(graph(x, y, w1, w2a, w2b, prev_loss), model(x, y, w1, w2a, w2b, prev_loss))
    assert "prim::If" in str(graph.graph)     # the branch is inside the graph, not frozen


@pytest.mark.slow
def test_torch_compile_equals_eager():
    compiled = torch.tensor(train_static_graph("compile", steps=12).losses)
    torch.testing.assert_close(compiled, _eager_reference(12), rtol=1e-5, atol=0)


def test_the_slides_jit_example_fails_without_requires_grad():
    """Bug 1 of the slides: backward() on a loss whose inputs do not require grad raises."""
    x, y = torch.randn(4, 6), torch.randn(4, 3)
    w1, w2a, w2b = torch.randn(6, 5), torch.randn(5, 3), torch.randn(5, 3)
    loss = model(x, y, w1, w2a, w2b, 5.0)
    with pytest.raises(RuntimeError, match="does not require grad"):
        loss.backward()


def test_the_slides_jit_example_needs_the_float_annotation():
    """Bug 2 of the slides: without `prev_loss: float`, TorchScript expects a Tensor."""
    def unannotated(x, w1, w2a, w2b, prev_loss):
        w2 = w2a if prev_loss < 5.0 else w2b
        return x.mm(w1).mm(w2).sum()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = torch.jit.script(unannotated)
    with pytest.raises(RuntimeError, match="Inferred 'prev_loss' to be of type 'Tensor'"):
        graph(torch.randn(2, 3), torch.randn(3, 4), torch.randn(4, 2), torch.randn(4, 2), 5.0)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        train_static_graph("trace")
