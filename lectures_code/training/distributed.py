"""Data-parallel training on several processes with PyTorch's own engine (torchrun + DistributedDataParallel).

``torchrun`` (``python -m torch.distributed.run``) starts N copies of the same command and gives each
one RANK, LOCAL_RANK and WORLD_SIZE in its environment. Each process then

1. joins the process group (gloo on CPU, NCCL on CUDA, one GPU per process: ``cuda:LOCAL_RANK``),
2. builds the same model from the same seed (DistributedDataParallel also broadcasts rank 0's weights),
3. takes ITS share of every global minibatch (:func:`shard`): the minibatch order depends only on the
   seed and the epoch, so all processes agree on it without talking,
4. runs forward and backward on its share; DDP averages the gradients of all processes during backward,
   so every process applies the same update and the weights stay identical everywhere.

With equal shares and a loss that is a mean over examples, the averaged gradient is exactly the gradient
of the whole global minibatch: N processes follow the same trajectory as one process (tested). Only
rank 0 prints, writes checkpoints and records (:func:`is_main`).

One machine: ``lectures train MODEL --nproc 2``. Several machines: see the README (``torchrun --nnodes``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class Context:
    """Where this process stands: rank in 0..world_size-1 and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True inside a process started by torchrun with more than one process in the job."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str | torch.device = "cpu") -> Context:
    """Join the process group if torchrun started this process (idempotent), and pick its device.

    ``device`` is the device type the user asked for: "cpu" (gloo backend) or "cuda" (NCCL, this
    process's GPU is ``cuda:LOCAL_RANK``). Without torchrun: a one-process context on ``device``.
    """
    device = torch.device(device)
    if not launched_by_torchrun():
        return Context(device=device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"distributed training runs on cpu (gloo) or cuda (NCCL), not {device.type}")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Context(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=device)


def cleanup() -> None:
    """Leave the process group (the last call of a distributed run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(indices: Tensor, context: Context) -> Tensor:
    """This process's share of a global minibatch: contiguous, sizes differing by at most one."""
    if not context.distributed:
        return indices
    return indices.tensor_split(context.world_size)[context.rank]


def mean_over_processes(values: Tensor, context: Context) -> Tensor:
    """The mean over all processes of a small tensor (for logging losses); a no-op on one process."""
    if not context.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)  # gloo has no AVG
    return values / context.world_size


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()
