"""Dynamic vs static graphs: the same loss as eager Python, TorchScript and torch.compile.

The slides' TorchScript example creates w1, w2a, w2b with ``requires_grad=True`` but has two faults,
both fixed here:
1. ``prev_loss`` has no type annotation, so TorchScript assumes it is a Tensor and rejects the
   Python float passed in; it needs ``prev_loss: float``;
2. its loop calls ``loss.backward()`` but never updates the weights; here each step takes a real
   gradient step.
(Notes that copy the example without ``requires_grad=True`` fail earlier: ``backward()`` raises.)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

from lectures_code.device import get_device
from lectures_code.lecture12.common import Timer, TrainResult, check_hyperparameters, make_regression_data


# --8<-- [start:model_with_branch]
def model(x, y, w1, w2a, w2b, prev_loss: float):
    """The graph depends on a Python value: w2 can change from step to step."""
    w2 = w2a if prev_loss < 5.0 else w2b
    y_pred = x.mm(w1).clamp(min=0).mm(w2)
    loss = (y_pred - y).pow(2).sum()
    return loss
# --8<-- [end:model_with_branch]


def scripted_model():
    """torch.jit.script compiles the Python source (control flow included) into a TorchScript graph.

    TorchScript is deprecated and warns from PyTorch 2.10 on (DeprecationWarning up to 2.13,
    FutureWarning from 2.14); the warning is silenced here so that the notes can still show it.
    New code uses torch.compile (speed) or torch.export (deployment).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        # --8<-- [start:jit_script]
        graph = torch.jit.script(model)
        # --8<-- [end:jit_script]
    return graph


def compiled_model():
    """torch.compile traces the Python code (TorchDynamo), guards on the branch, and generates kernels."""
    # --8<-- [start:torch_compile]
    compiled = torch.compile(model)
    # --8<-- [end:torch_compile]
    return compiled


RUNNERS = {"eager": lambda: model, "jit_script": scripted_model, "compile": compiled_model}


@dataclass
class StaticGraphResult(TrainResult):
    """A TrainResult that also says which second-layer weight ("w2a" or "w2b") each step used."""

    branches: list[str] = field(default_factory=list)


def initial_weights(
    D_in: int, H: int, D_out: int, device: torch.device, seed: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """w1 [D_in, H], w2a [H, D_out], w2b [H, D_out], all requiring grad.

    w1 and w2a are drawn exactly like the autograd example's W1 and W2 (same generator, same order);
    w2b is the next draw, so it is another random matrix.
    """
    generator = torch.Generator().manual_seed(seed + 1)
    w1, w2a, w2b = (
        torch.randn(*shape, generator=generator, dtype=dtype).to(device).requires_grad_()
        for shape in [(D_in, H), (H, D_out), (H, D_out)]
    )
    return w1, w2a, w2b


def train_static_graph(
    mode: str = "jit_script",
    N: int = 64,
    D_in: int = 1000,
    H: int = 100,
    D_out: int = 10,
    steps: int = 50,
    learning_rate: float = 1e-6,
    device: str | torch.device | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    progress=None,
) -> StaticGraphResult:
    """Train with the loss function run eagerly, as TorchScript, or through torch.compile.

    All three see the same data and initial weights, so their loss histories can be compared.
    """
    check_hyperparameters(steps, learning_rate)
    if mode not in RUNNERS:
        raise ValueError(f"mode must be one of {sorted(RUNNERS)}, got {mode!r}")
    device = get_device(device)
    x, y = make_regression_data(N, D_in, D_out, device, seed, dtype)
    w1, w2a, w2b = initial_weights(D_in, H, D_out, device, seed, dtype)
    loss_fn = RUNNERS[mode]()

    result = StaticGraphResult(f"static graph ({mode})", device=str(device), progress=progress)
    with Timer(device) as timer:
        # --8<-- [start:static_loop]
        prev_loss = 5.0
        for _ in range(steps):
            loss = loss_fn(x, y, w1, w2a, w2b, prev_loss)
            loss.backward()
            # Only the weight the branch used got a gradient: it tells the branch.
            result.branches.append("w2a" if w2a.grad is not None else "w2b")
            with torch.no_grad():
                for w in (w1, w2a, w2b):
                    if w.grad is not None:
                        w -= learning_rate * w.grad
                        w.grad = None
            prev_loss = loss.item()
            result.record(prev_loss)
        # --8<-- [end:static_loop]
    result.seconds = timer.seconds
    return result
