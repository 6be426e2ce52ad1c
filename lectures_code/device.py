"""One place that decides where tensors live: CUDA, then Apple MPS, then CPU.

Override with the environment variable ``LECTURES_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``)
or an explicit argument; an explicit argument wins over the variable.
"""

from __future__ import annotations

import os

import torch

ENV_VAR = "LECTURES_DEVICE"


# --8<-- [start:get_device]
def get_device(requested: str | torch.device | None = None) -> torch.device:
    """Return the device to run on.

    ``requested`` (or ``$LECTURES_DEVICE``) may be ``"auto"``/``None`` for the automatic choice.
    Asking for a device that is not available raises ``ValueError`` with a readable message
    rather than failing later inside a kernel.
    """
    if requested is None:
        requested = os.environ.get(ENV_VAR) or "auto"
    if isinstance(requested, torch.device):
        requested = str(requested)
    requested = requested.strip().lower()

    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")

    try:
        device = torch.device(requested)
    except RuntimeError as err:
        raise ValueError(f"unknown device {requested!r}: use auto, cpu, cuda, cuda:N or mps") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} asked for, but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {requested!r} asked for, but only {torch.cuda.device_count()} GPU(s) exist")
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ValueError("device 'mps' asked for, but Apple MPS is not available on this machine")
    if device.type not in {"cpu", "cuda", "mps"}:
        raise ValueError(f"unsupported device type {device.type!r}: use cpu, cuda or mps")
    return device
# --8<-- [end:get_device]
