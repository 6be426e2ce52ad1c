"""Time our box ops against torchvision in the same run: box_iou, nms, batched_nms.

Run: ``python benchmarks/box_ops.py``. Writes benchmarks/results/box_ops.json and box_ops.md.
CPU with 2 threads always; CUDA rows too when a GPU is present. Each time is the median of several
repeats, ours and the reference alternating, so both see the same machine load.

Boxes: centers uniform in a 1000 x 1000 image, width and height uniform in [10, 200], clipped
to the image, distinct
scores uniform in [0, 1), IoU threshold 0.5; batched_nms with 10 classes drawn uniformly.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import median_ms  # noqa: E402  (benchmarks/timing.py)

from lectures_code.ops.boxes import box_iou  # noqa: E402
from lectures_code.ops.nms import batched_nms, nms, nms_simple  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
THRESHOLD = 0.5
BOXES_NOTE = (
    "Boxes: centers uniform in a 1000x1000 image, sides uniform in [10, 200], clipped to the image, "
    "distinct scores in [0, 1), "
    "IoU threshold 0.5, batched_nms with 10 classes. Median of repeats; ratio = ours / reference "
    "(< 1: ours is faster)."
)


def random_boxes(n: int, seed: int, device: str):
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(n, 2, generator=g) * 1000
    sizes = torch.rand(n, 2, generator=g) * 190 + 10
    # Clipped to the image, as a detector does before NMS (batched_nms needs coordinates >= 0
    # for the offset trick).
    boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], dim=1).clamp(0, 1000)
    # Distinct scores: torchvision's per-class loop orders equal scores arbitrarily.
    scores = torch.randperm(n, generator=g) / n
    labels = torch.randint(0, 10, (n,), generator=g)
    return boxes.to(device), scores.to(device), labels.to(device)


def cases(device: str):
    """(name, ours, reference, repeats); every pair is checked for equal output first."""
    b1k, s1k, l1k = random_boxes(1000, 0, device)
    b10k, s10k, l10k = random_boxes(10_000, 1, device)
    tv = torchvision.ops
    yield "box_iou 1k x 1k", lambda: box_iou(b1k, b1k), lambda: tv.box_iou(b1k, b1k), 21
    yield "nms 1k", lambda: nms(b1k, s1k, THRESHOLD), lambda: tv.nms(b1k, s1k, THRESHOLD), 21
    yield "nms 10k", lambda: nms(b10k, s10k, THRESHOLD), lambda: tv.nms(b10k, s10k, THRESHOLD), 7
    yield (
        "nms_simple (teaching loop) 1k",
        lambda: nms_simple(b1k, s1k, THRESHOLD),
        lambda: tv.nms(b1k, s1k, THRESHOLD),
        5,
    )
    b999, s999, l999 = b1k[:999], s1k[:999], l1k[:999]
    yield (
        "batched_nms 999 (offset trick)",
        lambda: batched_nms(b999, s999, l999, THRESHOLD),
        lambda: tv.batched_nms(b999, s999, l999, THRESHOLD),
        21,
    )
    yield (
        "batched_nms 10k (per-class loop on CPU)" if device == "cpu" else "batched_nms 10k (offset trick)",
        lambda: batched_nms(b10k, s10k, l10k, THRESHOLD),
        lambda: tv.batched_nms(b10k, s10k, l10k, THRESHOLD),
        7,
    )
    if device == "cuda":
        b100k, s100k, _ = random_boxes(100_000, 2, device)
        yield "nms 100k", lambda: nms(b100k, s100k, THRESHOLD), lambda: tv.nms(b100k, s100k, THRESHOLD), 5


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    torch.set_num_threads(2)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for name, ours, reference, repeats in cases(device):
            out, ref = ours(), reference()
            same = torch.equal(out, ref) if out.dtype == torch.int64 else torch.allclose(out, ref)
            if not same:
                raise SystemExit(f"{name} on {device}: our output differs from torchvision's")
            ours_ms, ref_ms = median_ms(ours, reference, device, repeats)
            rows.append(
                {
                    "case": f"{name} ({device})",
                    "device": device,
                    "ours_ms": round(ours_ms, 3),
                    "reference_ms": round(ref_ms, 3),
                    "ratio": round(ours_ms / ref_ms, 3),
                    "repeats": repeats,
                }
            )
            print(f"{rows[-1]['case']:48s} ours {ours_ms:9.3f} ms   torchvision {ref_ms:9.3f} ms")

    environment = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "box_ops.json").write_text(
        json.dumps({"note": BOXES_NOTE, "environment": environment, "rows": rows}, indent=2) + "\n"
    )
    lines = ["| case | ours ms | reference ms | ratio |", "| --- | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['ours_ms']:.3f} | {r['reference_ms']:.3f} | {r['ratio']:.2f} |")
    gpu = f", {environment['gpu']}" if environment["gpu"] else ""
    lines += [
        "",
        f"Measured with torch {environment['torch']}, torchvision {environment['torchvision']} "
        f"(the reference), {environment['threads']} CPU threads ({environment['cpu']}){gpu}. {BOXES_NOTE}",
    ]
    (RESULTS / "box_ops.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
