"""Transfer learning regimes: what is frozen, which learning rates, BatchNorm modes, and the stored results."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch import nn

from lectures_code.lecture13 import transfer_learning
from lectures_code.lecture13.transfer_learning import (
    REGIMES,
    RESULTS_PATH,
    TransferClassifier,
    build_model,
    figure_transfer_learning,
    load_digit_split,
    run_transfer_experiment,
)
from lectures_code.training import Recipe, optimizer_step
from lectures_code.training.loop import make_optimizer

pytest.importorskip("mlxtend")


def batch(device, n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g).to(device), torch.arange(n).remainder(10).to(device)


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def optimizer_of(model: nn.Module, regime: str, lr: float, backbone_lr_factor: float = 0.1):
    """The classifier the loop trains for ``regime`` and the optimizer the loop gives it (Adam, constant lr)."""
    classifier = TransferClassifier(model, regime, backbone_lr_factor)
    recipe = Recipe(num_train_images=1, epochs=1, batch_size=1, lr=lr, weight_decay=0.0, max_grad_norm=None,
                    optimizer="adam", schedule="constant")
    optimizer, scheduler = make_optimizer(classifier, recipe, total_steps=1)
    return classifier, optimizer, scheduler


def one_step(classifier, optimizer, scheduler, images, labels) -> None:
    """One step as the loop takes it: train() with the regime's modes, the loss dict, optimizer_step."""
    classifier.train()
    losses = classifier(images, labels)
    optimizer_step(sum(losses.values()), classifier, optimizer, torch.amp.GradScaler("cuda", enabled=False),
                   scheduler, None)


def test_feature_extraction_freezes_everything_but_the_new_head(device):
    model = build_model("feature_extraction", 10, device)
    before = snapshot(model)
    classifier, optimizer, scheduler = optimizer_of(model, "feature_extraction", lr=1e-2)
    images, labels = batch(device)
    one_step(classifier, optimizer, scheduler, images, labels)
    assert not any(m.training for m in model.modules())  # the frozen network stays in eval mode
    for name, parameter in model.named_parameters():
        if name.startswith("_fc."):
            assert parameter.requires_grad and parameter.grad is not None
            assert not torch.equal(parameter, before[name]), name
        else:
            assert not parameter.requires_grad and parameter.grad is None, name
            assert torch.equal(parameter, before[name]), name
    # BatchNorm running statistics are pretrained values too: they must not move either.
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name
    assert model._fc.out_features == 10
    assert {id(p) for group in optimizer.param_groups for p in group["params"]} == {
        id(p) for p in model._fc.parameters()}


def test_fine_tuning_has_two_groups_with_the_stated_learning_rates(device):
    model = build_model("fine_tuning", 10, device, freeze_blocks=3)
    _, optimizer, _ = optimizer_of(model, "fine_tuning", lr=1e-3, backbone_lr_factor=0.1)
    backbone_group, head_group = optimizer.param_groups
    assert backbone_group["lr"] == pytest.approx(1e-4) and head_group["lr"] == pytest.approx(1e-3)
    assert {id(p) for p in head_group["params"]} == {id(p) for p in model._fc.parameters()}
    frozen = {id(p) for m in (model._conv_stem, model._bn0, *model._blocks[:3]) for p in m.parameters()}
    trainable = {id(p) for p in model.parameters()} - frozen - {id(p) for p in model._fc.parameters()}
    assert {id(p) for p in backbone_group["params"]} == trainable
    assert all(not p.requires_grad for m in model._blocks[:3] for p in m.parameters())


def test_fine_tuning_keeps_batchnorm_in_eval_mode(device):
    model = build_model("fine_tuning", 10, device, freeze_blocks=3)
    before = snapshot(model)
    classifier, optimizer, scheduler = optimizer_of(model, "fine_tuning", lr=1e-3)
    classifier.train()
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(batchnorms) == 49 and not any(m.training for m in batchnorms)
    assert model.training and model._dropout.training          # dropout still active
    images, labels = batch(device)
    one_step(classifier, optimizer, scheduler, images, labels)
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name          # running statistics untouched
    assert torch.equal(model._blocks[0]._depthwise_conv.weight, before["_blocks.0._depthwise_conv.weight"])
    assert model._blocks[0]._depthwise_conv.weight.grad is None
    assert not torch.equal(model._blocks[-1]._project_conv.weight, before["_blocks.15._project_conv.weight"])
    assert not torch.equal(model._fc.weight, before["_fc.weight"])


