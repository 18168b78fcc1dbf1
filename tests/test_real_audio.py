"""Real produced music from Debian packages, through the loader, `intervene`, `learn` and `analyze`.

asc-music: three stereo MP3s at 22,050 Hz (GPL-2+), whose headers declare 5,510 to 8,359 samples
more than decode (MP3 encoder delay and padding). rrootage-data: three mono Ogg Vorbis tracks at
44,100 Hz (BSD-2-Clause). Both are installed by `.ci/run`; without them these tests skip and say so.

Most tests use real files cut at the byte level (the first 100 or 120 kB of a track, copied as
bytes, never re-encoded): a cut MP3 keeps its real header, so it declares more samples than decode,
which is exactly the fault of streaming a whole track, in a few seconds of audio.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import needs

from steerlab import audio, runner
from steerlab.errors import AudioError

ASC = Path("/usr/share/games/asc/music")
RROOTAGE = Path("/usr/share/games/rrootage/sounds")
MP3S = sorted(ASC.glob("*.mp3"))
OGGS = sorted(RROOTAGE.glob("stg_*.ogg"))
needs_mp3 = needs(
    bool(MP3S), "Debian package asc-music is not installed (apt-get install -y asc-music): no real MP3s to test with"
)
needs_ogg = needs(
    bool(OGGS),
    "Debian package rrootage-data is not installed "
    "(apt-get install -y rrootage-data): no real Ogg Vorbis music to test with",
)


def _cut(src: Path, n_bytes: int, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes()[:n_bytes])
    return dst


@pytest.fixture
def real_mp3(tmp_path) -> Path:
    return _cut(ASC / "machine_wars.mp3", 100_000, tmp_path / "machine_wars_head.mp3")  # about 10 s


@pytest.fixture
def real_ogg(tmp_path) -> Path:
    return _cut(RROOTAGE / "stg_b.ogg", 120_000, tmp_path / "stg_b_head.ogg")  # about 8 s


def _cli(args: list[str]):
    from click.testing import CliRunner

    from steerlab import cli

    return CliRunner().invoke(cli.get_cli(), args)


# --- the loader trusts what decodes ---------------------------------------------------------------


@needs_mp3
@pytest.mark.parametrize("path", MP3S, ids=lambda p: p.name)
def test_scan_counts_the_samples_that_decode_not_the_header(path):
    info = audio.scan(path)
    decoded = 0
    with sf.SoundFile(str(path)) as f:
        while len(block := f.read(1 << 18, dtype="float32")):
            decoded += len(block)
    assert info.decoded and info.frames == decoded
    assert info.header_frames == sf.info(str(path)).frames
    # the header over-declares by the encoder's delay and padding, and the record says by how much
    assert 1000 < info.header_frames - info.frames < 20_000
    assert info.to_dict()["header_minus_decoded_frames"] == info.header_frames - info.frames
    # under 1% short: encoder delay and padding, not damage, so no truncation flag and no extra keys
    assert not info.possibly_truncated and "possibly_truncated" not in info.to_dict()


@needs_mp3
def test_a_whole_real_mp3_streams_to_its_decoded_end():
    """The issue's failure: streaming frontiers.mp3 ended 8,359 samples short of its header."""
    path = ASC / "frontiers.mp3"
    info = audio.scan(path)
    total = audio.resampled_length(info.frames, info.sample_rate, 24_000)
    pieces = list(audio.iter_chunks(path, 24_000, 1, 60.0, 0.0, info=info))
    assert pieces[-1][0] + pieces[-1][1].shape[1] == total
    assert sum(p.shape[1] for _, p in pieces) == total
    whole, _ = audio.load(path, 24_000, 1)
    assert whole.shape[1] == total
    np.testing.assert_allclose(pieces[-1][1], whole[:, pieces[-1][0] :], atol=1e-5)


@needs_ogg
@pytest.mark.parametrize("path", OGGS, ids=lambda p: p.name)
def test_real_ogg_decodes_to_its_header_count(path):
    info = audio.scan(path)
    assert info.frames == info.header_frames > 0 and info.channels == 1 and info.sample_rate == 44_100


