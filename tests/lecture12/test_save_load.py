"""Lecture 12: state_dict round trips with weights_only=True; a pickled module needs its code and trust."""

from __future__ import annotations

import pickle
import sys
import types
import zipfile

import pytest
import torch

from lectures_code.lecture12.common import make_regression_data
from lectures_code.lecture12.custom_modules import TwoLayerNet
from lectures_code.lecture12.save_load import (
    load_checkpoint,
    load_whole_module,
    save_and_load_state_dict,
    save_checkpoint,
    save_whole_module,
)


def _pickle_bytes(path) -> bytes:
    """torch.save writes a zip archive; the pickle that describes the objects is its data.pkl."""
    with zipfile.ZipFile(path) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))


def test_state_dict_round_trip_into_a_fresh_model(tmp_path):
    torch.manual_seed(0)
    model = TwoLayerNet(20, 8, 3)
    fresh = save_and_load_state_dict(model, tmp_path / "weights.pt")
    assert fresh is not model
    x = torch.randn(6, 20)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor)
    assert b"lectures_code" not in _pickle_bytes(tmp_path / "weights.pt")   # names and tensors only


def test_load_state_dict_rejects_a_model_of_another_shape(tmp_path):
    torch.save(TwoLayerNet(20, 8, 3).state_dict(), tmp_path / "weights.pt")
    with pytest.raises(RuntimeError, match="size mismatch"):
        TwoLayerNet(20, 9, 3).load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))


def _train(model, optimizer, x, y, steps):
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_resuming_from_a_checkpoint_continues_the_same_run(tmp_path):
    x, y = make_regression_data(N=16, D_in=20, D_out=3, device="cpu", seed=0)
    torch.manual_seed(0)
    model = TwoLayerNet(20, 8, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = _train(model, optimizer, x, y, 5)
    save_checkpoint(model, optimizer, step=5, path=tmp_path / "checkpoint.pt")
    uninterrupted = _train(model, optimizer, x, y, 5)

    resumed_model = TwoLayerNet(20, 8, 3)                 # other random weights, empty Adam state
    resumed_optimizer = torch.optim.Adam(resumed_model.parameters(), lr=1e-2)
    assert load_checkpoint(resumed_model, resumed_optimizer, tmp_path / "checkpoint.pt") == 5
    assert first[-1] > uninterrupted[-1]
    assert _train(resumed_model, resumed_optimizer, x, y, 5) == uninterrupted


def test_whole_module_pickle_refuses_the_default_safe_load(tmp_path):
    """torch.load defaults to weights_only=True (PyTorch 2.6 on): a pickled module is refused."""
    torch.manual_seed(0)
    model = TwoLayerNet(20, 8, 3)
    save_whole_module(model, tmp_path / "model.pt")
    assert b"lectures_code.lecture12.custom_modules" in _pickle_bytes(tmp_path / "model.pt")
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        torch.load(tmp_path / "model.pt")
    loaded = load_whole_module(tmp_path / "model.pt")     # weights_only=False: works here, with our code
    x = torch.randn(3, 20)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_whole_module_pickle_needs_the_class_at_its_import_path(tmp_path, monkeypatch):
    """Once the class's module is gone (renamed, moved, not installed), the pickled module cannot load."""
    scratch = types.ModuleType("l12_scratch_models")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 2)

    Net.__module__, Net.__qualname__ = scratch.__name__, "Net"
    scratch.Net = Net
    monkeypatch.setitem(sys.modules, scratch.__name__, scratch)
    save_whole_module(Net(), tmp_path / "net.pt")
    torch.save(Net().state_dict(), tmp_path / "net_weights.pt")
    monkeypatch.delitem(sys.modules, scratch.__name__)

    with pytest.raises(ModuleNotFoundError, match="l12_scratch_models"):
        load_whole_module(tmp_path / "net.pt")
    assert set(torch.load(tmp_path / "net_weights.pt", weights_only=True)) == {"linear.weight", "linear.bias"}
