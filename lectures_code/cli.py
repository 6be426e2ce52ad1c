"""Command line: `lectures list | run NAME | site build | serve` (also `python -m lectures_code`)."""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# `lectures train/evaluate MODEL`: module in lectures_code.detection, shipped checkpoint, evaluation function.
DETECTORS = {
    "single-object": ("single_object", "single_object_digits", "evaluate_single_object"),
    "rcnn": ("rcnn", "rcnn_digits", "evaluate_rcnn"),
    "fast-rcnn": ("fast_rcnn", "fast_rcnn_digits", "evaluate_fast_rcnn"),
    "faster-rcnn": ("faster_rcnn", "faster_rcnn_digits", "evaluate_faster_rcnn"),
    "faster-rcnn-fpn": ("faster_rcnn_fpn", "faster_rcnn_fpn_digits", "evaluate_faster_rcnn_fpn"),
    "retinanet": ("retinanet", "retinanet_digits", "evaluate_retinanet"),
    "fcos": ("fcos", "fcos_digits", "evaluate_fcos"),
}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from lectures_code.examples import EXAMPLES

    parser = argparse.ArgumentParser(
        prog="lectures", description="EECS 498.008 Lectures 12-18: run the lecture code, build and serve the notes."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="list the runnable examples")

    run = sub.add_parser("run", help="run one example and print its loss curve summary")
    run.add_argument("name", choices=sorted(EXAMPLES), metavar="NAME", help="one of: " + ", ".join(EXAMPLES))
    run.add_argument("--steps", type=_positive_int, help="training steps (epochs for 'dataloader')")
    run.add_argument("--lr", "--learning-rate", dest="learning_rate", type=_positive_float)
    run.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--plot", type=Path, help="save the loss curve to this PNG file")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    train = sub.add_parser("train", help="train a detector on the digit canvases (its own options follow)",
                           description="Runs `python -m lectures_code.detection.MODULE` with the remaining "
                                       "arguments (e.g. --num-train-images 600 --epochs 5 --ship); "
                                       "see `lectures train MODEL -h`.")
    train.add_argument("model", choices=sorted(DETECTORS), metavar="MODEL", help="one of: " + ", ".join(DETECTORS))
    train.add_argument("options", nargs=argparse.REMAINDER, help="passed to the model's training command")

    evaluate = sub.add_parser("evaluate", help="evaluate a shipped detector on the test canvases (COCO AP)")
    evaluate.add_argument("model", choices=sorted(DETECTORS), metavar="MODEL", help="one of: " + ", ".join(DETECTORS))
    evaluate.add_argument("--num-test-images", type=_positive_int, default=200)

    site = sub.add_parser("site", help="build the notes site")
    site.add_argument("action", choices=["build"])
    site.add_argument("--no-strict", action="store_true")

    serve = sub.add_parser("serve", help="serve the built site and every demo from one process")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000)
    serve.add_argument("--site-dir", type=Path, default=REPO_ROOT / "site")
    return parser


def _run_example(args) -> int:
    from tqdm import tqdm

    from lectures_code.device import get_device
    from lectures_code.examples import EXAMPLES

    example = EXAMPLES[args.name]
    try:
        device = get_device(args.device)
    except ValueError as err:
        print(f"lectures run: error: {err}", file=sys.stderr)
        return 2
    steps = args.steps or example.steps
    learning_rate = args.learning_rate or example.learning_rate
    print(f"{example.title}\n  device={device} steps={steps} lr={learning_rate:g} seed={args.seed}")
    bar = tqdm(total=steps, disable=args.quiet, unit="step", dynamic_ncols=True)

    def progress(step: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    result = example.run(steps=steps, learning_rate=learning_rate, device=device, seed=args.seed,
                         progress=progress)
    bar.close()
    print(f"  loss {result.losses[0]:.6g} -> {result.losses[-1]:.6g} "
          f"({result.reduction:.3g}x smaller) in {result.seconds:.2f} s")
    if not all(math.isfinite(v) for v in result.losses):
        print("  warning: the loss became NaN/inf: the learning rate is too large", file=sys.stderr)
    if args.plot:
        from lectures_code.plotting import plot_losses

        plot_losses([result], log_scale=True).savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"  loss curve written to {args.plot}")
    return 0


def _evaluate_detector(args) -> int:
    import importlib
    import json

    from lectures_code.checkpoints import load_pretrained

    module_name, checkpoint, function = DETECTORS[args.model]
    module = importlib.import_module(f"lectures_code.detection.{module_name}")
    model = load_pretrained(checkpoint)  # hash-checked, weights_only=True
    result = getattr(module, function)(model, args.num_test_images)
    if "stats" in result:  # the multi-object detectors: the 12 COCO numbers as pycocotools prints them
        from lectures_code.metrics.coco_eval import format_stats

        print(format_stats(result["stats"]))
    print(json.dumps({k: v for k, v in result.items() if k != "stats"}, indent=2, default=str)[:2000])
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        from lectures_code.examples import EXAMPLES

        for e in EXAMPLES.values():
            print(f"{e.name:15s} L{e.lecture}  {e.title}  (steps {e.steps}, lr {e.learning_rate:g})")
        return 0
    if args.command == "run":
        return _run_example(args)
    if args.command == "train":
        import importlib

        module = importlib.import_module(f"lectures_code.detection.{DETECTORS[args.model][0]}")
        module.main(args.options)
        return 0
    if args.command == "evaluate":
        return _evaluate_detector(args)
    if args.command == "site":
        cmd = [sys.executable, "-m", "mkdocs", "build"] + ([] if args.no_strict else ["--strict"])
        return subprocess.call(cmd, cwd=REPO_ROOT)
    if args.command == "serve":
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        from lectures_code.demos.server import serve

        return serve(host=args.host, port=args.port, site_dir=args.site_dir)
    return 2


if __name__ == "__main__":
    sys.exit(main())
