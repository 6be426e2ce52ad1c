"""A toy regression problem for the loop's tests: its loss is a mean over examples and the model has no
BatchNorm, so N processes that average their gradients follow one process's trajectory exactly."""

from __future__ import annotations

import torch
from torch import nn

from lectures_code.data.training_set import TrainingSet
from lectures_code.training import Recipe


class Regression(TrainingSet):
    """y = x @ w / sqrt(5) + noise."""

    def __init__(self, size: int = 24, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(size, 5, generator=g)
        self.y = self.x @ torch.randn(5, 2, generator=g) / 5 ** 0.5 + 0.01 * torch.randn(size, 2, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def collate(self, indices, device):
        return {"x": self.x[indices].to(device), "y": self.y[indices].to(device)}


class TinyNet(nn.Module):
    def __init__(self, hidden: int = 8):
        super().__init__()
        self.hidden = hidden
        self.net = nn.Sequential(nn.Linear(5, hidden), nn.LayerNorm(hidden), nn.Tanh(), nn.Linear(hidden, 2))

    def forward(self, x, y=None):
        out = self.net(x)
        return out if y is None else {"loss_mse": ((out - y) ** 2).mean(), "loss_l1": 0.1 * (out - y).abs().mean()}

    def config(self) -> dict:
        return {"hidden": self.hidden}


def recipe(epochs: int = 3, batch_size: int = 4, lr: float = 3e-2) -> Recipe:
    return Recipe(num_train_images=24, epochs=epochs, batch_size=batch_size, lr=lr)
