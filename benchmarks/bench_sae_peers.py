"""SAE training throughput against the field's libraries (issue 16 §5), ratios in one run.

Six implementations train the same TopK SAE (k 8, Adam, ``--steps`` batches of ``--batch``
vectors, one pass, ``--threads`` threads) on the same planted data (non-negative combinations
of 8 of ``size`` random unit directions plus noise), at each ``--sizes`` width x latents:

- ``steerlab``: :func:`steerlab.sae.train_sae` as a user calls it: the statistics pass, the
  shuffled epoch, the final evaluation pass, all of it timed;
- ``plain``: a bare PyTorch TopK loop (encode, top k, dense decode, MSE, Adam, unit decoder
  rows), the floor any library pays;
- ``saelens``: SAELens' ``SAETrainer`` with a ``TopKTrainingSAE`` (wandb off);
- ``dictionary_learning``: ``TopKTrainer.update`` per batch (its geometric-median start included);
- ``overcomplete``: ``overcomplete.sae.train_sae`` with a ``TopKSAE`` and its TopK auxiliary loss;
- ``sparsify``: EleutherAI's ``SparseCoder`` (fused sparse encoder and ``embedding_bag``
  decode) in a loop as its trainer runs it (Adam here, AuxK from a dead mask).

The peers are installed into their own virtual environment (``--venv``), never into the
project's: it sees the project's packages (torch stays the pinned one, a constraints file
forbids any other) through a ``.pth`` file, and packages whose declared dependencies would
pull in another torch or a hub client's extras are installed with ``--no-deps`` beside the
few modules they import. The script then re-runs itself with that venv's Python. A peer that
cannot be installed or imported is reported with its error and skipped; the others run.

Each implementation runs ``--repeats`` times, interleaved (so load on a shared machine hits
all alike), and its best time is kept. Prints vectors/s and every ratio (steerlab / peer), and
writes ``--json`` with the versions, the machine's load and the command.

    OMP_NUM_THREADS=2 python benchmarks/bench_sae_peers.py --json /tmp/sae_peers.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: PyPI name -> (import name, install with --no-deps)
PEERS = {
    "sae-lens": "sae_lens",
    "dictionary-learning": "dictionary_learning",
    "overcomplete": "overcomplete",
    "eai-sparsify": "sparsify",
}
#: what the peers import beyond the project's own packages, installed without their own dependencies
#: (sae-lens 6 needs transformer-lens < 3 and the project has 4; overcomplete imports torchvision
#: and cv2 at import time)
EXTRAS = [
    "transformer-lens>=2.16.1,<3",
    "simple-parsing>=0.1.8,<0.2",
    "babe>=0.0.7,<0.0.8",
    "better-abc",
    "nltk",
    "plotly",
    "plotly-express",
    "tenacity",
    "schedulefree",
    "natsort",
    "docstring-parser",
    "torchvision",  # the constraints file pins it to the release built for the pinned torch
    "opencv-python-headless",
    "timm",
    "scikit-image",
]
TORCHVISION_FOR = {"2.11": "0.26.0"}


def ensure_venv(venv: Path) -> Path:
    """The peers' venv (created and filled on first use); returns its Python."""
    import torch

    py = venv / "bin" / "python"
    site = Path(torch.__file__).resolve().parent.parent
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pth = next((venv / "lib").glob("python3*/site-packages")) / "zz_project_site.pth"
        pth.write_text(f"{site}\n")  # after the venv's own site-packages: the project's torch
    constraints = venv / "constraints.txt"
    tv = TORCHVISION_FOR.get(".".join(torch.__version__.split(".")[:2]))
    constraints.write_text(f"torch=={torch.__version__.split('+')[0]}\n" + (f"torchvision=={tv}\n" if tv else ""))
    missing = [
        name
        for name, mod in PEERS.items()
        if subprocess.run([str(py), "-c", f"import {mod}"], capture_output=True).returncode != 0
    ]
    if missing:
        env = {**os.environ, "PIP_CONSTRAINT": str(constraints)}
        for group in (list(PEERS), EXTRAS):
            proc = subprocess.run(
                [str(py), "-m", "pip", "install", "-q", "--no-deps", *group], env=env, capture_output=True, text=True
            )
            if proc.returncode:
                print(f"pip install failed for {group}:\n{proc.stderr[-2000:]}", file=sys.stderr)
    return py


# ---------------------------------------------------------------------------------------------
# the implementations: each trains on x [n, width] in batches of `batch` and returns nothing


