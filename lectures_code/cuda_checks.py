"""What must be checked on a CUDA machine, and what was: the list that ``benchmarks/cuda_check.py`` runs and
that the "running" page shows with each check's outcome.

Every test runs on the CPU in CI; the CUDA variants (``@pytest.mark.cuda``) and the GPU timings need a GPU.
``python benchmarks/cuda_check.py`` on a GPU machine runs them all and writes ``lectures_code/results/
cuda_report.json`` (never written by hand); until it has run, every check below is listed as not verified.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

REPORT = "cuda_report.json"


@dataclass(frozen=True)
class Check:
    id: str
    description: str  # in Chinese: the page shows it
    kind: str  # "pytest": the cuda-marked tests under ``target`` (space-separated paths); "benchmark": a script
    target: str


CHECKS = [
    Check("ops", "box_iou、NMS、batched_nms、RoI Pool 与 RoI Align（含反向传播）、掩码的投影与粘贴、上采样（转置卷积、"
          "插值、最大反池化）在 CUDA 上与参考实现逐项比对", "pytest", "tests/ops"),
    Check("metrics", "COCO（框、掩码、关键点）与 VOC 评估、分割指标（mIoU、全景质量）读入 CUDA 张量", "pytest",
          "tests/metrics"),
    Check("detection", "锚框、匹配、采样、RPN 与 FCOS 的训练目标，各检测器的前向、损失与推理在 CUDA 上", "pytest",
          "tests/detection"),
    Check("training", "每个注册模型在 CUDA 上用混合精度（float16 autocast + GradScaler）经共享训练循环训练几步",
          "pytest", "tests/training"),
    Check("lectures", "Lecture 12 的例子（含 TorchScript、torch.compile）、迁移学习与 EfficientNet-Lite0 在 CUDA 上",
          "pytest", "tests/lecture12 tests/lecture13 tests/models"),
    Check("box-ops-speed", "box_iou 与 NMS 在 CUDA 上的速度（与 torchvision 同一次运行对比）", "benchmark", "box_ops"),
    Check("roi-ops-speed", "RoI Pool 与 RoI Align 在 CUDA 上的速度（与 torchvision 同一次运行对比）", "benchmark",
          "roi_ops"),
    Check("masks-speed", "掩码的粘贴与投影在 CUDA 上的速度（与 torchvision 同一次运行对比）", "benchmark", "masks"),
    Check("detector-latency", "每个检测器在 CUDA 上推理一张画布的时间", "benchmark", "detectors"),
]


def report() -> dict | None:
    """The last report of ``benchmarks/cuda_check.py`` (None if it has not run on a GPU yet)."""
    path = resources.files("lectures_code.results") / REPORT
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
