"""Our CPU ops run every torch op on the calling thread, like torchvision's single-threaded C++ kernels.

An op that PyTorch splits over its intra-op threads waits until each thread gets a core, which on a busy
machine can take longer than the op (see ``lectures_code/ops/boxes.py``). A child process with 2 intra-op
threads runs the ops for a while; the other threads of the process must get no CPU time meanwhile
(Linux per-thread CPU times in /proc/<pid>/task). A control op that does split must give them some, or
the check would prove nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, os, sys, threading, time
import torch
sys.path.insert(0, "benchmarks")
from box_ops import random_boxes
from roi_ops import setup
from lectures_code.ops.boxes import box_iou
from lectures_code.ops.nms import batched_nms, nms
from lectures_code.ops.roi_pool import roi_pool

torch.set_num_threads(2)
b1k, s1k, l1k = random_boxes(1000, 0, "cpu")
b10k, s10k, l10k = random_boxes(10_000, 1, "cpu")
features, rois, upstream = setup("cpu")
features, rois, upstream = features[:, :64], rois[:64], upstream[:64, :64]

def pool_forward_backward():
    x = features.detach().requires_grad_()
    roi_pool(x, rois, 7, 1 / 16).backward(upstream)

ops = {
    "box_iou": lambda: box_iou(b1k, b1k),
    "nms 1k": lambda: nms(b1k, s1k, 0.5),
    "nms 10k": lambda: nms(b10k, s10k, 0.5),
    "batched_nms 10k": lambda: batched_nms(b10k, s10k, l10k, 0.5),
    "roi_pool": lambda: roi_pool(features, rois, 7, 1 / 16),
    "roi_pool fwd+bwd": pool_forward_backward,
}
big = torch.ones(1 << 22)
control = {"control (a split op)": lambda: big.add(1)}

def thread_ticks():
    ticks = {}
    for tid in os.listdir("/proc/self/task"):
        fields = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
        ticks[int(tid)] = int(fields[11]) + int(fields[12])  # user + system time, in clock ticks
    return ticks

def measure(fns, cpu_seconds):
    for fn in fns.values():
        fn()  # warm-up; also starts the intra-op threads on the first split op
    time.sleep(0.5)  # idle worker threads spin a little after each split op: let that end
    main = threading.get_native_id()
    before, start = thread_ticks(), time.thread_time()
    while time.thread_time() - start < cpu_seconds:
        for fn in fns.values():
            fn()
    after = thread_ticks()
    others = sum(t - before.get(tid, 0) for tid, t in after.items() if tid != main)
    return {"main": after[main] - before[main], "others": others}

control_ticks = measure(control, 0.5)
ops_ticks = measure(ops, 1.5)
print(json.dumps({"control": control_ticks, "ops": ops_ticks, "hz": os.sysconf("SC_CLK_TCK")}))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux per-thread CPU times")
def test_cpu_ops_never_split_over_threads():
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ticks = json.loads(done.stdout.strip().splitlines()[-1])
    control, ops = ticks["control"], ticks["ops"]
    # The control op splits: its second thread works about as much as the main one.
    assert control["others"] >= 0.2 * control["main"] > 0, ticks
    # Our ops: 1.5 s of work on the main thread, at most 2 clock ticks (20 ms at 100 Hz) elsewhere.
    assert ops["main"] >= 1.0 * ticks["hz"], ticks
    assert ops["others"] <= 2, ticks
