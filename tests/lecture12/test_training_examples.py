"""Lecture 12: the examples compute the right gradients and really learn."""

from __future__ import annotations

import math

import pytest
import torch

from lectures_code.examples import EXAMPLES
from lectures_code.lecture12.autograd_two_layer import train_autograd
from lectures_code.lecture12.common import make_regression_data
from lectures_code.lecture12.custom_modules import ParallelBlock, TwoLayerNet, build_parallel_model, train_custom_module
from lectures_code.lecture12.sigmoid_function import Sigmoid, sigmoid, sigmoid_python
from lectures_code.lecture12.tensors_manual_backprop import manual_gradients, train_manual_backprop


@pytest.mark.parametrize("seed", range(5))
def test_manual_gradients_equal_autograd_float64(seed, device):
    x, y = make_regression_data(N=16, D_in=50, D_out=7, device=device, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(100 + seed)
    w1 = torch.randn(50, 20, generator=g, dtype=torch.float64).to(device).requires_grad_()
    w2 = torch.randn(20, 7, generator=g, dtype=torch.float64).to(device).requires_grad_()

    loss, grad_w1, grad_w2 = manual_gradients(x, y, w1.detach(), w2.detach())
    auto_loss = (x.mm(w1).clamp(min=0).mm(w2) - y).pow(2).sum()
    auto_loss.backward()

    torch.testing.assert_close(loss, auto_loss.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(grad_w1, w1.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad_w2, w2.grad, rtol=1e-10, atol=1e-10)


def test_manual_and_autograd_training_follow_the_same_curve():
    manual = train_manual_backprop(steps=50, device="cpu", dtype=torch.float64)
    auto = train_autograd(steps=50, device="cpu", dtype=torch.float64)
    torch.testing.assert_close(torch.tensor(manual.losses), torch.tensor(auto.losses), rtol=1e-9, atol=0)


def test_sigmoid_function_passes_gradcheck():
    x = torch.randn(20, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(Sigmoid.apply, (x,), eps=1e-6, atol=1e-8)
    assert torch.autograd.gradgradcheck(sigmoid_python, (x,))


def test_sigmoid_equals_torch_and_is_one_graph_node(device):
    x = torch.linspace(-30, 30, 301, dtype=torch.float64, device=device, requires_grad=True)
    ours = sigmoid(x)
    torch.testing.assert_close(ours, torch.sigmoid(x), rtol=1e-12, atol=1e-15)
    assert type(ours.grad_fn).__name__ == "SigmoidBackward"          # our Function's node
    assert type(sigmoid_python(x).grad_fn).__name__ == "MulBackward0"   # 1 / t is recorded as t.reciprocal() * 1
    ours.sum().backward()
    expected = torch.sigmoid(x.detach()) * (1 - torch.sigmoid(x.detach()))
    torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=1e-15)


# Each example at its default settings must shrink its loss at least this many times. The factors
# are well below what the examples reach (printed by `lectures run NAME`) so that they hold on
# every device and seed, yet far above what a broken update would give.
MIN_REDUCTION = {
    "tensors": 1e6,
    "autograd": 1e6,
    "sequential": 20,
    "adam": 1e6,
    "two-layer-net": 1e6,
    "parallel-block": 1e6,
    "dataloader": 2,
    "jit-script": 100,
}


@pytest.mark.parametrize("name", sorted(MIN_REDUCTION))
@pytest.mark.parametrize("seed", [0, 1])
def test_each_example_reduces_its_loss(name, seed, device):
    example = EXAMPLES[name]
    result = example.run(steps=example.steps, learning_rate=example.learning_rate, device=device, seed=seed)
    assert len(result.losses) == example.steps
    assert all(math.isfinite(v) for v in result.losses)
    assert result.reduction > MIN_REDUCTION[name], f"{name}: only {result.reduction:.3g}x"


@pytest.fixture
def one_thread():
    """Small matrices: one thread is as fast and does not wait for a busy second core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_slides_sgd_learning_rate_barely_moves_the_mse(seed, one_thread):
    """The page: TwoLayerNet + SGD(lr=1e-4) lowers the MSE by only 5-6 % in 500 steps; lr=1e-1 learns."""
    slides = train_custom_module(optimizer_name="sgd", learning_rate=1e-4, steps=500, seed=seed, device="cpu")
    assert 0.04 < 1 - slides.losses[-1] / slides.losses[0] < 0.07
    larger = train_custom_module(optimizer_name="sgd", learning_rate=1e-1, steps=500, seed=seed, device="cpu")
    assert larger.reduction > 1e6


def test_zero_grad_sets_gradients_to_none():
    """PyTorch 2.x: optimizer.zero_grad() and model.zero_grad() default to set_to_none=True."""
    model = TwoLayerNet(10, 5, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for clear in (optimizer.zero_grad, model.zero_grad):
        model(torch.randn(4, 10)).sum().backward()
        assert all(p.grad is not None for p in model.parameters())
        clear()
        assert all(p.grad is None for p in model.parameters())


def test_progress_callback_sees_every_step():
    seen = []
    EXAMPLES["autograd"].run(steps=7, learning_rate=1e-6, device="cpu", seed=0,
                             progress=lambda step, loss: seen.append((step, loss)))
    assert [s for s, _ in seen] == list(range(1, 8))


def test_modules_register_their_parameters():
    assert len(list(TwoLayerNet(10, 5, 3).parameters())) == 4
    block = ParallelBlock(10, 5)
    assert {n for n, _ in block.named_parameters()} == {"linear1.weight", "linear1.bias",
                                                        "linear2.weight", "linear2.bias"}
    model = build_parallel_model(10, 5, 3)
    assert len(list(model.parameters())) == 10
    assert model(torch.randn(4, 10)).shape == (4, 3)
    assert (block(torch.randn(4, 10)) >= 0).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps"),
    ({"steps": -3}, "steps"),
    ({"learning_rate": -1e-3}, "learning_rate"),
    ({"learning_rate": float("nan")}, "learning_rate"),
    ({"learning_rate": float("inf")}, "learning_rate"),
])
def test_bad_hyperparameters_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_autograd(**{"steps": 5, "learning_rate": 1e-6, **kwargs})
