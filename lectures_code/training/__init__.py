"""The one training loop of the notes and what surrounds it.

    recipe.py       Recipe: epochs or steps, batch size, AdamW's learning rate and weight decay, clipping
    schedule.py     warmup_cosine: linear warm-up, then cosine decay
    loop.py         fit (THE loop), optimizer_step, the per-epoch resumable state
    distributed.py  torchrun + DistributedDataParallel: process group, sharded minibatches, rank 0 writes
    records.py      run records and shipping weights with their SHA-256
    run.py          train_and_record: one `lectures train MODEL` run of a registry entry
"""

from lectures_code.training.loop import fit, optimizer_step
from lectures_code.training.recipe import Recipe
from lectures_code.training.schedule import warmup_cosine

__all__ = ["Recipe", "fit", "optimizer_step", "warmup_cosine"]
