"""torch.jit.trace vs torch.jit.script on control flow that depends on a value.

script reads the Python source, so the ``if`` of ``model`` becomes an If node in the graph. trace runs
the function once on example inputs and records the tensor operations that ran: the ``if`` is decided
during that one run, so the graph holds only the branch taken then, and later calls reuse it whatever
their ``prev_loss`` is. The tracer warns (TracerWarning) but still returns the frozen graph.
"""

from __future__ import annotations

import warnings

import torch

from lectures_code.lecture12.static_graphs import model, scripted_model


def traced_model(x, y, w1, w2a, w2b, example_prev_loss: float) -> torch.jit.ScriptFunction:
    """Trace ``model`` with prev_loss given as a 0-d tensor (trace only takes tensor inputs).

    Only TorchScript's deprecation warning is silenced here; the TracerWarning reaches the caller.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        # --8<-- [start:jit_trace]
        example = (x, y, w1, w2a, w2b, torch.tensor(example_prev_loss))
        traced = torch.jit.trace(model, example)
        # --8<-- [end:jit_trace]
    return traced


def trace_versus_script(x, y, w1, w2a, w2b) -> dict[str, torch.Tensor]:
    """The loss at prev_loss = 100 (the w2b branch) from eager, script, and a trace made at prev_loss = 1."""
    # --8<-- [start:trace_vs_script]
    scripted = scripted_model()       # the if is a node of the graph
    # Traced with prev_loss = 1.0 < 5: that one run took the w2a branch.
    traced = traced_model(x, y, w1, w2a, w2b, example_prev_loss=1.0)
    # Now prev_loss = 100 >= 5, so the right answer uses w2b.
    return {
        "eager": model(x, y, w1, w2a, w2b, 100.0),            # w2b
        "script": scripted(x, y, w1, w2a, w2b, 100.0),        # w2b
        "trace": traced(x, y, w1, w2a, w2b, torch.tensor(100.0)),  # w2a!
    }
    # --8<-- [end:trace_vs_script]
