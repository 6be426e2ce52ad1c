"""`lectures train | evaluate | list` for the registry models, in this process and as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lectures_code import registry
from lectures_code.cli import main


def test_evaluate_prints_the_coco_summary(capsys):
    assert main(["evaluate", "fcos", "--num-test-images", "5"]) == 0
    out = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]" in out
    assert '"per_class_ap"' in out


@pytest.mark.parametrize("model", list(registry.MODELS))
def test_every_shipped_model_evaluates(model, capsys):
    assert main(["evaluate", model, "--num-test-images", "2"]) == 0
    assert '"test"' in capsys.readouterr().out


def test_list_names_every_model_and_whether_it_is_shipped(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in registry.MODELS:
        assert f"  {name} " in out
    assert "not trained" not in out and out.count("shipped") == len(registry.MODELS)


def test_train_runs_the_shared_loop_and_records_the_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LECTURES_CODE_HOME", str(tmp_path))
    argv = ["train", "fcos", "--num-train-images", "4", "--epochs", "1", "--batch-size", "2", "--num-test-images",
            "2", "--config", "num_convs=1", "--checkpoint-path", str(tmp_path / "run.pt")]  # with progress bars
    assert main(argv) == 0
    out = capsys.readouterr().out
    record = json.loads(out[out.index("{"):])
    assert record["command"] == "lectures " + " ".join(argv)
    assert record["steps"] == 2 and record["train_images"] == 4 and record["settings"]["num_convs"] == 1
    assert set(record["test"]) >= {"AP", "AP50"} and record["test_images"] == 2
    assert (tmp_path / "run.pt").is_file()


@pytest.mark.parametrize("argv, message", [
    (["train", "yolo"], "invalid choice"),
    (["evaluate", "yolo"], "invalid choice"),
    (["evaluate", "fcos", "--num-test-images", "0"], "must be at least 1"),
    (["train", "fcos", "--lr", "nan"], "finite number"),
    (["train", "fcos", "--epochs", "-2"], "must be at least 1"),
    (["train", "fcos", "--config", "no_such_argument=1", "--num-train-images", "2"], "no_such_argument"),
    (["train", "fcos", "--config", "noequals", "--num-train-images", "2"], "KEY=VALUE"),
])
def test_bad_arguments_give_a_message_not_a_traceback(argv, message):
    proc = subprocess.run([sys.executable, "-m", "lectures_code", *argv], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
