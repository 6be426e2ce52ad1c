"""Where do RoI Pool / RoI Align on CUDA differ from torchvision's CUDA kernels, and does torchvision's
CUDA kernel itself agree with its CPU kernel there? Run on a GPU machine:

    python benchmarks/roi_cuda_diagnose.py OUT_DIR

Writes OUT_DIR/roi_cuda_diagnose.json (counts) and OUT_DIR/roi_cuda_cases.pt (the first mismatching
inputs, loadable on a CPU-only machine for debugging).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lectures_code.ops.roi_align import roi_align  # noqa: E402
from lectures_code.ops.roi_pool import roi_pool  # noqa: E402


def random_rois(k, n, h, w, g):
    corners = torch.rand(k, 4, generator=g, dtype=torch.float64) * torch.tensor([w, h, w, h]) * 1.4 - 5
    tl, br = corners[:, :2], corners[:, 2:]
    corners = torch.cat([torch.minimum(tl, br), torch.maximum(tl, br)], 1)
    return torch.cat([torch.randint(0, n, (k, 1), generator=g).double(), corners], 1)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    summary, cases = {}, []
    for dtype in (torch.float32, torch.float64):
        for op in ("roi_pool", "roi_align_aligned", "roi_align"):
            counts = {"seeds": 0, "ours_vs_tv_cuda": 0, "tv_cpu_vs_tv_cuda": 0, "ours_cuda_vs_ours_cpu": 0}
            for seed in range(40):
                g = torch.Generator().manual_seed(seed)
                x = torch.randn(2, 3, 15, 15, generator=g, dtype=torch.float64).to(dtype)
                rois = random_rois(12, 2, 15, 15, g).to(dtype)
                if op == "roi_pool":
                    ours_fn, tv_fn = (lambda a, b: roi_pool(a, b, 3)), (lambda a, b: torchvision.ops.roi_pool(a, b, 3))
                    tol = 0.0
                else:
                    aligned = op == "roi_align_aligned"
                    ours_fn = lambda a, b, al=aligned: roi_align(a, b, 3, 1.0, -1, al)  # noqa: E731
                    tv_fn = lambda a, b, al=aligned: torchvision.ops.roi_align(a, b, 3, 1.0, -1, al)  # noqa: E731
                    tol = 1e-10 if dtype == torch.float64 else 1e-5
                ours_cpu, tv_cpu = ours_fn(x, rois), tv_fn(x, rois)
                ours_gpu, tv_gpu = ours_fn(x.cuda(), rois.cuda()).cpu(), tv_fn(x.cuda(), rois.cuda()).cpu()
                bad = lambda a, b, t=tol: bool(((a - b).abs() > t).any())  # noqa: E731
                counts["seeds"] += 1
                counts["ours_vs_tv_cuda"] += bad(ours_gpu, tv_gpu)
                counts["tv_cpu_vs_tv_cuda"] += bad(tv_cpu, tv_gpu)
                counts["ours_cuda_vs_ours_cpu"] += bad(ours_gpu, ours_cpu)
                if bad(ours_gpu, tv_gpu) and len(cases) < 20:
                    where = ((ours_gpu - tv_gpu).abs() > tol).nonzero()[0].tolist()
                    cases.append({"op": op, "dtype": str(dtype), "seed": seed, "x": x, "rois": rois, "first": where,
                                  "ours_cpu": ours_cpu, "ours_cuda": ours_gpu, "tv_cpu": tv_cpu, "tv_cuda": tv_gpu})
            summary[f"{op} {dtype}"] = counts
    (out / "roi_cuda_diagnose.json").write_text(json.dumps(summary, indent=1))
    torch.save(cases, out / "roi_cuda_cases.pt")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "roi-cuda-diagnose"))
