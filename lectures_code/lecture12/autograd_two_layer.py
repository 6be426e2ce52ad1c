"""Level 2 of PyTorch: Autograd records the graph for us; backward() fills .grad."""

from __future__ import annotations

import torch

from lectures_code.device import get_device
from lectures_code.lecture12.common import Timer, TrainResult, check_hyperparameters, make_regression_data


def train_autograd(
    N: int = 64,
    D_in: int = 1000,
    H: int = 100,
    D_out: int = 10,
    steps: int = 500,
    learning_rate: float = 1e-6,
    device: str | torch.device | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    progress=None,
) -> TrainResult:
    """Same net and data as the manual version; same seed gives the same weights."""
    check_hyperparameters(steps, learning_rate)
    device = get_device(device)
    x, y = make_regression_data(N, D_in, D_out, device, seed, dtype)
    generator = torch.Generator().manual_seed(seed + 1)
    w1 = torch.randn(D_in, H, generator=generator, dtype=dtype).to(device).requires_grad_()
    w2 = torch.randn(H, D_out, generator=generator, dtype=dtype).to(device).requires_grad_()

    result = TrainResult("autograd", device=str(device), progress=progress)
    with Timer(device) as timer:
        # --8<-- [start:autograd_loop]
        for _ in range(steps):
            y_pred = x.mm(w1).clamp(min=0).mm(w2)   # every op on w1/w2 is recorded in the graph
            loss = (y_pred - y).pow(2).sum()
            loss.backward()                          # adds dloss/dw into w1.grad, w2.grad

            with torch.no_grad():                    # the update itself must not be recorded
                w1 -= learning_rate * w1.grad
                w2 -= learning_rate * w2.grad
                w1.grad.zero_()                      # backward() accumulates: reset before the next step
                w2.grad.zero_()
            result.record(loss.item())
        # --8<-- [end:autograd_loop]
    result.seconds = timer.seconds
    return result
