"""Entry point of ``training/gpu_train_codec.sh``: ``steerlab train codec``'s recipe without the CLI.

The GPU machine has no nnsight or transformer-lens, so the script calls the training function
directly with the settings of the GPU recipe (bf16 autocast, batch 32 of 1 s crops, the official
latent dimension and LSTM depth, weights exported as float16).

    python -m steerlab.builtins.encodec.gpu_train RUN N_FILTERS BUDGET_S --data DIR ... --val-data DIR ...
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .codec import EMBEDDED
from .train import TrainConfig, train_codec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("n_filters", type=int)
    parser.add_argument("budget_s", type=float)
    parser.add_argument("--data", action="append", default=[])
    parser.add_argument("--val-data", action="append", default=[])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--val-every", type=int, default=1000)
    parser.add_argument("--pool-clips", type=int, default=1500)
    parser.add_argument(
        "--val-clips", type=int, default=48, help="synthetic validation clips; also 1 s windows per --val-data"
    )
    parser.add_argument("--spectral-weight", type=float, default=1.0)
    parser.add_argument("--log-mag-weight", type=float, default=1.0)
    args = parser.parse_args()
    cfg = dataclasses.replace(EMBEDDED, n_filters=args.n_filters, dimension=128, lstm=2)
    tc = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        clip_seconds=1.0,
        lr=1e-3,
        val_every=args.val_every,
        spectral_weight=args.spectral_weight,
        log_mag_weight=args.log_mag_weight,
        data=tuple(args.data),
        synth_share=1.0 / (1 + len(args.data)),
        val_data=tuple(args.val_data),
        device=args.device,
        amp="bf16" if args.device.startswith("cuda") else "none",
        time_budget_s=args.budget_s,
        pool_clips=args.pool_clips,
        export_dtype="float16",
        val_clips=args.val_clips,
        val_windows=args.val_clips,
    )
    train_codec(cfg, tc, Path(args.run), log=lambda m: print(m, flush=True))


if __name__ == "__main__":
    main()
