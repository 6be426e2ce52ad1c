"""The shared training loop: recipe checks, schedule, determinism, resume after an interruption, max_steps."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from lectures_code import registry
from lectures_code.data.digit_canvases import CanvasDetectionSet
from lectures_code.training import Recipe, fit, optimizer_step, warmup_cosine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy import Regression, TinyNet, recipe  # noqa: E402


def _run(epochs=3, path=None, seed=0, **kw):
    torch.manual_seed(seed)
    model = TinyNet()
    history = fit(model, Regression(), recipe(epochs),
                  seed=seed, checkpoint_path=path, progress=False, **kw)
    return model, history


@pytest.mark.parametrize("bad", [{"num_train_images": 0}, {"epochs": 1.5}, {"lr": -1.0}, {"lr": float("nan")},
                                 {"batch_size": 0}, {"steps_per_epoch": 0}, {"max_grad_norm": 0.0},
                                 {"weight_decay": -1e-4}, {"epochs": True}])
def test_recipe_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        Recipe(**{"num_train_images": 4, "epochs": 1, "batch_size": 2, "lr": 1e-3, **bad})


def test_recipe_options_override_only_what_is_given():
    recipe = Recipe(num_train_images=4, epochs=1, batch_size=2, lr=1e-3)
    assert recipe.with_options(epochs=3, lr=None) == Recipe(num_train_images=4, epochs=3, batch_size=2, lr=1e-3)


def test_warmup_then_cosine():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = warmup_cosine(optimizer, 100)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)  # 10 warm-up steps
    assert rates[10] == pytest.approx(1.0) and rates[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(rates[9:], rates[10:])) and rates[-1] < 1e-3


@pytest.mark.parametrize("clip", [None, 0.5])
def test_optimizer_step_clips_the_gradient_norm(clip):
    model = nn.Linear(3, 1, bias=False)
    nn.init.ones_(model.weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    optimizer_step(model(torch.tensor([[30.0, 40.0, 0.0]])).sum(), model, optimizer, scaler, scheduler, clip)
    step = torch.ones(3) - model.weight.detach()[0]
    expected = torch.tensor([30.0, 40.0, 0.0]) * (1.0 if clip is None else clip / 50.0)
    assert torch.allclose(step, expected, atol=1e-6)


def test_history_and_losses():
    model, history = _run()
    assert history["steps"] == 18 == len(history["total"]) == len(history["loss_mse"]) == len(history["loss_l1"])
    for total, mse, l1 in zip(history["total"], history["loss_mse"], history["loss_l1"]):
        assert total == pytest.approx(mse + l1, rel=1e-6)
    assert sum(history["total"][-6:]) < 0.6 * sum(history["total"][:6])
    assert len(history["epoch_seconds"]) == 3 and history["world_size"] == 1 and not model.training


def test_same_seed_same_run_other_seed_other_run():
    a, history_a = _run(seed=3)
    b, history_b = _run(seed=3)
    c, history_c = _run(seed=4)
    assert history_a["total"] == history_b["total"] and history_a["total"] != history_c["total"]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_an_interrupted_run_resumes_exactly(tmp_path, monkeypatch):
    straight, history = _run(path=tmp_path / "a.pt")
    calls = {"n": 0}
    original = Regression.collate

    def interrupt(self, indices, device):
        calls["n"] += 1
        if calls["n"] == 8:  # 6 steps per epoch: call 8 is the second step of epoch 2
            raise KeyboardInterrupt
        return original(self, indices, device)

    monkeypatch.setattr(Regression, "collate", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _run(path=tmp_path / "b.pt")
    monkeypatch.setattr(Regression, "collate", original)
    assert torch.load(tmp_path / "b.pt", weights_only=True)["epoch"] == 1
    resumed, resumed_history = _run(path=tmp_path / "b.pt")
    assert resumed_history["total"] == history["total"]
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    with pytest.raises(ValueError, match="other settings"):
        torch.manual_seed(0)
        fit(TinyNet(), Regression(), Recipe(num_train_images=24, epochs=3, batch_size=4, lr=1e-2),
            checkpoint_path=tmp_path / "b.pt", progress=False)
    _, fresh = _run(path=tmp_path / "b.pt", resume=False)  # resume=False starts over
    assert fresh["total"] == history["total"]


def test_max_steps_stops_early_and_saves_only_finished_epochs(tmp_path):
    _, history = _run(path=tmp_path / "mid.pt", max_steps=8)  # epoch 2 unfinished
    assert history["steps"] == 8 and torch.load(tmp_path / "mid.pt", weights_only=True)["epoch"] == 1
    _, history = _run(path=tmp_path / "end.pt", max_steps=12)  # ends exactly with epoch 2
    assert history["steps"] == 12 and torch.load(tmp_path / "end.pt", weights_only=True)["epoch"] == 2
    with pytest.raises(ValueError, match="max_steps"):
        _run(max_steps=0)


def test_steps_per_epoch_draws_with_replacement():
    data = Regression(size=10)
    batches = data.batches(0, 4, seed=0, steps=7)
    assert len(batches) == 7 and all(len(b) == 4 for b in batches)
    assert torch.equal(torch.cat(batches), torch.cat(data.batches(0, 4, seed=0, steps=7)))
    shuffled = data.batches(1, 4, seed=0)
    assert [len(b) for b in shuffled] == [4, 4, 2] and sorted(torch.cat(shuffled).tolist()) == list(range(10))
    assert not torch.equal(torch.cat(shuffled), torch.cat(data.batches(2, 4, seed=0)))


def test_canvas_training_set_collates_what_detectors_take():
    data = CanvasDetectionSet("train", size=3, seed=0)
    batch = data.collate(torch.tensor([2, 0]), torch.device("cpu"))
    assert batch["images"].shape == (2, 3, 128, 128) and batch["images"].dtype == torch.float32
    assert 0.0 <= float(batch["images"].min()) and float(batch["images"].max()) <= 1.0
    assert torch.equal(batch["targets"][1]["boxes"], data.targets[0]["boxes"])


def test_registry_train_rejects_bad_recipes():
    with pytest.raises(ValueError):
        registry.train("fcos", num_train_images=0)
    with pytest.raises(TypeError):
        registry.train("fcos", num_train_images=2, epochs=1, batch_size=2, config={"no_such_argument": 1})