@needs_mp3
def test_a_cut_real_mp3_declares_more_than_it_decodes(real_mp3):
    info = audio.scan(real_mp3)
    assert info.header_frames > info.frames > 200_000  # 220,689 declared, 220,032 decode
    # asc-music's MP3s have no Xing tag: the header's count is estimated from the (cut) file's size,
    # so a 100 kB cut declares 10 s and is not flagged (the documented limit of the 90% rule)
    assert not info.possibly_truncated


@needs_mp3
def test_a_real_mp3_cut_to_1000_bytes_is_flagged_and_intervene_warns_once(tmp_path):
    """The user's report: `head -c 1000 some.mp3` decoded 1,728 of the 2,206 samples its header
    declares and intervene wrote a full result without a word."""
    cut = _cut(ASC / "machine_wars.mp3", 1000, tmp_path / "corrupt.mp3")
    info = audio.scan(cut)
    assert (info.header_frames, info.frames) == (2206, 1728) and info.possibly_truncated
    out = tmp_path / "E9"
    result = _cli(["intervene", str(cut), "--layer", "latent", "--channel", "1", "--alpha", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: corrupt.mp3: {info.truncation}"]
    assert "only 1728 of the 2206 samples its header declares decode (78%" in warnings[0]
    doc = json.loads((out / "corrupt" / "scores.json").read_text())
    assert doc["input"]["possibly_truncated"] is True and doc["input"]["truncation_reason"] == info.truncation


# --- intervene ------------------------------------------------------------------------------------


@needs_mp3
def test_intervene_streams_a_real_mp3_in_chunks_to_the_end(real_mp3, tmp_path):
    out = tmp_path / "out"
    result = _cli(
        [
            "intervene",
            str(real_mp3),
            "-l",
            "first_conv",
            "-c",
            "0",
            "-a",
            "2",
            "-t",
            "440",
            "--chunk-s",
            "4",
            "-o",
            str(out),
        ]
    )
    assert result.exit_code == 0, result.output
    assert "truncated" not in result.output  # its warning is the output check's clipping, not the file
    doc = json.loads((out / real_mp3.stem / "scores.json").read_text())
    info = audio.scan(real_mp3)
    assert doc["input"]["frames"] == info.frames and doc["input"]["header_frames"] == info.header_frames
    assert doc["input"]["header_minus_decoded_frames"] > 0
    assert doc["chunks"] == 3  # 10 s in chunks of 4 s overlapping by 1 s: starts at 0, 3, 6 s
    patched, sr = sf.read(out / real_mp3.stem / "patched.wav")
    assert sr == 24_000 and len(patched) == audio.resampled_length(info.frames, info.sample_rate, 24_000)
    assert doc["scores"]["spectral"]["targets"][0]["gain_db"] is not None
    entry = doc["provenance"]["inputs"][0]
    assert entry["sha256"] == __import__("hashlib").sha256(real_mp3.read_bytes()).hexdigest()


@needs_ogg
def test_intervene_on_real_ogg_whole_and_chunked_agree(real_ogg, tmp_path):
    docs = {}
    for c in ("60", "3"):
        out = tmp_path / f"o{c}"
        result = _cli(
            [
                "intervene",
                str(real_ogg),
                "-l",
                "first_conv",
                "-c",
                "3",
                "-a",
                "0.5",
                "-t",
                "440",
                "--chunk-s",
                c,
                "-o",
                str(out),
            ]
        )
        assert result.exit_code == 0, result.output
        docs[c] = json.loads((out / real_ogg.stem / "scores.json").read_text())
    # one relative strength for the whole input, whatever the chunk size
    assert docs["3"]["effective_value"] == pytest.approx(docs["60"]["effective_value"], rel=0.01)
    a, _ = sf.read(tmp_path / "o60" / real_ogg.stem / "patched.wav")
    b, _ = sf.read(tmp_path / "o3" / real_ogg.stem / "patched.wav")
    assert a.shape == b.shape
    assert np.sqrt(np.mean((a - b) ** 2)) < 0.01 * np.sqrt(np.mean(a**2))


@needs_mp3
def test_an_unusable_file_fails_before_any_model_work(real_mp3, tmp_path, monkeypatch, embedded):
    """A real MP3 long enough to stream, then a file with a NaN: the NaN is found by the up-front
    scan, before any chunk of the MP3 reaches the model, and nothing is written."""
    from steerlab import api
    from steerlab.interventions import Span, Strength, channel_direction

    bad = tmp_path / "bad.wav"
    x = np.zeros(24_000, np.float32)
    x[-1] = np.nan
    sf.write(bad, x, 24_000, subtype="FLOAT")
    calls = []
    monkeypatch.setattr(api, "intervene", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(api, "prepare", lambda *a, **k: calls.append(1))
    info = api.layers(embedded).get("first_conv")
    spec = api.InterventionSpec(
        layer=info.name, direction=channel_direction(0, info), intervention="add", strength=Strength(1.0), span=Span()
    )
    with pytest.raises(AudioError, match="NaN"):
        runner.intervene_files(embedded, [real_mp3, bad], spec, tmp_path / "out", chunk_s=4.0)
    assert calls == [] and not (tmp_path / "out").exists()


# --- learn and analyze ----------------------------------------------------------------------------


@needs_mp3
@needs_ogg
def test_learn_and_analyze_on_a_folder_of_real_mp3_and_ogg(tmp_path):
    data = tmp_path / "music"
    data.mkdir()
    mp3 = _cut(ASC / "time_to_strike.mp3", 40_000, data / "time_to_strike_head.mp3")
    ogg = _cut(RROOTAGE / "stg_a.ogg", 40_000, data / "stg_a_head.ogg")
    d = tmp_path / "dict"
    result = _cli(
        [
            "learn",
            "features",
            "-l",
            "first_conv",
            "--data",
            str(data),
            "--size",
            "16",
            "--k",
            "2",
            "--epochs",
            "1",
            "--chunk-seconds",
            "2",
            "-o",
            str(d),
        ]
    )
    assert result.exit_code == 0, result.output
    cfg = json.loads((d / "config.json").read_text())
    manifest = cfg["data"]["manifest"]
    assert manifest["files_used"] == 2 and not manifest["skipped"]
    assert "generated clips" not in cfg["data"]["description"]
    files = {Path(f["path"]).name: f["sha256"] for f in manifest["provenance"]["inputs"][0]["files"]}
    import hashlib

    assert files == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (mp3, ogg)}
    assert {"scipy", "scikit-learn", "torch"} <= set(manifest["provenance"]["versions"])
    report = tmp_path / "report"
    result = _cli(["analyze", str(d), "--data", str(data), "--quick", "--only", "coverage,usage", "-o", str(report)])
    assert result.exit_code == 0, result.output
    doc = json.loads((report / "report.json").read_text())
    assert doc["analyses"]["a_coverage"]["status"] == "ran"
    assert doc["provenance"]["inputs"][0]["folder"] == str(data.resolve())
    assert len(doc["provenance"]["inputs"][0]["files"]) == 2
    assert doc["provenance"]["wall_time_s"] > 0


def test_every_command_that_scans_its_inputs_warns_once_per_possibly_truncated_file(tmp_path):
    """The truncation warning belongs to the shared scan, not to one command: ``learn`` and
    ``corpus clips`` (which scan through :func:`steerlab.capture.check_audio_files`) print the
    same single line ``intervene`` prints, and Python callers get a PossiblyTruncatedWarning."""
    import warnings

    from steerlab.errors import PossiblyTruncatedWarning

    data = tmp_path / "music"
    data.mkdir()
    whole = tmp_path / "tone.mp3"
    t = np.arange(10 * 22050) / 22050
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    sf.write(str(whole), tone, 22050, format="MP3", subtype="MPEG_LAYER_III")  # Xing tag: true length
    half = data / "half.mp3"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = audio.scan(half)
    assert info.possibly_truncated
    assert [str(w.message) for w in caught if w.category is PossiblyTruncatedWarning] == [
        f"half.mp3: {info.truncation}"
    ]
    expected = [f"warning: half.mp3: {info.truncation}"]
    learn = _cli(["learn", "features", "-l", "first_conv", "--data", str(data), "--size", "16", "--k", "2",
                  "--epochs", "1", "--chunk-seconds", "2", "-o", str(tmp_path / "dict")])  # fmt: skip
    assert learn.exit_code == 0, learn.output
    assert [line for line in learn.stderr.splitlines() if line.startswith("warning:")] == expected
    clips = _cli(["corpus", "clips", str(half), "-o", str(tmp_path / "clips"), "--count", "2", "--seconds", "1"])
    assert clips.exit_code == 0, clips.output
    assert [line for line in clips.stderr.splitlines() if line.startswith("warning:")] == expected


@needs_mp3
@pytest.mark.parametrize("n_bytes", [0, 1, 100, 200])
def test_a_real_mp3_cut_to_almost_nothing_says_what_is_true(tmp_path, n_bytes, capfd):
    """`head -c 100 frontiers.mp3` and a 0-byte file said "File does not exist or is not a regular
    file (possibly a pipe?)" and leaked libmpg123's "a one-frame stream? Duh"; 400 bytes decode."""
    cut = _cut(ASC / "frontiers.mp3", n_bytes, tmp_path / "cut.mp3")
    expected = "empty file (0 bytes)" if n_bytes == 0 else f"too short to hold an audio frame ({n_bytes} bytes)"
    with pytest.raises(AudioError) as e:
        audio.scan(cut)
    assert str(e.value) == f"cannot read audio {cut}: {expected}"
    result = _cli(
        ["intervene", str(cut), "--layer", "latent", "--channel", "1", "--alpha", "1", "-o", str(tmp_path / "E")]
    )
    assert result.exit_code == 1 and result.output == f"Error: cannot read audio {cut}: {expected}\n"
    assert capfd.readouterr().err == "" and not (tmp_path / "E").exists()
    assert audio.scan(_cut(ASC / "frontiers.mp3", 400, tmp_path / "ok.mp3")).frames > 0


def test_learn_and_analyze_reading_a_cut_tagged_mp3_leave_only_steerlabs_warning(tmp_path, capfd):
    """libmpg123 prints "Warning: Xing stream size off by more than 1%, fuzzy seeking ..." straight
    on fd 2 whenever a cut MP3 with a Xing tag is opened; learn read such a file outside the shared
    capture (its constant-file check), so the line reached the terminal beside steerlab's own."""
    data = tmp_path / "music"
    data.mkdir()
    whole = tmp_path / "tone.mp3"
    t = np.arange(6 * 22050) / 22050
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    sf.write(str(whole), tone, 22050, format="MP3", subtype="MPEG_LAYER_III")
    half = data / "half.mp3"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with sf.SoundFile(str(half)) as f:  # what an unguarded open prints
        f.read(10)
    assert "Xing stream size off" in capfd.readouterr().err
    d = tmp_path / "dict"
    learn = _cli(["learn", "features", "-l", "first_conv", "--data", str(data), "--size", "16", "--k", "2",
                  "--epochs", "1", "--chunk-seconds", "2", "-o", str(d)])  # fmt: skip
    assert learn.exit_code == 0, learn.output
    assert [line for line in learn.stderr.splitlines() if line.startswith("warning:")] == [
        f"warning: half.mp3: {audio.scan(half).truncation}"
    ]
    report = tmp_path / "report"
    analyze = _cli(["analyze", str(d), "--data", str(data), "--quick", "--only", "coverage", "-o", str(report)])
    assert analyze.exit_code == 0, analyze.output
    assert capfd.readouterr().err == ""
