"""A competing busy process for the benchmarks: one CPU core kept busy by a tight numeric loop.

``with busy_process():`` starts ``python benchmarks/busy.py`` as a separate process (pinned to no
core: the OS schedules it like any other job), waits until it has run for a while, and stops it on
exit. This reproduces "one other busy process on the machine", the condition in which torch's
multi-threaded kernels wait for a core that is not free, while single-threaded kernels do not.

Run alone: ``python benchmarks/busy.py`` spins until interrupted.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator


def spin() -> None:
    """Never returns: a floating-point recurrence, no memory traffic, no system calls."""
    x = 0.0
    while True:
        for _ in range(1_000_000):
            x = x * 0.5 + 1.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time consumed so far by process ``pid`` (Linux /proc), or -1 if unknown."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return -1.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime in clock ticks


@contextlib.contextmanager
def busy_process(warm_up_s: float = 2.0) -> Iterator[dict]:
    """Run the busy loop in a separate process for the duration of the ``with`` block.

    Yields a dict that, after the block, holds ``busy_cpu_s`` (CPU seconds the busy process used)
    and ``busy_wall_s`` (how long it ran), so the caller can record that it really kept a core busy.
    """
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)], stdin=subprocess.DEVNULL)
    info: dict = {"pid": proc.pid}
    start = time.perf_counter()
    try:
        time.sleep(warm_up_s)  # let it start and reach its steady state
        if proc.poll() is not None:
            raise RuntimeError(f"the busy process exited early with code {proc.returncode}")
        yield info
    finally:
        info["busy_cpu_s"] = round(cpu_seconds(proc.pid), 2)
        info["busy_wall_s"] = round(time.perf_counter() - start, 2)
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        spin()
