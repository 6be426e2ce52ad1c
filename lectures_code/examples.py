"""Registry of the runnable lecture examples: what `lectures list` shows and `lectures run` runs.

Every entry takes the same keyword arguments (steps, learning_rate, device, seed, progress) and
returns a TrainResult, so the CLI, the demos and the notebook pages can treat them alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lectures_code.lecture12 import (
    autograd_two_layer,
    custom_modules,
    dataloader_example,
    nn_sequential,
    optimizers,
    static_graphs,
    tensors_manual_backprop,
)
from lectures_code.lecture12.common import TrainResult


@dataclass(frozen=True)
class Example:
    name: str
    lecture: int
    title: str
    run: Callable[..., TrainResult]   # run(steps=, learning_rate=, device=, seed=, progress=)
    steps: int                        # default number of steps (epochs for the DataLoader example)
    learning_rate: float              # default learning rate (the slides' value where it works)


def _epochs(fn):
    """The DataLoader example counts epochs, not steps."""
    return lambda steps, **kw: fn(epochs=steps, **kw)


EXAMPLES: dict[str, Example] = {
    e.name: e
    for e in [
        Example("tensors", 12, "Tensors: two-layer net with manual backprop",
                tensors_manual_backprop.train_manual_backprop, 500, 1e-6),
        Example("autograd", 12, "Autograd: requires_grad + backward()",
                autograd_two_layer.train_autograd, 500, 1e-6),
        Example("sequential", 12, "nn.Sequential + functional loss, manual SGD update",
                nn_sequential.train_sequential, 500, 1e-2),
        Example("adam", 12, "nn.Sequential + torch.optim.Adam",
                optimizers.train_with_optimizer, 500, 1e-4),
        Example("two-layer-net", 12, "custom nn.Module TwoLayerNet + Adam",
                custom_modules.train_custom_module, 500, 1e-4),
        Example("parallel-block", 12, "ParallelBlock modules inside nn.Sequential + Adam",
                lambda **kw: custom_modules.train_custom_module(model_name="parallel_block", **kw), 500, 1e-4),
        Example("dataloader", 12, "Dataset + DataLoader, minibatch SGD (steps = epochs)",
                _epochs(dataloader_example.train_with_dataloader), 20, 1e-2),
        Example("jit-script", 12, "static graph: torch.jit.script (deprecated in 2.x)",
                lambda **kw: static_graphs.train_static_graph(mode="jit_script", **kw), 50, 1e-6),
        Example("compile", 12, "static graph: torch.compile (first call compiles, ~15 s on a CPU)",
                lambda **kw: static_graphs.train_static_graph(mode="compile", **kw), 50, 1e-6),
    ]
}
