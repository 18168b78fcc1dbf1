"""Helpers every benchmark shares: interleaved best-of timing and the bare cost of importing torch.

The scripts run as ``python benchmarks/NAME.py``, so this folder is on ``sys.path`` and they
``from _common import ...``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time


def best_of(fns, repeats: int) -> list[float]:
    """Fastest of ``repeats`` timings of each function, interleaved so that load
    spikes on a shared machine hit every contender alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t)
    return [min(t) for t in times]


def bare_torch_peak_kb(threads: str | None = None) -> int:
    """Peak resident memory (kB) of a Python process that only imports torch: the floor under
    every memory figure."""
    env = {**os.environ, "OMP_NUM_THREADS": threads} if threads else None
    proc = subprocess.run(
        [sys.executable, "-c", "import resource, torch; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return int(proc.stdout)
