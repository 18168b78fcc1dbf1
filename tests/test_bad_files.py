"""Issue 10 (new-user defect 5): an unusable file inside a --data folder (text named .wav,
an empty WAV, NaN samples, a truncated WAV) is one Error line, exit 1, before any capture
and with nothing written, from every command that reads user audio (learn, analyze,
corpus clips, eval codec --data, train codec --data); --skip-bad-files skips them, says so
on stderr and counts them in the record."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

SR = 24_000


@pytest.fixture(scope="module")
def cli():
    from steerlab import cli as cli_module

    return cli_module.get_cli()


def _good(path, seed=0, seconds=1.5):
    x = 0.2 * np.random.default_rng(seed).standard_normal(int(seconds * SR)).astype(np.float32)
    sf.write(path, x, SR, subtype="FLOAT")


def _bad(path, kind):
    if kind == "text":
        path.write_text("not audio at all\n")
    elif kind == "empty":
        sf.write(path, np.zeros((0, 1), np.float32), SR)
    elif kind == "nan":
        x = 0.1 * np.ones(SR, np.float32)
        x[100:103] = np.nan
        sf.write(path, x, SR, subtype="FLOAT")
    else:  # truncated: a real WAV cut inside its header
        _good(path)
        path.write_bytes(path.read_bytes()[:30])


KINDS = ("text", "empty", "nan", "truncated")


def _folder(tmp_path, kinds):
    d = tmp_path / "data"
    d.mkdir()
    _good(d / "a-good.wav")
    for kind in kinds:
        _bad(d / f"b-{kind}.wav", kind)
    return d


COMMANDS = {
    "learn": lambda d, o: [
        "learn",
        "features",
        "-l",
        "latent",
        "--data",
        str(d),
        "-o",
        str(o),
        "--epochs",
        "1",
        "--size",
        "8",
        "--k",
        "2",
    ],
    "analyze": lambda d, o: [
        "analyze",
        "first_conv-features",
        "--data",
        str(d),
        "-o",
        str(o),
        "--quick",
        "--only",
        "coverage",
    ],
    "corpus clips": lambda d, o: ["corpus", "clips", str(d), "-o", str(o), "-n", "2", "--seconds", "0.5"],
    "eval codec": lambda d, o: ["eval", "codec", "--data", str(d), "--clips", "2", "--windows", "1"],
    "train codec": lambda d, o: ["train", "codec", "--data", str(d), "-o", str(o), "--steps", "1"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_file_is_one_error_line_before_any_work(cli, tmp_path, command, kind):
    d = _folder(tmp_path, [kind])
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, COMMANDS[command](d, out))
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and res.output.splitlines()[-1] == errors[0], res.output
    assert "1 of 2 audio files cannot be used" in errors[0] and f"b-{kind}.wav" in errors[0]
    assert "--skip-bad-files" in errors[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_the_error_counts_every_bad_file_and_names_the_first(cli, tmp_path):
    d = _folder(tmp_path, KINDS)
    res = CliRunner().invoke(cli, COMMANDS["learn"](d, tmp_path / "out"))
    assert res.exit_code == 1
    assert "4 of 5 audio files cannot be used (first: audio file " in res.output
    assert "b-empty.wav is empty" in res.output.splitlines()[-1]  # sorted: b-empty before b-nan, b-text, ...


def test_skip_bad_files_skips_counts_and_says_so(cli, tmp_path):
    d = _folder(tmp_path, KINDS)
    out = tmp_path / "dict"
    res = CliRunner().invoke(cli, [*COMMANDS["learn"](d, out), "--skip-bad-files"])
    assert res.exit_code == 0, res.output
    assert "--data " + str(d) + ": skipping 4 audio files that cannot be used (--skip-bad-files; first:" in res.stderr
    manifest = json.loads((out / "config.json").read_text())["data"]["manifest"]
    assert (manifest["files_seen"], manifest["files_used"], manifest["files_skipped"]) == (5, 1, 4)
    assert sorted(s["path"].rsplit("/", 1)[1] for s in manifest["skipped"]) == [f"b-{k}.wav" for k in sorted(KINDS)]
    clips = tmp_path / "clips"
    res = CliRunner().invoke(cli, [*COMMANDS["corpus clips"](d, clips), "--skip-bad-files"])
    assert res.exit_code == 0, res.output
    doc = json.loads((clips / "manifest.json").read_text())
    assert doc["files_skipped"] == 4 and len(doc["files"]) == 1 and doc["count"] == 2
    from steerlab.corpus import read_manifest

    assert read_manifest(clips)["skipped_files"][0]["reason"]
