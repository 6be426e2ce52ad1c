"""Every trainable model of the notes, one entry each: what to build, what to train it on, how, how to
evaluate it, where its shipped weights and its training record live.

The CLI (``lectures train | evaluate | list``), the checkpoints, the demos, the figures and the benchmarks
all read this table; adding a model is adding one entry. An entry is data: its callables are named as
``"module:attribute"`` strings and imported only when used, so reading the registry costs nothing and
imports flow one way (the model modules never import the registry, the training loop or the CLI).

    lectures_code.registry.load_pretrained("fcos")           # the shipped model, hash-checked, eval mode
    lectures_code.registry.train("fcos", epochs=1, max_steps=5)   # (model, history) through the shared loop
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lectures_code import checkpoints
from lectures_code.training.recipe import Recipe


def _resolve(target: str) -> Callable:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class ModelEntry:
    """One trainable model.

    Attributes:
        name: the CLI name (``lectures train NAME``).
        lecture: the lecture whose page uses it.
        title: its name on the pages and in the demos.
        kind: its family in a few words, e.g. "两阶段 · RPN" (figures and tables).
        summary: one Chinese line: how it works (demos, ``lectures list``).
        model: "module:Class"; ``Class(**config)`` builds it, ``model.config()`` gives the config back.
        training_set: "module:callable" (split, size, seed, progress) -> a TrainingSet.
        evaluate: "module:callable" (model, num_test_images, progress) -> the record's test fields.
        recipe: the training recipe: the defaults of ``lectures train``, those of the shipped model's run.
        checkpoint: the shipped file's stem in ``lectures_code/checkpoints`` (``<checkpoint>.pt``).
        record: (results file stem, key) of its training record, e.g. ("lecture14_detectors", "fcos").
        task: "detection" (multi-object, COCO AP) or "single-object".
        proposals: "RPN", "Selective Search" (two-stage: proposals the demo can show) or "" (none).
        cells: "anchors" or "points": what its inference API can show per feature-map cell ("" none).
    """

    name: str
    lecture: int
    title: str
    kind: str
    summary: str
    model: str
    training_set: str
    evaluate: str
    recipe: Recipe
    checkpoint: str
    record: tuple[str, str]
    task: str = "detection"
    proposals: str = ""
    cells: str = ""
    config: dict = field(default_factory=dict)

    def model_class(self) -> type:
        return _resolve(self.model)

    def build(self, **config) -> torch.nn.Module:
        """A fresh model (random weights: seed first), the entry's config updated with ``config``."""
        return self.model_class()(**(self.config | config))

    def make_training_set(self, size: int, seed: int = 0, progress: bool = False):
        return _resolve(self.training_set)("train", size, seed, progress)

    def evaluation_record(self, model, num_test_images: int, progress: bool = False) -> dict:
        return _resolve(self.evaluate)(model, num_test_images, progress)


_DETECTOR_SET = "lectures_code.data.digit_canvases:CanvasDetectionSet"
_DETECTOR_RECORD = "lectures_code.detection.evaluation:detector_record"

