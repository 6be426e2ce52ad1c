"""DataLoader: wrap a Dataset, get shuffled minibatches, optionally loaded by worker processes."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from lectures_code.device import get_device
from lectures_code.lecture12.common import Timer, TrainResult, check_hyperparameters, make_regression_data
from lectures_code.lecture12.custom_modules import TwoLayerNet


# --8<-- [start:dataset]
class RegressionDataset(Dataset):
    """A map-style Dataset: __len__ and __getitem__(i) -> one (x_i [D_in], y_i [D_out]) pair."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        if len(x) != len(y):
            raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]
# --8<-- [end:dataset]


def make_loader(
    dataset: Dataset, batch_size: int = 8, shuffle: bool = True, num_workers: int = 0, seed: int = 0
) -> DataLoader:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    # --8<-- [start:loader]
    loader = DataLoader(
        dataset,
        batch_size=batch_size,     # the default collate_fn stacks samples: x [B, D_in], y [B, D_out]
        shuffle=shuffle,           # a new order every epoch, drawn from `generator`
        num_workers=num_workers,   # > 0: worker processes load batches in parallel with training
        generator=torch.Generator().manual_seed(seed),
    )
    # --8<-- [end:loader]
    return loader


def train_with_dataloader(
    N: int = 64,
    D_in: int = 1000,
    H: int = 100,
    D_out: int = 10,
    epochs: int = 20,
    batch_size: int = 8,
    learning_rate: float = 1e-2,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress=None,
) -> TrainResult:
    """Minibatch SGD over a DataLoader; the loss recorded per epoch is the mean over its batches."""
    check_hyperparameters(epochs, learning_rate)
    device = get_device(device)
    # The data stay on the CPU (as if read from disk); each batch moves to the device.
    x, y = make_regression_data(N, D_in, D_out, "cpu", seed)
    loader = make_loader(RegressionDataset(x, y), batch_size, shuffle=True, num_workers=num_workers, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TwoLayerNet(D_in, H, D_out).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)

    result = TrainResult("DataLoader + minibatch SGD", device=str(device), progress=progress)
    with Timer(device) as timer:
        # --8<-- [start:loader_loop]
        for _epoch in range(epochs):
            epoch_loss, batches = 0.0, 0
            for x_batch, y_batch in loader:                  # [B, D_in], [B, D_out]
                x_batch, y_batch = x_batch.to(device), y_batch.to(device)
                loss = torch.nn.functional.mse_loss(model(x_batch), y_batch)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                epoch_loss, batches = epoch_loss + loss.item(), batches + 1
            result.record(epoch_loss / batches)
        # --8<-- [end:loader_loop]
    result.seconds = timer.seconds
    return result
