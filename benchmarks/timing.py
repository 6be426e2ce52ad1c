"""Timing shared by the benchmark scripts: ours and the reference, interleaved, in the same run."""

from __future__ import annotations

import statistics
import time

import torch


def median_ms(ours, reference, device: str, repeats: int) -> tuple[float, float]:
    """Median wall time in ms of ``ours()`` and ``reference()``, alternating so load hits both alike.

    CUDA work is asynchronous: synchronize before and after, or only the launch is timed.
    """

    def once(fn):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1e3

    once(ours), once(reference)  # warm-up: allocator, lazy init, kernels
    ours_ms, ref_ms = [], []
    for _ in range(repeats):
        ours_ms.append(once(ours))
        ref_ms.append(once(reference))
    return statistics.median(ours_ms), statistics.median(ref_ms)
