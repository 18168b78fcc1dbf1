"""Peak memory of ``steerlab intervene`` on long inputs: streaming keeps it bounded.

Runs the CLI in subprocesses on synthetic inputs of increasing length and reports
each run's peak resident memory as a ratio to the shortest run's (bounded memory:
ratios stay near 1 as the input grows; holding the whole input would grow
linearly). Also the bare cost: a Python process that only imports torch.

    python benchmarks/bench_long_input.py [--minutes 1 4 16]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from _common import bare_torch_peak_kb  # benchmarks/ is on sys.path when run as a script

PEAK = (
    "import resource, runpy, sys; sys.argv = ['steerlab'] + sys.argv[1:]; "
    "exec(\"try:\\n runpy.run_module('steerlab', run_name='__main__')\\nexcept SystemExit: pass\"); "
    "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
)


def peak_kb(args: list[str]) -> tuple[int, float]:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PEAK, *args], capture_output=True, text=True, check=True)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("PEAK_KB")][-1]
    return int(line.split()[1]), time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 4.0, 16.0])
    args = parser.parse_args()
    print(f"bare python + torch: {bare_torch_peak_kb() / 1024:.0f} MB")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = Path(tmp) / f"in{minutes:g}.wav"
            rng = np.random.default_rng(0)
            with sf.SoundFile(str(path), "w", 24_000, 1, subtype="FLOAT") as f:
                for _ in range(int(minutes * 60)):
                    f.write((0.1 * rng.standard_normal(24_000)).astype(np.float32))
            kb, secs = peak_kb(
                [
                    "intervene",
                    str(path),
                    "--layer",
                    "first_conv",
                    "--channel",
                    "0",
                    "--alpha",
                    "0.5",
                    "--chunk-s",
                    "30",
                    "-o",
                    str(Path(tmp) / f"out{minutes:g}"),
                ]
            )
            base = base or kb
            print(f"{minutes:>5g} min input: peak {kb / 1024:.0f} MB (x{kb / base:.2f} of the shortest), {secs:.0f} s")


if __name__ == "__main__":
    main()
