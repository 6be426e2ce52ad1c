"""Lecture 12: TorchScript and torch.compile give the eager losses; the slides' faults are real."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

from lectures_code.lecture12 import static_graphs
from lectures_code.lecture12.autograd_two_layer import train_autograd
from lectures_code.lecture12.common import make_regression_data
from lectures_code.lecture12.static_graphs import initial_weights, model, scripted_model, train_static_graph

# A problem small enough that the loss crosses 5 during training, so both branches are taken.
SMALL = {"N": 4, "D_in": 6, "H": 5, "D_out": 3, "steps": 30, "learning_rate": 1e-2}


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


@pytest.mark.parametrize("mode", ["eager", "jit_script"])
def test_recorded_branches_follow_the_previous_loss(mode):
    """The branch recorded from the gradients is the one the rule `prev_loss < 5` picks, both ways."""
    result = train_static_graph(mode, **SMALL)
    previous = [5.0] + result.losses[:-1]
    assert result.branches == ["w2a" if p < 5.0 else "w2b" for p in previous]
    assert set(result.branches) == {"w2a", "w2b"}          # this run really switches


def test_default_run_never_goes_below_five_so_only_w2b_is_used():
    """What the notebook reports: at the example's defaults every step takes the w2b branch."""
    result = train_static_graph("jit_script", steps=50, learning_rate=1e-6, seed=0)
    assert min(result.losses) > 5.0
    assert result.branches == ["w2b"] * 50


def test_with_w2a_the_static_graph_model_starts_like_the_autograd_example():
    """w1 and w2a are the autograd example's W1 and W2; only w2b is a different random matrix."""
    x, y = make_regression_data(seed=0)
    w1, w2a, w2b = initial_weights(1000, 100, 10, torch.device("cpu"), seed=0, dtype=torch.float32)
    autograd_first = train_autograd(steps=1, seed=0, device="cpu").losses[0]
    static_first = train_static_graph("eager", steps=1, seed=0, device="cpu").losses[0]
    with torch.no_grad():
        assert model(x, y, w1, w2a, w2b, 0.0).item() == autograd_first
        assert model(x, y, w1, w2a, w2b, 5.0).item() == static_first
    assert static_first != autograd_first


@pytest.mark.slow
def test_torch_compile_equals_eager():
    compiled = torch.tensor(train_static_graph("compile", steps=12).losses)
    torch.testing.assert_close(compiled, _eager_reference(12), rtol=1e-5, atol=0)
    # Where the loss crosses 5, the compiled function switches branch like eager does.
    switching, eager = train_static_graph("compile", **SMALL), train_static_graph("eager", **SMALL)
    assert switching.branches == eager.branches
    torch.testing.assert_close(torch.tensor(switching.losses), torch.tensor(eager.losses), rtol=1e-5, atol=0)


def test_torch_compile_captures_two_graphs_in_fifty_steps(monkeypatch):
    """Dynamo compiles once for the first prev_loss (a constant), once more with it dynamic, then reuses."""
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()            # a backend that only counts the graphs Dynamo hands over
    monkeypatch.setitem(static_graphs.RUNNERS, "compile", lambda: torch.compile(model, backend=counter))
    torch._dynamo.reset()
    try:
        compiled = train_static_graph("compile", steps=50)
    finally:
        torch._dynamo.reset()
    assert counter.frame_count == 2
    torch.testing.assert_close(torch.tensor(compiled.losses), _eager_reference(50), rtol=1e-5, atol=0)


def test_a_copy_without_requires_grad_fails_at_backward():
    """Notes that drop the slides' requires_grad=True get an error at backward()."""
    x, y = torch.randn(4, 6), torch.randn(4, 3)
    w1, w2a, w2b = torch.randn(6, 5), torch.randn(5, 3), torch.randn(5, 3)
    loss = model(x, y, w1, w2a, w2b, 5.0)
    with pytest.raises(RuntimeError, match="does not require grad"):
        loss.backward()


def test_the_slides_jit_example_needs_the_float_annotation():
    """The slides' fault: without `prev_loss: float`, TorchScript expects a Tensor."""
    def unannotated(x, w1, w2a, w2b, prev_loss):
        w2 = w2a if prev_loss < 5.0 else w2b
        return x.mm(w1).mm(w2).sum()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = torch.jit.script(unannotated)
    with pytest.raises(RuntimeError, match="Inferred 'prev_loss' to be of type 'Tensor'"):
        graph(torch.randn(2, 3), torch.randn(3, 4), torch.randn(4, 2), torch.randn(4, 2), 5.0)


def test_the_slides_loop_never_changes_the_weights():
    """The slides' loop (backward, then prev_loss = loss.item()) only accumulates .grad: the loss stays put."""
    x, y = torch.randn(8, 6), torch.randn(8, 3)
    w1, w2a, w2b = (torch.randn(*s, requires_grad=True) for s in [(6, 5), (5, 3), (5, 3)])
    graph = scripted_model()
    prev_loss, losses = 5.0, []
    for _ in range(3):
        loss = graph(x, y, w1, w2a, w2b, prev_loss)
        loss.backward()
        prev_loss = loss.item()
        losses.append(prev_loss)
    assert losses[0] == losses[1] == losses[2]


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        train_static_graph("trace")


# ---- TorchScript's deprecation warning, as the page states it ----------------------------------------

def _expected_torchscript_warning():
    """PyTorch 2.10 added the warning as DeprecationWarning; 2.14 made it a FutureWarning (PR #189914)."""
    major, minor = (int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    if (major, minor) < (2, 10):
        return None
    return DeprecationWarning if (major, minor) < (2, 14) else FutureWarning


@pytest.mark.parametrize("api", ["script", "trace"])
def test_torchscript_warns_with_the_category_of_this_release(api):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if api == "script":
            torch.jit.script(model)
        else:
            torch.jit.trace(lambda a: a * 2, (torch.ones(3),))
    deprecations = [w for w in caught if f"`torch.jit.{api}`" in str(w.message)]
    expected = _expected_torchscript_warning()
    if expected is None:
        assert deprecations == []
    else:
        assert deprecations, f"torch {torch.__version__}: no deprecation warning from torch.jit.{api}"
        assert {w.category for w in deprecations} == {expected}


def test_torchscript_warning_is_visible_by_default_only_as_future_warning():
    """Python's default filters hide a DeprecationWarning raised inside torch, but show a FutureWarning."""
    code = "import torch; torch.jit.trace(lambda a: a * 2, (torch.ones(3),))"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    stderr = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            check=True, timeout=120).stderr
    expected = _expected_torchscript_warning()
    shown = "`torch.jit.trace` is" in stderr
    assert shown == (expected is FutureWarning), stderr[-2000:]
