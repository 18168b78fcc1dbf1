"""``steerlab train codec`` and ``steerlab eval codec``."""

from __future__ import annotations

from pathlib import Path

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
    skip_bad_files_option,
    threads_option,
)


@click.command(name="codec", context_settings=CONTEXT)
@output_option(
    "Run folder: checkpoint.pt, curve.jsonl, model.safetensors, config.json. Rerun to resume.", dest="out_dir"
)
@click.option("--steps", type=int, default=20_000, help="Total optimisation steps.")
@click.option("--batch-size", type=int, default=8, help="Clips per step.")
@click.option("--clip-seconds", type=float, default=0.5, help="Crop length of each clip.")
@click.option("--lr", type=float, default=1e-3, help="Peak learning rate (cosine decay).")
@click.option("--val-every", type=int, default=250, help="Validate, checkpoint and export every N steps.")
@click.option("--seed", type=int, default=0, help="Seed of data and initialisation.")
@click.option("--n-filters", type=int, default=12, help="SEANet base width.")
@click.option("--dimension", type=int, default=64, help="Latent dimension.")
@click.option("--lstm", type=int, default=1, help="LSTM layers at the end of the encoder and start of the decoder.")
@threads_option("torch CPU threads.", default=2)
@click.option(
    "--data",
    "data",
    multiple=True,
    type=click.Path(exists=True),
    help="Audio file or folder (real music, rendered instruments), one source each (repeatable).",
)
@click.option(
    "--synth-share",
    type=float,
    default=None,
    help="Share of batch items from the synthetic corpus.  [default: 1, or 1/(1+sources) with --data]",
)
@click.option(
    "--val-data",
    "val_data",
    multiple=True,
    type=click.Path(exists=True),
    help="Held-out audio file or folder, validated as its own source (repeatable).",
)
@skip_bad_files_option(
    "Skip unreadable, empty or NaN files under --data / --val-data instead of failing before training."
)
@device_option()
@click.option(
    "--amp",
    type=click.Choice(["none", "bf16"]),
    default="none",
    help="bf16: encoder and decoder under bfloat16 autocast (quantizer and losses in float32).",
)
@click.option(
    "--time-budget-s",
    type=float,
    default=None,
    help="Fit the schedule to this many seconds of training (step rate measured after 100 steps).",
)
@click.option("--log-mag-weight", type=float, default=0.1, help="Weight of the log-magnitude spectral term.")
@click.option("--spectral-weight", type=float, default=0.1, help="Weight of the multi-resolution spectral loss.")
@click.option("--pool-clips", type=int, default=4000, help="Synthetic clips in the training pool.")
@click.option(
    "--export-dtype",
    type=click.Choice(["float32", "float16"]),
    default="float32",
    help="Storage type of the exported model.safetensors (loading casts back to float32).",
)
def train_codec(
    out_dir,
    steps,
    batch_size,
    clip_seconds,
    lr,
    val_every,
    seed,
    n_filters,
    dimension,
    lstm,
    threads,
    data,
    synth_share,
    val_data,
    skip_bad_files,
    device,
    amp,
    time_budget_s,
    log_mag_weight,
    spectral_weight,
    pool_clips,
    export_dtype,
) -> None:
    """Train the embedded codec on the synthetic corpus and any --data sources (resumable)."""
    import dataclasses

    from .codec import EMBEDDED
    from .train import TrainConfig
    from .train import train_codec as run

    device = str(setup_compute(device, threads))  # auto resolved: the config records the device itself
    share = synth_share if synth_share is not None else 1.0 / (1 + len(data))
    # an invalid value raises ConfigError, which the CLI prints naming this command's flags
    cfg = dataclasses.replace(EMBEDDED, n_filters=n_filters, dimension=dimension, lstm=lstm)
    tc = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        clip_seconds=clip_seconds,
        lr=lr,
        val_every=val_every,
        seed=seed,
        spectral_weight=spectral_weight,
        log_mag_weight=log_mag_weight,
        data=tuple(data),
        synth_share=share,
        val_data=tuple(val_data),
        device=device,
        amp=amp,
        time_budget_s=time_budget_s,
        pool_clips=pool_clips,
        export_dtype=export_dtype,
        skip_bad_files=skip_bad_files,
    )
    result = run(cfg, tc, Path(out_dir), log=lambda m: click.echo(m, err=True))
    echo_json(result)


