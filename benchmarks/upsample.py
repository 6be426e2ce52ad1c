"""Time our upsampling ops against torch.nn.functional's in the same run, forward and forward+backward.

Run: ``python benchmarks/upsample.py``. Writes lectures_code/results/benchmarks/upsample.json and upsample.md.
CPU with 2 threads (``BENCH_DEVICE=cuda``: the CUDA rows instead, written to upsample_cuda.{json,md}).
Two conditions, one after the other: the machine as it is, and with one competing busy process
(``benchmarks/busy.py``). Each time is the median of several repeats, ours and the reference
alternating, so both see the same machine load.

Setup (a decoder stage of a segmentation network): 8 feature maps of 64 channels, 64 x 64, float32.
conv_transpose2d: 64 -> 32 channels, kernel 4, stride 2, padding 1 (the FCN / DCGAN upsampling layer),
with bias, output 8 x 32 x 128 x 128. interpolate: bilinear x2 (align_corners=False) and nearest x2 of
the same maps. max_unpool2d: unpooling a 2 x 2 max pooling of 8 x 64 x 128 x 128 maps.
fwd+bwd = forward, then backward of a fixed random upstream gradient w.r.t. every input that has one
(input, weight and bias for the convolution).

Goal (issue 10): conv_transpose2d forward+backward at most 2x F.conv_transpose2d's time on the CPU, in
both conditions; the JSON records whether that row meets it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import (  # noqa: E402
    bench_device,
    condition_details,
    environment,
    in_both_conditions,
    mark_goals,
    report_goals,
    results_stem,
    timed_row,
    write_results,
)

from lectures_code.ops.upsample import conv_transpose2d, interpolate, max_unpool2d  # noqa: E402

REPEATS = 9
GOAL = ("conv_transpose2d fwd+bwd", 2.0)
TOLERANCE = 1e-5  # float32: largest |ours - F| relative to the largest |F|, over the output and each gradient


def setup(device: str):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 64, 64, 64, generator=g)
    weight = torch.randn(64, 32, 4, 4, generator=g) / 16  # ~ unit-variance outputs
    bias = torch.randn(32, generator=g)
    upstream_conv = torch.randn(8, 32, 128, 128, generator=g)
    upstream_up = torch.randn(8, 64, 128, 128, generator=g)
    big = torch.randn(8, 64, 128, 128, generator=g)
    pooled, indices = F.max_pool2d(big, 2, return_indices=True)
    return [t.to(device) for t in (x, weight, bias, upstream_conv, upstream_up, pooled, indices)]


def forward_backward(fn, inputs: list[torch.Tensor], upstream: torch.Tensor):
    """Callable that runs fn(*inputs) and its backward; returns (output, gradients)."""

    def run():
        leaves = [t.detach().requires_grad_() for t in inputs]
        out = fn(*leaves)
        grads = torch.autograd.grad(out, leaves, upstream)
        return out, grads

    return run


def forward(fn, inputs: list[torch.Tensor]):
    def run():
        with torch.no_grad():
            return fn(*inputs), ()

    return run


def cases(device: str):
    """(name, Chinese label, ours, reference): callables returning (output, gradients)."""
    x, weight, bias, upstream_conv, upstream_up, pooled, indices = setup(device)
    conv = [x, weight, bias]
    yield ("conv_transpose2d fwd", "conv_transpose2d 前向",
           forward(lambda *t: conv_transpose2d(*t, stride=2, padding=1), conv),
           forward(lambda *t: F.conv_transpose2d(*t, stride=2, padding=1), conv))
    yield ("conv_transpose2d fwd+bwd", "conv_transpose2d 前向+反向",
           forward_backward(lambda *t: conv_transpose2d(*t, stride=2, padding=1), conv, upstream_conv),
           forward_backward(lambda *t: F.conv_transpose2d(*t, stride=2, padding=1), conv, upstream_conv))
    for mode in ("bilinear", "nearest"):
        yield (f"interpolate {mode} x2 fwd+bwd", f"interpolate {mode} ×2 前向+反向",
               forward_backward(lambda t, m=mode: interpolate(t, scale_factor=2, mode=m), [x], upstream_up),
               forward_backward(lambda t, m=mode: F.interpolate(t, scale_factor=2, mode=m), [x], upstream_up))
    yield ("max_unpool2d fwd+bwd", "max_unpool2d 前向+反向",
           forward_backward(lambda t: max_unpool2d(t, indices, 2), [pooled], upstream_up),
           forward_backward(lambda t: F.max_unpool2d(t, indices, 2), [pooled], upstream_up))


def max_difference(ours, reference) -> float:
    """The largest of max |ours - F| / max |F| over the output and every gradient (the weight's gradient sums
    8 * 128 * 128 products: its float32 rounding grows with its size)."""
    (out, grads), (ref_out, ref_grads) = ours, reference
    pairs = [(out, ref_out), *zip(grads, ref_grads)]
    return max(float((a.detach() - b.detach()).abs().max() / b.detach().abs().max()) for a, b in pairs)


def measure(devices: list[str]) -> list[dict]:
    rows = []
    for device in devices:
        for name, label, ours, reference in cases(device):
            difference = max_difference(ours(), reference())
            if difference > TOLERANCE:
                raise SystemExit(f"{name} on {device}: ours and F differ by {difference:.3g} (relative), "
                                 f"more than {TOLERANCE:g}")
            rows.append(timed_row(name, label, device, ours, reference, REPEATS,
                                  GOAL[1] if name == GOAL[0] else None, reference_name="F",
                                  max_relative_diff=difference))
    return rows


def main() -> None:
    devices = [bench_device()]
    torch.set_num_threads(2)
    conditions = in_both_conditions(lambda: measure(devices))
    mark_goals(conditions)
    payload = {
        "note": "Ratio = ours / torch.nn.functional (< 1: ours is faster), medians of interleaved repeats. "
        "conv_transpose2d: N=8, 64 -> 32 channels, 64 x 64 -> 128 x 128, kernel 4, stride 2, padding 1, bias. "
        "interpolate x2 of 8 x 64 x 64 x 64; max_unpool2d of a 2 x 2 max pooling of 8 x 64 x 128 x 128. fwd+bwd = "
        "forward and backward of a fixed random upstream gradient w.r.t. every input (and weight, bias).",
        "command": ("BENCH_DEVICE=cuda " if devices == ["cuda"] else "") + "python benchmarks/upsample.py",
        "environment": environment(),
        "conditions": conditions,
    }
    reference = "PyTorch"
    details = condition_details(payload, reference) + [
        "对照的是 `torch.nn.functional` 中的同名函数（conv_transpose2d 在 CPU 上调用 oneDNN）。",
        "输入：8 张 64 通道、$64\\times64$ 的特征图（float32）。conv_transpose2d：64 → 32 通道，卷积核 4、步长 2、"
        "填充 1，带偏置，输出 $8\\times32\\times128\\times128$；interpolate：同一批特征图放大 2 倍（bilinear，"
        "align_corners=False；nearest）；max_unpool2d：把 $8\\times64\\times128\\times128$ 特征图做 $2\\times2$ "
        "最大池化后再反池化。“前向+反向”对一个固定的随机上游梯度求反向传播（卷积对输入、权重和偏置）。",
        f"每项重复 {REPEATS} 次。测时之前先比较两者的输出和每个梯度：最大绝对误差除以 PyTorch 结果的最大绝对值，"
        "不超过 $10^{-5}$（float32）。",
    ]
    write_results(results_stem("upsample"), payload, details, reference)
    report_goals(conditions)


if __name__ == "__main__":
    main()
