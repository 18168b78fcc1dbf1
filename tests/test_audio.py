"""Tests for steerlab.audio: reading, converting, chunking, stitching and writing audio.

Every fixture file is synthesised into tmp_path with soundfile; nothing is downloaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from steerlab.audio import (
    AudioInfo,
    Conversion,
    check_writable_dir,
    iter_chunks,
    load,
    overlap_add,
    probe,
    resampled_length,
    scan,
    validate_array,
    write_audio,
    write_wav,
)
from steerlab.errors import AudioError, ConfigError, OutputError


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    """[T] float32 sine."""
    t = np.arange(round(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def band_limited(sr: int, seconds: float, channels: int, seed: int = 0) -> np.ndarray:
    """[C, T] float32 sum of sines well below both 24 kHz's and 44.1 kHz's Nyquist."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(sr * seconds)) / sr
    out = np.zeros((channels, t.size))
    for c in range(channels):
        for f in rng.uniform(50, 9000, size=12):
            out[c] += 0.05 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return out.astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> tuple[float, float]:
    """(frequency of the largest rFFT bin, bin width) for [T] x."""
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spec)) * sr / x.size, sr / x.size


def write_float_wav(path: Path, x: np.ndarray, sr: int) -> Path:
    """Write [C, T] with soundfile directly (bypassing write_wav's checks)."""
    sf.write(str(path), np.asarray(x).T, sr, format="WAV", subtype="FLOAT")
    return path


# --- probe and errors ------------------------------------------------------------------


def test_probe_reports_header(tmp_path: Path) -> None:
    p = write_float_wav(tmp_path / "a.wav", band_limited(44100, 0.5, 2), 44100)
    info = probe(p)
    assert info == AudioInfo(
        path=p,
        sample_rate=44100,
        channels=2,
        frames=22050,
        duration_s=0.5,
        format="WAV",
        header_frames=22050,
        decoded=False,
    )


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioError) as e:
        load(missing, 24000, 1)
    assert str(e.value) == f"audio file not found: {missing}"


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AudioError) as e:
        probe(tmp_path)
    assert "is a directory" in str(e.value) and "\n" not in str(e.value)


def test_corrupt_file_single_line(tmp_path: Path) -> None:
    p = tmp_path / "corrupt.wav"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(AudioError) as e:
        load(p, 24000, 1)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"cannot read audio {p}: ")
    assert msg.endswith("; supported formats: WAV, FLAC, OGG, MP3")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.wav"
    sf.write(str(p), np.zeros((0, 1), dtype=np.float32), 24000, subtype="FLOAT")
    assert sf.info(str(p)).frames == 0
    for call in (lambda: probe(p), lambda: load(p, 24000, 1), lambda: list(iter_chunks(p, 24000, 1, 1.0, 0.1))):
        with pytest.raises(AudioError) as e:
            call()
        assert str(e.value) == f"audio file {p} is empty (0 samples)"


def test_nan_file(tmp_path: Path) -> None:
    x = sine(440, 24000, 0.5)[None, :].copy()
    x[0, [10, 200, 3000]] = np.nan
    x[0, [7, 9]] = [np.inf, -np.inf]
    p = write_float_wav(tmp_path / "nan.wav", x, 24000)
    with pytest.raises(AudioError) as e:
        load(p, 24000, 1)
    msg = str(e.value)
    assert str(p) in msg and "5 NaN or infinite samples" in msg and "clean the file" in msg
    assert "\n" not in msg
    with pytest.raises(AudioError, match="NaN"):
        list(iter_chunks(p, 16000, 1, 0.2, 0.05))


# --- formats ---------------------------------------------------------------------------


def test_float_wav_round_trip_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2, 5000)) * 0.7).astype(np.float32)  # includes |x| > 1: float WAV must not clip
    p = write_wav(tmp_path / "out.wav", x, 24000)
    info = sf.info(str(p))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "FLOAT", 24000, 2)
    back, conv = load(p, 24000, 2)
    assert back.dtype == np.float32 and back.shape == (2, 5000)
    assert np.array_equal(back, x)
    assert conv.describe() == "no conversion (24000 Hz, 2 channels)"
    assert [q.name for q in tmp_path.iterdir()] == ["out.wav"]  # no temp file left behind


