"""THE training loop: every trainable model of the notes is trained by :func:`fit`.

The contract (as torchvision's detection references and PyTorch Lightning):

- the data set is a :class:`~lectures_code.data.training_set.TrainingSet`: it gives the global
  minibatches of an epoch and turns indices into the model's forward arguments;
- in train mode ``model(**batch)`` returns a dict of scalar losses; the loop sums them (the dict's
  order), backpropagates the sum and logs each one;
- a :class:`~lectures_code.training.recipe.Recipe` says how: epochs (or steps), batch size, AdamW's
  learning rate and weight decay, gradient clipping;
- a model may define ``parameter_groups(lr)`` (e.g. a smaller learning rate for a pretrained backbone)
  and override ``train()`` (e.g. to keep BatchNorm frozen while fine-tuning).

What the loop does for every model: AdamW + linear warm-up + cosine decay, gradient clipping, mixed
precision on CUDA (float16 autocast + GradScaler), determinism (initial weights from the caller's
seed, minibatches and torch's global generator reseeded from (seed, epoch) at every epoch), a
resumable checkpoint after every epoch, tqdm progress bars, a per-step loss history, ``max_steps``
for quick runs, and data parallelism under torchrun (see :mod:`lectures_code.training.distributed`).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
from torch import nn

from lectures_code.training import distributed
from lectures_code.training.recipe import Recipe
from lectures_code.training.schedule import warmup_cosine


# --8<-- [start:optimizer_step]
def optimizer_step(total: torch.Tensor, model: nn.Module, optimizer, scaler, scheduler,
                   max_grad_norm: float | None = 10.0) -> None:
    """One update from the total loss (a scalar).

    ``scaler`` is a ``torch.amp.GradScaler``, enabled only on CUDA where the forward ran under float16
    autocast: it scales the loss so small float16 gradients do not underflow, and skips the step if
    they overflowed. Gradients are unscaled before clipping, so ``max_grad_norm`` is in real units.
    """
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    if max_grad_norm is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)  # a rare bad batch must not wreck it
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
# --8<-- [end:optimizer_step]


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def load_training_state(checkpoint_path, resume: bool, run: dict, config: dict, device, parts: dict,
                        history: dict) -> tuple[dict, int]:
    """Resume from the per-epoch checkpoint if there is one: load ``parts`` (name -> object with
    ``load_state_dict``: model, optimizer, scheduler, scaler) and return (history, first epoch to run).

    A checkpoint written with other settings (``run``, ``config``) is refused rather than mixed in.
    """
    if checkpoint_path is None or not resume or not Path(checkpoint_path).is_file():
        return history, 0
    state = torch.load(checkpoint_path, map_location=device, weights_only=True)
    if state.get("run") != run or state.get("config") != config:
        raise ValueError(f"checkpoint {checkpoint_path} was made with other settings "
                         f"({state.get('run')}); pass resume=False or another checkpoint_path")
    for name, part in parts.items():
        part.load_state_dict(state[name])
    return state["history"], state["epoch"]


def save_training_state(checkpoint_path, parts: dict, epoch: int, history: dict, config: dict, run: dict) -> None:
    """Write the per-epoch checkpoint atomically (a crash mid-write leaves the previous one intact)."""
    if checkpoint_path is None:
        return
    Path(checkpoint_path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(checkpoint_path) + ".tmp")
    state = {name: part.state_dict() for name, part in parts.items()}
    torch.save(state | {"epoch": epoch, "history": history, "config": config, "run": run}, tmp)
    os.replace(tmp, checkpoint_path)


def make_optimizer(module: nn.Module, recipe: Recipe, total_steps: int):
    """The recipe's optimizer over the module's trainable parameters (or its ``parameter_groups(lr)``) and
    its schedule over ``total_steps``."""
    if hasattr(module, "parameter_groups"):
        params = module.parameter_groups(recipe.lr)
    else:
        params = [p for p in module.parameters() if p.requires_grad]
    if recipe.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        optimizer = torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.schedule == "warmup_cosine":
        return optimizer, warmup_cosine(optimizer, total_steps)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def _config_of(model: nn.Module) -> dict:
    config = getattr(model, "config", None)
    return config() if callable(config) else {}


def fit(
    model: nn.Module,
    data,
    recipe: Recipe,
    device: str | torch.device = "cpu",
    seed: int = 0,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
    max_steps: int | None = None,
    desc: str | None = None,
    on_epoch_end=None,
) -> dict:
    """Train ``model`` in place on ``data`` with ``recipe``; returns the history.

    Seed before building the model (``torch.manual_seed(seed)``) for reproducible initial weights; the
    loop reseeds torch's global generator at every epoch (samplers and dropout inside the model draw
    from it) and takes the minibatches from ``data.batches(epoch, ...)``, so a run is deterministic and a
    resumed run repeats an uninterrupted one. With ``checkpoint_path`` {"model", "optimizer",
    "scheduler", "scaler", "epoch", "history", "config", "run"} is written after every completed epoch
    (rank 0 only). ``max_steps`` stops early, without saving the unfinished epoch. ``on_epoch_end(epoch,
    model)`` (1-based epoch) runs after each finished epoch, outside its timing (e.g. a test evaluation).

    Under torchrun every process calls ``fit`` the same way: the model is wrapped in
    DistributedDataParallel and each process trains on its share of every global minibatch.

    Returns:
        history: {loss name: per-step list (mean over processes), "total": per-step list,
        "epoch_seconds": list, "train_seconds", "steps", "device", "world_size"}. The model ends in eval mode.
    """
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a Recipe, got {type(recipe).__name__}")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be None or a positive int, got {max_steps!r}")
    context = distributed.setup(device)
    device = context.device
    use_amp = device.type == "cuda"
    model.to(device)
    module = model
    if context.distributed:
        model = nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if use_amp else None)

    steps_per_epoch = len(data.batches(0, recipe.batch_size, seed, recipe.steps_per_epoch))
    optimizer, scheduler = make_optimizer(module, recipe, recipe.epochs * steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    run = {"num_train_images": len(data), "seed": seed, **{k: v for k, v in recipe.as_dict().items()
                                                            if k not in ("threads", "num_test_images")}}
    config = _config_of(module)
    parts = {"model": module, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    history, first_epoch = load_training_state(checkpoint_path, resume, run, config, device, parts,
                                               {"total": [], "epoch_seconds": []})
    name = desc or type(module).__name__
    bar = None
    if progress and context.is_main:  # one bar for the whole run, the epoch in its postfix
        from tqdm import tqdm

        bar = tqdm(total=recipe.epochs * steps_per_epoch, initial=first_epoch * steps_per_epoch, desc=name,
                   unit="step", dynamic_ncols=True)

    step, stop = 0, False
    for epoch in range(first_epoch, recipe.epochs):
        epoch_start = time.perf_counter()
        model.train()
        torch.manual_seed(seed * 1000 + epoch)  # samplers and dropout draw from the global generator
        batches = data.batches(epoch, recipe.batch_size, seed, recipe.steps_per_epoch)
        finished = True
        for position, indices in enumerate(batches):
            if len(indices) < context.world_size:  # a last minibatch smaller than the number of processes:
                continue  # every process skips it (one with an empty share would leave the others waiting)
            shard = distributed.shard(indices, context)
            # --8<-- [start:train_step]
            batch = data.collate(shard, device)  # the model's forward arguments, on the device
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                losses = model(**batch)  # train mode: {"loss_name": scalar, ...}
            total = sum(losses.values())
            optimizer_step(total, model, optimizer, scaler, scheduler, recipe.max_grad_norm)
            # --8<-- [end:train_step]
            logged = distributed.mean_over_processes(
                torch.stack([total.detach().float(), *(v.detach().float() for v in losses.values())]), context)
            for key, value in zip(("total", *losses), logged.tolist()):
                history.setdefault(key, []).append(value)
            if bar is not None:
                window = history["total"][-20:]
                bar.set_postfix(epoch=f"{epoch + 1}/{recipe.epochs}", loss=f"{sum(window) / len(window):.3f}",
                                refresh=False)
                bar.update()
            step += 1
            if max_steps is not None and step >= max_steps:
                stop, finished = True, position == len(batches) - 1
                break
        history["epoch_seconds"].append(time.perf_counter() - epoch_start)
        if finished:  # an unfinished epoch is not saved: a resumed run redoes it from its start
            if context.is_main:
                save_training_state(checkpoint_path, parts, epoch + 1, history, config, run)
            distributed.barrier(context)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, module)
        if stop:
            break

    if bar is not None:
        bar.close()
    history.update(train_seconds=float(sum(history["epoch_seconds"])), steps=len(history["total"]),
                   device=str(device), world_size=context.world_size)
    if history["total"] and not math.isfinite(history["total"][-1]):
        print(f"warning: the loss of {name} became {history['total'][-1]}: lower the learning rate")
    module.eval()
    return history
