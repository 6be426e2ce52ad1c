"""Does pooling RoIs from coarser FPN levels help on the digit canvases? Re-evaluate the shipped
Faster R-CNN + FPN with other canonical scales s0 of the level mapping k = floor(4 + log2(sqrt(wh) / s0)).

Run: ``python benchmarks/fpn_roi_levels.py``. Writes lectures_code/results/benchmarks/fpn_roi_levels.{json,md}.
The model is NOT retrained: only the level each RoI is pooled from changes (s0 = 48 is what it was trained with).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lectures_code.data.digit_canvases import DigitCanvases  # noqa: E402
from lectures_code.detection.evaluation import evaluate_detector  # noqa: E402
from lectures_code.ops.roi_align import map_rois_to_levels  # noqa: E402
from lectures_code.registry import load_pretrained  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "lectures_code" / "results" / "benchmarks"  # package data
SCALES = (224, 48, 32)
NUM_TEST_IMAGES = 200


def level_shares(scale: float, boxes: torch.Tensor) -> list[float]:
    """Fraction of the ground-truth boxes that the mapping sends to P3, P4, P5."""
    levels = map_rois_to_levels(boxes, 3, 5, scale, 4)
    return [round(float((levels == level).float().mean()), 3) for level in (3, 4, 5)]


def main() -> dict:
    torch.set_num_threads(1)
    model = load_pretrained("faster-rcnn-fpn")
    trained_scale = model.roi_canonical_scale
    dataset = DigitCanvases("test", size=NUM_TEST_IMAGES, seed=0)
    boxes = torch.cat([dataset[i][1]["boxes"].float() for i in range(NUM_TEST_IMAGES)])
    rows = {}
    for scale in SCALES:
        model.roi_canonical_scale = scale
        stats = evaluate_detector(model, NUM_TEST_IMAGES)["stats"]
        rows[scale] = {"AP": round(stats[0], 4), "AP50": round(stats[1], 4), "AP_small": round(stats[3], 4),
                       "AP_medium": round(stats[4], 4), "gt_share_P3_P4_P5": level_shares(scale, boxes)}
        print(scale, rows[scale])
    result = {"command": "python benchmarks/fpn_roi_levels.py", "trained_with": trained_scale, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fpn_roi_levels.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| s0 | 真实框去 P3 / P4 / P5 的比例 | AP | AP50 | AP_small | AP_medium |",
             "| ---: | --- | ---: | ---: | ---: | ---: |"]
    for scale, row in rows.items():
        share = " / ".join(f"{100 * s:.0f}%" for s in row["gt_share_P3_P4_P5"])
        mark = "（训练时）" if scale == trained_scale else ""
        lines.append(f"| {scale}{mark} | {share} | {row['AP']:.3f} | {row['AP50']:.3f} | {row['AP_small']:.3f} | "
                     f"{row['AP_medium']:.3f} |")
    lines += ["", f"同一个训练好的模型（训练时 $s_0 = {trained_scale}$），只换 RoI 的层号映射，"
              f"在 {NUM_TEST_IMAGES} 张测试画布上评估（`{result['command']}`）。"]
    (RESULTS / "fpn_roi_levels.md").write_text("\n".join(lines) + "\n")
    return result


if __name__ == "__main__":
    main()
