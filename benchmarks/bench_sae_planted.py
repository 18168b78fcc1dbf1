"""Planted-truth bar of the SAE training recipe (docs/analyze.md, issue 11 §6).

Vectors are non-negative combinations (weights in [0.5, 2]) of ``active`` of ``planted`` random
unit directions plus noise of std 0.01; a TopK SAE at every default training setting but
the problem's size, k and 30 epochs (8192 vectors: 960 steps) is trained with rare-latent
splitting on (``split_every=50``, the default) and off (0), on data seeds 0-9. Prints one
markdown row per problem and setting: mean and least share of planted directions whose
best decoder direction has cosine > 0.95, then each seed's share.

    OMP_NUM_THREADS=1 python benchmarks/bench_sae_planted.py
"""

from __future__ import annotations

import torch

from steerlab.sae import SAEConfig, train_sae

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


def main() -> None:
    torch.set_num_threads(1)
    print("| problem (30 epochs) | split_every | mean recovered | least | seeds 0-9 |")
    print("|---|---|---|---|---|")
    for label, width, n_planted, active, size in CASES:
        for split in (0, 50):
            shares = []
            for seed in range(10):
                x, d = planted(width, n_planted, active, seed)
                sae, _ = train_sae(x, SAEConfig(width=width, size=size, k=active, epochs=30, split_every=split))
                shares.append(float(((d @ sae.directions.T).max(1).values > 0.95).float().mean()))
            print(
                f"| {label} | {split} | {sum(shares) / len(shares):.3f} | {min(shares):.3f} | "
                + " ".join(f"{s:.2f}" for s in shares)
                + " |",
                flush=True,
            )


if __name__ == "__main__":
    main()
