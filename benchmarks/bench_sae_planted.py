"""Planted-truth bar of the SAE training recipes (docs/analyze.md, docs/sae.md, issue 11 §6, issue 16 §4).

Vectors are non-negative combinations (weights in [0.5, 2]) of ``active`` of ``planted`` random
unit directions plus noise of std 0.01; an SAE of each architecture at every default training
setting but the problem's size, k and 30 epochs (8192 vectors: 960 steps) is trained on each data
seed (TopK twice: with rare-latent splitting on, ``split_every=50``, the default, and off, 0).
Prints one markdown row per problem, architecture and setting: mean and least share of planted
directions whose best decoder direction has cosine > 0.95, then each seed's share.

Seeds 0-5 are the development seeds on which the jumprelu and matryoshka defaults were chosen;
6-8 are the seeds of the test (tests/test_sae.py, tests/test_sae_architectures.py), 9 is spare.

    OMP_NUM_THREADS=1 python benchmarks/bench_sae_planted.py [--arch NAME ...] [--seeds 0-9] [--first-case]
        [--set FIELD=VALUE ...]     # e.g. --set lr=0.003 --set prefixes=8,16,32,64 (SAEConfig fields)
"""

from __future__ import annotations

import argparse

import torch

from steerlab.sae import ARCHITECTURES, SPLIT_ARCHITECTURES, SAEConfig, train_sae

CASES = [  # (label, width, planted, active, latents)
    ("64 in 32-d, k 3, 64 latents", 32, 64, 3, 64),
    ("64 in 32-d, k 3, 128 latents", 32, 64, 3, 128),
    ("96 in 48-d, k 4, 96 latents", 48, 96, 4, 96),
    ("48 in 32-d, k 3, 64 latents", 32, 48, 3, 64),
]


def planted(width: int, n_planted: int, active: int, seed: int, n: int = 8192):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n_planted, width, generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    idx = torch.stack([torch.randperm(n_planted, generator=g)[:active] for _ in range(n)])
    w = torch.rand(n, active, generator=g) * 1.5 + 0.5
    x = torch.zeros(n, n_planted).scatter(1, idx, w) @ d + 0.01 * torch.randn(n, width, generator=g)
    return x, d


def seeds_of(spec: str) -> list[int]:
    """``"0-9"`` or ``"0,3,5"`` -> the seeds."""
    if "-" in spec:
        low, high = spec.split("-")
        return list(range(int(low), int(high) + 1))
    return [int(s) for s in spec.split(",")]


def setting(spec: str) -> tuple[str, object]:
    """``"lr=0.003"`` -> ("lr", 0.003); ``"prefixes=8,16,32,64"`` -> ("prefixes", (8, 16, 32, 64))."""
    name, value = spec.split("=", 1)
    if "," in value:
        return name, tuple(int(v) for v in value.split(","))
    number = float(value)
    return name, int(number) if number.is_integer() and "." not in value and "e" not in value else number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", choices=ARCHITECTURES, help="architectures [default: all]")
    parser.add_argument("--seeds", default="0-9", help="data seeds, e.g. 0-9 or 6,7,8 [default: 0-9]")
    parser.add_argument("--first-case", action="store_true", help="only the 64/64 problem of the test")
    parser.add_argument("--set", action="append", type=setting, default=[], help="SAEConfig FIELD=VALUE overrides")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = seeds_of(args.seeds)
    settings = [
        (arch, split) for arch in args.arch or ARCHITECTURES for split in ((0, 50) if arch == "topk" else (50,))
    ]
    print(f"| problem (30 epochs) | architecture | split_every | mean recovered | least | seeds {args.seeds} |")
    print("|---|---|---|---|---|---|")
    for label, width, n_planted, active, size in CASES[:1] if args.first_case else CASES:
        for arch, split in settings:
            shares = []
            for seed in seeds:
                x, d = planted(width, n_planted, active, seed)
                config = SAEConfig(
                    **{
                        "width": width,
                        "size": size,
                        "k": active,
                        "epochs": 30,
                        "split_every": split,
                        "architecture": arch,
                    }
                    | dict(args.set)
                )
                sae, _ = train_sae(x, config)
                shares.append(float(((d @ sae.directions.T).max(1).values > 0.95).float().mean()))
            print(
                f"| {label} | {arch} | {split if arch in SPLIT_ARCHITECTURES else '-'} | {sum(shares) / len(shares):.3f} | {min(shares):.3f} | "
                + " ".join(f"{s:.2f}" for s in shares)
                + " |",
                flush=True,
            )


if __name__ == "__main__":
    main()
