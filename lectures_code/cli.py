"""Command line: `lectures list | run NAME | train MODEL | evaluate MODEL | site build | serve`
(also `python -m lectures_code`). The models come from the registry (`lectures_code/registry.py`)."""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

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


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
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

    from lectures_code.registry import MODELS

    models = ", ".join(MODELS)
    train = sub.add_parser("train", help="train a model through the shared loop (e.g. `lectures train fcos`)",
                           description="Train a registry model on its data with the shared loop, evaluate it, "
                                       "record the run and, with --ship, save its checkpoint. The recipe's "
                                       "defaults reproduce the shipped model.")
    train.add_argument("model", choices=list(MODELS), metavar="MODEL", help="one of: " + models)
    train.add_argument("--num-train-images", type=_positive_int, help="training examples (the data's first N)")
    train.add_argument("--epochs", type=_positive_int)
    train.add_argument("--steps-per-epoch", type=_positive_int,
                       help="minibatches drawn with replacement per epoch (instead of one pass over the data)")
    train.add_argument("--batch-size", type=_positive_int, help="global minibatch (split across --nproc)")
    train.add_argument("--lr", type=_positive_float, help="peak learning rate of AdamW")
    train.add_argument("--max-steps", type=_positive_int, help="stop after this many steps (a quick check)")
    train.add_argument("--num-test-images", type=_positive_int)
    train.add_argument("--threads", type=_non_negative_int, help="torch.set_num_threads (0: leave as is)")
    train.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    train.add_argument("--seed", type=_non_negative_int, default=0)
    train.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                       help="a constructor argument of the model, e.g. --config box_loss=giou (repeatable)")
    train.add_argument("--checkpoint-path", type=Path, help="the resumable per-epoch state (default: a user folder)")
    train.add_argument("--no-resume", action="store_true", help="start over even if a per-epoch state exists")
    train.add_argument("--no-evaluate", action="store_true", help="skip the test evaluation")
    train.add_argument("--ship", action="store_true", help="save the checkpoint and merge the run's record")
    train.add_argument("--nproc", type=_positive_int, default=1,
                       help="processes on this machine (torchrun + DistributedDataParallel)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")

    evaluate = sub.add_parser("evaluate", help="evaluate a shipped model on the test data")
    evaluate.add_argument("model", choices=list(MODELS), metavar="MODEL", help="one of: " + models)
    evaluate.add_argument("--num-test-images", type=_positive_int, default=200)
    evaluate.add_argument("--checkpoint-dir", type=Path, help="load the checkpoint from this folder")

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


def _config_overrides(pairs: list[str]) -> dict:
    """["box_loss=giou", "channels=64"] -> {"box_loss": "giou", "channels": 64}: values parsed as JSON if possible."""
    import json

    config = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--config needs KEY=VALUE, got {pair!r}")
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            config[key] = value
    return config


def recipe_from_arguments(entry, args):
    """The entry's recipe with what ``lectures train`` was given (options not given keep the recipe's value)."""
    return entry.recipe.with_options(num_train_images=args.num_train_images, epochs=args.epochs,
                                     steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size, lr=args.lr,
                                     threads=args.threads, num_test_images=args.num_test_images)


def _launch_distributed(args, argv: list[str] | None) -> int:
    """Re-run this command under torchrun with ``--nproc`` processes (one machine)."""
    rest = list(sys.argv[1:] if argv is None else argv)
    for i, token in enumerate(rest):  # drop "--nproc N" / "--nproc=N"
        if token == "--nproc":
            del rest[i:i + 2]
            break
        if token.startswith("--nproc="):
            del rest[i]
            break
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
           "-m", "lectures_code", *rest]
    print("running: " + " ".join(cmd[2:]), flush=True)
    return subprocess.call(cmd)