@click.command(name="codec", context_settings=CONTEXT)
@model_option("Model to evaluate (default: the embedded model).")
@checkpoint_option()
@click.option("--clips", type=int, default=70, help="Held-out synthetic clips (1 s each, all kinds in turn).")
@click.option("--seed", type=int, default=12_345, help="Seed of the held-out clips (training used 0 and 10000).")
@click.option(
    "--data",
    "data",
    multiple=True,
    type=click.Path(exists=True),
    help="Also measure fidelity on your own audio: a file or folder (repeatable), 1 s windows.",
)
@click.option("--windows", type=int, default=48, help="Windows per --data source (spread evenly, quiet ones skipped).")
@skip_bad_files_option("Skip unreadable, empty or NaN files under --data (listed in the result) instead of failing.")
@click.option("--tones", is_flag=True, help="Also SI-SDR on 1 s pure tones from 50 Hz to 8 kHz.")
@json_option()
@device_option()
@threads_option()
def eval_codec(
    model_name, checkpoint, clips, seed, data, windows, skip_bad_files, tones, as_json, device, threads
) -> None:
    """SI-SDR and MR-STFT distance on held-out synthetic music, both decode paths,
    beside the same architecture at random initialisation; with --data, SI-SDR and the
    energy error per octave band (63 Hz to 8 kHz) on your own audio too."""
    from steerlab import api
    from steerlab.errors import SteerlabError

    from .evaluation import evaluate_model, fidelity, folder_windows, tone_fidelity
    from .loaders import random_codec
    from .model import EncodecAudioModel

    if clips < 1 or windows < 1:
        raise SteerlabError(f"--clips and --windows must be >= 1, got {clips} and {windows}")
    setup_compute(device, threads)
    from steerlab import devices
    from steerlab.capture import bad_files_note

    model = api.load_model(model_name, checkpoint, device=device)
    if not isinstance(model, EncodecAudioModel):
        raise SteerlabError(f"{model.name} is not an EnCodec model: this command evaluates codecs")
    # every --data file is checked (and decoded) before the synthetic evaluation: a bad file fails first
    windowed = {folder: folder_windows(folder, model, windows, skip_bad_files=skip_bad_files) for folder in data}
    for folder, (_, _, bad) in windowed.items():
        if bad:
            click.echo(bad_files_note(bad, f"--data {folder}", "--skip-bad-files"), err=True)
    rows = evaluate_model(model, clips, seed)
    if data:
        random = random_codec(f"{model.name} (random init)", model.cfg).to(devices.of(model))
        rows["data"] = {}
        for folder, (clips_t, files, bad) in windowed.items():
            rows["data"][folder] = {
                "files": files,
                "skipped_files": bad,
                model.name: fidelity(model, clips_t),
                random.name: fidelity(random, clips_t),
            }
    if tones:
        rows["tones_si_sdr_db"] = tone_fidelity(model)
    rows["compute"] = devices.record(model)
    if as_json:
        return echo_json(rows)
    for name, paths in rows.items():
        if name in ("data", "tones_si_sdr_db", "compute"):
            continue
        for path, res in paths.items():
            by_kind = res["si_sdr_median_by_kind"]
            kinds = ", ".join(
                f"{k} {'n/a' if v is None else format(v, '.1f')}"
                for k, v in by_kind.items()
                if not k.endswith("_reason")
            )
            click.echo(
                f"{name} [{path}]: SI-SDR median {res['si_sdr_median']:.2f} dB "
                f"(95% CI {res['si_sdr_median_ci95'][0]:.2f} to {res['si_sdr_median_ci95'][1]:.2f}; mean {res['si_sdr_mean']:.2f}), "
                f"MR-STFT {res['mrstft_mean']:.3f}; median by kind: {kinds}"
            )
    for folder, per_model in rows.get("data", {}).items():
        for name, paths in per_model.items():
            if name in ("files", "skipped_files"):
                continue
            for path, res in paths.items():
                bands = ", ".join(
                    f"{fc} {'n/a' if b['median_db'] is None else format(b['median_db'], '+.1f')}"
                    for fc, b in res["octave_error_db"].items()
                )
                click.echo(
                    f"{folder} {name} [{path}]: SI-SDR median {res['si_sdr_median']:.2f} dB over {res['clips']} "
                    f"windows; octave energy error (dB): {bands}"
                )
    for path, per_tone in rows.get("tones_si_sdr_db", {}).items():
        click.echo(f"pure tones [{path}] SI-SDR (dB): " + ", ".join(f"{f} Hz {v:.1f}" for f, v in per_tone.items()))
