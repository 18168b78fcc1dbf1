"""CREPE through steerlab: tracing overhead and the memory of a long first-layer capture (issue 12).

1. Traced forward with a patch against a bare forward of the same frames: ``tracing.run``
   of one input with an ``add`` edit at ``conv1`` (nnsight, steerlab's own CREPE module)
   against torchcrepe's own ``Crepe`` model run on the same normalised 1024-sample windows
   (the pretrained reference implementation, no steerlab, no hook). Also steerlab's module
   called directly (no tracing). Best of ``--repeats``, interleaved. Goal: traced / bare <= 1.10.
2. Peak resident memory (``ru_maxrss``) of a subprocess that streams the ``conv1`` response
   vectors of crepe_tiny_16khz over ``--minutes`` of audio (10 s clips; real music from
   Debian's asc-music, cycled, when installed, else noise) with
   :func:`steerlab.capture.stream_vectors`, beside a bare ``import torch`` process.
   Goal: <= 2048 MB, the bound docs/analyze.md states for captures.

    OMP_NUM_THREADS=1 python benchmarks/bench_crepe.py [--seconds 10] [--minutes 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from _common import bare_torch_peak_kb, best_of  # benchmarks/ is on sys.path when run as a script

CHILD = r"""
import resource, sys, time
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
from steerlab import api, audio
from steerlab.capture import stream_vectors
minutes = float(sys.argv[1])
model = api.load_model("crepe_tiny_16khz")
info = api.layers(model).get("first_conv")
files = sorted(Path("/usr/share/games/asc/music").glob("*.mp3"))
def clips():
    n, clip = int(round(minutes * 6)), 160_000
    if files:
        source = np.concatenate([audio.load(f, 16_000, 1)[0] for f in files], axis=-1)
        for i in range(n):
            start = (i * clip) % (source.shape[-1] - clip)
            yield f"music:{i}", np.ascontiguousarray(source[:, start:start + clip])
    else:
        rng = np.random.default_rng(0)
        for i in range(n):
            yield f"noise:{i}", (0.1 * rng.standard_normal((1, clip))).astype(np.float32)
t0, n = time.perf_counter(), 0
for block in stream_vectors(model, clips(), info, "features"):
    n += len(block)
print("RESULT", n, time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
      "music" if files else "noise")
"""


def bench_forward(name: str, seconds: float, repeats: int) -> None:
    import torchcrepe

    from steerlab import api, tracing

    model = api.load_model(name)
    capacity = model.capacity
    ref = torchcrepe.Crepe(capacity)
    ref.load_state_dict(
        torch.load(str(Path(torchcrepe.__file__).parent / "assets" / f"{capacity}.pth"), weights_only=True)
    )
    ref.eval()
    rng = np.random.default_rng(0)
    wave = torch.from_numpy((0.1 * rng.standard_normal((1, int(seconds * 16_000)))).astype(np.float32))
    layer = api.layers(model).get("conv1")
    direction = torch.zeros(layer.channels)
    direction[3] = 1.0

    def edit(act, n_frames):
        return act + 0.5 * direction[None, :, None]

    with torch.no_grad():
        frames = model.windows(wave[None])[0]  # [windows, 1024], the same frames for both

    def bare():
        with torch.no_grad():
            ref(frames)

    def direct():
        with torch.no_grad():
            model(wave[None])

    def traced():
        tracing.run(model, [tracing.TraceItem(wave, layer, edit)])

    t_bare, t_direct, t_traced = best_of([bare, direct, traced], repeats)
    print(
        f"{name:<18} {seconds:5.0f} s ({frames.shape[0]} windows)  torchcrepe bare {t_bare:7.3f} s  "
        f"steerlab module {t_direct:7.3f} s ({t_direct / t_bare:.2f})  traced+patch {t_traced:7.3f} s  "
        f"ratio traced/bare {t_traced / t_bare:.2f} (goal <= 1.10)"
    )


def bench_memory(minutes: float) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    bare_kb = bare_torch_peak_kb("1")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(minutes)], capture_output=True, text=True, check=True, env=env
    )
    _, n, secs, kb, source = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1].split()
    print(
        f"capture of {minutes:g} min of {source} at crepe_tiny_16khz conv1 (128 channels, 2000 frames/s): "
        f"{int(n)} vectors in {float(secs):.0f} s, peak {int(kb) / 1024:.0f} MB "
        f"(bare python + torch {bare_kb / 1024:.0f} MB; goal <= 2048 MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per timed forward")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=10.0, help="audio captured for the memory measurement")
    parser.add_argument("--models", nargs="+", default=["crepe_tiny_16khz", "crepe_full_16khz"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.models:
        bench_forward(name, args.seconds, args.repeats)
    bench_memory(args.minutes)


if __name__ == "__main__":
    main()
