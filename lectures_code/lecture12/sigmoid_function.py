"""A new autograd operator: subclass torch.autograd.Function, write forward and backward."""

from __future__ import annotations

import torch


# --8<-- [start:sigmoid_python]
def sigmoid_python(x: torch.Tensor) -> torch.Tensor:
    """Sigmoid as plain Python: autograd records exp, add, reciprocal, ... (several graph nodes)."""
    return 1.0 / (1.0 + (-x).exp())
# --8<-- [end:sigmoid_python]


# --8<-- [start:sigmoid_function]
class Sigmoid(torch.autograd.Function):
    """One graph node: forward computes s = 1 / (1 + e^-x), backward uses ds/dx = s (1 - s)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        output = 1.0 / (1.0 + (-x).exp())
        ctx.save_for_backward(output)      # keep what backward needs; here the output itself
        return output

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        (output,) = ctx.saved_tensors
        return grad_output * output * (1.0 - output)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return Sigmoid.apply(x)
# --8<-- [end:sigmoid_function]
