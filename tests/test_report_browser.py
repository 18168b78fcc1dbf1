"""Reports in a real headless browser (Debian's chromium): they load with no errors, every figure has a
non-zero size, every player has a playable source, no table widens the page. A real analyze report and a
real partials report on small inputs, and pages broken on purpose, which the check must fail."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import needs

from steerlab import reporting
from steerlab.reportcheck import check_report, find_browser, screenshot

pytestmark = needs(find_browser() is not None, "no Chromium (apt-get install chromium)")

SR = 24_000
PARTIALS = """
[grid]
layers = ["encoder.5.elu"]
targets_hz = [600.0]
densities = [2]
strengths = [1.0]
subtract_strengths = [1.0]
methods = ["diffmeans", "random"]
paths = ["continuous"]
[stimuli]
duration_s = 0.25
train_seeds = 2
test_seeds = 2
[controls]
positive_models = ["filterbank_24khz"]
positive_densities = [1]
[run]
max_batch = 8
probe_frames = 32
examples = 1
bootstrap = 100
"""


def tone(seconds: float = 0.5, hz: float = 440.0) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * hz * np.arange(int(SR * seconds)) / SR)


def test_a_real_analyze_report_passes(tmp_path):
    import soundfile as sf

    from steerlab import cli

    # a clip of the user's: quiet for half a second, then a decaying tone (the loudest stretch is taken)
    clip = np.concatenate([0.01 * tone(0.5, 220.0), tone(1.0, 330.0) * np.exp(-np.arange(SR) / SR)])
    sf.write(tmp_path / "mine.wav", clip, SR)
    out = tmp_path / "R"
    args = ["analyze", "first_conv-archetypes", "--data", "synth:2", "-o", str(out), "--quick", "--max-vectors"]
    args += ["2000", "--top-n", "8", "--trajectory-frames", "40", "--fragments", "4", "--only", "a,d,i,j"]
    res = CliRunner().invoke(cli.get_cli(), [*args, "--trajectory-clip", str(tmp_path / "mine.wav")])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "report.json").read_text())
    reels = doc["analyses"]["i_fragments"]["listen"]
    assert [r["label"] for r in reels] == ["direction 2", "direction 10", "random vectors"]
    assert all((out / r["file"]).is_file() and r["fragments"] == 4 and r["seconds"] > 1.0 for r in reels)
    assert "music (mine.wav)" in doc["analyses"]["j_trajectories"]["table"]
    assert doc["options"]["trajectory_clip"] == str(tmp_path / "mine.wav")

    result = check_report(out / "report.html")
    assert result.ok, result.describe()
    assert (result.images, result.players) == (4, 3)  # a, d, i, j; one reel per shown direction and the reference
    assert all(a["duration"] == pytest.approx(r["seconds"], abs=1e-3) for a, r in zip(result.raw["audio"], reels))
    shot = screenshot(out / "report.html", tmp_path / "shot.png", width=1280, height=900)
    from matplotlib.image import imread

    assert imread(shot).shape[:2] == (900, 1280)


def test_a_real_partials_report_passes(tmp_path):
    from steerlab import partials

    (tmp_path / "tiny.toml").write_text(PARTIALS)
    outcome, _ = partials.run(partials.build(tmp_path / "tiny.toml"), tmp_path / "run")
    result = check_report(outcome.folder / "report.html")
    assert result.ok, result.describe()
    examples = sorted((outcome.folder / "examples").glob("*.wav"))
    assert result.players == len(examples) >= 4  # every baseline and patched example plays
    assert result.images == len(list((outcome.folder / "figures").glob("*.png")))
    assert all(a["duration"] > 0.2 for a in result.raw["audio"])


def test_a_broken_page_fails_and_a_sound_one_passes(tmp_path):
    wav = reporting.wav_bytes(tone(), SR)
    png = reporting.png(reporting.figure(3, 2)[0])
    wide = (
        "<table><tr>"
        + "".join(f"<td>column_{i}_with_a_long_unbreakable_name</td>" for i in range(60))
        + "</tr></table>"
    )
    svg = "<svg width=40 height=20><rect width=40 height=20 fill=teal /></svg>"
    good = [reporting.img(png, "a figure"), svg, reporting.audio_player(wav, "a tone"), reporting.scroll(wide)]
    (tmp_path / "good.html").write_text(reporting.page("good", good))
    ok = check_report(tmp_path / "good.html")
    assert ok.ok, ok.describe()
    assert (ok.images, ok.svgs, ok.players) == (1, 1, 1) and ok.raw["audio"][0]["duration"] == pytest.approx(0.5)

    bad = [
        "<img alt='bad uri' src='data:image/png;base64,iVBORw0KGgoAAAA'>",
        "<svg width=0 height=0></svg>",
        "<audio controls></audio>",  # no source at all
        "<audio controls><source type='audio/wav' src='data:audio/wav;base64,AAAA'></audio>",  # not audio
        "<audio controls><source src='data:audio/wav;base64,AAAA'></audio>",  # no declared type
        wide,  # not in a scrolling box: the page is wider than the window
        "<script>undefinedFunction()</script>",
    ]
    (tmp_path / "bad.html").write_text(reporting.page("bad", bad))
    result = check_report(tmp_path / "bad.html")
    text = "\n".join(result.problems)
    assert not result.ok
    assert "image 1 (bad uri) did not decode" in text
    assert "SVG 1 has a zero-size bounding box" in text
    assert "audio player 1 has no source" in text
    assert "audio player 2: its source did not load" in text
    assert "audio player 3: its source declares no type" in text
    assert "the page is" in text and "px wide in a 1280 px window" in text
    assert "page error: Uncaught ReferenceError: undefinedFunction is not defined" in text
