"""Every shipped detector timed in the same run: test latency per canvas and training time per canvas.

Run: ``python benchmarks/detectors.py [--threads 1] [--images 40]``. Writes
lectures_code/results/benchmarks/detectors.json and detectors.md; the Lecture 14 comparison table takes its
timing columns from here, because the training records were made at different times on a shared,
busy machine, while these numbers come from one run with the detectors interleaved round-robin
(each round times every detector once, so load changes hit all of them alike).

- test ms / canvas: batch 1, the full pipeline from the image to the final detections, Selective
  Search included (uncached) for R-CNN and Fast R-CNN; their Selective Search is also timed alone.
- scaling: R-CNN and Fast R-CNN given N random proposals (N = 25 .. 1600, Selective Search left out):
  R-CNN's cost grows with N x (a CNN on every warped crop), Fast R-CNN's with N x (a small head) on
  top of one backbone pass, which is the lecture's argument for Fast R-CNN.
- train ms / canvas: one optimizer-free training step (forward + all losses + backward) on a batch of
  8 training canvases, divided by 8; R-CNN is left out (it trains on warped crops, not on canvases).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lectures_code import registry  # noqa: E402
from lectures_code.data.digit_canvases import DigitCanvases  # noqa: E402
from lectures_code.detection.rcnn import proposals_for  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "lectures_code" / "results" / "benchmarks"  # package data
TRAIN_BATCH = 8
DETECTORS = {entry.name: entry for entry in registry.MODELS.values() if entry.task == "detection"}
PROPOSAL_COUNTS = (25, 100, 400, 1600)


def random_proposals(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` xyxy boxes with corners uniform in a ``size`` x ``size`` image, sides >= 4 px."""
    corners = torch.rand(count, 2, 2, generator=generator) * (size - 4)
    low = corners.min(dim=1).values
    high = torch.maximum(corners.max(dim=1).values, low + 4)
    return torch.cat([low, high], dim=1)  # [count, 4]


def scaling_ms(models: dict, image: torch.Tensor, rounds: int) -> dict:
    """Median ms of R-CNN's and Fast R-CNN's detection given N random proposals, for each N."""
    from lectures_code.detection.rcnn import detect as rcnn_detect

    generator = torch.Generator().manual_seed(0)
    result = {}
    for count in PROPOSAL_COUNTS:
        boxes = random_proposals(count, image.shape[-1], generator)
        runs = {"rcnn": lambda boxes=boxes: rcnn_detect(models["rcnn"], image, boxes),
                "fast_rcnn": lambda boxes=boxes: models["fast-rcnn"](image[None], [boxes])}
        times = {name: [] for name in runs}
        with torch.no_grad():
            for _ in range(rounds + 1):
                for name, run in runs.items():
                    times[name].append(timed_ms(run))
        result[count] = {name: round(statistics.median(ms[1:]), 2) for name, ms in times.items()}
    return result


def training_step(name: str, model, images: torch.Tensor, targets: list[dict], proposals: list[torch.Tensor]):
    """Forward + losses + backward of one batch for detector ``name`` (gradients are then dropped): the
    train-mode forward returns the dict of losses, as the training loop calls it."""
    model.train()
    if name == "fast-rcnn":
        total = sum(model(images, proposals, targets).values())
    else:
        total = sum(model(images, targets).values())
    total.backward()
    model.zero_grad(set_to_none=True)
    model.eval()


def timed_ms(fn, device: str = "cpu") -> float:
    """Wall time of ``fn()`` in ms (CUDA synchronized before and after: its work is asynchronous)."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="cuda: test latency on the GPU only (no training rows), into detectors_cuda.{json,md}")
    parser.add_argument("--images", type=int, default=40, help="test canvases per detector (one round each)")
    parser.add_argument("--train-rounds", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    names = [entry.name for entry in registry.shipped() if entry.name in DETECTORS]
    models = {name: registry.load_pretrained(name, device=args.device) for name in names}
    test = DigitCanvases("test", size=args.images, seed=0)
    test_images = [test[i][0] for i in range(args.images)]
    train = DigitCanvases("train", size=TRAIN_BATCH, seed=0)
    batch = [train[i] for i in range(TRAIN_BATCH)]
    train_images = torch.stack([image for image, _ in batch])
    train_targets = [{"boxes": t["boxes"].float(), "labels": t["labels"]} for _, t in batch]
    train_proposals = [proposals_for(image) for image in train_images]

    test_ms = {name: [] for name in names}
    proposal_ms = {name: [] for name in names if DETECTORS[name].proposals == "Selective Search"}
    for image in [test_images[0]] + test_images:  # the first round is a warm-up, dropped below
        for name in names:
            with torch.no_grad():
                test_ms[name].append(timed_ms(
                    lambda name=name, image=image: models[name].predict(image[None].to(args.device)), args.device))
            if name in proposal_ms:
                proposal_ms[name].append(timed_ms(lambda image=image: proposals_for(image)))
    # R-CNN trains on warped crops, not canvases; on a GPU only the test latency is measured
    train_ms = {name: [] for name in names if name != "rcnn" and args.device == "cpu"}
    for _ in range(args.train_rounds + 1):
        for name in train_ms:
            train_ms[name].append(timed_ms(lambda name=name: training_step(
                name, models[name], train_images, train_targets, train_proposals)) / TRAIN_BATCH)

    scaling = {}
    if "rcnn" in models and "fast-rcnn" in models and args.device == "cpu":
        scaling = scaling_ms(models, test_images[0], rounds=5)

    rows = {}
    for name in names:
        row = {"test_ms": round(statistics.median(test_ms[name][1:]), 2)}
        if name in proposal_ms:
            row["proposals_ms"] = round(statistics.median(proposal_ms[name][1:]), 2)
        if name in train_ms:
            row["train_ms_per_canvas"] = round(statistics.median(train_ms[name][1:]), 2)
        rows[DETECTORS[name].record[1]] = row
    result = {
        "command": "python benchmarks/detectors.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "threads": args.threads, "test_images": args.images, "train_batch": TRAIN_BATCH,
        "train_rounds": args.train_rounds, "torch": torch.__version__, "machine": platform.machine(),
        "detectors": rows, "scaling_ms_by_proposals": scaling,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = "detectors" if args.device == "cpu" else "detectors_cuda"
    result["device"] = args.device
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| detector | test ms / canvas | of which Selective Search ms | train ms / canvas |",
             "| --- | ---: | ---: | ---: |"]
    for name in names:
        row = rows[DETECTORS[name].record[1]]
        proposals = f"{row['proposals_ms']:.1f}" if "proposals_ms" in row else "—"
        train = f"{row['train_ms_per_canvas']:.1f}" if "train_ms_per_canvas" in row else "n/a"
        lines.append(f"| {DETECTORS[name].title} | {row['test_ms']:.1f} | {proposals} | {train} |")
    lines.append("")
    lines.append(f"CPU, {args.threads} thread(s), torch {torch.__version__}; medians over {args.images} test canvases "
                 f"(batch 1) and {args.train_rounds} training steps of {TRAIN_BATCH} canvases, detectors interleaved.")
    if scaling:
        lines += ["", "| proposals N | R-CNN ms | Fast R-CNN ms |", "| ---: | ---: | ---: |"]
        lines += [f"| {n} | {t['rcnn']:.1f} | {t['fast_rcnn']:.1f} |" for n, t in scaling.items()]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