def _train(args, argv: list[str] | None) -> int:
    import json

    from lectures_code.registry import default_checkpoint_path, get
    from lectures_code.training.records import command_line
    from lectures_code.training.run import train_and_record

    if args.nproc > 1:
        return _launch_distributed(args, argv)
    entry = get(args.model)
    try:
        config = _config_overrides(args.config)
        entry.build(**config)  # a wrong key or value fails here, before any data is rendered
        recipe = recipe_from_arguments(entry, args)
    except (TypeError, ValueError) as err:
        print(f"lectures train: error: {err}", file=sys.stderr)
        return 2
    record = train_and_record(
        entry, recipe, device=args.device, seed=args.seed,
        checkpoint_path=args.checkpoint_path or default_checkpoint_path(entry), resume=not args.no_resume,
        max_steps=args.max_steps, config=config, ship=args.ship, evaluate=not args.no_evaluate,
        command=command_line(argv), progress=not args.quiet)
    if record is not None:
        if "test" in record and "AP" in record["test"]:
            print(f"{entry.title}: AP {record['test']['AP']:.3f}, AP50 {record['test']['AP50']:.3f} "
                  f"on {record['test_images']} test images")
        print(json.dumps(record, indent=2, ensure_ascii=False, default=str))
    return 0


def _evaluate(args) -> int:
    import json

    from lectures_code.checkpoints import find_checkpoint
    from lectures_code.registry import get, load_pretrained

    entry = get(args.model)
    try:
        print(f"{entry.title}: {find_checkpoint(entry.checkpoint, args.checkpoint_dir)}", flush=True)
        model = load_pretrained(entry.name, args.checkpoint_dir)  # hash-checked, weights_only=True
    except (FileNotFoundError, RuntimeError) as err:
        print(f"lectures evaluate: error: {err}", file=sys.stderr)
        return 2
    record = entry.evaluation_record(model, args.num_test_images, progress=True)
    if "AP" in record.get("test", {}):  # the multi-object detectors: the 12 COCO numbers as pycocotools prints them
        from lectures_code.metrics.coco_eval import format_stats

        print(format_stats(list(record["test"].values())))
    print(json.dumps(record, indent=2, ensure_ascii=False, default=str))
    return 0


def _list() -> int:
    from lectures_code import checkpoints
    from lectures_code.examples import EXAMPLES
    from lectures_code.registry import MODELS, shipped

    print("Examples (`lectures run NAME`):")
    for e in EXAMPLES.values():
        print(f"  {e.name:15s} L{e.lecture}  {e.title}  (steps {e.steps}, lr {e.learning_rate:g})")
    present = {entry.name for entry in shipped()}
    print(f"\nModels (`lectures train NAME`, `lectures evaluate NAME`; checkpoints in "
          f"{', '.join(str(d) for d in checkpoints.search_dirs())}):")
    for entry in MODELS.values():
        r = entry.recipe
        length = f"{r.epochs} epochs" if r.steps_per_epoch is None else f"{r.epochs * r.steps_per_epoch} steps"
        status = "shipped" if entry.name in present else "not trained"
        print(f"  {entry.name:16s} L{entry.lecture}  {entry.title:28s} {status:11s} "
              f"({r.num_train_images} images, {length}, batch {r.batch_size}, lr {r.lr:g})")
    return 0


def _missing_extra(modules: tuple[str, ...]) -> str | None:
    """The first of ``modules`` that cannot be imported (None if all can)."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            return name
    return None


def _build_site(args) -> int:
    from lectures_code.checkpoints import in_source_checkout

    if not in_source_checkout():
        print("lectures site build: error: the notes' sources (docs/, mkdocs.yml) are only in a source checkout: "
              "git clone the project and run `make serve` there", file=sys.stderr)
        return 2
    missing = _missing_extra(("mkdocs", "material", "mkdocs_jupyter"))
    if missing:
        print(f"lectures site build: error: {missing} is missing: install the 'site' extra "
              "(pip install 'lectures-code[site]', or `make setup` in a checkout)", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "mkdocs", "build"] + ([] if args.no_strict else ["--strict"])
    return subprocess.call(cmd, cwd=REPO_ROOT)


def _serve(args) -> int:
    missing = _missing_extra(("gradio", "fastapi", "uvicorn"))
    if missing:
        print(f"lectures serve: error: the demos need the 'site' extra ({missing} is missing): "
              "pip install 'lectures-code[site]'", file=sys.stderr)
        return 2
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from lectures_code.demos.server import serve

    return serve(host=args.host, port=args.port, site_dir=args.site_dir)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        return _list()
    if args.command == "run":
        return _run_example(args)
    if args.command == "train":
        return _train(args, argv)
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "site":
        return _build_site(args)
    if args.command == "serve":
        return _serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
