"""Data-parallel training with torchrun + DistributedDataParallel (gloo on the CPU), through the shared loop.

Two processes that each take half of every global minibatch and average their gradients must follow the
trajectory of one process on the whole minibatch, and a 2-process run interrupted after an epoch and
resumed must end where an uninterrupted one ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lectures_code.training import fit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from toy import Regression, TinyNet, recipe  # noqa: E402

REPO = HERE.parents[1]
WORKER = HERE / "ddp_worker.py"


def torchrun(nproc: int, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def one_process(epochs: int = 3) -> tuple[dict, dict]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = TinyNet()
    history = fit(model, Regression(), recipe(epochs), seed=0, progress=False)
    return model.state_dict(), history


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ddp") / "two.pt"
    torchrun(2, str(WORKER), str(out))
    return torch.load(out, weights_only=True)


def test_two_processes_follow_one_process(two_process_run):
    expected, history = one_process()
    state = two_process_run["state_dict"]
    for key, value in expected.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=1e-5, msg=key)
    assert two_process_run["history"]["world_size"] == 2 and history["world_size"] == 1
    # the logged loss is the mean over the processes: the global minibatch's loss
    torch.testing.assert_close(torch.tensor(two_process_run["history"]["total"]), torch.tensor(history["total"]),
                               rtol=0, atol=1e-5)
    assert any(not torch.equal(state[k], TinyNet().state_dict()[k]) for k in state)  # it did train


def test_a_resumed_two_process_run_equals_an_uninterrupted_one(two_process_run, tmp_path):
    checkpoint, out = tmp_path / "state.pt", tmp_path / "resumed.pt"
    torchrun(2, str(WORKER), str(tmp_path / "first.pt"), "--checkpoint-path", str(checkpoint), "--max-steps", "6")
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1  # interrupted after epoch 1 of 3
    torchrun(2, str(WORKER), str(out), "--checkpoint-path", str(checkpoint))
    resumed = torch.load(out, weights_only=True)
    for key, value in two_process_run["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)
    assert resumed["history"]["total"] == pytest.approx(two_process_run["history"]["total"], abs=1e-6)


def test_a_last_minibatch_smaller_than_the_processes_is_skipped_by_all(tmp_path):
    out = tmp_path / "odd.pt"
    torchrun(2, str(WORKER), str(out), "--size", "25", "--epochs", "1", timeout=180)  # 6 minibatches of 4, then 1
    assert torch.load(out, weights_only=True)["history"]["steps"] == 6  # nobody waits on a process with nothing


def test_lectures_train_nproc_2_runs_a_registry_model(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LECTURES_CODE_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "lectures_code", "train", "fcos", "--nproc", "2", "--num-train-images", "8",
           "--batch-size", "4", "--max-steps", "2", "--num-test-images", "2", "--quiet",
           "--checkpoint-path", str(tmp_path / "run.pt")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert record["world_size"] == 2 and record["steps"] == 2 and record["train_images"] == 8
    assert "torch.distributed.run" in proc.stdout and "--nproc-per-node=2" in proc.stdout
    assert proc.stdout.count('"world_size": 2') == 1  # only rank 0 reports
