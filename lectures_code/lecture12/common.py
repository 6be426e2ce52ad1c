"""What every Lecture 12 example shares: its random regression data and the result it returns."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lectures_code.device import get_device


@dataclass
class TrainResult:
    """Loss after each step (float, before the update of that step), wall time and device used."""

    name: str
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    progress: Callable[[int, float], None] | None = field(default=None, repr=False, compare=False)

    def record(self, loss: float) -> None:
        """Keep one step's loss and tell the progress callback (a CLI progress bar, a demo), if any."""
        self.losses.append(loss)
        if self.progress is not None:
            self.progress(len(self.losses), loss)

    @property
    def reduction(self) -> float:
        """First loss divided by last loss: how many times smaller the loss became."""
        return self.losses[0] / max(self.losses[-1], 1e-30)


def make_regression_data(
    N: int = 64,
    D_in: int = 1000,
    D_out: int = 10,
    device: str | torch.device | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs x [N, D_in] and targets y [N, D_out], as on the slides, reproducible by seed."""
    device = get_device(device)
    generator = torch.Generator().manual_seed(seed)
    # Drawn on the CPU and then moved, so the same seed gives the same data on every device.
    x = torch.randn(N, D_in, generator=generator, dtype=dtype).to(device)
    y = torch.randn(N, D_out, generator=generator, dtype=dtype).to(device)
    return x, y


def check_hyperparameters(steps: int, learning_rate: float) -> None:
    """Reject values that would make a training loop meaningless, with a message a reader understands."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0 and learning_rate < float("inf")):
        raise ValueError(f"learning_rate must be a finite positive number, got {learning_rate!r}")


class Timer:
    """Wall-clock timer that waits for queued GPU work, so CUDA timings are real."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> Timer:
        self._sync()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._sync()
        self.seconds = time.perf_counter() - self.start

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()
