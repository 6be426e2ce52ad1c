"""What the shared training loop (``lectures_code.training.fit``) needs from a data set.

A :class:`TrainingSet` knows three things:

- its size (``len``),
- the *global* minibatches of an epoch (:meth:`TrainingSet.batches`: lists of example indices, the
  same on every process of a distributed run, decided by the seed and the epoch only, so a resumed
  run visits the same minibatches as an uninterrupted one),
- how to turn a list of indices into the keyword arguments of the model's forward
  (:meth:`TrainingSet.collate`), on a device.

The loop shards each global minibatch across the processes of a distributed run and calls
``model(**data.collate(shard, device))``, which in train mode returns a dict of losses.
"""

from __future__ import annotations

import torch
from torch import Tensor


class TrainingSet:
    """Base class: subclasses implement ``__len__`` and :meth:`collate`, and may override :meth:`batches`."""

    def __len__(self) -> int:
        raise NotImplementedError

    def batches(self, epoch: int, batch_size: int, seed: int, steps: int | None = None) -> list[Tensor]:
        """The global minibatches of epoch ``epoch``: int64 index tensors.

        ``steps=None``: one pass over the data in a random order (``torch.randperm`` seeded by
        (seed, epoch)), cut into minibatches of ``batch_size`` (the last one may be smaller).
        ``steps=k``: ``k`` minibatches drawn with replacement from a generator seeded by (seed, epoch)
        (for recipes counted in steps rather than passes over the data).
        """
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        if steps is None:
            return list(torch.randperm(len(self), generator=generator).split(batch_size))
        return [torch.randint(0, len(self), (batch_size,), generator=generator) for _ in range(steps)]

    def collate(self, indices: Tensor, device: torch.device) -> dict:
        """The model's forward arguments for the examples ``indices`` (int64 [B]), on ``device``."""
        raise NotImplementedError


class TensorTrainingSet(TrainingSet):
    """Examples held as tensors of equal first dimension: ``TensorTrainingSet(inputs=x, labels=y)`` collates
    {"inputs": x[indices], "labels": y[indices]} on the device (the names are the forward's arguments)."""

    def __init__(self, **tensors: Tensor):
        sizes = {len(t) for t in tensors.values()}
        if not tensors or len(sizes) != 1:
            raise ValueError(f"need tensors of one common length, got {[tuple(t.shape) for t in tensors.values()]}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def collate(self, indices: Tensor, device: torch.device) -> dict:
        return {name: tensor[indices].to(device) for name, tensor in self.tensors.items()}
