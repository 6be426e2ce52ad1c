"""`lectures evaluate MODEL` scores a shipped detector; `lectures train` rejects unknown models."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lectures_code.cli import DETECTORS, main


def test_evaluate_prints_the_coco_summary(capsys):
    assert main(["evaluate", "fcos", "--num-test-images", "5"]) == 0
    out = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]" in out
    assert '"per_class_ap"' in out


def test_every_detector_has_a_training_module():
    import importlib

    for module_name, _, function in DETECTORS.values():
        module = importlib.import_module(f"lectures_code.detection.{module_name}")
        assert callable(module.main) and callable(getattr(module, function))


@pytest.mark.parametrize("model", sorted(DETECTORS))
def test_every_shipped_detector_evaluates(model, capsys):
    from lectures_code import checkpoints

    checkpoint = DETECTORS[model][1]
    assert checkpoint in checkpoints.shipped_names(), f"{checkpoint} is not shipped"
    assert main(["evaluate", model, "--num-test-images", "2"]) == 0
    assert '"images": 2' in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["train", "yolo"],
    ["evaluate", "yolo"],
    ["evaluate", "fcos", "--num-test-images", "0"],
])
def test_bad_detector_arguments_give_usage(argv):
    proc = subprocess.run([sys.executable, "-m", "lectures_code", *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "usage:" in proc.stderr and "Traceback" not in proc.stderr
