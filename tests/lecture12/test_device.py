"""The device helper: automatic choice, the LECTURES_DEVICE override, and clear errors."""

from __future__ import annotations

import pytest
import torch

from lectures_code.device import get_device


def test_override_by_environment(monkeypatch):
    monkeypatch.setenv("LECTURES_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    assert get_device("auto") == get_device(None) or torch.cuda.is_available()


def test_explicit_argument_wins_over_environment(monkeypatch):
    monkeypatch.setenv("LECTURES_DEVICE", "definitely-not-a-device")
    assert get_device("cpu") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.delenv("LECTURES_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert get_device().type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert get_device().type == "cpu"


@pytest.mark.parametrize("bad", ["gpu", "tpu:0", "cuda:abc"])
def test_unknown_device_names(bad):
    with pytest.raises(ValueError, match="device"):
        get_device(bad)


def test_unavailable_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        get_device("cuda")
