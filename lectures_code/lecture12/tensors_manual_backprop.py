"""Level 1 of PyTorch: Tensors only. A two-layer ReLU net trained with hand-written backprop.

    x [N, D_in] --mm w1--> h [N, H] --relu--> h_relu --mm w2--> y_pred [N, D_out]
    loss = sum((y_pred - y)^2)
"""

from __future__ import annotations

import torch

from lectures_code.device import get_device
from lectures_code.lecture12.common import Timer, TrainResult, check_hyperparameters, make_regression_data


# --8<-- [start:manual_gradients]
def manual_gradients(x, y, w1, w2):
    """Forward pass and the gradients of the loss w.r.t. w1 and w2, derived by hand.

    Returns (loss, grad_w1 [D_in, H], grad_w2 [H, D_out]).
    """
    h = x.mm(w1)                       # [N, H]
    h_relu = h.clamp(min=0)            # [N, H]
    y_pred = h_relu.mm(w2)             # [N, D_out]
    loss = (y_pred - y).pow(2).sum()

    grad_y_pred = 2.0 * (y_pred - y)           # dL/dy_pred       [N, D_out]
    grad_w2 = h_relu.t().mm(grad_y_pred)       # dL/dw2           [H, D_out]
    grad_h_relu = grad_y_pred.mm(w2.t())       # dL/dh_relu       [N, H]
    grad_h = grad_h_relu.clone()
    grad_h[h < 0] = 0                          # ReLU passes gradient only where its input was > 0
    grad_w1 = x.t().mm(grad_h)                 # dL/dw1           [D_in, H]
    return loss, grad_w1, grad_w2
# --8<-- [end:manual_gradients]


def train_manual_backprop(
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
    """Train the net with plain gradient descent on the hand-written gradients."""
    check_hyperparameters(steps, learning_rate)
    device = get_device(device)
    x, y = make_regression_data(N, D_in, D_out, device, seed, dtype)
    generator = torch.Generator().manual_seed(seed + 1)
    w1 = torch.randn(D_in, H, generator=generator, dtype=dtype).to(device)
    w2 = torch.randn(H, D_out, generator=generator, dtype=dtype).to(device)

    result = TrainResult("tensors + manual backprop", device=str(device), progress=progress)
    with Timer(device) as timer:
        # --8<-- [start:manual_loop]
        for _ in range(steps):
            loss, grad_w1, grad_w2 = manual_gradients(x, y, w1, w2)
            w1 -= learning_rate * grad_w1
            w2 -= learning_rate * grad_w2
            result.record(loss.item())
        # --8<-- [end:manual_loop]
    result.seconds = timer.seconds
    return result
