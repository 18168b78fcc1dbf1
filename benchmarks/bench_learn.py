"""Capture and SAE training throughput, and the peak memory of a long capture (issue 3, section 5).

Prints ratios against bare baselines measured in the same run; never asserts.

1. capture throughput: :func:`steerlab.capture.stream_vectors` at the first conv (nnsight
   trace, stopped after the layer, vectors transposed into blocks) over a bare forward of
   the same audio through ``model.encoder`` (plain PyTorch, no tracing, batches of 8
   clips): goal >= 0.9. Also printed: the ratio over the first-conv module alone, the
   least any capture of that layer can cost.
2. SAE training throughput (vectors/s; width 32, 128 latents, k 8) of
   :func:`steerlab.sae.train_sae` over a plain PyTorch TopK loop (same sizes, batch,
   optimiser, epochs; no statistics pass, dead-latent handling or evaluation). Goal >= 1.0.
3. peak resident memory of capturing ``--minutes`` of audio (default 60) at the first
   conv of the embedded model, streamed and discarded block by block, in a subprocess
   (``resource.getrusage`` ru_maxrss) beside a bare ``import torch`` process. Goal <= 2 GB.

    OMP_NUM_THREADS=1 python benchmarks/bench_learn.py [--minutes 60] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch
from _common import bare_torch_peak_kb  # benchmarks/ is on sys.path when run as a script

CHILD = r"""
import resource, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from steerlab import api
from steerlab.capture import stream_vectors
minutes = float(sys.argv[1])
model = api.load_model()
info = api.layers(model).get("first_conv")
rng = np.random.default_rng(0)
clips = ((f"noise:{i}", (0.1 * rng.standard_normal((1, 24_000 * 10))).astype(np.float32))
         for i in range(int(round(minutes * 6))))
t0, n = time.perf_counter(), 0
for block in stream_vectors(model, clips, info, "features"):
    n += len(block)
print("RESULT", n, time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def bench_capture(seconds: float) -> None:
    from steerlab import api
    from steerlab.capture import stream_vectors

    model = api.load_model()
    info = api.layers(model).get("first_conv")
    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal((1, 24_000 * 5))).astype(np.float32) for _ in range(int(seconds // 5))]
    node = model
    for part in info.module_path.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)

    def bare(module) -> int:
        n = 0
        with torch.no_grad():
            for i in range(0, len(waves), 8):
                n += module(torch.from_numpy(np.stack(waves[i : i + 8]))).numel()
        return n

    def traced() -> int:
        return sum(len(b) for b in stream_vectors(model, [(str(i), w) for i, w in enumerate(waves)], info))

    runs = (("bare", lambda: bare(node)), ("encoder", lambda: bare(model.encoder)), ("capture", traced))
    for _, fn in runs:  # warm up
        fn()
    times = {}
    for name, fn in runs:
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        times[name] = best
    audio = len(waves) * 5
    print(
        f"capture first_conv over {audio} s of audio (seconds of audio per second): bare first-conv module "
        f"{audio / times['bare']:.0f}, bare whole-encoder forward {audio / times['encoder']:.0f}, stream_vectors "
        f"{audio / times['capture']:.0f}; ratio capture / bare encoder forward "
        f"{times['encoder'] / times['capture']:.2f} (goal >= 0.9); capture / bare first-conv module alone "
        f"{times['bare'] / times['capture']:.2f}"
    )


def bench_sae(n: int = 200_000, epochs: int = 2) -> None:
    from steerlab.sae import SAEConfig, train_sae

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 32, generator=g)
    cfg = SAEConfig(width=32, size=128, k=8, epochs=epochs, batch_size=256, lr=1e-3, seed=0)

    def reference() -> None:
        gen = torch.Generator().manual_seed(0)
        w_dec = torch.nn.Parameter(torch.randn(128, 32, generator=gen) / 32**0.5)
        w_enc = torch.nn.Parameter(w_dec.detach().T.clone())
        b_enc, b_dec = torch.nn.Parameter(torch.zeros(128)), torch.nn.Parameter(torch.zeros(32))
        opt = torch.optim.Adam([w_dec, w_enc, b_enc, b_dec], lr=1e-3)
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, 256):
                b = x[perm[i : i + 256]]
                pre = (b - b_dec) @ w_enc + b_enc
                top = torch.topk(pre, 8, dim=-1)
                codes = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
                loss = ((codes @ w_dec + b_dec - b) ** 2).sum(-1).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()

    t = time.perf_counter()
    reference()
    ref = n * epochs / (time.perf_counter() - t)
    t = time.perf_counter()
    train_sae(x, cfg)
    ours = n * epochs / (time.perf_counter() - t)  # includes its statistics and evaluation passes
    print(
        f"SAE training (width 32, 128 latents, k 8, {n} vectors x {epochs} epochs): reference loop {ref:.0f} "
        f"vectors/s, train_sae {ours:.0f} vectors/s (statistics and evaluation passes included); ratio "
        f"{ours / ref:.2f} (goal >= 1.0)"
    )


def bench_memory(minutes: float) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    bare_kb = bare_torch_peak_kb("1")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(minutes)], capture_output=True, text=True, check=True, env=env
    )
    _, n, secs, kb = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1].split()
    print(
        f"capture of {minutes:g} min of audio at first_conv: {int(n)} vectors in {float(secs):.0f} s, peak "
        f"{int(kb) / 1024:.0f} MB (bare python + torch {bare_kb / 1024:.0f} MB; goal <= 2048 MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="audio captured for the memory measurement")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio for the capture throughput")
    parser.add_argument("--sae-vectors", type=int, default=200_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench_capture(args.seconds)
    bench_sae(args.sae_vectors)
    bench_memory(args.minutes)


if __name__ == "__main__":
    main()
