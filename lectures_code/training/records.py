"""Training records: what a run was (command, machine, recipe) and what it gave, merged into a JSON file
that the pages' tables and figures read; and shipping the trained weights with their hash."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

from lectures_code import checkpoints, results


def run_info(command: str, device, world_size: int = 1) -> dict:
    """The command that reproduces this run and where it ran."""
    return {"command": command, "device": str(device), "world_size": world_size,
            "cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine()}


def command_line(argv: list[str] | None) -> str:
    """``lectures`` + the arguments of this process (what a reader types to repeat it)."""
    return "lectures " + shlex.join(sys.argv[1:] if argv is None else argv)


def update_record(key: str, record: dict, path: str | os.PathLike) -> None:
    """Merge ``{key: record}`` into the JSON file at ``path`` (other keys are kept)."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[key] = record
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def ship(checkpoint: str, model: torch.nn.Module, record: dict, record_file: str, record_key: str,
         trained_on: str) -> Path:
    """Save ``<checkpoint>.pt`` (state_dict + plain metadata, hash in SHA256SUMS) where ``--ship`` writes
    (:func:`lectures_code.checkpoints.ship_dir`) and merge the record into its results file. Returns the path."""
    config = model.config()
    test = record.get("test", {})
    metadata = {"config": config, "trained_on": trained_on, "command": record["command"],
                **{f"test_{k}": v for k, v in test.items() if k in ("AP", "AP50", "accuracy", "mean_iou")}}
    path = checkpoints.ship_dir() / f"{checkpoint}.pt"
    digest = checkpoints.save_checkpoint(model.state_dict(), metadata, path)
    record["checkpoint"] = {"file": path.name, "sha256": digest, "bytes": path.stat().st_size}
    update_record(record_key, record, results.write_path(record_file))
    return path
