"""One process of a torchrun job for tests/training/test_distributed.py: train the toy model with the
shared loop and let rank 0 save the final weights and the history.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/training/ddp_worker.py OUT [options]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy import Regression, TinyNet, recipe  # noqa: E402

from lectures_code.training import distributed, fit  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("out", type=Path)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=4)
parser.add_argument("--max-steps", type=int)
parser.add_argument("--checkpoint-path", type=Path)
parser.add_argument("--size", type=int, default=24, help="training examples")
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(0)
model = TinyNet()
history = fit(model, Regression(args.size), recipe(args.epochs, args.batch_size), seed=0,
              checkpoint_path=args.checkpoint_path, progress=False, max_steps=args.max_steps)
context = distributed.setup("cpu")
if context.is_main:
    torch.save({"state_dict": model.state_dict(), "history": history}, args.out)
distributed.cleanup()
