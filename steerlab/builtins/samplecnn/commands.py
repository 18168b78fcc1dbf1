"""``steerlab train samplecnn`` and ``steerlab eval samplecnn``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from steerlab.cli.options import (
    CONTEXT,
    checkpoint_option,
    device_option,
    echo_json,
    json_option,
    model_option,
    output_option,
    setup_compute,
    threads_option,
)

# defaults that differ between the two tasks (--task); the others are shared
TASK_DEFAULTS: dict[str, dict[str, Any]]  # (mixed values: mypy would infer dict[str, object])
TASK_DEFAULTS = {
    "kinds": {"steps": 1500, "val_clips": 140, "name": "samplecnn_24khz"},
    "instruments": {"steps": 2500, "val_clips": 130, "name": "samplecnn_instruments_24khz"},
}


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{flag} takes comma-separated integers, got {text!r}") from None


@click.command(name="samplecnn", context_settings=CONTEXT)
@output_option(
    "Run folder: checkpoint.pt, curve.jsonl, model.safetensors, config.json. Rerun to resume.", dest="out_dir"
)
@click.option(
    "--task",
    "task_name",
    type=click.Choice(sorted(TASK_DEFAULTS)),
    default="kinds",
    show_default=True,
    help="kinds: synthetic clip kinds (samplecnn_24khz); instruments: General MIDI family of rendered "
    "notes and chords, held out by note and program (samplecnn_instruments_24khz).",
)
@click.option("--steps", type=int, default=None, help="Total optimisation steps [kinds 1500, instruments 2500].")
@click.option("--batch-size", type=int, default=16, help="Clips per step.")
@click.option("--clip-seconds", type=float, default=1.0, help="Length of each clip.")
@click.option("--lr", type=float, default=3e-3, help="Peak learning rate (cosine decay).")
@click.option(
    "--val-clips", type=int, default=None, help="Validation clips (seed + 10000) [kinds 140, instruments 130]."
)
@click.option("--val-every", type=int, default=100, help="Validate, checkpoint and export every N steps.")
@click.option("--seed", type=int, default=0, help="Seed of data and initialisation.")
@click.option(
    "--channels",
    default="16,16,32,32,64,64",
    show_default=True,
    help="Output channels of each pooling block (comma-separated; one block per entry).",
)
@click.option("--first-channels", type=int, default=16, help="Filters of the strided first conv.")
@click.option(
    "--split-seed",
    type=int,
    default=0,
    show_default=True,
    help="instruments: seed choosing each family's test-only programs.",
)
@click.option(
    "--test-programs", type=int, default=2, show_default=True, help="instruments: test-only programs per family (of 8)."
)
@click.option(
    "--held-out-pitch-classes",
    default="0,3,7,10",
    show_default=True,
    help="instruments: pitch classes (0 = C) that never sound in training.",
)
@threads_option("torch CPU threads.", default=1)
@device_option()
def train_samplecnn(
    out_dir,
    task_name,
    steps,
    batch_size,
    clip_seconds,
    lr,
    val_clips,
    val_every,
    seed,
    channels,
    first_channels,
    split_seed,
    test_programs,
    held_out_pitch_classes,
    threads,
    device,
) -> None:
    """Train the toy SampleCNN on synthetic clip kinds or instrument families (resumable)."""

    from .instruments import InstrumentTask
    from .model import SampleCNNConfig
    from .train import InstrumentData, TrainConfig
    from .train import train_samplecnn as run

    dev = setup_compute(device, threads)
    defaults = TASK_DEFAULTS[task_name]
    widths = _ints(channels, "--channels")
    # an invalid value raises ConfigError, which the CLI prints naming this command's flags
    data, labels = None, None
    if task_name == "instruments":
        spec = InstrumentTask(
            test_programs_per_family=test_programs,
            split_seed=split_seed,
            seconds=clip_seconds,
            held_out_pitch_classes=_ints(held_out_pitch_classes, "--held-out-pitch-classes"),
        )
        data, labels = InstrumentData(spec, 24_000), spec.families
    extra: dict[str, Any] = {"labels": labels} if labels else {}
    model_cfg = SampleCNNConfig(first_channels=first_channels, block_channels=widths, **extra)
    cfg = TrainConfig(
        steps=defaults["steps"] if steps is None else steps,
        batch_size=batch_size,
        clip_seconds=clip_seconds,
        lr=lr,
        min_lr=min(1e-4, lr),
        val_clips=defaults["val_clips"] if val_clips is None else val_clips,
        val_every=val_every,
        seed=seed,
    )
    row = run(
        model_cfg,
        cfg,
        Path(out_dir),
        name=defaults["name"],
        log=lambda m: click.echo(m, err=True),
        data=data,
        device=dev,
    )
    echo_json(row)


@click.command(name="samplecnn", context_settings=CONTEXT)
@model_option("Model to evaluate.", default="samplecnn_24khz")
@checkpoint_option("A run folder of `steerlab train samplecnn`.")
@click.option(
    "--clips",
    type=int,
    default=None,
    help="Held-out clips: synthetic kinds, all kinds in turn [700]; instruments, per held-out set [260].",
)
@click.option(
    "--seed", type=int, default=12_345, help="Seed of the held-out clips (training used its seed and seed+10000)."
)
@click.option(
    "--seconds",
    type=float,
    default=1.0,
    help="Length of each held-out clip (kinds; instruments use their training length).",
)
@threads_option("torch CPU threads.", default=1)
@json_option()
@device_option()
def eval_samplecnn(model_name, checkpoint, clips, seed, seconds, threads, as_json, device) -> None:
    """Held-out test accuracy, beside chance and the same architecture at random initialisation
    (instrument models: per held-out set, with bootstrap 95% intervals)."""

    from steerlab import api
    from steerlab.errors import SteerlabError

    from .evaluation import evaluate_model
    from .model import SampleCNN

    setup_compute(device, threads)
    if (clips is not None and clips <= 0) or seconds <= 0:
        raise click.BadParameter("--clips and --seconds must be positive")
    model = api.load_model(model_name, checkpoint, device=device)
    if not isinstance(model, SampleCNN):
        raise SteerlabError(f"{model_name!r} is not a SampleCNN; `steerlab eval samplecnn` evaluates samplecnn models")
    if model.instrument_task is not None:
        return _eval_instruments(model, 260 if clips is None else clips, seed, as_json)
    clips = 700 if clips is None else clips
    res = evaluate_model(model, clips, seed, seconds)
    if as_json:
        return echo_json(res)
    lo, hi = res["accuracy_ci95"]
    click.echo(
        f"{res['model']} (weights {res['weights_sha256'][:12]}): test accuracy {res['accuracy']:.3f} "
        f"(95% CI {lo:.3f}-{hi:.3f}) on {clips} clips, seed {seed}; chance {res['chance']:.3f}; "
        f"random init {res['random_init']['accuracy']:.3f}"
    )
    click.echo("by kind: " + ", ".join(f"{k} {v:.2f}" for k, v in res["accuracy_by_label"].items() if v is not None))
    shared = res["test_set"]["clips_shared_with_training"]
    if shared is not None:
        click.echo(f"test clips shared with training: {shared}")


def _eval_instruments(model, clips: int, seed: int, as_json: bool) -> None:
    from .evaluation import evaluate_instruments

    res = evaluate_instruments(model, clips, seed)
    if as_json:
        return echo_json(res)
    click.echo(
        f"{res['model']} (weights {res['weights_sha256'][:12]}): instrument family of {len(res['labels'])} "
        f"GM families, {clips} clips per set, seed {seed}; chance {res['chance']:.3f}"
    )
    for split, r in res["splits"].items():
        lo, hi = r["accuracy_ci95"]
        rlo, rhi = r["random_init"]["accuracy_ci95"]
        shared = r["clips_shared_with_training"]
        click.echo(
            f"  {split:14s} accuracy {r['accuracy']:.3f} (95% bootstrap CI {lo:.3f}-{hi:.3f}); random init "
            f"{r['random_init']['accuracy']:.3f} ({rlo:.3f}-{rhi:.3f})"
            + (
                f"; clips sharing a program / pitch class with training: {shared['program']} / {shared['pitch_class']}"
                if shared
                else ""
            )
        )
    if res["soundfont_matches_training"] is False:
        click.echo("warning: the installed SoundFont differs from the one the model was trained on", err=True)
