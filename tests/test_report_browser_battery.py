"""The steerability and survey reports in a real headless browser (Debian's chromium): a tiny run of
each writes a page that loads with no errors, whose figures decode at a non-zero size, whose players
all play, and that is no wider than the window; the battery's saved examples are the decodes its rows
scored, and the survey's reels are the fragments its narrowband measure heard."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import battery_toml, needs

from steerlab.reportcheck import check_report, find_browser

pytestmark = needs(find_browser() is not None, "no Chromium (apt-get install chromium)")

TINY = battery_toml()


def test_a_real_steerability_report_passes(tmp_path):
    import soundfile as sf

    from steerlab.battery.concept import PairSpec
    from steerlab.battery.registry import concepts
    from steerlab.battery.run import run_battery

    (tmp_path / "tiny.toml").write_text(TINY)
    out = tmp_path / "out"
    run_battery(["note"], "stft_24khz", out, True, config_file=tmp_path / "tiny.toml")
    ex = json.loads((out / "note" / "examples.json").read_text())
    names = [e["name"] for e in ex["examples"]]
    assert names == ["without", "with", "baseline without", "baseline with"] + [
        "patched add",
        "patched remove",
        "patched null add",
    ]
    # the best verdict is the difference of means (it creates the note on stft_24khz), heard on a passing pair
    assert ex["best"]["method"] == "diffmeans" and ex["best"]["pass_share"] == 1.0 and ex["seed_passes"]
    # each saved patched decode is the decode its row scored: the concept's scorer gives the row's numbers
    rows = {json.loads(line)["key"]: json.loads(line) for line in (out / "note" / "results.jsonl").open()}
    note = concepts().get("note")

    def wave(name: str) -> np.ndarray:
        return sf.read(out / "note" / "examples" / f"{name.replace(' ', '_')}.wav", always_2d=True)[0].T

    for e in ex["examples"]:
        if "key" in e:
            r = rows[e["key"]]
            base = wave("baseline without" if r["role"] == "without" else "baseline with")
            s = note.score(base.astype(np.float64), wave(e["name"]).astype(np.float64), PairSpec.from_dict(r["pair"]))
            assert s["target"] == pytest.approx(r["target"], abs=1e-6) and s["damage"] == pytest.approx(r["damage"])
    add = next(e for e in ex["examples"] if e["name"] == "patched add")
    assert add["target"] > 30  # the note created: salience at f0 up by more than 30 dB

    result = check_report(out / "report.html")
    assert result.ok, result.describe()
    assert (result.images, result.players) == (1, 7)  # the pass-share map; the pair, 2 baselines, 3 patched
    seconds = ex["examples"][0]["seconds"]
    assert all(a["duration"] == pytest.approx(seconds, abs=1e-3) for a in result.raw["audio"])


def test_a_real_survey_report_passes(tmp_path):
    from steerlab.cli import get_cli

    out = tmp_path / "S"
    args = ["survey", "--quick", "--clips", "2", "--max-vectors", "400", "--epochs", "1", "--pairs", "6"]
    res = CliRunner().invoke(get_cli(), [*args, "--draws", "5", "-l", "latent", "-C", "loudness", "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "report.json").read_text())
    nb = doc["rows"][0]["narrowband"]
    assert "_listen" not in nb  # the fragments go to the page, not into report.json
    result = check_report(out / "index.html")
    assert result.ok, result.describe()
    # one reel per top feature with fragments, and one of random frames
    assert result.images == 2 and result.players == len(nb["per_feature_hz"]) + 1 == 4
    # each reel: 8 fragments of 300 ms with 150 ms gaps
    assert all(a["duration"] == pytest.approx(8 * 0.3 + 7 * 0.15, abs=2e-3) for a in result.raw["audio"])


def test_the_partial_concept_plays_the_examples_partials_chose(tmp_path):
    from test_report_browser import PARTIALS

    from steerlab.battery.run import run_battery

    (tmp_path / "p.toml").write_text(PARTIALS.replace('["filterbank_24khz"]', "[]"))  # no control: faster
    run_battery(["partial"], None, tmp_path / "out", True, config_file=tmp_path / "p.toml")
    result = check_report(tmp_path / "out" / "report.html")
    assert result.ok, result.describe()
    wavs = sorted((tmp_path / "out" / "partial" / "examples").glob("*.wav"))
    assert result.players == len(wavs) >= 4 and result.images == 1  # each baseline and patched decode
