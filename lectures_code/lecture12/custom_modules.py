"""Custom nn.Module subclasses: TwoLayerNet, and ParallelBlock composed inside nn.Sequential."""

from __future__ import annotations

import torch

from lectures_code.device import get_device
from lectures_code.lecture12.common import Timer, TrainResult, check_hyperparameters, make_regression_data
from lectures_code.lecture12.optimizers import OPTIMIZERS


# --8<-- [start:two_layer_net]
class TwoLayerNet(torch.nn.Module):
    def __init__(self, D_in: int, H: int, D_out: int):
        super().__init__()                       # must run first: it sets up parameter registration
        self.linear1 = torch.nn.Linear(D_in, H)  # assigning a Module registers its parameters
        self.linear2 = torch.nn.Linear(H, D_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # x [N, D_in] -> [N, D_out]
        h_relu = self.linear1(x).clamp(min=0)
        return self.linear2(h_relu)
# --8<-- [end:two_layer_net]


# --8<-- [start:parallel_block]
class ParallelBlock(torch.nn.Module):
    """Two linear layers side by side, combined by an elementwise product, then ReLU."""

    def __init__(self, D_in: int, D_out: int):
        super().__init__()
        self.linear1 = torch.nn.Linear(D_in, D_out)
        self.linear2 = torch.nn.Linear(D_in, D_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # x [N, D_in] -> [N, D_out]
        h1 = self.linear1(x)
        h2 = self.linear2(x)
        return (h1 * h2).clamp(min=0)


def build_parallel_model(D_in: int, H: int, D_out: int) -> torch.nn.Sequential:
    # A custom Module is used inside a container like any built-in layer.
    return torch.nn.Sequential(
        ParallelBlock(D_in, H),
        ParallelBlock(H, H),
        torch.nn.Linear(H, D_out),
    )
# --8<-- [end:parallel_block]


MODELS = {"two_layer_net": TwoLayerNet, "parallel_block": build_parallel_model}


def train_custom_module(
    model_name: str = "two_layer_net",
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
    """Train TwoLayerNet or the ParallelBlock model with SGD or Adam on the shared random data.

    The slides pair TwoLayerNet with SGD at lr 1e-4, which barely moves a mean-squared error in 500
    steps; ``optimizer_name="sgd", learning_rate=1e-1`` (or Adam at 1e-4) shows it learning.
    """
    check_hyperparameters(steps, learning_rate)
    if model_name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {model_name!r}")
    if optimizer_name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer_name!r}")
    device = get_device(device)
    x, y = make_regression_data(N, D_in, D_out, device, seed, dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MODELS[model_name](D_in, H, D_out).to(device=device, dtype=dtype)

    name = f"{model_name} + optim.{OPTIMIZERS[optimizer_name].__name__}"
    result = TrainResult(name, device=str(device), progress=progress)
    with Timer(device) as timer:
        optimizer = OPTIMIZERS[optimizer_name](model.parameters(), lr=learning_rate)
        for _ in range(steps):
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            result.record(loss.item())
    result.seconds = timer.seconds
    return result