def test_batchnorm_is_in_eval_mode_at_every_training_forward_of_a_fine_tuning_run(monkeypatch):
    # Epoch 2 follows an evaluation: the loop must put BatchNorm back into eval mode, not model.train() it.
    built, modes_seen = [], set()

    def build_and_watch(*args, **kwargs):
        model = build_model(*args, **kwargs)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.register_forward_pre_hook(lambda m, _: modes_seen.add((m.training, torch.is_grad_enabled())))
        built.append((model, snapshot(model)))
        return model

    monkeypatch.setattr(transfer_learning, "build_model", build_and_watch)
    run_transfer_experiment("fine_tuning", 1, epochs=2, lr=1e-3, image_size=32, device="cpu",
                            progress=False, test_per_class=5, eval_every=1)
    model, before = built[0]
    assert (False, True) in modes_seen and (True, True) not in modes_seen
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name


def test_scratch_trains_everything_from_random_weights(device):
    torch.manual_seed(0)
    model = build_model("scratch", 10, device)
    pretrained = build_model("fine_tuning", 10, device)
    assert not torch.equal(model._conv_stem.weight, pretrained._conv_stem.weight)
    classifier, optimizer, _ = optimizer_of(model, "scratch", lr=1e-3)
    assert len(optimizer.param_groups) == 1
    assert len(optimizer.param_groups[0]["params"]) == len(list(model.parameters()))
    classifier.train()
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("regime", REGIMES)
def test_tiny_run_end_to_end(regime, device):
    result = run_transfer_experiment(regime, shots_per_class=2, epochs=1, lr=1e-3, image_size=32,
                                     device=device, seed=0, progress=False, test_per_class=10)
    assert result["train_size"] == 20 and result["test_size"] == 100
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["train_seconds"] > 0
    assert len(result["loss_history"]) == 1 and result["eval_epochs"] == [1]
    assert result["test_accuracy_history"] == [result["test_accuracy"]]


def test_digit_split_is_balanced_fixed_and_disjoint():
    train_a, labels_a, test_a, test_labels_a = load_digit_split(5, 32, seed=0, test_per_class=20)
    train_b, _, test_b, test_labels_b = load_digit_split(5, 32, seed=1, test_per_class=20)
    assert train_a.shape == (50, 3, 32, 32) and test_a.shape == (200, 3, 32, 32)
    assert torch.bincount(labels_a).tolist() == [5] * 10 and torch.bincount(test_labels_a).tolist() == [20] * 10
    assert torch.equal(test_a, test_b) and torch.equal(test_labels_a, test_labels_b)   # seed-independent
    assert not torch.equal(train_a, train_b)
    flat_train, flat_test = train_a.flatten(1), test_a.flatten(1)
    assert torch.cdist(flat_train, flat_test).min() > 0                                  # no shared digit
    assert train_a.min() >= -1 and train_a.max() <= 1 and torch.equal(train_a[:, 0], train_a[:, 2])


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        run_transfer_experiment("linear_probe", 2, 1, 1e-3, 32, "cpu", progress=False)
    with pytest.raises(ValueError):
        load_digit_split(401, 32)
    with pytest.raises(ValueError):
        load_digit_split(2, 16)


def test_stored_results_have_every_regime_and_shot_count():
    data = json.loads(RESULTS_PATH.read_text(encoding="utf-8"))
    assert data["command"].startswith("python -m lectures_code.lecture13.transfer_learning")
    shots = [str(s) for s in data["config"]["shots_per_class"]]
    assert set(data["results"]) == set(REGIMES)
    for regime in REGIMES:
        for s in shots:
            run = data["results"][regime][s]
            assert 0.0 <= run["test_accuracy"] <= 1.0 and run["train_seconds"] > 0
            assert len(run["loss_history"]) == run["epochs"]
            assert len(run["eval_epochs"]) == len(run["test_accuracy_history"]) >= 1
    # The lecture's claim in the few-shot regime: pretrained features beat random initialization.
    fewest = shots[0]
    assert data["results"]["feature_extraction"][fewest]["test_accuracy"] > \
        data["results"]["scratch"][fewest]["test_accuracy"]


def test_figure_is_svg_and_fast():
    started = time.perf_counter()
    svg = figure_transfer_learning()
    assert time.perf_counter() - started < 2.0
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
