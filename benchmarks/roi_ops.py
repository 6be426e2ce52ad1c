"""Time our roi_align / roi_pool against torchvision's kernels in the same run, forward and forward+backward.

Run: ``python benchmarks/roi_ops.py``. Writes lectures_code/results/benchmarks/roi_ops.json and roi_ops.md.
CPU with 2 threads (``BENCH_DEVICE=cuda``: the CUDA rows instead, written to roi_ops_cuda.{json,md}).
Two conditions, one after the other: the machine as it is, and with one competing busy process
(``benchmarks/busy.py``). Each time is the median of several repeats, ours and the reference
alternating, so both see the same machine load.

Setup (the Faster R-CNN box head): 2 images of 800 x 800 px, a stride-16 feature map of
C = 256 x 50 x 50, 256 boxes with centers uniform in the image and sides uniform in [16, 400] px
(1 to 25 cells, clipped to the image), pooled to 7 x 7.

Goal (issue 8): roi_pool forward at most 1.0x torchvision's time on the CPU; the JSON records whether
that row meets it in each condition.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torchvision

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

from lectures_code.ops.roi_align import roi_align  # noqa: E402
from lectures_code.ops.roi_pool import roi_pool  # noqa: E402

REPEATS = 9
GOAL = ("roi_pool fwd", 1.0)


def setup(device: str):
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 256, 50, 50, generator=g)
    k = 256
    centers = torch.rand(k, 2, generator=g) * 800
    sides = torch.rand(k, 2, generator=g) * 384 + 16
    boxes = torch.cat([(centers - sides / 2).clamp(0, 800), (centers + sides / 2).clamp(0, 800)], 1)
    rois = torch.cat([torch.randint(0, 2, (k, 1), generator=g).float(), boxes], 1)
    upstream = torch.randn(k, 256, 7, 7, generator=g)
    return features.to(device), rois.to(device), upstream.to(device)


def cases(device: str):
    """(name, Chinese label, ours, reference, tolerance): callables that return (output, input gradient or None)."""
    features, rois, upstream = setup(device)
    tv = torchvision.ops
    ops = [
        (
            "roi_align sampling_ratio=2",
            lambda f: roi_align(f, rois, 7, 1 / 16, 2),
            lambda f: tv.roi_align(f, rois, 7, 1 / 16, 2),
        ),
        (
            "roi_align sampling_ratio=-1",
            lambda f: roi_align(f, rois, 7, 1 / 16, -1),
            lambda f: tv.roi_align(f, rois, 7, 1 / 16, -1),
        ),
        ("roi_pool", lambda f: roi_pool(f, rois, 7, 1 / 16), lambda f: tv.roi_pool(f, rois, 7, 1 / 16)),
    ]
    for name, ours, reference in ops:
        tol = 0.0 if name == "roi_pool" else 1e-5

        def forward(fn=None):
            return fn(features), None

        def forward_backward(fn=None):
            x = features.detach().requires_grad_()
            out = fn(x)
            out.backward(upstream)
            return out, x.grad

        yield f"{name} fwd", f"{name} 前向", lambda o=ours: forward(o), lambda r=reference: forward(r), tol
        yield (
            f"{name} fwd+bwd", f"{name} 前向+反向", lambda o=ours: forward_backward(o),
            lambda r=reference: forward_backward(r), tol,
        )


def measure(devices: list[str]) -> list[dict]:
    rows = []
    for device in devices:
        for name, label, ours, reference, tol in cases(device):
            (out, grad), (ref_out, ref_grad) = ours(), reference()
            diff = (out - ref_out).detach().abs()
            max_abs_diff = float(diff.max()) if diff.numel() else 0.0
            if max_abs_diff > tol:
                # Recorded rather than fatal: a timing run should still report how far apart the two are.
                print(f"WARNING {name} on {device}: max |ours - torchvision| = {max_abs_diff:.3g} > {tol:g} "
                      f"in {int((diff > tol).sum())} of {diff.numel()} outputs")
            grad_diff = float((grad - ref_grad).abs().max()) if grad is not None else None
            if grad_diff is not None and grad_diff > 1e-5:
                print(f"WARNING {name} on {device}: max gradient difference {grad_diff:.3g}")
            rows.append(timed_row(name, label, device, ours, reference, REPEATS,
                                  GOAL[1] if name == GOAL[0] else None, max_abs_diff=max_abs_diff,
                                  max_abs_grad_diff=grad_diff))
    return rows


def main() -> None:
    devices = [bench_device()]
    stem = results_stem("roi_ops")
    torch.set_num_threads(2)
    conditions = in_both_conditions(lambda: measure(devices))
    mark_goals(conditions)
    payload = {
        "note": "Ratio = ours / torchvision (< 1: ours is faster), medians of interleaved repeats. 2 images, "
        "feature map C=256 x 50 x 50 (stride 16 on 800 x 800 px), 256 boxes with sides uniform in [16, 400] px, "
        "7 x 7 output. fwd+bwd = forward and backward of a fixed random upstream gradient w.r.t. the feature map.",
        "command": ("BENCH_DEVICE=cuda " if devices == ["cuda"] else "") + "python benchmarks/roi_ops.py",
        "environment": environment(),
        "conditions": conditions,
    }
    details = condition_details(payload) + [
        "输入：2 张 800×800 像素的图像，步长 16 的特征图 $C=256$、$50\\times50$；256 个框，中心在图像内均匀分布，"
        "边长在 [16, 400] 像素内均匀分布（1 到 25 个特征格）并裁剪到图像内；输出 $7\\times7$。"
        "“前向+反向”对特征图求一个固定随机上游梯度的反向传播。",
        f"每项重复 {REPEATS} 次。测时之前先比较两者的输出（RoI Pool 逐位相等，RoI Align 误差不超过 $10^{{-5}}$）"
        "和特征图的梯度（误差不超过 $10^{-5}$）。",
    ]
    write_results(stem, payload, details)
    report_goals(conditions)


if __name__ == "__main__":
    main()
