"""torch.optim: let an optimizer (SGD, Adam, ...) apply the update rule."""

from __future__ import annotations

import torch

from lectures_code.device import get_device
from lectures_code.lecture12.common import Timer, TrainResult, check_hyperparameters, make_regression_data
from lectures_code.lecture12.nn_sequential import build_sequential

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


def train_with_optimizer(
    N: int = 64,
    D_in: int = 1000,
    H: int = 100,
    D_out: int = 10,
    steps: int = 500,
    learning_rate: float = 1e-4,
    optimizer_name: str = "adam",
    device: str | torch.device | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    progress=None,
) -> TrainResult:
    """The Sequential model of the previous example, updated by an optimizer from torch.optim."""
    check_hyperparameters(steps, learning_rate)
    if optimizer_name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer_name!r}")
    device = get_device(device)
    x, y = make_regression_data(N, D_in, D_out, device, seed, dtype)
    model = build_sequential(D_in, H, D_out, seed).to(device=device, dtype=dtype)

    name = f"nn.Sequential + optim.{OPTIMIZERS[optimizer_name].__name__}"
    result = TrainResult(name, device=str(device), progress=progress)
    with Timer(device) as timer:
        # --8<-- [start:optimizer_loop]
        optimizer = OPTIMIZERS[optimizer_name](model.parameters(), lr=learning_rate)
        for _ in range(steps):
            y_pred = model(x)
            loss = torch.nn.functional.mse_loss(y_pred, y)
            loss.backward()

            optimizer.step()        # param <- update_rule(param, param.grad, optimizer state)
            optimizer.zero_grad()   # since PyTorch 2.0 this sets .grad to None (set_to_none=True)
            result.record(loss.item())
        # --8<-- [end:optimizer_loop]
    result.seconds = timer.seconds
    return result