MODELS: dict[str, ModelEntry] = {entry.name: entry for entry in [
    ModelEntry(
        "single-object", 13, "单目标检测器 (single-object)", "单目标 · 分类 + 回归",
        "一个 CNN 特征向量 → 10 类分类头 + 4 个数的框回归头（多任务损失）",
        "lectures_code.detection.single_object:SingleObjectDetector",
        "lectures_code.detection.single_object:SingleObjectSet",
        "lectures_code.detection.single_object:evaluation_record",
        Recipe(num_train_images=5000, epochs=1, steps_per_epoch=2000, batch_size=32, lr=3e-3, max_grad_norm=None,
               threads=1, num_test_images=500),
        "single_object_digits", ("lecture13_detectors", "single_object"), task="single-object"),
    ModelEntry(
        "rcnn", 13, "R-CNN", "两阶段 · Selective Search",
        "Selective Search 候选框 → 每个框裁剪缩放 → CNN 分类 + 回归 → 按类 NMS",
        "lectures_code.detection.rcnn:RCNN",
        "lectures_code.detection.rcnn:RegionSet",
        "lectures_code.detection.rcnn:evaluation_record",
        Recipe(num_train_images=600, epochs=5, batch_size=128, lr=2e-3, max_grad_norm=None, threads=1),
        "rcnn_digits", ("lecture13_detectors", "rcnn"), proposals="Selective Search"),
    ModelEntry(
        "fast-rcnn", 14, "Fast R-CNN", "两阶段 · Selective Search",
        "Selective Search 候选框 → 整张图只过一次 CNN → RoI Align 7×7 → 分类 + 回归 → 按类 NMS",
        "lectures_code.detection.fast_rcnn:FastRCNN",
        "lectures_code.detection.fast_rcnn:ProposalCanvasSet",
        "lectures_code.detection.fast_rcnn:evaluation_record",
        Recipe(num_train_images=4000, epochs=5, batch_size=8, lr=2e-3, threads=1),
        "fast_rcnn_digits", ("lecture14_detectors", "fast_rcnn"), proposals="Selective Search"),
    ModelEntry(
        "faster-rcnn", 14, "Faster R-CNN", "两阶段 · RPN",
        "RPN（stride 8 上每格 15 个锚框 → 前 100 个候选框）→ RoI Align 7×7 → 分类 + 回归 → 按类 NMS",
        "lectures_code.detection.faster_rcnn:FasterRCNN", _DETECTOR_SET, _DETECTOR_RECORD,
        Recipe(num_train_images=4000, epochs=6, batch_size=8, lr=2e-3, threads=1),
        "faster_rcnn_digits", ("lecture14_detectors", "faster_rcnn"), proposals="RPN", cells="anchors"),
    ModelEntry(
        "faster-rcnn-fpn", 14, "Faster R-CNN + FPN", "两阶段 · RPN · FPN",
        "FPN P3–P5，同一个 RPN 头读每一层 → 按层选候选框 → 按框大小选层做 RoI Align → 分类 + 回归 → 按类 NMS",
        "lectures_code.detection.faster_rcnn_fpn:FasterRCNNFPN", _DETECTOR_SET, _DETECTOR_RECORD,
        Recipe(num_train_images=4000, epochs=6, batch_size=8, lr=2e-3, threads=1),
        "faster_rcnn_fpn_digits", ("lecture14_detectors", "faster_rcnn_fpn"), proposals="RPN", cells="anchors"),
    ModelEntry(
        "retinanet", 14, "RetinaNet", "单阶段 · 锚框 · FPN",
        "FPN P3–P5，每个位置 9 个锚框直接分类（focal loss）+ 回归，无候选框 → 按类 NMS",
        "lectures_code.detection.retinanet:RetinaNet", _DETECTOR_SET, _DETECTOR_RECORD,
        Recipe(num_train_images=4000, epochs=14, batch_size=16, lr=2e-3, threads=1),
        "retinanet_digits", ("lecture14_detectors", "retinanet"), cells="anchors"),
    ModelEntry(
        "fcos", 14, "FCOS", "单阶段 · 无锚框 · FPN",
        "FPN P3–P5 每个点直接预测类别、(l, t, r, b) 与 centerness，无锚框 → 按类 NMS",
        "lectures_code.detection.fcos:FCOS", _DETECTOR_SET, _DETECTOR_RECORD,
        Recipe(num_train_images=4000, epochs=14, batch_size=16, lr=2e-3, threads=1),
        "fcos_digits", ("lecture14_detectors", "fcos"), cells="points"),
]}


def get(name: str) -> ModelEntry:
    """The entry called ``name`` (its CLI name, e.g. "faster-rcnn", or its checkpoint, "faster_rcnn_digits")."""
    if name in MODELS:
        return MODELS[name]
    for entry in MODELS.values():
        if name == entry.checkpoint:
            return entry
    raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


def shipped(directory: str | os.PathLike | None = None) -> list[ModelEntry]:
    """The entries whose checkpoint is present and listed in SHA256SUMS (in registry order)."""
    present = set(checkpoints.shipped_files(directory))
    return [entry for entry in MODELS.values() if f"{entry.checkpoint}.pt" in present]


def load_pretrained(name: str, directory: str | os.PathLike | None = None,
                    device: str | torch.device = "cpu") -> torch.nn.Module:
    """The shipped model ``name`` (CLI or checkpoint name), SHA-256-checked, ``weights_only``-loaded, in eval
    mode, with its checkpoint metadata as ``model.metadata``. The model is built from the config stored in
    the checkpoint, so a checkpoint trained with other settings loads as what it is."""
    entry = get(name)
    state_dict, metadata = checkpoints.load_checkpoint(entry.checkpoint, directory)
    model = entry.model_class()(**metadata.get("config", {}))
    model.load_state_dict(state_dict)
    model.metadata = metadata
    return model.to(device).eval()


def train(name: str, *, device: str | torch.device = "cpu", seed: int = 0, progress: bool = False,
          checkpoint_path: str | os.PathLike | None = None, resume: bool = True, max_steps: int | None = None,
          config: dict | None = None, **recipe_options):
    """Train the model ``name`` through the shared loop: (model in eval mode, history).

    ``recipe_options`` override the entry's recipe (e.g. ``num_train_images=64, epochs=1``); ``config``
    overrides constructor arguments.
    """
    from lectures_code.training.run import train_entry

    entry = get(name)
    model, history, _ = train_entry(entry, entry.recipe.with_options(**recipe_options), device=device, seed=seed,
                                    checkpoint_path=checkpoint_path, resume=resume, max_steps=max_steps,
                                    config=config, progress=progress)
    return model, history


def default_checkpoint_path(entry: ModelEntry) -> Path:
    """Where ``lectures train`` keeps the resumable per-epoch state of a run."""
    return checkpoints.user_dir() / "runs" / f"{entry.checkpoint.removesuffix('_digits')}_train.pt"
