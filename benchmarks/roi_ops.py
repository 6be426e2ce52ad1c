"""Time our roi_align / roi_pool against torchvision's kernels in the same run, forward and forward+backward.

Run: ``python benchmarks/roi_ops.py``. Writes benchmarks/results/roi_ops.json and roi_ops.md.
CPU with 2 threads always (and 1 thread, which is less sensitive to a busy machine); CUDA rows too
when a GPU is present. Each time is the median of several repeats, ours and the reference
alternating, so both see the same machine load.

Setup (the Faster R-CNN box head): 2 images of 800 x 800 px, a stride-16 feature map of
C = 256 x 50 x 50, 256 boxes with centers uniform in the image and sides uniform in [16, 400] px
(1 to 25 cells, clipped to the image), pooled to 7 x 7.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import median_ms  # noqa: E402  (benchmarks/timing.py)

from lectures_code.ops.roi_align import roi_align  # noqa: E402
from lectures_code.ops.roi_pool import roi_pool  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NOTE = (
    "2 images, feature map C=256 x 50 x 50 (stride 16 on 800 x 800 px), 256 boxes with sides uniform in "
    "[16, 400] px, 7 x 7 output. fwd+bwd = forward and backward of a fixed random upstream gradient w.r.t. "
    "the feature map. Median of repeats; ratio = ours / reference (< 1: ours is faster). torchvision's CPU "
    "kernels run on one thread; ours are a few multi-threaded torch ops, each of which waits for the second "
    "core: on a machine busy with other work the 2-thread rows pay for that wait, the 1-thread rows do not."
)


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
    """(name, ours, reference, tolerance): callables that return (output, input gradient or None)."""
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

        yield f"{name} fwd", lambda o=ours: forward(o), lambda r=reference: forward(r), tol
        yield f"{name} fwd+bwd", lambda o=ours: forward_backward(o), lambda r=reference: forward_backward(r), tol


def main() -> None:
    # ROI_BENCH=cuda on a GPU machine times only the CUDA rows and writes roi_ops_cuda.{json,md}.
    only_cuda = os.environ.get("ROI_BENCH") == "cuda"
    settings = [] if only_cuda else [("cpu", 2), ("cpu", 1)]
    settings += [("cuda", 2)] if torch.cuda.is_available() else []
    stem = "roi_ops_cuda" if only_cuda else "roi_ops"
    rows = []
    for device, threads in settings:
        torch.set_num_threads(threads)
        for name, ours, reference, tol in cases(device):
            (out, grad), (ref_out, ref_grad) = ours(), reference()
            diff = (out - ref_out).abs()
            max_abs_diff = float(diff.max()) if diff.numel() else 0.0
            if max_abs_diff > tol:
                # Recorded rather than fatal: a timing run should still report how far apart the two are.
                print(f"WARNING {name} on {device}: max |ours - torchvision| = {max_abs_diff:.3g} > {tol:g} "
                      f"in {int((diff > tol).sum())} of {diff.numel()} outputs")
            grad_diff = float((grad - ref_grad).abs().max()) if grad is not None else None
            if grad_diff is not None and grad_diff > 1e-5:
                print(f"WARNING {name} on {device}: max gradient difference {grad_diff:.3g}")
            ours_ms, ref_ms = median_ms(ours, reference, device, repeats=9)
            where = f"{device}, {threads} thread{'s' if threads > 1 else ''}" if device == "cpu" else device
            rows.append(
                {
                    "case": f"{name} ({where})",
                    "device": device,
                    "threads": threads if device == "cpu" else None,
                    "ours_ms": round(ours_ms, 3),
                    "reference_ms": round(ref_ms, 3),
                    "ratio": round(ours_ms / ref_ms, 3),
                    "repeats": 9,
                    "max_abs_diff": max_abs_diff,
                    "max_abs_grad_diff": grad_diff,
                }
            )
            print(f"{rows[-1]['case']:55s} ours {ours_ms:9.3f} ms   torchvision {ref_ms:9.3f} ms", flush=True)

    environment = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(
        json.dumps({"note": NOTE, "environment": environment, "rows": rows}, indent=2) + "\n"
    )
    lines = ["| case | ours ms | reference ms | ratio | max abs diff |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['ours_ms']:.3f} | {r['reference_ms']:.3f} | {r['ratio']:.2f} "
                     f"| {r['max_abs_diff']:.2g} |")
    gpu = f", {environment['gpu']}" if environment["gpu"] else ""
    lines += [
        "",
        f"Reference: torchvision {environment['torch']} / {environment['torchvision']}{gpu}; "
        f"{environment['cpu_count']} CPU cores, load average {environment['load_average_1min']} at the end. {NOTE}",
    ]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