@pytest.mark.parametrize("fmt,subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_compressed_formats_readable(tmp_path: Path, fmt: str, subtype: str) -> None:
    sr = 44100
    x = sine(1000, sr, 1.0)
    p = tmp_path / f"tone.{fmt.lower()}"
    try:
        sf.write(str(p), x, sr, format=fmt, subtype=subtype)
    except sf.SoundFileError as exc:  # a libsndfile built without this encoder
        pytest.fail(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}, so it cannot be tested: {exc}")
    info = probe(p)
    assert (info.format, info.sample_rate, info.channels) == (fmt, sr, 1)
    y, conv = load(p, sr, 1)
    assert y.shape == (1, info.frames)
    assert conv.describe() == "no conversion (44100 Hz, 1 channel)"
    if fmt == "FLAC":  # lossless apart from 16-bit quantisation
        assert info.frames == x.size
        assert np.max(np.abs(y[0] - x)) <= 1 / 32768
    else:  # lossy codecs add encoder delay/padding: check the tone itself
        assert abs(info.frames - x.size) < 4096
        mid = y[0, sr // 10 : -sr // 10]
        f, bin_hz = peak_hz(mid, sr)
        assert abs(f - 1000) <= bin_hz
        amp = np.sqrt(2 * np.mean(mid.astype(np.float64) ** 2))
        assert abs(amp - 0.5) < 0.05


# --- conversion ------------------------------------------------------------------------


def test_resample_keeps_frequency_and_amplitude(tmp_path: Path) -> None:
    p = write_float_wav(tmp_path / "tone.wav", sine(1000, 44100, 1.0)[None, :], 44100)
    y, conv = load(p, 24000, 1)
    assert y.shape == (1, 24000) and y.dtype == np.float32
    assert conv == Conversion(44100, 1, 24000, 1) and conv.resampled and not conv.mixed
    assert conv.describe() == "resampled 44100 Hz -> 24000 Hz"
    f, bin_hz = peak_hz(y[0], 24000)
    assert bin_hz == 1.0 and abs(f - 1000) <= bin_hz
    mid = y[0, 2400:-2400].astype(np.float64)  # away from the zero-padded edges
    amp = np.sqrt(2 * np.mean(mid**2))
    assert abs(amp / 0.5 - 1) < 0.01


def test_stereo_to_mono_is_exact_average(tmp_path: Path) -> None:
    x = band_limited(24000, 0.3, 2, seed=3)
    p = write_float_wav(tmp_path / "st.wav", x, 24000)
    y, conv = load(p, 24000, 1)
    expected = ((x[0].astype(np.float64) + x[1]) / 2).astype(np.float32)[None, :]
    assert np.array_equal(y, expected)
    assert conv.mixed and not conv.duplicated and not conv.resampled
    assert conv.describe() == "mixed 2 channels -> 1"


def test_mono_to_stereo_duplicates(tmp_path: Path) -> None:
    x = band_limited(24000, 0.3, 1, seed=4)
    p = write_float_wav(tmp_path / "mono.wav", x, 24000)
    y, conv = load(p, 24000, 2)
    assert y.shape == (2, x.shape[1])
    assert np.array_equal(y[0], x[0]) and np.array_equal(y[1], x[0])
    assert conv.describe() == "duplicated 1 channel -> 2"


def test_three_channels_to_two_averages_then_duplicates(tmp_path: Path) -> None:
    x = band_limited(24000, 0.2, 3, seed=5)
    p = write_float_wav(tmp_path / "three.wav", x, 24000)
    y, conv = load(p, 48000, 2)
    assert conv.describe() == "resampled 24000 Hz -> 48000 Hz, mixed 3 channels -> 1, duplicated 1 channel -> 2"
    assert y.shape == (2, 2 * x.shape[1]) and np.array_equal(y[0], y[1])
    assert conv.to_dict()["description"] == conv.describe()


def test_validate_array() -> None:
    one_d = validate_array(np.zeros(10, dtype=np.float64))
    assert one_d.shape == (1, 10) and one_d.dtype == np.float32
    assert validate_array(np.ones((2, 8))).shape == (2, 8)
    cases = {
        "shape (2, 3, 4)": np.zeros((2, 3, 4)),
        "empty": np.zeros((1, 0)),
        "looks like [samples, channels]": np.zeros((100, 2)),
        "dtype int16": np.zeros((1, 10), dtype=np.int16),
        "2 NaN or infinite": np.array([[0.0, np.nan, np.inf, 1.0]]),
    }
    for needle, bad in cases.items():
        with pytest.raises(AudioError) as e:
            validate_array(bad, name="input")
        assert needle in str(e.value) and "[channels, samples]" in str(e.value) and str(e.value).startswith("input")


# --- chunking and stitching ------------------------------------------------------------


@pytest.mark.parametrize(
    "src_sr,dst_sr,channels,kind",
    [
        (44100, 24000, 1, "band_limited"),  # stereo file mixed to mono, 147:80 resampling
        (44100, 24000, 1, "noise"),  # alignment makes even broadband content match
        (48000, 24000, 2, "band_limited"),
        (24000, 24000, 1, "band_limited"),  # no resampling: plain slicing
    ],
)
def test_chunks_match_load(tmp_path: Path, src_sr: int, dst_sr: int, channels: int, kind: str) -> None:
    if kind == "noise":
        x = (np.random.default_rng(6).standard_normal((2, src_sr * 10)) * 0.2).astype(np.float32)
    else:
        x = band_limited(src_sr, 10.0, 2, seed=7)
    p = write_float_wav(tmp_path / "long.wav", x, src_sr)
    whole, _ = load(p, dst_sr, channels)
    total = resampled_length(x.shape[1], src_sr, dst_sr)
    assert whole.shape == (channels, total)

    chunk_s, overlap_s = 1.3, 0.25
    chunk, overlap = round(chunk_s * dst_sr), round(overlap_s * dst_sr)
    chunks = list(iter_chunks(p, dst_sr, channels, chunk_s, overlap_s))
    starts = [s for s, _ in chunks]
    assert starts == list(range(0, starts[-1] + 1, chunk - overlap))
    assert all(c.shape == (channels, chunk) for _, c in chunks[:-1])
    assert chunks[-1][0] + chunks[-1][1].shape[1] == total  # the chunks cover the whole file

    # Non-overlapping parts, concatenated, against the whole-file conversion.
    parts = [c[:, : chunk - overlap] for _, c in chunks[:-1]] + [chunks[-1][1]]
    joined = np.concatenate(parts, axis=1)
    err = float(np.max(np.abs(joined - whole)))
    assert joined.shape == whole.shape
    assert err < 1e-5, f"chunked conversion differs from load() by {err}"
    worst = max(float(np.max(np.abs(c - whole[:, s : s + c.shape[1]]))) for s, c in chunks)
    assert worst < 1e-5, f"a chunk differs from its slice of load() by {worst}"

    stitched = overlap_add(chunks, total, overlap)
    assert float(np.max(np.abs(stitched - whole))) < 1e-6 + err


@pytest.mark.parametrize("fmt,subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_chunks_seek_accurately_in_compressed_formats(tmp_path: Path, fmt: str, subtype: str) -> None:
    p = tmp_path / f"long.{fmt.lower()}"
    sf.write(str(p), band_limited(44100, 4.0, 2, seed=9).T, 44100, format=fmt, subtype=subtype)
    whole, _ = load(p, 24000, 1)
    chunks = list(iter_chunks(p, 24000, 1, 0.7, 0.1))
    assert chunks[-1][0] + chunks[-1][1].shape[1] == whole.shape[1]
    worst = max(float(np.max(np.abs(c - whole[:, s : s + c.shape[1]]))) for s, c in chunks)
    assert worst < 1e-5, f"{fmt}: a chunk differs from its slice of load() by {worst}"


def test_unusable_rate_ratio_is_refused(tmp_path: Path) -> None:
    p = write_float_wav(tmp_path / "odd.wav", sine(440, 44101, 0.1)[None, :], 44101)
    for call in (lambda: load(p, 24000, 1), lambda: next(iter_chunks(p, 24000, 1, 1.0, 0.1))):
        with pytest.raises(AudioError) as e:  # refused up front instead of a multi-GB filter
            call()
        assert "from 44101 Hz to 24000 Hz" in str(e.value) and "convert the file to a standard rate" in str(e.value)


def test_overlap_add_reproduces_unmodified_signal() -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 1000)).astype(np.float32)
    hop, size, overlap = 150, 200, 50
    pieces = [(s, x[:, s : s + size]) for s in range(0, 1000 - overlap, hop)]
    assert pieces[-1][0] + pieces[-1][1].shape[1] == 1000
    y = overlap_add(pieces, 1000, overlap)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert float(np.max(np.abs(y - x))) < 1e-6


def test_overlap_add_crossfades_linearly() -> None:
    a = (0, np.ones((1, 10), dtype=np.float32))
    b = (6, np.zeros((1, 10), dtype=np.float32))
    y = overlap_add([a, b], 16, overlap=4)
    np.testing.assert_allclose(y[0, :6], 1.0, atol=0)
    np.testing.assert_allclose(y[0, 6:10], [0.8, 0.6, 0.4, 0.2], atol=1e-7)
    np.testing.assert_allclose(y[0, 10:], 0.0, atol=0)
    with pytest.raises(ValueError, match="no piece covers sample 10"):
        overlap_add([(0, np.ones((1, 10)))], 12, overlap=2)


# --- writing ---------------------------------------------------------------------------


def test_unwritable_output_raises_and_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file, not a directory")
    target = blocker / "out.wav"  # tests run as root, so chmod cannot make a directory unwritable
    x = sine(440, 24000, 0.1)[None, :]
    with pytest.raises(OutputError) as e:
        write_wav(target, x, 24000)
    msg = str(e.value)
    assert msg.startswith(f"cannot write {target}: ") and msg.endswith("; choose a writable output directory")
    assert "\n" not in msg
    assert sorted(q.name for q in tmp_path.iterdir()) == ["blocker"]
    assert blocker.read_text() == "a regular file, not a directory"

    missing_parent = tmp_path / "no" / "such" / "out.wav"
    with pytest.raises(OutputError, match="choose a writable output directory"):
        write_wav(missing_parent, x, 24000)
    assert not (tmp_path / "no").exists()


def test_write_wav_refuses_bad_audio_before_touching_disk(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="NaN"):
        write_wav(tmp_path / "bad.wav", np.array([[0.0, np.nan]], dtype=np.float32), 24000)
    assert list(tmp_path.iterdir()) == []


def test_written_audio_is_in_the_format_its_suffix_names(tmp_path: Path) -> None:
    """write_audio encodes what the suffix names (never WAV bytes under another name); an
    unsupported suffix, or write_wav given a non-.wav name, fails before any file exists."""
    x = sine(440, 24000, 0.25)[None, :]
    for name, fmt in (("a.wav", "WAV"), ("a.flac", "FLAC"), ("a.ogg", "OGG"), ("a.MP3", "MP3")):
        write_audio(tmp_path / name, x, 24000)
        info = sf.info(str(tmp_path / name))
        assert (info.format, info.samplerate, info.channels) == (fmt, 24000, 1)
    back, _ = sf.read(tmp_path / "a.flac", dtype="float32", always_2d=True)
    assert np.max(np.abs(back.T - x)) < 1e-6  # 24-bit PCM
    before = sorted(p.name for p in tmp_path.iterdir())
    for name in ("b.txt", "b", "b.aiff"):
        with pytest.raises(OutputError, match="name the file with one of .wav, .flac, .ogg, .mp3"):
            write_audio(tmp_path / name, x, 24000)
    for name in ("b.flac", "b.txt"):
        with pytest.raises(OutputError, match="the name must end in .wav"):
            write_wav(tmp_path / name, x, 24000)
    with pytest.raises(OutputError, match="peaks at 2"):  # an encoded format would clip it
        write_audio(tmp_path / "b.flac", 2 * x / np.max(np.abs(x)), 24000)
    with pytest.raises(OutputError, match="sample rates"):  # MPEG refuses 4 kHz
        write_audio(tmp_path / "b.mp3", x, 4000)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_check_writable_dir(tmp_path: Path) -> None:
    made = check_writable_dir(tmp_path / "a" / "b")
    assert made.is_dir() and list(made.iterdir()) == []
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for bad in (blocker, blocker / "sub"):
        with pytest.raises(OutputError) as e:
            check_writable_dir(bad)
        assert str(e.value).startswith(f"cannot write to directory {bad}: ") and "\n" not in str(e.value)


def test_import_does_not_load_torch() -> None:
    code = "import sys, steerlab.audio; print('torch' in sys.modules, 'torchaudio' in sys.modules)"
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["False", "False"]


def test_write_wav_is_byte_reproducible_and_exact_for_stereo(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 1001)).astype(np.float32)
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    write_wav(a, x, 44_100)
    write_wav(b, x, 44_100)
    assert a.read_bytes() == b.read_bytes()
    back, sr = sf.read(a, dtype="float32", always_2d=True)
    assert sr == 44_100 and np.array_equal(back.T, x)


