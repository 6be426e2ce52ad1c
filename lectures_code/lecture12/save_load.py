"""Saving and loading models: the state_dict (recommended) versus pickling the whole module.

A state_dict maps each parameter and buffer name to its tensor. It loads with ``weights_only=True``,
which only rebuilds tensors and plain containers, into a model built by your code. Pickling the whole
module stores a reference to its class by import path; loading it needs that code at the same path
and ``weights_only=False``, which lets the file run arbitrary code, so load only files you trust.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lectures_code.lecture12.custom_modules import TwoLayerNet


def save_and_load_state_dict(model: TwoLayerNet, path: str | Path) -> TwoLayerNet:
    """Round trip through a state_dict file into a freshly built model of the same shape."""
    D_in, H, D_out = model.linear1.in_features, model.linear1.out_features, model.linear2.out_features
    # --8<-- [start:state_dict]
    torch.save(model.state_dict(), path)         # {"linear1.weight": ...}

    fresh = TwoLayerNet(D_in, H, D_out)          # our code builds the model,
    state = torch.load(path, weights_only=True)  # the file gives tensors
    fresh.load_state_dict(state)                 # names, shapes must match
    fresh.eval()                                 # Dropout/BatchNorm: test mode
    # --8<-- [end:state_dict]
    return fresh


def save_checkpoint(model, optimizer, step: int, path: str | Path) -> None:
    """Everything needed to resume training: weights, optimizer state (Adam's moments) and the step."""
    # --8<-- [start:checkpoint_save]
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),   # e.g. Adam's moment estimates
        "step": step,
    }
    torch.save(checkpoint, path)
    # --8<-- [end:checkpoint_save]


def load_checkpoint(model, optimizer, path: str | Path) -> int:
    """Restore model and optimizer in place; return the step to continue from."""
    # --8<-- [start:checkpoint_load]
    # dicts, tensors and numbers: all allowed by weights_only=True
    checkpoint = torch.load(path, weights_only=True)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    step = checkpoint["step"]
    # --8<-- [end:checkpoint_load]
    return step


def save_whole_module(model: torch.nn.Module, path: str | Path) -> None:
    """The discouraged way: pickle the module object itself."""
    # --8<-- [start:whole_module_save]
    # Pickles the object; its class is stored only as an import path.
    torch.save(model, path)
    # --8<-- [end:whole_module_save]


def load_whole_module(path: str | Path) -> torch.nn.Module:
    """Load a pickled module: needs weights_only=False (full unpickling) and the class importable."""
    # --8<-- [start:whole_module_load]
    # Full unpickling may run any code in the file: trusted files only.
    model = torch.load(path, weights_only=False)
    # --8<-- [end:whole_module_load]
    return model
