"""Level 3 of PyTorch: nn.Module. A Sequential model, a loss from torch.nn.functional, manual SGD."""

from __future__ import annotations

import torch

from lectures_code.device import get_device
from lectures_code.lecture12.common import Timer, TrainResult, check_hyperparameters, make_regression_data


def build_sequential(D_in: int, H: int, D_out: int, seed: int = 0) -> torch.nn.Sequential:
    # fork_rng: seeding the model must not change the global random stream of the caller
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # --8<-- [start:sequential_model]
        model = torch.nn.Sequential(
            torch.nn.Linear(D_in, H),      # weight [H, D_in] and bias [H]: learnable parameters
            torch.nn.ReLU(),
            torch.nn.Linear(H, D_out),
        )
        # --8<-- [end:sequential_model]
    return model


def train_sequential(
    N: int = 64,
    D_in: int = 1000,
    H: int = 100,
    D_out: int = 10,
    steps: int = 500,
    learning_rate: float = 1e-2,
    device: str | torch.device | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    progress=None,
) -> TrainResult:
    """nn.Sequential + F.mse_loss, parameters updated by hand under torch.no_grad() (slides: lr 1e-2)."""
    check_hyperparameters(steps, learning_rate)
    device = get_device(device)
    x, y = make_regression_data(N, D_in, D_out, device, seed, dtype)
    model = build_sequential(D_in, H, D_out, seed).to(device=device, dtype=dtype)

    result = TrainResult("nn.Sequential + manual SGD", device=str(device), progress=progress)
    with Timer(device) as timer:
        # --8<-- [start:sequential_loop]
        for _ in range(steps):
            y_pred = model(x)
            loss = torch.nn.functional.mse_loss(y_pred, y)
            loss.backward()

            with torch.no_grad():
                for param in model.parameters():
                    param -= learning_rate * param.grad
            model.zero_grad()
            result.record(loss.item())
        # --8<-- [end:sequential_loop]
    result.seconds = timer.seconds
    return result
