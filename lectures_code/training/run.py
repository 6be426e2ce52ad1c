"""One training run of a registry entry, as ``lectures train MODEL`` does it: data, model, the shared loop,
evaluation, the run record and (with ``ship``) the checkpoint.

This module knows models only through the entry it is given (``entry.build``, ``entry.make_training_set``,
``entry.evaluation_record``): it imports no model module.
"""

from __future__ import annotations

import os
import time

import torch

from lectures_code.training import distributed, records
from lectures_code.training.loop import fit
from lectures_code.training.recipe import Recipe


def _loss_means(history: dict, first: bool, window: int = 20) -> dict:
    keys = [k for k, v in history.items() if isinstance(v, list) and k != "epoch_seconds"]
    means = {}
    for key in keys:
        part = history[key][:window] if first else history[key][-window:]
        if part:
            means[key] = round(sum(part) / len(part), 4)
    return means


def train_entry(entry, recipe: Recipe, *, device: str | torch.device = "cpu", seed: int = 0,
                checkpoint_path: str | os.PathLike | None = None, resume: bool = True, max_steps: int | None = None,
                config: dict | None = None, progress: bool = False):
    """Data, model and the shared loop for a registry entry: (model in eval mode, history, training set).

    The training set comes first and the weights are initialised right after ``torch.manual_seed(seed)``,
    so the initial weights depend on the seed only."""
    data = entry.make_training_set(recipe.num_train_images, seed, progress)
    torch.manual_seed(seed)
    model = entry.build(**(config or {}))
    history = fit(model, data, recipe, device=device, seed=seed, checkpoint_path=checkpoint_path, resume=resume,
                  progress=progress, max_steps=max_steps, desc=entry.title)
    return model, history, data


def train_and_record(entry, recipe: Recipe, *, device: str | torch.device = "cpu", seed: int = 0,
                     checkpoint_path: str | os.PathLike | None = None, resume: bool = True,
                     max_steps: int | None = None, config: dict | None = None, ship: bool = False,
                     evaluate: bool = True, command: str = "", progress: bool = True) -> dict | None:
    """Train ``entry`` with ``recipe`` and return its record (None on the processes other than rank 0).

    Every process of a torchrun job calls this with the same arguments; rank 0 evaluates (on the CPU,
    batch 1, so test latencies compare across runs), writes the record and ships the checkpoint.
    """
    context = distributed.setup(device)
    try:
        if recipe.threads > 0:
            torch.set_num_threads(recipe.threads)
        start = time.perf_counter()
        model, history, data = train_entry(entry, recipe, device=context.device, seed=seed,
                                           checkpoint_path=checkpoint_path, resume=resume, max_steps=max_steps,
                                           config=config, progress=progress and context.is_main)
        prepare_seconds = time.perf_counter() - start - history["train_seconds"]
        if not context.is_main:
            return None
        model = model.cpu()
        record = {
            "model": type(model).__name__,
            **records.run_info(command, context.device, context.world_size),
            "train_images": recipe.num_train_images,
            "epochs": recipe.epochs,
            "steps": history["steps"],
            "prepare_seconds": round(prepare_seconds, 1),
            "train_seconds": round(history["train_seconds"], 1),
            "first_loss": _loss_means(history, first=True),
            "final_loss": _loss_means(history, first=False),
            **(data.summary() if hasattr(data, "summary") else {}),
            "parameters": sum(p.numel() for p in model.parameters()),
            "settings": model.config() | recipe.as_dict() | {"seed": seed},
        }
        if evaluate:
            record |= entry.evaluation_record(model, recipe.num_test_images, progress)
        if ship:
            if not evaluate:
                raise ValueError("--ship needs the evaluation (the record states the shipped model's test results)")
            path = records.ship(entry.checkpoint, model, record, *entry.record,
                                trained_on=f"DigitCanvases train[:{recipe.num_train_images}] seed {seed}")
            print(f"shipped {path} and its record ({entry.record[0]}: {entry.record[1]})")
        return record
    finally:
        distributed.cleanup()
