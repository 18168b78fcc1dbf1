"""``steerlab train samplecnn`` and ``steerlab eval samplecnn``."""

from __future__ import annotations

from pathlib import Path

import click

from steerlab.cli.options import CONTEXT, echo_json


@click.command(name="samplecnn", context_settings=CONTEXT)
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder: checkpoint.pt, curve.jsonl, model.safetensors, config.json. Rerun to resume.")
@click.option("--steps", type=int, default=1500, help="Total optimisation steps.")
@click.option("--batch-size", type=int, default=16, help="Clips per step.")
@click.option("--clip-seconds", type=float, default=1.0, help="Length of each synthetic clip.")
@click.option("--lr", type=float, default=3e-3, help="Peak learning rate (cosine decay).")
@click.option("--val-clips", type=int, default=140, help="Validation clips (seed + 10000).")
@click.option("--val-every", type=int, default=100, help="Validate, checkpoint and export every N steps.")
@click.option("--seed", type=int, default=0, help="Seed of data and initialisation.")
@click.option("--channels", default="16,16,32,32,64,64", show_default=True,
              help="Output channels of each pooling block (comma-separated; one block per entry).")
@click.option("--first-channels", type=int, default=16, help="Filters of the strided first conv.")
@click.option("--threads", type=int, default=1, help="torch CPU threads.")
def train_samplecnn(out_dir, steps, batch_size, clip_seconds, lr, val_clips, val_every, seed, channels,
                    first_channels, threads) -> None:
    """Train the toy SampleCNN to tell the kinds of synthetic clip apart (resumable)."""
    import torch

    from .model import SampleCNNConfig
    from .train import TrainConfig, train_samplecnn as run

    torch.set_num_threads(threads)
    try:
        widths = tuple(int(c) for c in channels.split(","))
        model_cfg = SampleCNNConfig(first_channels=first_channels, block_channels=widths)
        cfg = TrainConfig(steps=steps, batch_size=batch_size, clip_seconds=clip_seconds, lr=lr,
                          min_lr=min(1e-4, lr), val_clips=val_clips, val_every=val_every, seed=seed)
    except ValueError as exc:
        raise click.BadParameter(str(exc).splitlines()[0]) from None
    row = run(model_cfg, cfg, Path(out_dir), log=lambda m: click.echo(m, err=True))
    echo_json(row)


@click.command(name="samplecnn", context_settings=CONTEXT)
@click.option("-m", "--model", "model_name", default="samplecnn_24khz", help="Model to evaluate.")
@click.option("--checkpoint", type=click.Path(), default=None, help="A run folder of `steerlab train samplecnn`.")
@click.option("--clips", type=int, default=700, help="Held-out synthetic clips (all kinds in turn).")
@click.option("--seed", type=int, default=12_345, help="Seed of the held-out clips (training used its seed and seed+10000).")
@click.option("--seconds", type=float, default=1.0, help="Length of each held-out clip.")
@click.option("--threads", type=int, default=1, help="torch CPU threads.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def eval_samplecnn(model_name, checkpoint, clips, seed, seconds, threads, as_json) -> None:
    """Held-out test accuracy, beside chance and the same architecture at random initialisation."""
    import torch

    from steerlab import api
    from steerlab.errors import SteerlabError

    from .evaluation import evaluate_model
    from .model import SampleCNN

    torch.set_num_threads(threads)
    if clips <= 0 or seconds <= 0:
        raise click.BadParameter("--clips and --seconds must be positive")
    model = api.load_model(model_name, checkpoint)
    if not isinstance(model, SampleCNN):
        raise SteerlabError(f"{model_name!r} is not a SampleCNN; `steerlab eval samplecnn` evaluates samplecnn models")
    res = evaluate_model(model, clips, seed, seconds)
    if as_json:
        return echo_json(res)
    lo, hi = res["accuracy_ci95"]
    click.echo(f"{res['model']} (weights {res['weights_sha256'][:12]}): test accuracy {res['accuracy']:.3f} "
               f"(95% CI {lo:.3f}-{hi:.3f}) on {clips} clips, seed {seed}; chance {res['chance']:.3f}; "
               f"random init {res['random_init']['accuracy']:.3f}")
    click.echo("by kind: " + ", ".join(f"{k} {v:.2f}" for k, v in res["accuracy_by_label"].items() if v is not None))
    shared = res["test_set"]["clips_shared_with_training"]
    if shared is not None:
        click.echo(f"test clips shared with training: {shared}")
