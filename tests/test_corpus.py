"""Corpora of rendered instruments and of real music (steerlab.corpus, `steerlab corpus`).

Rendered clips are checked against their own ground truth (the MIDI pitch is where the
spectrum's harmonics are; drum onsets are where the energy rises); real-music clips are
checked sample for sample against the decoded source file they were cut from.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import needs

from steerlab import audio
from steerlab.corpus import clip_corpus, draw_spec, read_manifest, render_corpus
from steerlab.errors import CorpusBuildError

SR = 24_000
ASC = Path("/usr/share/games/asc/music")
FB = Path("/usr/share/games/frozen-bubble/snd")
HAS_RENDER = (
    importlib.util.find_spec("tinysoundfont") is not None and importlib.util.find_spec("pretty_midi") is not None
)
needs_render = needs(HAS_RENDER, "the render extra is not installed (pip install -e '.[render]')")
needs_mp3 = needs((ASC / "machine_wars.mp3").is_file(), "Debian package asc-music is not installed")
needs_ogg = needs((FB / "introzik.ogg").is_file(), "Debian package frozen-bubble-data is not installed")


def _harmonic_f0(x: np.ndarray, around_hz: float) -> float:
    """f0 (Hz) within six semitones of ``around_hz`` whose first five harmonics hold the most
    magnitude (10-cent grid; a long Hann window over the sustained middle of the clip)."""
    seg = x[len(x) // 8 : len(x) // 2]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), 8 * len(seg)))
    freqs = np.fft.rfftfreq(8 * len(seg), 1 / SR)
    grid = around_hz * 2 ** (np.arange(-60, 61) / 120)
    score = [sum(np.interp(k * f, freqs, spec) for k in range(1, 6) if k * f < SR / 2) for f in grid]
    return float(grid[int(np.argmax(score))])


@needs_render
def test_rendered_notes_sound_at_their_midi_pitch(tmp_path):
    programs = (0, 24, 40, 56, 73)  # piano, nylon guitar, violin, trumpet, flute
    doc = render_corpus(tmp_path, 5, seed=3, kinds=("note",), seconds=1.5, programs=programs)
    errors = []
    for clip in doc["clips"]:
        x, sr = sf.read(tmp_path / clip["file"], dtype="float32")
        truth = 440.0 * 2 ** ((clip["notes"][0]["pitch"] - 69) / 12)
        errors.append(abs(1200 * np.log2(_harmonic_f0(x, truth) / truth)))
        assert sr == SR and clip["program"] in programs and clip["family"] != "drums"
    assert max(errors) <= 30, f"rendered pitch off its MIDI ground truth by {errors} cents"


@needs_render
def test_rendered_drum_onsets_are_where_the_energy_rises(tmp_path):
    doc = render_corpus(tmp_path, 1, seed=0, kinds=("drums",), seconds=2.0)
    clip = doc["clips"][0]
    x, _ = sf.read(tmp_path / clip["file"], dtype="float32")
    d = np.diff(x)  # first difference: weights the attack's high band over the ringing low end
    w = int(0.02 * SR)

    def rises(t: float) -> bool:  # energy 20 ms after t at least twice that of the 20 ms before
        i = int(round(t * SR))
        return float(np.mean(d[i : i + w] ** 2)) > 2 * float(np.mean(d[max(0, i - w) : i] ** 2))

    onsets = [n["onset_s"] for n in clip["notes"]]
    between = [t + clip["step_s"] / 2 for t in onsets[:-1]]
    assert clip["family"] == "drums" and len(onsets) >= 6
    assert np.mean([rises(t) for t in onsets]) >= 0.8, "drum onsets without an energy rise"
    assert np.mean([rises(t) for t in between]) <= 0.3, "energy rises between the recorded onsets"


@needs_render
def test_render_is_deterministic_in_its_seed_and_records_ground_truth(tmp_path):
    a = render_corpus(tmp_path / "a", 5, seed=7, seconds=1.0)
    b = render_corpus(tmp_path / "b", 5, seed=7, seconds=1.0)
    c = render_corpus(tmp_path / "c", 5, seed=8, seconds=1.0)
    assert [x["sha256"] for x in a["clips"]] == [x["sha256"] for x in b["clips"]]
    assert [x["sha256"] for x in a["clips"]] != [x["sha256"] for x in c["clips"]]
    assert [x["kind"] for x in a["clips"]] == ["note", "interval", "chord", "melody", "drums"]
    chord = a["clips"][2]
    from steerlab.corpus import CHORD_QUALITIES

    assert [n["pitch"] - chord["root"] for n in chord["notes"]] == list(CHORD_QUALITIES[chord["quality"]])
    assert read_manifest(tmp_path / "a")["soundfont"]["sha256"] == a["soundfont"]["sha256"]
    assert all(np.abs(sf.read(tmp_path / "a" / x["file"])[0]).max() <= 0.9 + 1e-6 for x in a["clips"])


def test_draw_spec_keeps_notes_inside_the_clip():
    for i in range(200):
        rng = np.random.default_rng([0, i])
        spec = draw_spec(rng, ("note", "interval", "chord", "melody", "drums")[i % 5], 2.0)
        assert all(0 < n.onset_s and n.onset_s + n.duration_s <= 2.0 - 0.3 + 1e-9 for n in spec.notes)
        assert all(0 <= n.pitch <= 127 and 1 <= n.velocity <= 127 for n in spec.notes)


@needs_mp3
def test_clips_of_a_real_mp3_are_its_decoded_samples(tmp_path):
    src = tmp_path / "head.mp3"
    src.write_bytes((ASC / "machine_wars.mp3").read_bytes()[:200_000])  # a real MP3's first ~20 s, cut as bytes
    doc = clip_corpus([src], tmp_path / "out", 4, seed=0, seconds=2.0)
    decoded = audio.load(src, SR, 1)[0][0]
    assert doc["count"] == len(doc["clips"]) >= 3 and doc["files"][0]["sha256"] == doc["clips"][0]["source_sha256"]
    for clip in doc["clips"]:
        x, _ = sf.read(tmp_path / "out" / clip["file"], dtype="float32")
        start = round(clip["offset_s"] * SR)
        np.testing.assert_allclose(x, decoded[start : start + len(x)], atol=1e-7)
        assert clip["level_db"] >= doc["min_level_db"]


@needs_ogg
def test_quiet_stretches_of_real_music_are_skipped_and_counted(tmp_path):
    x = audio.load(FB / "introzik.ogg", SR, 1)[0][0][: 10 * SR]
    quiet = np.concatenate([x, np.zeros(10 * SR, np.float32)])
    sf.write(tmp_path / "half_silent.wav", quiet, SR, subtype="FLOAT")
    doc = clip_corpus([tmp_path / "half_silent.wav"], tmp_path / "out", 12, seed=1, seconds=1.0)
    # quiet draws are counted and drawn again, so the count is exact (it used to be 12 - skipped)
    assert doc["skipped_quiet"] > 0 and doc["count"] == doc["requested"] == 12 == len(doc["clips"])
    assert "shortfall_reason" not in doc
    assert all(c["offset_s"] < 10.0 for c in doc["clips"])


def test_corpus_refuses_unusable_sources(tmp_path):
    with pytest.raises(CorpusBuildError, match="does not exist"):
        clip_corpus([tmp_path / "nope"], tmp_path / "out", 3, seed=0)
    sf.write(tmp_path / "short.wav", np.zeros(100, np.float32) + 0.1, SR)
    with pytest.raises(CorpusBuildError, match="at least 3.0 s long"):
        clip_corpus([tmp_path / "short.wav"], tmp_path / "out", 3, seed=0)
    assert not (tmp_path / "out" / "manifest.json").exists()
    with pytest.raises(CorpusBuildError, match="unknown render kind"):
        render_corpus(tmp_path / "r", 2, seed=0, kinds=("banjo",))


def test_corpus_manifests_embed_the_one_provenance_record(tmp_path):
    """Issue 10 (defect 11): a corpus manifest's provenance is steerlab.provenance.record,
    with its key names (command_line, not command), hashed inputs, hardware and wall time."""
    from steerlab import provenance

    x = 0.3 * np.sin(2 * np.pi * 220 * np.arange(2 * SR) / SR).astype(np.float32)
    sf.write(tmp_path / "tone.wav", x, SR, subtype="FLOAT")
    doc = clip_corpus([tmp_path / "tone.wav"], tmp_path / "out", 2, seed=0, seconds=0.5)
    p = read_manifest(tmp_path / "out")["provenance"]
    assert p == doc["provenance"] and set(provenance.record()) <= set(p) and "command" not in p
    assert p["inputs"] == [provenance.file_entry(tmp_path / "tone.wav")]
    assert p["inputs"][0]["sha256"] == doc["files"][0]["sha256"]
    assert p["wall_time_s"] >= 0 and p["hardware"]["cpu_count"] >= 1 and p["versions"]["numpy"] == np.__version__
    assert doc["files_skipped"] == 0 and doc["skipped_files"] == []


def test_corpus_cli_errors_are_one_line(tmp_path):
    from click.testing import CliRunner

    from steerlab import cli

    res = CliRunner().invoke(cli.get_cli(), ["corpus", "clips", str(tmp_path / "nope"), "-o", str(tmp_path / "o")])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "does not exist" in res.output


def test_codec_training_batches_mix_sources_and_validate_held_out_windows(tmp_path):
    from steerlab.builtins.encodec.train import FileSource, TrainConfig, _batch

    t = np.arange(3 * SR) / SR
    loud = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    (tmp_path / "val").mkdir()
    sf.write(tmp_path / "val" / "a.wav", np.concatenate([loud, np.zeros(2 * SR, np.float32)]), SR, subtype="FLOAT")
    windows = FileSource(str(tmp_path / "val"), SR, 1, "cpu").windows(10, SR)
    assert windows.shape == (3, 1, SR)  # the two silent seconds are not validation windows

    (tmp_path / "train").mkdir()  # a ramp: every crop of it is a straight line with a positive slope
    sf.write(tmp_path / "train" / "ramp.wav", np.linspace(0.01, 0.5, 4 * SR, dtype=np.float32), SR, subtype="FLOAT")
    src = FileSource(str(tmp_path / "train"), SR, 1, "cpu")
    pool = torch.zeros(4, 1, 2 * SR)
    rng = np.random.default_rng(0)
    batch = _batch(TrainConfig(batch_size=32, data=("x",), synth_share=0.0), rng, pool, [src], 2400)[:, 0]
    steps = batch.diff(dim=-1)
    assert bool((steps > 0).all()) and float((steps.std(-1) / steps.mean(-1)).max()) < 1e-2
    mixed = _batch(TrainConfig(batch_size=400, data=("x",), synth_share=0.5), rng, pool, [src], 2400)
    from_file = float((mixed.abs().amax(dim=(1, 2)) > 0).float().mean())
    assert 0.4 < from_file < 0.6, from_file  # binomial(400, 0.5): 0.4 and 0.6 are four standard deviations out


def test_a_corpus_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    import steerlab.corpus as corpus

    t = np.arange(4 * SR) / SR
    sf.write(tmp_path / "tone.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR, subtype="FLOAT")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("someone's files")
    with pytest.raises(CorpusBuildError, match="already exists and is not empty"):
        clip_corpus([tmp_path / "tone.wav"], tmp_path / "full", 2, seed=0, seconds=0.5)
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["notes.txt"]
    calls = {"n": 0}
    real = corpus._level_db

    def failing(x):  # the third clip fails mid-way, as a full disk or a kill would
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("No space left on device")
        return real(x)

    monkeypatch.setattr(corpus, "_level_db", failing)
    with pytest.raises(OSError):
        clip_corpus([tmp_path / "tone.wav"], tmp_path / "out", 4, seed=0, seconds=0.5)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def _noise(path: Path, seconds: float, sr: int, seed: int) -> Path:
    sf.write(path, 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * sr)).astype(np.float32), sr)
    return path


def test_clips_count_is_exact_over_files_of_any_number_and_length(tmp_path):
    """The trial: 3 files with -n 1 wrote 3 clips, -n 8 over a mixed folder wrote 11 (each file got
    max(1, round(share)) clips). Now one per file and the rest by largest remainders; fewer clips
    than files draws the files by length."""
    from steerlab.corpus import _clip_quota

    files = [
        _noise(tmp_path / "a.wav", 2.0, 48000, 0),
        _noise(tmp_path / "b.ogg", 9.0, 44100, 1),
        _noise(tmp_path / "c.flac", 1.5, 16000, 2),
    ]
    for n in (1, 2, 3, 8, 11):
        doc = clip_corpus(files, tmp_path / f"out{n}", n, seed=0, seconds=1.0)
        assert doc["count"] == doc["requested"] == n == len(doc["clips"]) and "shortfall_reason" not in doc
        assert read_manifest(tmp_path / f"out{n}")["count"] == n
        per_file = [sum(c["source"] == str(f) for c in doc["clips"]) for f in files]
        if n >= 3:
            assert min(per_file) >= 1
    lengths = np.array([2.0, 9.0, 1.5])
    # 1 + shares of 5 (0.8, 3.6, 0.6): floors (0, 3, 0), the 2 left to remainders 0.8 and 0.6 (tie: earlier)
    assert _clip_quota(lengths, 8, 0).tolist() == [2, 5, 1]
    assert _clip_quota(lengths, 3, 0).tolist() == [1, 1, 1]
    picks = np.array([_clip_quota(lengths, 1, seed) for seed in range(400)])
    assert (picks.sum(axis=1) == 1).all()
    np.testing.assert_allclose(picks.mean(axis=0), lengths / lengths.sum(), atol=0.06)  # drawn by length
    assert _clip_quota(lengths, 1, 5).tolist() == _clip_quota(lengths, 1, 5).tolist()  # seeded


def test_clips_of_silence_fall_short_and_the_manifest_says_why(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(3 * SR, np.float32), SR)
    loud = _noise(tmp_path / "loud.wav", 1.0, SR, 3)  # holds exactly one 1 s stretch: room for any count
    doc = clip_corpus([tmp_path / "silent.wav", loud], tmp_path / "out", 4, seed=0, seconds=1.0)
    assert doc["count"] == doc["requested"] == 4  # the silent file's share moved to the loud one
    assert all(c["source"] == str(loud) for c in doc["clips"])
    doc = clip_corpus([tmp_path / "silent.wav"], tmp_path / "out2", 4, seed=0, seconds=1.0)
    assert doc["count"] == 0 and doc["requested"] == 4 and doc["skipped_quiet"] > 0
    assert doc["shortfall_reason"].startswith("0 of the 4 requested clips: every source ran out of stretches")
    assert read_manifest(tmp_path / "out2")["shortfall_reason"] == doc["shortfall_reason"]