def test_streaming_scans_first_so_a_late_nan_fails_before_the_first_chunk(tmp_path) -> None:
    """A NaN 9 s into a 10 s file: the up-front scan finds it, so no chunk is ever yielded
    (before, 9 s of chunks had been processed when the read reached it)."""
    x = np.zeros(10 * 8000, np.float32)
    x[9 * 8000] = np.nan
    p = tmp_path / "late_nan.wav"
    sf.write(p, x, 8000, subtype="FLOAT")
    chunks = iter_chunks(p, 8000, 1, 1.0, 0.0)
    with pytest.raises(AudioError, match=r"NaN or infinite samples \(the first at 9.000 s\)"):
        next(chunks)


def test_scan_reports_decoded_and_header_counts(tmp_path) -> None:
    p = tmp_path / "a.flac"
    sf.write(p, np.zeros((1234, 2), np.float32), 16000)
    info = scan(p)
    assert (info.frames, info.header_frames, info.decoded) == (1234, 1234, True)
    assert info.to_dict()["header_minus_decoded_frames"] == 0
    assert probe(p).to_dict()["header_minus_decoded_frames"] is None  # a header alone proves nothing


# --- files that do not decode, decoder chatter, truncation, the public loader ---------------------


def test_random_bytes_named_mp3_is_one_line_naming_the_decoder_without_chatter(tmp_path: Path, capfd) -> None:
    """libmpg123 prints ``Note: ...`` lines straight to fd 2 and libsndfile then says the (existing)
    file 'does not exist': the error says it is not decodable, quotes the decoder, and fd 2 stays clean."""
    p = tmp_path / "garbage.mp3"
    p.write_bytes(np.random.default_rng(0).bytes(3000))
    for call in (lambda: probe(p), lambda: scan(p), lambda: load(p, 24000, 1)):
        with pytest.raises(AudioError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(
            f"cannot read audio {p}: not decodable (no audio format recognised); "
        )
        assert "does not exist" not in msg  # libsndfile's reason for any unrecognised file
        assert "the decoder reported: Note: Illegal Audio-MPEG-Header" in msg
        assert msg.endswith("; supported formats: WAV, FLAC, OGG, MP3")
    assert capfd.readouterr().err == ""


def test_the_cli_says_one_line_for_random_bytes_named_mp3(tmp_path: Path, capfd) -> None:
    from click.testing import CliRunner

    from steerlab import cli

    p = tmp_path / "garbage.mp3"
    p.write_bytes(np.random.default_rng(0).bytes(3000))
    args = ["intervene", str(p), "--layer", "latent", "--channel", "1", "--alpha", "1", "-o", str(tmp_path / "E9")]
    result = CliRunner().invoke(cli.get_cli(), args)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: cannot read audio {p}: "), result.output
    assert (
        "not decodable (no audio format recognised)" in result.output and "Illegal Audio-MPEG-Header" in result.output
    )
    assert capfd.readouterr().err == "" and not (tmp_path / "E9").exists()


def test_decoder_chatter_is_captured_and_fd2_restored(capfd) -> None:
    from steerlab.audio import _decoder_chatter

    with _decoder_chatter() as chatter:
        os.write(2, b"\nNote: from C\nsecond line\n")
    os.write(2, b"after\n")
    assert chatter.first_line() == "Note: from C"
    assert capfd.readouterr().err == "after\n"
    with pytest.raises(RuntimeError), _decoder_chatter() as chatter:  # restored when the block raises
        os.write(2, b"boom\n")
        raise RuntimeError
    os.write(2, b"still here\n")
    assert chatter.first_line() == "boom" and capfd.readouterr().err == "still here\n"


def test_a_decode_well_short_of_a_tagged_header_is_possibly_truncated(tmp_path: Path) -> None:
    """libsndfile writes MP3s with a Xing tag, so the header states the true length: an intact file
    decodes all of it (no flag, and the record keeps its keys); half the bytes decode about half
    of it, under the 90% rule, and the record says so."""
    whole = tmp_path / "tone.mp3"
    sf.write(str(whole), sine(440, 22050, 10.0, 0.3), 22050, format="MP3", subtype="MPEG_LAYER_III")
    info = scan(whole)
    assert info.header_frames == info.frames == 220500 and not info.possibly_truncated
    assert "possibly_truncated" not in info.to_dict()
    half = tmp_path / "half.mp3"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    cut = scan(half)
    assert cut.header_frames == 220500 and 0.4 < cut.frames / 220500 < 0.6 and cut.possibly_truncated
    record = cut.to_dict()
    assert record["possibly_truncated"] is True
    assert record["truncation_reason"].startswith(f"only {cut.frames} of the 220500 samples its header declares")
    assert load(half, 22050, 1)[0].shape == (1, cut.frames)  # still usable: a warning, not an error


def test_load_audio_keeps_the_files_rate_and_channels_unless_asked(tmp_path: Path) -> None:
    import steerlab

    p = tmp_path / "st.wav"
    x = band_limited(44100, 0.5, 2)
    sf.write(str(p), x.T, 44100, subtype="FLOAT")
    wave, conv = steerlab.load_audio(p)
    assert wave.dtype == np.float32 and np.array_equal(wave, x)
    assert conv.describe() == "no conversion (44100 Hz, 2 channels)"
    wave, conv = steerlab.load_audio(p, sample_rate=24000, channels=1)
    ref, _ = load(p, 24000, 1)
    assert np.array_equal(wave, ref) and wave.shape == (1, resampled_length(22050, 44100, 24000))
    assert conv.to_dict()["description"] == "resampled 44100 Hz -> 24000 Hz, mixed 2 channels -> 1"
    assert steerlab.load_audio(p, channels=1)[0].shape == (1, 22050)


# --- what a WAV or AIFF header declares, read from its own chunk list -------------------------------


def _halve(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


@pytest.mark.parametrize(
    ("fmt", "subtype", "suffix", "rate", "channels"),
    [
        ("WAV", "PCM_U8", "wav", 44100, 2),  # the trial's file: 264,600 data bytes declared
        ("WAV", "PCM_16", "wav", 16000, 1),
        ("WAV", "ULAW", "wav", 8000, 1),
        ("WAVEX", "PCM_24", "wav", 48000, 2),  # WAVE_FORMAT_EXTENSIBLE: the subformat decides
        ("WAV", "IMA_ADPCM", "wav", 22050, 2),  # blocks times samples per block
        ("WAV", "GSM610", "wav", 8000, 1),  # the 'fact' chunk's count
        ("RF64", "FLOAT", "rf64", 44100, 2),  # the 'ds64' chunk's data size
        ("AIFF", "PCM_16", "aiff", 44100, 2),  # COMM's numSampleFrames
    ],
)
def test_a_wav_or_aiff_cut_to_half_its_bytes_is_possibly_truncated(
    tmp_path: Path, fmt: str, subtype: str, suffix: str, rate: int, channels: int
) -> None:
    """libsndfile counts the frames a cut WAV still holds, so before the header walk a cut WAV's
    header_frames equalled its decoded frames and the 90% rule never fired (the trial: 66,139 of
    the 132,300 frames a PCM_U8 WAV declares, unflagged)."""
    import warnings

    from steerlab.errors import PossiblyTruncatedWarning

    whole = tmp_path / f"whole.{suffix}"
    sf.write(str(whole), band_limited(rate, 3.0, channels).T, rate, format=fmt, subtype=subtype)
    intact = scan(whole)
    assert not intact.possibly_truncated and "possibly_truncated" not in intact.to_dict()
    assert intact.header_frames == intact.frames  # codec padding at most: ADPCM and GSM pad a block
    cut_path = _halve(whole, tmp_path / f"cut.{suffix}")
    assert sf.info(str(cut_path)).frames < 0.55 * intact.frames  # libsndfile alone sees no shortfall
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cut = scan(cut_path)
    assert cut.header_frames >= 0.98 * intact.frames and 0.45 < cut.frames / intact.frames < 0.55
    assert cut.possibly_truncated and cut.to_dict()["header_frames"] == cut.header_frames
    assert [str(w.message) for w in caught if w.category is PossiblyTruncatedWarning] == [
        f"cut.{suffix}: {cut.truncation}"
    ]
    assert probe(cut_path).header_frames == cut.header_frames  # the header's figure, before decoding
    assert probe(cut_path).frames == sf.info(str(cut_path)).frames  # the readable length is unchanged


def test_a_pcm_u8_wav_cut_in_half_records_the_frames_its_data_chunk_declares(tmp_path: Path) -> None:
    whole = tmp_path / "u8.wav"
    sf.write(str(whole), band_limited(44100, 3.0, 2).T, 44100, subtype="PCM_U8")
    cut = scan(_halve(whole, tmp_path / "u8-cut.wav"))
    record = cut.to_dict()
    assert record["header_frames"] == 132300  # 264,600 data bytes / 2 bytes a frame
    assert record["frames"] == 66139 and record["header_minus_decoded_frames"] == 132300 - 66139
    assert record["possibly_truncated"] is True
    assert record["truncation_reason"].startswith("only 66139 of the 132300 samples its header declares decode (50%")


def test_a_wav_written_by_pythons_wave_module_is_read_the_same_way(tmp_path: Path) -> None:
    import wave

    p = tmp_path / "wave.wav"
    pcm = (band_limited(16000, 2.0, 1)[0] * 32767).astype("<i2")
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    info = scan(p)
    assert (info.frames, info.header_frames, info.possibly_truncated) == (32000, 32000, False)
    p.write_bytes(p.read_bytes()[: 44 + 2 * 8000])  # a quarter of the samples left
    cut = scan(p)
    assert (cut.frames, cut.header_frames, cut.possibly_truncated) == (8000, 32000, True)


def _riff(*chunks: tuple[bytes, bytes], form: bytes = b"WAVE") -> bytes:
    import struct

    body = form
    for cid, data in chunks:
        body += cid + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_the_chunk_walk_pads_odd_sizes_and_skips_unknown_chunks(tmp_path: Path) -> None:
    """An odd-sized chunk is followed by a pad byte (RIFF spec); an unknown chunk before 'fmt ' and
    one between 'fmt ' and 'data' are skipped. Both readers must agree on the intact file."""
    import struct

    from steerlab.audio import _declared_frames

    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    pcm = (band_limited(8000, 1.0, 1)[0] * 20000).astype("<i2").tobytes()
    p = tmp_path / "odd.wav"
    p.write_bytes(_riff((b"JUNK", b"abc"), (b"fmt ", fmt), (b"LIST", b"INFOISFT\x05\0\0\0steer"), (b"data", pcm)))
    assert _declared_frames(p) == 8000 == sf.info(str(p)).frames
    assert not scan(p).possibly_truncated
    p.write_bytes(p.read_bytes()[:-12000])
    assert _declared_frames(p) == 8000 and scan(p).possibly_truncated


def test_a_streamed_wavs_unknown_sizes_declare_nothing(tmp_path: Path) -> None:
    """A writer that cannot seek back leaves 0xFFFFFFFF (or 0) in the size fields: that declares
    no length, so the count libsndfile reads stands and nothing is flagged. Other containers and
    files too short for a header declare nothing either."""
    import struct

    from steerlab.audio import _declared_frames

    p = tmp_path / "stream.wav"
    sf.write(str(p), band_limited(8000, 1.0, 1).T, 8000, subtype="PCM_16")
    raw = bytearray(p.read_bytes())
    at = raw.index(b"data")
    raw[4:8] = raw[at + 4 : at + 8] = struct.pack("<I", 0xFFFFFFFF)
    p.write_bytes(bytes(raw))
    assert _declared_frames(p) is None
    info = scan(p)
    assert (info.frames, info.header_frames, info.possibly_truncated) == (8000, 8000, False)
    flac = tmp_path / "a.flac"
    sf.write(str(flac), np.zeros(100, np.float32), 8000)
    short = tmp_path / "short.wav"
    short.write_bytes(b"RIFF\0\0")
    assert _declared_frames(flac) is None and _declared_frames(short) is None


def test_an_empty_or_too_short_file_says_so_in_one_line(tmp_path: Path, capfd) -> None:
    """libsndfile says "File does not exist or is not a regular file (possibly a pipe?)" for both,
    and libmpg123 adds "a one-frame stream? Duh" on fd 2: the error says what is true instead."""
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    whole = tmp_path / "tone.mp3"
    sf.write(str(whole), sine(440, 22050, 1.0, 0.3), 22050, format="MP3", subtype="MPEG_LAYER_III")
    short = tmp_path / "cut100.mp3"
    short.write_bytes(whole.read_bytes()[:100])
    for call in (probe, scan, lambda p: load(p, 24000, 1)):
        with pytest.raises(AudioError) as e:
            call(empty)
        assert str(e.value) == f"cannot read audio {empty}: empty file (0 bytes)"
        with pytest.raises(AudioError) as e:
            call(short)
        assert str(e.value) == f"cannot read audio {short}: too short to hold an audio frame (100 bytes)"
    assert capfd.readouterr().err == ""


def test_iter_blocks_streams_what_decodes_and_keeps_fd2_clean(tmp_path: Path, capfd) -> None:
    """Every decode path captures decoder chatter: a cut MP3 with a Xing tag makes libmpg123 print
    "Warning: Xing stream size off by more than 1%" on fd 2 when it is opened for reading."""
    from steerlab.audio import iter_blocks

    whole = tmp_path / "tone.mp3"
    sf.write(str(whole), sine(440, 22050, 10.0, 0.3), 22050, format="MP3", subtype="MPEG_LAYER_III")
    half = _halve(whole, tmp_path / "half.mp3")
    with sf.SoundFile(str(half)) as f:  # the unguarded read this test exists for
        f.read(10)
    assert "Xing stream size off" in capfd.readouterr().err
    blocks = list(iter_blocks(half, 4096))
    assert all(b.dtype == np.float32 and b.shape[0] == 1 and b.shape[1] <= 4096 for b in blocks)
    with warnings.catch_warnings(record=True):  # scan's own PossiblyTruncatedWarning is not decoder chatter
        assert sum(b.shape[1] for b in blocks) == scan(half).frames
        load(half, 24000, 1)
        list(iter_chunks(half, 24000, 1, 1.0, 0.0))
    assert capfd.readouterr().err == ""
    with pytest.raises(ConfigError):
        next(iter_blocks(half, 0))