def planted(width: int, size: int, k: int, n: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    d = torch.randn(size, width, generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    idx = torch.randint(0, size, (n, k), generator=g)
    w = torch.rand(n, k, generator=g) * 1.5 + 0.5
    x = torch.nn.functional.embedding_bag(idx, d, per_sample_weights=w, mode="sum")
    return x + 0.01 * torch.randn(n, width, generator=g)


def run_steerlab(x, width, size, k, batch, lr):
    from steerlab.sae import SAEConfig, train_sae

    train_sae(x, SAEConfig(width=width, size=size, k=k, epochs=1, batch_size=batch, lr=lr))


def run_steerlab_before(x, width, size, k, batch, lr):
    """``train_sae`` of another version of steerlab/sae.py (``--before``), loaded beside this one."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("steerlab_sae_before", os.environ["STEERLAB_SAE_BEFORE"])
    if spec is None or spec.loader is None:
        raise ImportError(os.environ["STEERLAB_SAE_BEFORE"])
    mod = sys.modules.get("steerlab_sae_before") or importlib.util.module_from_spec(spec)
    if "steerlab_sae_before" not in sys.modules:
        sys.modules["steerlab_sae_before"] = mod
        spec.loader.exec_module(mod)
    mod.train_sae(x, mod.SAEConfig(width=width, size=size, k=k, epochs=1, batch_size=batch, lr=lr))


def run_plain(x, width, size, k, batch, lr):
    import torch

    torch.manual_seed(0)
    W_dec = torch.nn.functional.normalize(torch.randn(size, width), dim=1).requires_grad_()
    W_enc = W_dec.detach().T.clone().requires_grad_()
    b_enc = torch.zeros(size, requires_grad=True)
    b_dec = torch.zeros(width, requires_grad=True)
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=lr)
    for i in range(0, len(x), batch):
        z = x[i : i + batch]
        pre = (z - b_dec) @ W_enc + b_enc
        top = pre.topk(k, dim=-1)
        codes = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
        loss = ((codes @ W_dec + b_dec - z) ** 2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            W_dec /= W_dec.norm(dim=1, keepdim=True)


def run_saelens(x, width, size, k, batch, lr):
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=width, d_sae=size, k=k, device="cpu"))
    cfg = SAETrainerConfig(
        total_training_samples=len(x) - len(x) % batch,
        train_batch_size_samples=batch,
        lr=lr,
        lr_end=lr / 10,  # the runner config sets this in its post-init; the trainer asserts it
        device="cpu",
        logger=LoggingConfig(log_to_wandb=False),
    )
    batches = iter(x[i : i + batch] for i in range(0, len(x) - len(x) % batch, batch))
    trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=batches)
    os.environ.setdefault("TQDM_DISABLE", "1")
    trainer.fit()


def run_dictionary_learning(x, width, size, k, batch, lr):
    from dictionary_learning.trainers.top_k import TopKTrainer

    steps = len(x) // batch
    trainer = TopKTrainer(
        steps=steps, activation_dim=width, dict_size=size, k=k, layer=0, lm_name="none", lr=lr, device="cpu",
        warmup_steps=1, seed=0,
    )  # fmt: skip
    for step, i in enumerate(range(0, steps * batch, batch)):
        trainer.update(step, x[i : i + batch])


def run_overcomplete(x, width, size, k, batch, lr):
    import torch
    from overcomplete.sae import TopKSAE, train_sae
    from overcomplete.sae.losses import top_k_auxiliary_loss

    sae = TopKSAE(width, nb_concepts=size, top_k=k, device="cpu")
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    batches = [x[i : i + batch] for i in range(0, len(x), batch)]
    train_sae(sae, batches, top_k_auxiliary_loss, opt, nb_epochs=1, monitoring=0, device="cpu")


def run_sparsify(x, width, size, k, batch, lr):
    import torch
    from sparsify import SparseCoder, SparseCoderConfig

    sae = SparseCoder(width, SparseCoderConfig(num_latents=size, k=k), device="cpu")
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    since_fired = torch.zeros(size, dtype=torch.long)
    for i in range(0, len(x), batch):
        z = x[i : i + batch]
        out = sae(z, dead_mask=since_fired > 10_000_000)  # its trainer's default dead threshold
        loss = out.fvu + out.auxk_loss / 32
        loss.backward()
        since_fired += len(z)
        since_fired[out.latent_indices.flatten()] = 0
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sae.set_decoder_norm_to_unit_norm()


IMPLEMENTATIONS: dict[str, Callable[..., None]] = {
    "steerlab": run_steerlab,
    "steerlab_before": run_steerlab_before,
    "plain": run_plain,
    "saelens": run_saelens,
    "dictionary_learning": run_dictionary_learning,
    "overcomplete": run_overcomplete,
    "sparsify": run_sparsify,
}
MODULE = {"saelens": "sae_lens", "dictionary_learning": "dictionary_learning", "overcomplete": "overcomplete"}
MODULE["sparsify"] = "sparsify"


def importable(name: str) -> str | None:
    """None when the implementation's library imports, else the error (one line)."""
    if name not in MODULE:
        return None
    try:
        if name == "overcomplete":  # overcomplete 0.3 calls matplotlib.cm.get_cmap, gone in matplotlib 3.9
            import matplotlib
            import matplotlib.cm

            if not hasattr(matplotlib.cm, "get_cmap"):
                matplotlib.cm.get_cmap = matplotlib.colormaps.get_cmap  # type: ignore[attr-defined]
        __import__(MODULE[name])
    except Exception as exc:  # noqa: BLE001 - report any import failure and go on with the others
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def version_of(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    dist = {
        "steerlab": "steerlab",
        "steerlab_before": "steerlab",
        "plain": "torch",
        "saelens": "sae-lens",
        "sparsify": "eai-sparsify",
    }
    try:
        return version(dist.get(name, name.replace("_", "-")))
    except PackageNotFoundError:
        return None


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    names = [n for n in args.only.split(",")] if args.only else list(IMPLEMENTATIONS)
    if args.before:
        os.environ["STEERLAB_SAE_BEFORE"] = str(Path(args.before).resolve())
    elif "steerlab_before" in names:
        names.remove("steerlab_before")
    skipped = {n: err for n in names if (err := importable(n))}
    runnable = [n for n in names if n not in skipped]
    for n, err in skipped.items():
        print(f"skipped {n}: {err}")
    import steerlab

    # the steerlab timed: this checkout's (the script puts its own repository first on the path)
    print(f"steerlab from {Path(steerlab.__file__).parent}")
    results: dict[str, Any] = {"sizes": {}, "steerlab_path": str(Path(steerlab.__file__).parent)}
    for spec in args.sizes.split(","):
        width, size = (int(v) for v in spec.split("x"))
        x = planted(width, size, args.k, args.steps * args.batch)
        times: dict[str, list[float]] = {n: [] for n in runnable}
        failed: dict[str, str] = {}
        for _ in range(args.repeats):
            for n in runnable:
                if n in failed:
                    continue
                t = time.perf_counter()
                try:
                    IMPLEMENTATIONS[n](x, width, size, args.k, args.batch, args.lr)
                except Exception:  # noqa: BLE001 - one peer's failure must not hide the others' figures
                    failed[n] = traceback.format_exc().splitlines()[-1]
                    print(f"{spec} {n} failed: {failed[n]}")
                    continue
                times[n].append(time.perf_counter() - t)
        rate = {n: len(x) / min(ts) for n, ts in times.items() if ts}
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
        print(
            f"\n{spec} ({len(x)} vectors, k {args.k}, {args.threads} threads, best of {args.repeats}; load average {load})"
        )
        for n, r in rate.items():
            line = f"  {n:20s} {r / 1e3:8.1f}k vectors/s"
            if "steerlab" in rate and n != "steerlab":
                line += f"   steerlab/{n} = {rate['steerlab'] / r:.2f}x"
            print(line, flush=True)
        results["sizes"][spec] = {
            "vectors_per_s": rate,
            "times_s": times,
            "failed": failed,
            "load_avg": os.getloadavg(),
        }
    results["skipped"] = skipped
    return results


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="32x128,128x1024", help="width x latents, comma-separated")
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--steps", type=int, default=245)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--only", default="", help="comma-separated implementations (default: all)")
    p.add_argument("--before", default="", help="another steerlab/sae.py, timed as steerlab_before (git show REV:...)")
    p.add_argument("--venv", default="/tmp/peers-venv", help="the peers' virtual environment")
    p.add_argument("--no-venv", action="store_true", help="run here, with whatever peers this Python has")
    p.add_argument("--json", default="", help="write the figures here")
    args = p.parse_args()
    inside = os.environ.get("STEERLAB_BENCH_PEERS_INSIDE") == "1"
    if not inside and not args.no_venv:
        py = ensure_venv(Path(args.venv))
        env = {
            **os.environ,
            "STEERLAB_BENCH_PEERS_INSIDE": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": str(args.threads),
            "WANDB_MODE": "disabled",
            "TQDM_DISABLE": "1",
            # sparsify picks its Triton decoder whenever triton imports; on a CPU its own fallback is
            # the eager embedding_bag decoder
            "SPARSIFY_DISABLE_TRITON": "1" if not _has_cuda() else os.environ.get("SPARSIFY_DISABLE_TRITON", "0"),
        }
        sys.exit(subprocess.run([str(py), *sys.argv], env=env).returncode)
    sys.path.insert(0, str(ROOT))
    results = measure(args)
    results.update(
        {
            "command": f"OMP_NUM_THREADS={args.threads} python {' '.join(sys.argv)}",
            "settings": {k: v for k, v in vars(args).items() if k not in ("json",)},
            "versions": {n: version_of(n) for n in IMPLEMENTATIONS} | {"torch": version_of("plain")},
            "machine": {
                "cpus": os.cpu_count(),
                "load_avg_at_end": os.getloadavg(),
                "python": platform.python_version(),
            },
        }
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
