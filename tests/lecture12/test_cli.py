"""The CLI lists and runs examples, and answers bad arguments with a usage message."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lectures_code.cli import main


def test_list_shows_every_example(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ["tensors", "autograd", "adam", "dataloader", "jit-script", "compile"]:
        assert name in out


def test_run_prints_the_loss_and_writes_a_plot(tmp_path, capsys):
    plot = tmp_path / "loss.png"
    assert main(["run", "autograd", "--steps", "20", "--device", "cpu", "--quiet", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "loss 2.89053e+07 ->" in out and "device=cpu steps=20" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    (["run", "autograd", "--lr", "-1"], "must be a finite number > 0"),
    (["run", "autograd", "--lr", "nan"], "must be a finite number > 0"),
    (["run", "autograd", "--lr", "abc"], "expected a number"),
    (["run", "autograd", "--steps", "0"], "must be at least 1"),
    (["run", "autograd", "--steps", "2.5"], "expected a whole number"),
    (["run", "no-such-example"], "invalid choice"),
    (["serve", "--port", "70000"], "a port is 1-65535"),
    ([], "required"),
])
def test_bad_arguments_give_usage_not_traceback(argv, message):
    proc = subprocess.run([sys.executable, "-m", "lectures_code", *argv], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unavailable_device_is_a_message(capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main(["run", "autograd", "--device", "cuda", "--quiet"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
