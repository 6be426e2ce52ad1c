"""What the detectors' training commands share (``python -m lectures_code.detection.<model>``).

Each command trains on the digit canvases, evaluates on the test split with our coco_evaluate, and
with ``--ship`` saves the checkpoint (lectures_code/checkpoints/, hash in SHA256SUMS) and merges its
record into a docs/data/*.json file that the pages' tables read.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

COCO_STAT_NAMES = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100", "AR_small",
                   "AR_medium", "AR_large"]


def progress_bar(iterable, enabled: bool, desc: str, total: int | None = None):
    """A tqdm bar around ``iterable`` when ``enabled`` (training, rendering, evaluation), else the iterable."""
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, dynamic_ncols=True)


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


def digit_coco_ap(dataset, detections: list[dict]) -> dict:
    """Our coco_evaluate on a DigitCanvases split: the 12 stats and AP per digit ("0".."9")."""
    from lectures_code.data.digit_canvases import to_coco
    from lectures_code.metrics.coco_eval import coco_evaluate

    evaluation = coco_evaluate(to_coco(dataset), detections)
    return {
        "stats": [float(s) for s in evaluation["stats"]],
        "per_class_ap": {str(category_id - 1): {k: float(v) for k, v in ap.items()}
                         for category_id, ap in evaluation["per_class_ap"].items()},
    }


def check_recipe(num_train_images: int, epochs: int, batch_size: int, lr: float) -> None:
    """Raise ValueError unless the counts are positive ints and ``lr`` a positive finite number."""
    for name, value in (("num_train_images", num_train_images), ("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")


def training_parts(model: torch.nn.Module, lr: float, total_steps: int, use_amp: bool):
    """The detectors' shared recipe: AdamW (weight decay 1e-4), linear warm-up then cosine decay over
    ``total_steps`` (Lecture 13's ``warmup_cosine``), and a GradScaler enabled only for CUDA float16."""
    from lectures_code.detection.single_object import warmup_cosine

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = warmup_cosine(optimizer, total_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    return optimizer, scheduler, scaler


# --8<-- [start:optimizer_step]
def optimizer_step(total: torch.Tensor, model: torch.nn.Module, optimizer, scaler, scheduler,
                   max_grad_norm: float = 10.0) -> None:
    """One update of every detector's training loop from its total loss (a scalar).

    ``scaler`` is a ``torch.amp.GradScaler``, enabled only on CUDA where the forward ran under float16
    autocast: it scales the loss so small float16 gradients do not underflow, and skips the step if
    they overflowed. Gradients are unscaled before clipping, so ``max_grad_norm`` is in real units.
    """
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)  # a rare bad batch must not wreck the weights
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
# --8<-- [end:optimizer_step]


def evaluate_on_canvases(detect, device, num_test_images: int, split: str = "test", seed: int = 0,
                         progress: bool = False, desc: str | None = None) -> dict:
    """COCO box AP of a detector on the first ``num_test_images`` canvases of a DigitCanvases split.

    ``detect(index, image)`` gets one canvas (float [3, H, W] in [0, 1], on the CPU) and returns
    {"boxes": [D, 4] xyxy pixels, "scores": [D], "labels": [D] digits 0..9}; each call is timed (CUDA
    synchronized), so "seconds_per_image" is the latency of one canvas, batch 1. Returns {"stats": the 12
    COCO numbers, "per_class_ap": {digit: {"AP", "AP50"}}, "seconds_per_image", "images", "detections"}.
    """
    import time

    from lectures_code.data.digit_canvases import DigitCanvases

    if not isinstance(num_test_images, int) or isinstance(num_test_images, bool) or num_test_images < 1:
        raise ValueError(f"num_test_images must be a positive int, got {num_test_images!r}")
    dataset = DigitCanvases(split, size=num_test_images, seed=seed)
    detections, seconds = [], 0.0
    for index in progress_bar(range(num_test_images), progress, desc or f"evaluate ({split})"):
        image, _ = dataset[index]
        start = time.perf_counter()
        result = detect(index, image)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - start
        for box, score, label in zip(result["boxes"].tolist(), result["scores"].tolist(), result["labels"].tolist()):
            x1, y1, x2, y2 = box
            detections.append({"image_id": index, "category_id": label + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                               "score": score})
    return {**digit_coco_ap(dataset, detections), "seconds_per_image": seconds / num_test_images,
            "images": num_test_images, "detections": len(detections)}


def detector_parser(description: str, key: str, *, num_train_images: int, epochs: int, lr: float, batch_size: int,
                    threads: int, record: str) -> argparse.ArgumentParser:
    """The common arguments; ``key`` names the resume checkpoint and the shipped file (``<key>_digits.pt``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--num-train-images", type=int, default=num_train_images)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--num-test-images", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=threads, help="torch.set_num_threads (0: leave as is)")
    parser.add_argument("--checkpoint-path", default=str(Path.home() / ".cache" / "lectures_code" / f"{key}_train.pt"))
    parser.add_argument("--no-resume", action="store_true")
    parser.add_argument("--ship", action="store_true", help=f"write lectures_code/checkpoints/{key}_digits.pt")
    parser.add_argument("--record", default=record)
    return parser


def run_info(module: str, args: argparse.Namespace, argv: list[str] | None) -> dict:
    """The command that reproduces this run and where it ran."""
    return {
        "command": f"python -m {module} " + shlex.join(sys.argv[1:] if argv is None else argv),
        "device": str(args.device),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "train_images": args.num_train_images,
    }


def named_stats(stats) -> dict:
    """The 12 COCO numbers by name, rounded for the record."""
    return {name: round(float(value), 4) for name, value in zip(COCO_STAT_NAMES, stats)}


def rounded_per_class(per_class_ap: dict) -> dict:
    return {digit: {k: round(v, 4) for k, v in ap.items()} for digit, ap in per_class_ap.items()}


def update_record(key: str, record: dict, path: str | os.PathLike) -> None:
    """Merge ``{key: record}`` into the JSON file at ``path`` (other keys are kept)."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[key] = record
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def ship(key: str, model: torch.nn.Module, config: dict, args: argparse.Namespace, record: dict) -> None:
    """Save ``<key>_digits.pt`` (state_dict + plain metadata, hash in SHA256SUMS) and record it."""
    from lectures_code.checkpoints import CHECKPOINT_DIR, save_checkpoint

    metadata = {"config": config, "trained_on": f"DigitCanvases train[:{args.num_train_images}] seed {args.seed}",
                "command": record["command"], "test_AP": record["test"]["AP"], "test_AP50": record["test"]["AP50"]}
    path = CHECKPOINT_DIR / f"{key}_digits.pt"
    record["checkpoint"] = {"file": f"lectures_code/checkpoints/{key}_digits.pt",
                            "sha256": save_checkpoint(model.state_dict(), metadata, path),
                            "bytes": path.stat().st_size}
    update_record(key, record, args.record)
