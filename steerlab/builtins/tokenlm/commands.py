"""``steerlab train tokenlm``."""

from __future__ import annotations

from pathlib import Path

import click

from steerlab.cli.options import (
    CONTEXT,
    device_option,
    echo_json,
    output_option,
    setup_compute,
    threads_option,
)


@click.command(name="tokenlm", context_settings=CONTEXT)
@output_option(
    "Run folder: tokens.safetensors, checkpoint.pt, curve.jsonl, model.safetensors, config.json. Rerun to resume.",
    dest="out_dir",
)
@click.option("--steps", type=int, default=1200, help="Total optimisation steps.")
@click.option("--batch-size", type=int, default=16, help="Token sequences per step.")
@click.option("--lr", type=float, default=3e-3, help="Peak learning rate (warm-up, then cosine decay).")
@click.option("--val-every", type=int, default=100, help="Validate, checkpoint and export every N steps.")
@click.option("--train-clips", type=int, default=400, help="Synthetic clips encoded for training.")
@click.option("--val-clips", type=int, default=40, help="Held-out synthetic clips for validation.")
@click.option("--clip-seconds", type=float, default=3.0, help="Clip length (3 s = 225 codec frames).")
@click.option("--seed", type=int, default=1, help="Seed of data and initialisation.")
@click.option("--n-q", type=int, default=4, help="Codebooks modelled (the codec's first N).")
@click.option("--d-model", type=int, default=64, help="Residual stream width.")
@click.option("--n-layers", type=int, default=3, help="Transformer blocks.")
@click.option("--n-heads", type=int, default=4, help="Attention heads.")
@click.option(
    "--codec-checkpoint",
    type=click.Path(file_okay=False),
    default=None,
    help="Codec run folder (default: the embedded tiny_encodec_24khz).",
)
@threads_option("torch CPU threads.", default=1)
@device_option()
def train_tokenlm(
    out_dir,
    steps,
    batch_size,
    lr,
    val_every,
    train_clips,
    val_clips,
    clip_seconds,
    seed,
    n_q,
    d_model,
    n_layers,
    n_heads,
    codec_checkpoint,
    threads,
    device,
) -> None:
    """Train the token transformer on codec tokens of the synthetic corpus (resumable)."""
    import math

    from .loaders import load_codec
    from .train import TrainConfig
    from .train import train_tokenlm as run
    from .transformer import TokenLMConfig

    dev = setup_compute(device, threads)
    codec = load_codec({"codec_checkpoint": codec_checkpoint})
    frames = math.ceil(clip_seconds * codec.sample_rate / codec.hop)
    # an invalid value raises ConfigError, which the CLI prints naming this command's flags
    cfg = TokenLMConfig(
        n_q=n_q,
        bins=codec.cfg.bins,
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        d_mlp=4 * d_model,
        max_frames=frames,
    )
    tc = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        val_every=val_every,
        train_clips=train_clips,
        val_clips=val_clips,
        clip_seconds=clip_seconds,
        seed=seed,
    )
    result = run(cfg, tc, Path(out_dir), codec, log=lambda m: click.echo(m, err=True), device=dev)
    echo_json(result)
