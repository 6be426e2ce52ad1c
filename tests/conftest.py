"""Shared fixtures: the devices every GPU-aware test is parametrized over."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

# Tests never download anything and never phone home.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# A user's own retrained checkpoints (loaded before the shipped ones) must not change what the tests see.
os.environ["LECTURES_CODE_HOME"] = tempfile.mkdtemp(prefix="lectures-code-home-")

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")],
    ),
]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def pycocotools_evaluate():
    """The reference COCO evaluation: ``run(gt, detections)`` -> pycocotools' COCOeval after
    evaluate / accumulate / summarize, with its printing silenced."""
    import contextlib
    import copy
    import io
    import warnings

    coco = pytest.importorskip("pycocotools.coco")
    cocoeval = pytest.importorskip("pycocotools.cocoeval")

    def run(gt: dict, detections: list):
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coco_gt = coco.COCO()
            coco_gt.dataset = copy.deepcopy(gt)
            coco_gt.createIndex()
            evaluator = cocoeval.COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(detections)), "bbox")
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return evaluator

    return run
