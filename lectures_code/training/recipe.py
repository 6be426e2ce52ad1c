"""A training recipe: everything about *how* a model is trained that is not the model or its data."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("warmup_cosine", "constant")


@dataclass(frozen=True)
class Recipe:
    """How the shared loop trains a model.

    Attributes:
        num_train_images: how many training examples the data set holds (its first N).
        epochs: passes over the data (or, with ``steps_per_epoch``, blocks of that many steps).
        batch_size: the GLOBAL minibatch: a distributed run splits each one across its processes.
        lr: peak learning rate (with "warmup_cosine": linear warm-up over the first 10% of the steps, then
            cosine to 0).
        steps_per_epoch: None = one shuffled pass per epoch; k = k minibatches drawn with replacement.
        weight_decay: the optimizer's weight decay (decoupled for AdamW, L2 for Adam).
        max_grad_norm: clip the gradient norm to this (None: no clipping).
        threads: ``torch.set_num_threads`` for the CLI (0: leave as is).
        num_test_images: test examples the CLI evaluates on after training.
        optimizer: "adamw" (every model of the notes) or "adam" (Lecture 13's transfer-learning comparison).
        schedule: "warmup_cosine" or "constant".
    """

    num_train_images: int
    epochs: int
    batch_size: int
    lr: float
    steps_per_epoch: int | None = None
    weight_decay: float = 1e-4
    max_grad_norm: float | None = 10.0
    threads: int = 0
    num_test_images: int = 200
    optimizer: str = "adamw"
    schedule: str = "warmup_cosine"

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("num_train_images", "epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.steps_per_epoch is not None and (not isinstance(self.steps_per_epoch, int)
                                                 or isinstance(self.steps_per_epoch, bool)
                                                 or self.steps_per_epoch < 1):
            raise ValueError(f"steps_per_epoch must be None or a positive int, got {self.steps_per_epoch!r}")
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or value < 0 or (name == "lr" and value == 0):
                raise ValueError(f"{name} must be a finite number{' > 0' if name == 'lr' else ' >= 0'}, "
                                 f"got {value!r}")
        if self.max_grad_norm is not None and not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ValueError(f"max_grad_norm must be None or a positive number, got {self.max_grad_norm!r}")

    def with_options(self, **options) -> Recipe:
        """A copy with the given fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in options.items() if v is not None})

    def as_dict(self) -> dict:
        return asdict(self)
