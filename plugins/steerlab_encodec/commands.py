"""``steerlab train codec`` and ``steerlab eval codec``."""

from __future__ import annotations

from pathlib import Path

import click

from steerlab.cli.options import CONTEXT, echo_json


@click.command(name="codec", context_settings=CONTEXT)
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder: checkpoint.pt, curve.jsonl, model.safetensors, config.json. Rerun to resume.")
@click.option("--steps", type=int, default=20_000, help="Total optimisation steps.")
@click.option("--batch-size", type=int, default=8, help="Clips per step.")
@click.option("--clip-seconds", type=float, default=0.5, help="Crop length of each clip.")
@click.option("--lr", type=float, default=1e-3, help="Peak learning rate (cosine decay).")
@click.option("--val-every", type=int, default=250, help="Validate, checkpoint and export every N steps.")
@click.option("--seed", type=int, default=0, help="Seed of data and initialisation.")
@click.option("--n-filters", type=int, default=12, help="SEANet base width.")
@click.option("--threads", type=int, default=2, help="torch CPU threads.")
def train_codec(out_dir, steps, batch_size, clip_seconds, lr, val_every, seed, n_filters, threads) -> None:
    """Train the embedded codec on the synthetic corpus (resumable)."""
    import dataclasses

    import torch

    from .codec import EMBEDDED
    from .train import TrainConfig, train_codec as run

    torch.set_num_threads(threads)
    cfg = dataclasses.replace(EMBEDDED, n_filters=n_filters)
    tc = TrainConfig(steps=steps, batch_size=batch_size, clip_seconds=clip_seconds, lr=lr, val_every=val_every,
                     seed=seed, spectral_weight=0.1)
    result = run(cfg, tc, Path(out_dir), log=lambda m: click.echo(m, err=True))
    echo_json(result)


@click.command(name="codec", context_settings=CONTEXT)
@click.option("-m", "--model", "model_name", default=None, help="Model to evaluate (default: the embedded model).")
@click.option("--checkpoint", type=click.Path(), default=None, help="Local weights.")
@click.option("--clips", type=int, default=70, help="Held-out synthetic clips (1 s each, all kinds in turn).")
@click.option("--seed", type=int, default=12_345, help="Seed of the held-out clips (training used 0 and 10000).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def eval_codec(model_name, checkpoint, clips, seed, as_json) -> None:
    """SI-SDR and MR-STFT distance on held-out synthetic music, both decode paths,
    beside the same architecture at random initialisation."""
    from steerlab import api

    from .evaluation import evaluate_model

    model = api.load_model(model_name, checkpoint)
    rows = evaluate_model(model, clips, seed)
    if as_json:
        return echo_json(rows)
    for name, paths in rows.items():
        for path, res in paths.items():
            kinds = ", ".join(f"{k} {v:.1f}" for k, v in res["si_sdr_median_by_kind"].items())
            click.echo(f"{name} [{path}]: SI-SDR median {res['si_sdr_median']:.2f} dB "
                       f"(95% CI {res['si_sdr_median_ci95'][0]:.2f} to {res['si_sdr_median_ci95'][1]:.2f}; mean {res['si_sdr_mean']:.2f}), "
                       f"MR-STFT {res['mrstft_mean']:.3f}; median by kind: {kinds}")
