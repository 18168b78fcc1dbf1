"""Bad input to ``steerlab intervene``: one ``Error: ...`` line, a non-zero exit,
no traceback, and nothing written to the output directory. Silence is not an error."""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

SR = 24_000
N = 6_000  # 0.25 s


@pytest.fixture(scope="module")
def cli():
    from steerlab import cli as cli_module

    return cli_module.get_cli()


@pytest.fixture
def inputs(tmp_path):
    """Good and bad inputs in tmp_path/in; outputs go to tmp_path/out."""
    d = tmp_path / "in"
    d.mkdir()
    t = np.arange(N) / SR
    sf.write(d / "tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR, subtype="FLOAT")
    sf.write(d / "silent.wav", np.zeros(N, np.float32), SR, subtype="FLOAT")
    long = np.arange(4 * N) / SR  # 1 s
    sf.write(d / "long.wav", (0.3 * np.sin(2 * np.pi * 440 * long)).astype(np.float32), SR, subtype="FLOAT")
    sf.write(d / "empty.wav", np.zeros((0, 1), np.float32), SR, subtype="FLOAT")
    nan = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    nan[[10, 5000]] = np.nan
    sf.write(d / "nan.wav", nan, SR, subtype="FLOAT")
    (d / "corrupt.wav").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    np.save(d / "width5.npy", np.ones(5))
    np.save(d / "width12.npy", np.arange(1.0, 13.0))
    (d / "a_file").write_text("not a directory")
    return d


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>") for p in root.rglob("*")}


def _intervene(cli, args, out):
    return CliRunner().invoke(cli, ["intervene", *map(str, args), "-o", str(out)])


def _assert_one_error(output: str, *fragments: str) -> str:
    assert "Traceback" not in output
    lines = output.splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, output
    assert lines[-1] == errors[0], f"the error must be the last and only message line:\n{output}"
    for fragment in fragments:
        assert fragment in errors[0]
    return errors[0]


def _assert_clean_failure(result, before, tmp_path, out, *fragments) -> str:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a ClickException, not an escaped error
    line = _assert_one_error(result.output, *fragments)
    assert not out.exists() or list(out.iterdir()) == [], sorted(os.listdir(out))
    after = _snapshot(tmp_path)
    after.pop(str(out.relative_to(tmp_path)), None)
    assert after == before, "files appeared or changed outside the output directory"
    return line


CASES = {
    "missing-file": (["in/nope.wav", "-l", "first_conv", "-c", "0"], ["audio file not found:", "nope.wav"]),
    "corrupt-audio": (["in/corrupt.wav", "-l", "first_conv", "-c", "0"], ["cannot read audio", "corrupt.wav", "WAV"]),
    "empty-wav": (["in/empty.wav", "-l", "first_conv", "-c", "0"], ["empty.wav is empty (0 samples)"]),
    "nan-samples": (["in/nan.wav", "-l", "first_conv", "-c", "0"], ["nan.wav contains 2 NaN or infinite samples"]),
    "bad-one-of-two": (["in/tone.wav", "in/nan.wav", "-l", "first_conv", "-c", "0"], ["nan.wav contains 2 NaN"]),
    "direction-width": (
        ["in/tone.wav", "-l", "first_conv", "-d", "in/width5.npy"],
        ["direction has 5 entries", "'encoder.0.conv' has 12 channels", "width 12"],
    ),
    "channel-range": (["in/tone.wav", "-l", "first_conv", "-c", "12"], ["--channel 12 is out of range", "(0..11)"]),
    "unknown-model": (
        ["in/tone.wav", "-m", "tiny_encodec_24kh", "-l", "first_conv", "-c", "0"],
        [
            "unknown model 'tiny_encodec_24kh'",
            "Did you mean 'tiny_encodec_24khz'?",
            "Valid models: crepe_full_16khz, crepe_tiny_16khz, encodec_24khz, encodec_48khz, filterbank_24khz, "
            "logspec_24khz, samplecnn_24khz, samplecnn_instruments_24khz, stft_24khz, tiny_encodec_24khz, tokenlm_24khz",
        ],
    ),
    "unknown-model-option": (
        ["in/tone.wav", "-l", "first_conv", "-c", "0", "--model-option", "n_frame", "5"],
        ["model 'tiny_encodec_24khz' has no option 'n_frame'; it takes none"],
    ),
    "unknown-path": (
        ["in/tone.wav", "-l", "first_conv", "-c", "0", "-p", "continous"],
        ["no decode path 'continous'", "valid paths: continuous, quantized"],
    ),
    "unknown-layer": (
        ["in/tone.wav", "-l", "encoder.3.cnv", "-c", "0"],
        ["unknown layer 'encoder.3.cnv'", "Did you mean 'encoder.3.conv'?", "first_conv", "latent"],
    ),
    "alpha-nan": (
        ["in/tone.wav", "-l", "first_conv", "-c", "0", "--alpha", "nan"],
        ["--alpha must be a finite number, got nan"],
    ),
    "alpha-inf": (
        ["in/tone.wav", "-l", "first_conv", "-c", "0", "--alpha", "inf"],
        ["--alpha must be a finite number, got inf"],
    ),
    "alpha-minus-inf": (["in/tone.wav", "-l", "first_conv", "-c", "0", "-a", "-inf"], ["got -inf"]),
    "start-after-end": (
        ["in/tone.wav", "-l", "first_conv", "-c", "0", "--start", "0.2", "--end", "0.1"],
        ["--end (0.1 s) must be after --start (0.2 s)"],
    ),
    "start-past-input": (
        ["in/tone.wav", "-l", "first_conv", "-c", "0", "--start", "3"],
        ["past the end of every input"],
    ),
    "span-misses-one-input": (  # silently a no-op on tone.wav, scored as "no change"
        ["in/long.wav", "in/tone.wav", "-l", "first_conv", "-c", "0", "--start", "0.5", "--end", "0.8"],
        ["the span (--start 0.5 s to --end 0.8 s) lies beyond tone.wav, which is 0.25 s long", "set --start below"],
    ),
    "target-above-nyquist": (
        ["in/tone.wav", "-l", "first_conv", "-c", "0", "-t", "13000"],
        ["--target-hz 13000.0 is outside (0, 12000) Hz"],
    ),
    "unknown-intervention": (
        ["in/tone.wav", "-l", "first_conv", "-c", "0", "-i", "ablat"],
        [
            "unknown intervention 'ablat'",
            "Did you mean 'ablate'?",
            "Valid interventions: ablate, add, archetype, clamp, feature-clamp, mean-ablate, patch, scale",
        ],
    ),
    "channel-and-direction": (
        ["in/tone.wav", "-l", "first_conv", "-c", "0", "-d", "in/width12.npy"],
        ["give exactly one of --direction FILE or --channel K"],
    ),
    "neither-channel-nor-direction": (
        ["in/tone.wav", "-l", "first_conv"],
        ["give exactly one of --direction FILE or --channel K"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_writes_nothing(cli, inputs, tmp_path, monkeypatch, case):
    args, fragments = CASES[case]
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    out = tmp_path / "out"
    result = _intervene(cli, args, out)
    _assert_clean_failure(result, before, tmp_path, out, *fragments)


def test_unwritable_output_directory(cli, inputs, tmp_path):
    before = _snapshot(tmp_path)
    out = inputs / "a_file" / "results"  # beneath a regular file: no chmod needed, works as root
    result = _intervene(cli, [inputs / "tone.wav", "-l", "first_conv", "-c", "0"], out)
    _assert_clean_failure(
        result,
        before,
        tmp_path,
        out,
        "cannot write to directory",
        "a_file/results",
        "choose a writable output directory",
    )
    assert (inputs / "a_file").read_text() == "not a directory"


def test_scorer_failing_mid_run_leaves_no_partial_folder(cli, inputs, tmp_path):
    """The per-input folder is built under a hidden temporary name; a failure must remove it."""
    from steerlab import plugins
    from steerlab.hookspecs import hookimpl
    from steerlab.registry import ScorerSpec

    def explode(baseline, patched, sample_rate, target_hz):
        raise ZeroDivisionError("scorer bug")

    class Broken:
        @hookimpl
        def steerlab_register_scorers(self, registry):
            registry.add(ScorerSpec("exploding", explode))

    plugins.reset()
    broken = Broken()
    plugins.register(broken, name="broken_scorer")
    try:
        before = _snapshot(tmp_path)
        out = tmp_path / "out"
        result = _intervene(cli, [inputs / "tone.wav", "-l", "first_conv", "-c", "0"], out)
        _assert_clean_failure(
            result,
            before,
            tmp_path,
            out,
            "plugin 'broken_scorer' failed in scorer 'exploding': ZeroDivisionError: scorer bug",
        )
        assert not out.exists()  # the hidden .tone.* work folder is gone, and so is the folder the run made
    finally:
        plugins.unregister(broken)
        plugins.reset()


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_an_interrupted_run_leaves_no_new_output_folder(cli, inputs, tmp_path, monkeypatch, signal_name):
    """Ctrl-C (KeyboardInterrupt) or kill (Terminated) while the first input is patched: the
    output folder (and its missing parents) that the run created are gone, not left empty."""
    import signal

    from steerlab import runner
    from steerlab.cli import Terminated

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt if signal_name == "SIGINT" else Terminated(signal.SIGTERM)

    monkeypatch.setattr(runner, "intervene", interrupted)
    out = tmp_path / "new" / "out"
    result = _intervene(cli, [inputs / "tone.wav", "-l", "first_conv", "-c", "0"], out)
    assert result.exit_code == (130 if signal_name == "SIGINT" else 143), result.output
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"  # a folder that existed before the run is left as it was
    kept.mkdir()
    _intervene(cli, [inputs / "tone.wav", "-l", "first_conv", "-c", "0"], kept)
    assert kept.is_dir() and list(kept.iterdir()) == []


def _strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"non-finite number {constant} in scores.json")

    return json.loads(text, parse_constant=refuse)


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


@pytest.mark.parametrize(
    "extra",
    [["-a", "0"], ["-a", "1.0"], ["--strength-mode", "absolute", "-a", "0.5", "-t", "440", "-t", "3000"]],
    ids=["alpha0", "relative", "absolute-with-targets"],
)
def test_silence_runs_and_every_score_is_finite(cli, inputs, tmp_path, extra):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["intervene", str(inputs / "silent.wav"), "-l", "first_conv", "-c", "0", *extra, "-o", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "Error" not in result.output
    assert sorted(os.listdir(out)) == ["silent"]
    folder = out / "silent"
    assert sorted(os.listdir(folder)) == ["baseline.wav", "patched.wav", "scores.json", "spectrogram.png"]
    doc = _strict_json((folder / "scores.json").read_text())
    numbers = list(_numbers(doc))
    assert len(numbers) > 20 and all(math.isfinite(x) for x in numbers)
    spectral = doc["scores"]["spectral"]
    assert spectral["n_samples"] == N and doc["input"]["duration_s"] == pytest.approx(0.25)
    baseline, _ = sf.read(folder / "baseline.wav", dtype="float32")
    patched, _ = sf.read(folder / "patched.wav", dtype="float32")
    assert baseline.shape == patched.shape == (N,)
    assert np.isfinite(baseline).all() and np.isfinite(patched).all()
    change = float(np.sqrt(np.mean((patched.astype(np.float64) - baseline) ** 2)))
    assert spectral["change_rms"] == pytest.approx(change, rel=1e-4, abs=1e-12)
    if extra == ["-a", "0"]:
        assert change == 0.0 and spectral["lsd_db"] == 0.0
    else:
        assert change > 0.0
    if "-t" in extra:
        assert [t["target_hz"] for t in spectral["targets"]] == [440.0, 3000.0]
    # results are renamed out of private temp files/folders: they must get ordinary permissions
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == dict.fromkeys(
        ["baseline.wav", "patched.wav", "scores.json", "spectrogram.png"], 0o666 & ~umask
    )


# -- through a real process: nothing but the one line reaches the terminal -----------------------


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "STEERLAB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["in/nope.wav", "-l", "first_conv", "-c", "0"], "Error: audio file not found: in/nope.wav"),
        (
            ["in/tone.wav", "-m", "tiny_encodec_24kh", "-l", "first_conv", "-c", "0"],
            "Error: unknown model 'tiny_encodec_24kh'. Did you mean 'tiny_encodec_24khz'?",
        ),
        (
            ["in/nan.wav", "-l", "first_conv", "-c", "0"],
            "Error: audio file in/nan.wav contains 2 NaN or infinite samples",
        ),
    ],
    ids=["missing-file", "unknown-model", "nan-samples"],
)
def test_subprocess_prints_one_error_line_and_no_traceback(inputs, tmp_path, args, expected):
    before = _snapshot(tmp_path)
    proc = _run([sys.executable, "-m", "steerlab", "intervene", *args, "-o", "out"], tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stdout == ""
    line = _assert_one_error(proc.stderr)
    assert line.startswith(expected), line
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []
    after = _snapshot(tmp_path)
    after.pop("out", None)
    assert after == before


def test_console_script_reports_bad_alpha(inputs, tmp_path):
    exe = shutil.which("steerlab") or str(Path(sys.executable).with_name("steerlab"))
    if not Path(exe).exists():
        pytest.skip("the steerlab console script is not installed in this environment")
    proc = _run(
        [exe, "intervene", "in/tone.wav", "-l", "first_conv", "-c", "0", "--alpha", "inf", "-o", "out"], tmp_path
    )
    assert proc.returncode == 1
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr == "Error: --alpha must be a finite number, got inf\n"
    assert not (tmp_path / "out").exists()


# -- every command: an invalid option is one line and exit 1 (issue 10, item 8) ------------------

SWEEP = {
    "intervene-folder-as-audio": (
        ["intervene", "{tmp}", "-l", "first_conv", "-c", "0", "-o", "{tmp}/o"],
        "is a directory",
    ),
    "intervene-unknown-option": (["intervene", "{tone}", "--alpah", "1", "-o", "{tmp}/o"], "No such option"),
    "intervene-bad-float": (
        ["intervene", "{tone}", "-l", "first_conv", "-c", "0", "-a", "x", "-o", "{tmp}/o"],
        "is not a valid float",
    ),
    "learn-size-0": (
        ["learn", "features", "-l", "first_conv", "--data", "synth:1", "-o", "{tmp}/o", "--size", "0"],
        "--size must be an integer >= 1, got 0",
    ),
    "learn-subsample": (
        ["learn", "archetypes", "-l", "latent", "--data", "synth:1", "-o", "{tmp}/o", "--subsample", "2"],
        "--subsample must be a number in (0, 1], got 2.0",
    ),
    "learn-cache-gb": (
        ["learn", "features", "-l", "first_conv", "--data", "synth:1", "-o", "{tmp}/o", "--cache-gb", "-1"],
        "--cache-gb must be",
    ),
    "learn-missing-layer": (["learn", "features", "--data", "synth:1", "-o", "{tmp}/o"], "Missing option"),
    "learn-bad-variant": (
        ["learn", "features", "-l", "first_conv", "--data", "synth:1", "-o", "{tmp}/o", "--variant", "l2"],
        "is not one of",
    ),
    "learn-bad-architecture": (
        ["learn", "features", "-l", "first_conv", "--data", "synth:1", "-o", "{tmp}/o", "--architecture", "l2"],
        "Invalid value for '--architecture' / '--variant'",
    ),
    "analyze-threshold": (
        ["analyze", "first_conv-features", "--data", "synth:1", "-o", "{tmp}/o", "--threshold", "2"],
        "invalid analysis options: --threshold must be a number in [-1, 1], got 2.0",
    ),
    "analyze-unknown-name": (
        ["analyze", "first_conv-featurs", "--data", "synth:1", "-o", "{tmp}/o"],
        "Did you mean 'first_conv-features'?",
    ),
    "synth-kind": (["synth", "{tmp}/x.wav", "--kind", "bogus"], "unknown --kind 'bogus'"),
    # every field of a clip is checked before synthesis and named by its flag (numpy's own
    # "expected non-negative integer" traceback was what a negative seed gave)
    "synth-seed": (["synth", "{tmp}/x.wav", "--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    "synth-seconds-nan": (["synth", "{tmp}/x.wav", "--seconds", "nan"], "--seconds must be a finite number > 0"),
    "synth-seconds-tiny": (["synth", "{tmp}/x.wav", "--seconds", "1e-9"], "samples (10 minutes at 48 kHz), got 0"),
    "synth-seconds-huge": (["synth", "{tmp}/x.wav", "--seconds", "1e6"], "got 24000000000"),
    "synth-rate": (
        ["synth", "{tmp}/x.wav", "--sample-rate", "1"],
        "--sample-rate must be an integer in [4000, 384000]",
    ),
    "synth-suffix": (["synth", "{tmp}/x.txt"], "unsupported suffix '.txt'; name the file with one of .wav, .flac"),
    "capture-seed": (
        ["capture", "-m", "logspec_24khz", "-l", "log_magnitude", "--data", "synth:1", "--seed", "-1", "-o", "{tmp}/o"],
        "--seed must be an integer >= 0, got -1",
    ),
    "capture-clip-seconds": (
        ["capture", "-m", "logspec_24khz", "-l", "log_magnitude", "--data", "synth:1", "--clip-seconds", "1e-9"]
        + ["-o", "{tmp}/o"],
        "--clip-seconds 1e-09 is shorter than one sample at 24000 Hz",
    ),
    "stimuli-grid": (["stimuli", "-o", "{tmp}/o", "--grid", "100", "50", "3"], "f_min < f_max"),
    "arch-target": (["arch", "-t", "-5"], "outside (0, 12000) Hz"),
    "layers-model": (["layers", "-m", "bogus"], "unknown model 'bogus'"),
    "dictionaries-model": (["dictionaries", "-m", "tiny_encodec"], "unknown model"),
    "partials-layer": (["partials", "-o", "{tmp}/o", "--layers", "nope", "--quick"], "unknown layer 'nope'"),
    "partials-config": (["partials", "-o", "{tmp}/o", "--config", "{tmp}/none.toml"], "config file not found"),
    "train-codec-steps": (["train", "codec", "-o", "{tmp}/o", "--steps", "0"], "must be positive"),
    # a plugin's command names its own flags too (the same rendering as the core's commands)
    "train-codec-lr": (
        ["train", "codec", "-o", "{tmp}/o", "--lr", "-1"],
        "need 0 < min_lr <= --lr, got min_lr 0.0001 and --lr -1.0",
    ),
    "train-codec-val-every": (
        ["train", "codec", "-o", "{tmp}/o", "--val-every", "0"],
        "--val-every must be an integer >= 1, got 0",
    ),
    "train-samplecnn-steps": (["train", "samplecnn", "-o", "{tmp}/o", "--steps", "0"], "must be positive"),
    "train-tokenlm-steps": (["train", "tokenlm", "-o", "{tmp}/o", "--steps", "0"], "steps must be positive"),
    "eval-codec-clips": (["eval", "codec", "--clips", "0"], "--clips"),
    "eval-samplecnn-clips": (["eval", "samplecnn", "--clips", "0"], "must be positive"),
    # a library parameter is named by the flag that sets it, whatever the command calls it (cli/errors.py)
    "survey-bad-data": (  # survey has no --skip-bad-files: the remedy it cannot take is left out
        ["survey", "--quick", "--data", "{inp}/corrupt.wav", "-o", "{tmp}/o"],
        "Format not recognised; supported formats: WAV, FLAC, OGG, MP3); fix or remove them",
    ),
    "mean-ablate-reference": (
        ["intervene", "{tone}", "-l", "first_conv", "-c", "0", "-i", "mean-ablate", "--reference", "nosuch"]
        + ["-o", "{tmp}/o"],
        "Error: --reference nosuch: no such file or folder",
    ),
    "patch-short-source": (
        ["intervene", "{inp}/long.wav", "-l", "first_conv", "-i", "patch", "--source", "{tone}", "-o", "{tmp}/o"],
        "end the span earlier (--end)",
    ),
    "synth-seconds-0": (
        ["synth", "{tmp}/x.wav", "--seconds", "0"],
        "Error: --seconds must be a finite number > 0 (s), got 0.0",
    ),
    "corpus-clips-seconds-0": (
        ["corpus", "clips", "{tone}", "-o", "{tmp}/o", "--seconds", "0"],
        "Error: --seconds must be positive, got 0.0",
    ),
    "corpus-render-count-0": (
        ["corpus", "render", "-n", "0", "-o", "{tmp}/o"],
        "Error: --count must be above 0, got 0",
    ),
    "sweep-size-not-integer": (
        ["learn", "sweep", "-l", "first_conv", "--data", "synth:1", "-o", "{tmp}/o", "--size", "16,x"],
        "Error: --size 'x' is not an integer",
    ),
    "sweep-k-above-size": (  # the layer's alias (first_conv) is also checked under its own name
        ["learn", "sweep", "-l", "first_conv", "--data", "synth:1", "-o", "{tmp}/o", "--k", "9", "--size", "8"],
        "Error: --k (9) must be <= --size (8)",
    ),
    "unknown-command": (["bogus"], "No such command 'bogus'"),
    "unknown-root-option": (["--bogus"], "No such option '--bogus'"),
}


@pytest.mark.parametrize("case", list(SWEEP))
def test_every_invalid_option_is_one_line_and_exit_1(cli, inputs, tmp_path, case):
    args, fragment = SWEEP[case]
    work = tmp_path / "work"
    work.mkdir()
    args = [a.format(tmp=work, tone=inputs / "tone.wav", inp=inputs) for a in args]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    line = _assert_one_error(result.output, fragment)
    assert result.output.splitlines() == [line], result.output  # no usage block, no progress
    assert "skip_bad_files" not in line  # a library parameter, never a flag
    assert list(work.iterdir()) == []


def test_analyze_accepts_a_shipped_dictionary_name(cli, tmp_path):
    out = tmp_path / "R"
    res = CliRunner().invoke(
        cli, ["analyze", "first_conv-features", "--data", "synth:1", "-o", str(out), "--quick", "--only", "a", "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "report.json").read_text())
    import steerlab.builtins.encodec

    shipped = Path(steerlab.builtins.encodec.__file__).parent / "dictionaries" / "first_conv-features"
    assert Path(doc["dictionary"]["path"]).resolve() == shipped.resolve()
    assert doc["dictionary"]["layer"] == "encoder.0.conv" and doc["analyses"]["a_coverage"]["status"] == "ran"


def _leaves(group, path=()):
    import click

    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _leaves(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def test_a_model_given_as_an_argument_gets_a_one_line_hint(cli):
    """`steerlab layers logspec_24khz`: every command that names its model with -m/--model and
    takes no argument says so in one line with the command to type; `-m` still works."""
    import click

    checked = []
    for path, cmd in _leaves(cli):
        has_model = any(isinstance(p, click.Option) and "--model" in p.opts for p in cmd.params)
        if not has_model or any(isinstance(p, click.Argument) or p.required for p in cmd.params):
            continue  # (a missing required option is reported first, by click)
        res = CliRunner().invoke(cli, [*path, "logspec_24khz"], prog_name="steerlab")
        where = "steerlab " + " ".join(path)
        assert res.exit_code == 1 and "Traceback" not in res.output, (path, res.output)
        assert (
            res.output
            == f"Error: {where} names the model with -m/--model, not as an argument: {where} -m logspec_24khz\n"
        )
        checked.append(path)
    assert ("layers",) in checked and ("arch",) in checked and len(checked) >= 5
    res = CliRunner().invoke(cli, ["steerability", "logspec_24khz", "-o", "x"], prog_name="steerlab")
    assert res.output.startswith("Error: steerlab steerability names the model with -m/--model")
    # with -m given, an extra argument is something else: click's own message
    other = CliRunner().invoke(cli, ["layers", "-m", "logspec_24khz", "not_a_model"])
    assert other.exit_code == 1 and "unexpected extra argument (not_a_model)" in other.output


def test_the_model_hint_loads_no_plugin():
    """Issue 15: the hint took ~20 s (it asked the model registry, which imports every plugin:
    torch, transformer_lens...); a usage error names no model it has checked, so it imports none."""
    import subprocess
    import sys

    code = (
        "import sys; from click.testing import CliRunner; from steerlab.cli import get_cli; "
        "r = CliRunner().invoke(get_cli(), ['layers', 'logspec_24khz'], prog_name='steerlab'); "
        "print(r.output.strip()); print(sorted(m for m in ('torch', 'transformer_lens') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "Error: steerlab layers names the model with -m/--model, not as an argument: steerlab layers -m logspec_24khz",
        "[]",
    ]


def test_layers_prints_no_empty_section(cli):
    plain = CliRunner().invoke(cli, ["layers", "-m", "logspec_24khz"])  # no aliases
    assert plain.exit_code == 0 and plain.output.splitlines()[0] == "model logspec_24khz (24000 Hz, 1 ch)"
    assert "aliases" not in plain.output
    codec = CliRunner().invoke(cli, ["layers", "-m", "tiny_encodec_24khz"])
    assert "; aliases: first_conv -> encoder.0.conv, last_conv -> encoder.15.conv" in codec.output.splitlines()[0]


def test_synth_writes_the_format_its_suffix_names(cli, tmp_path):
    """``synth x.flac`` is FLAC, not WAV bytes under a .flac name."""
    for name, fmt in (("x.flac", "FLAC"), ("x.ogg", "OGG"), ("x.wav", "WAV")):
        result = CliRunner().invoke(cli, ["synth", str(tmp_path / name), "--seconds", "0.2"])
        assert result.exit_code == 0, result.output
        assert sf.info(str(tmp_path / name)).format == fmt
