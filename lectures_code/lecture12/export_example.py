"""torch.export: a whole model as one graph without Python, saved to a file and run again.

export captures the complete forward pass ahead of time into an ExportedProgram (ATen operations
only, parameters listed as inputs). Unlike torch.compile it may not fall back to Python, so an ``if``
on a tensor's value cannot be exported; ``torch.cond`` puts both branches into the graph instead.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.export import Dim, ExportedProgram

from lectures_code.lecture12.custom_modules import TwoLayerNet


def export_two_layer_net(model: TwoLayerNet, x: torch.Tensor) -> ExportedProgram:
    """Export ``model`` for inputs x [batch, D_in] whose batch size may change from call to call."""
    # --8<-- [start:export]
    exported = torch.export.export(
        model.eval(),
        (x,),                                     # example input, x [N, D_in]
        # Dimension 0 (the batch) may vary; every other size is fixed.
        dynamic_shapes={"x": {0: Dim("batch")}},
    )
    # --8<-- [end:export]
    return exported


def save_and_reload(exported: ExportedProgram, path: str | Path) -> torch.nn.Module:
    """Write the program to a .pt2 file, read it back, and return a module that runs it."""
    # --8<-- [start:export_save_load]
    torch.export.save(exported, path)   # graph + weights in one .pt2 file
    loaded = torch.export.load(path)    # no TwoLayerNet class needed
    runnable = loaded.module()          # an nn.Module that runs the graph
    # --8<-- [end:export_save_load]
    return runnable


# --8<-- [start:python_branch]
class PythonBranch(torch.nn.Module):
    """The lecture's branch on a tensor value: fine eagerly, not exportable."""

    # h [N, H], w2a and w2b [H, D_out], prev_loss a 0-d tensor
    def forward(self, h, w2a, w2b, prev_loss):
        w2 = w2a if prev_loss < 5.0 else w2b
        return h.mm(w2)
# --8<-- [end:python_branch]


# --8<-- [start:cond_branch]
class CondBranch(torch.nn.Module):
    """The same branch with torch.cond: both branches become subgraphs."""

    def forward(self, h, w2a, w2b, prev_loss):
        return torch.cond(
            prev_loss < 5.0,                 # 0-d bool tensor, read at run time
            lambda h, w2a, w2b: h.mm(w2a),   # true branch
            lambda h, w2a, w2b: h.mm(w2b),   # false branch
            (h, w2a, w2b),
        )
# --8<-- [end:cond_branch]
