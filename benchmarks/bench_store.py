"""Issue 16 §5, second bullet: ``learn`` at the embedded codec's first conv on 10 minutes of real
music, through the activation store, against the bare forward pass plus a plain training loop;
and the wall time of ``analyze --quick`` on the dictionary it learns.

    OMP_NUM_THREADS=2 python benchmarks/bench_store.py [--seconds 600] [--epochs 1] [--work DIR]

Audio: the asc-music MP3s (Debian package ``asc-music``, /usr/share/games/asc/music), decoded
once to 24 kHz mono WAVs cut to ``--seconds`` in all (decoding is not timed: both sides read
the same WAVs). Then, in one process:

1. steerlab: ``build_store`` (the ``steerlab capture`` command's work: model, traced capture,
   shards, hashes) + ``learn_from_store`` (``learn features --store``: ``train_sae``'s
   statistics pass, ``--epochs`` epochs of TopK k 8 x 128 latents, batch 256, Adam, evaluation);
2. bare: the first conv itself (``torch.nn.Conv1d``, no tracing) over the same clips, plus a
   plain PyTorch TopK SAE loop (same size, k, batch, epochs and Adam) over the same vectors,
   in memory, shuffled;
3. ``steerlab analyze DICT --store STORE --quick`` on the learned dictionary (wall and CPU).

Prints every time and the ratio (1) / (2); the goal is at most 2. Never run by CI (minutes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

MUSIC = Path("/usr/share/games/asc/music")


def music_files() -> list[Path]:
    files = sorted(MUSIC.glob("*.mp3"))
    if not files:
        out = subprocess.run(["dpkg", "-L", "asc-music"], capture_output=True, text=True).stdout
        files = sorted(Path(line) for line in out.splitlines() if line.endswith(".mp3"))
    if not files:
        sys.exit("asc-music is not installed (apt-get install asc-music)")
    return files


def cut_audio(folder: Path, seconds: float, sr: int = 24_000) -> float:
    """Decode the MP3s and write WAVs of ``seconds`` in all; returns the seconds written."""
    import soundfile as sf

    from steerlab import audio

    left = seconds
    for p in music_files():
        if left * sr < 1:
            break
        wave, _ = audio.load(p, sr, 1)
        n = int(min(left * sr, wave.shape[1]))
        sf.write(folder / f"{p.stem}.wav", wave[0, :n], sr, subtype="FLOAT")
        left -= n / sr
    return seconds - max(left, 0.0)


def plain_loop(x: torch.Tensor, size: int, k: int, batch: int, epochs: int, lr: float, seed: int) -> float:
    """A plain TopK SAE (the field's recipe, no extras) over ``x [n, width]``; returns seconds."""
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    width = x.shape[1]
    mean, scale = x.mean(0), x.std(0).norm() / width**0.5
    w_dec = torch.nn.Parameter(torch.randn(size, width, generator=g) / width**0.5)
    w_enc = torch.nn.Parameter(w_dec.detach().T.clone())
    b_enc = torch.nn.Parameter(torch.zeros(size))
    b_dec = torch.nn.Parameter(torch.zeros(width))
    opt = torch.optim.Adam([w_dec, w_enc, b_enc, b_dec], lr=lr)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            z = (x[perm[i : i + batch]] - mean) / scale
            pre = (z - b_dec) @ w_enc + b_enc
            top = torch.topk(pre, k, dim=-1)
            codes = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
            loss = ((codes @ w_dec + b_dec - z) ** 2).sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="Audio length.")
    ap.add_argument("--epochs", type=int, default=1, help="SAE epochs (both sides).")
    ap.add_argument("--work", default=None, help="Working folder (default: a temporary one, removed).")
    ap.add_argument("--skip-analyze", action="store_true")
    args = ap.parse_args()

    from steerlab import api, tracing
    from steerlab.activations import build_store, learn_from_store
    from steerlab.capture import Corpus
    from steerlab.sae import SAEConfig

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-store-"))
    work.mkdir(parents=True, exist_ok=True)
    audio_dir = work / "audio"
    audio_dir.mkdir(exist_ok=True)
    if not any(audio_dir.iterdir()):
        got = cut_audio(audio_dir, args.seconds)
    else:
        import soundfile as sf

        got = sum(sf.info(str(p)).duration for p in audio_dir.glob("*.wav"))
    print(f"audio: {got:.1f} s of asc-music at 24 kHz in {audio_dir}; torch threads {torch.get_num_threads()}")

    model = api.load_model()
    info = api.layers(model).get("first_conv")
    size, k, batch, lr, seed = 128, 8, 256, 1e-3, 0
    config = SAEConfig(width=info.channels, size=size, k=k, epochs=args.epochs, batch_size=batch, lr=lr, seed=seed)

    def corpus() -> Corpus:
        return Corpus.for_model(model, [str(audio_dir)], seed=seed)

    # warm-up: imports and first-call costs on both sides, not timed
    tracing.capture(model, [torch.zeros(1, 2400)], [info])
    plain_loop(torch.randn(4096, info.channels), size, k, batch, 1, lr, seed)

    store_dir = work / "store"
    shutil.rmtree(store_dir, ignore_errors=True)
    c0, t0 = time.process_time(), time.perf_counter()
    store = build_store(model, info, corpus(), store_dir)
    t_capture = time.perf_counter() - t0
    learned = learn_from_store(model, info.name, "feature", store, [config])
    t_steerlab = time.perf_counter() - t0
    cpu_steerlab = time.process_time() - c0
    d = learned[0].dictionary
    print(
        f"steerlab: capture {t_capture:.1f} s ({store.n_vectors} vectors, {len(store.shards)} shards) + learn "
        f"{t_steerlab - t_capture:.1f} s = {t_steerlab:.1f} s (CPU {cpu_steerlab:.1f} s); explained variance "
        f"{d.metrics['explained_variance']:.4f}"
    )

    conv = model.get_submodule(info.module_path)
    c0, t0 = time.process_time(), time.perf_counter()
    parts = []
    with torch.no_grad():
        for _, wave in corpus().clips():
            w = torch.as_tensor(np.asarray(wave)).float()
            out = conv((w / model.input_scale(w))[None])[0]  # [channels, frames]
            parts.append(out.T.contiguous())
    t_forward = time.perf_counter() - t0
    x = torch.cat(parts)
    del parts
    first = store.read_shard(0)["vectors"]
    err = float((x[: len(first)] - first).abs().max())
    t_loop = plain_loop(x, size, k, batch, args.epochs, lr, seed)
    cpu_bare = time.process_time() - c0
    t_bare = t_forward + t_loop
    print(
        f"bare: forward {t_forward:.1f} s ({len(x)} vectors; max |difference| from the store {err:.2g}) + plain "
        f"loop {t_loop:.1f} s = {t_bare:.1f} s (CPU {cpu_bare:.1f} s)"
    )
    print(f"ratio (capture + learn) / (forward + plain loop): wall {t_steerlab / t_bare:.2f}, CPU "
          f"{cpu_steerlab / cpu_bare:.2f} (goal <= 2)")  # fmt: skip
    del x

    if not args.skip_analyze:
        from steerlab import dictionary

        ddir = work / "dictionary"
        dictionary.save(d, ddir, overwrite=True)
        cmd = [sys.executable, "-m", "steerlab", "analyze", str(ddir), "--store", str(store_dir), "--quick",
               "-o", str(work / "report"), "--overwrite"]  # fmt: skip
        before = os.times()
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        t_an = time.perf_counter() - t0
        after = os.times()
        cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        if r.returncode:
            print(r.stderr[-2000:])
        print(f"analyze --quick --store: wall {t_an:.1f} s, CPU {cpu:.1f} s (goal: wall <= 300 s on 2 cores)")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
