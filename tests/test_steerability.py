"""steerlab steerability: each concept's rule on waveform edits, the concept hook, serialisable work
items, a tiny battery run with its controls, and resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import battery_toml

from steerlab import plugins
from steerlab.battery.check import check, summary, usable
from steerlab.battery.concept import PairSpec, Rule
from steerlab.battery.plan import BatteryItem
from steerlab.battery.registry import concepts
from steerlab.errors import DuplicateNameError
from steerlab.hookspecs import hookimpl
from steerlab.model import AudioModel, LayerInfo

CONCEPTS = ("partial", "note", "chord-quality", "brightness", "onset", "loudness")


def test_the_six_builtin_concepts_are_registered_through_the_hook():
    reg = concepts()
    assert set(CONCEPTS) <= set(reg.names())
    for name in CONCEPTS:
        assert reg.owners[name] == "steerlab.builtins.concepts"
        c = reg.get(name)
        assert len(c.changes) == 2 and c.rule.rationale and c.rule.min_share == 0.8
    assert dict(reg.get("onset").controls) == {}  # no control resolves an attack


@pytest.mark.parametrize("name", CONCEPTS)
def test_rule_passes_the_oracle_and_fails_every_wrong_edit(name):
    c = concepts().get(name)
    rows = check(c, seeds=range(3))
    s = summary(rows)
    assert s["oracle +"] == (3, 3) and s["oracle -"] == (3, 3), s
    wrong = {k: v for k, v in s.items() if not k.startswith("oracle")}
    assert len(wrong) >= 3 and all(p == 0 for p, _ in wrong.values()), wrong
    assert usable(rows, c.rule.min_share)
    oracle = [r for r in rows if r["edit"] == "oracle +"]
    assert all(r["target"] >= c.rule.min_target and r["damage"] <= c.rule.max_damage for r in oracle)


def test_a_concept_without_a_control_says_why_each_control_cannot_vouch():
    """Every concept no control vouches for names, in its reason and in docs/steerability.md's
    table of controls, each control model some built-in concept is vouched for by (onset once
    left out logspec_24khz, loudness's and brightness's control)."""
    reg = concepts()
    controls = sorted({m for name in CONCEPTS for m in reg.get(name).controls})
    assert controls == ["filterbank_24khz", "logspec_24khz", "stft_24khz"]
    docs = (Path(__file__).parent.parent / "docs" / "steerability.md").read_text()
    for name in CONCEPTS:
        c = reg.get(name)
        if c.controls:
            continue
        row = next(line for line in docs.splitlines() if line.startswith(f"| {name} | none"))
        assert all(m in c.no_control_reason and m in row for m in controls), (name, c.no_control_reason)


def test_measured_oracle_values():
    """The numbers docs/steerability.md quotes (seed 0, 24 kHz, quick)."""
    c = concepts().get("loudness")
    spec = c.pairs(24_000, [0], 0.1, True)[0]
    w, x = c.render(spec)
    s = c.score(w, x, spec)
    assert s["target"] == pytest.approx(20 * np.log10(2), abs=1e-6) and s["damage"] < 1e-6
    b = concepts().get("brightness")
    spec = b.pairs(24_000, [0], 0.1, True)[0]
    w, x = b.render(spec)
    s = b.score(w, x, spec)
    assert 800 < s["target"] < 1200 and s["damage"] < 0.05 and s["high_band_share_change_db"] > 3


def test_note_salience_is_librosa_salience_at_f0():
    import librosa

    from steerlab.builtins.concepts.note import magnitudes, salience

    c = concepts().get("note")
    spec = c.pairs(24_000, [1], 0.1, True)[0]
    s = magnitudes(c.render(spec)[1])
    freqs = librosa.fft_frequencies(sr=24_000, n_fft=4096)
    hs = list(range(1, 7))
    ref = librosa.salience(s, freqs=freqs, harmonics=hs, weights=[1 / h for h in hs], filter_peaks=False, fill_value=0)
    for k in (40, 50, 61):
        assert salience(s, 24_000, float(freqs[k])) == pytest.approx(float(ref[k].mean()), rel=1e-6)


def test_pairs_are_seeded_and_items_serialise():
    c = concepts().get("chord-quality")
    a, b = c.pairs(24_000, [3], 0.05, True)[0], c.pairs(24_000, [3], 0.05, True)[0]
    assert a == b and a.key() == b.key() and PairSpec.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    w1, x1 = c.render(a)
    w2, x2 = c.render(b)
    assert np.array_equal(w1, w2) and np.array_equal(x1, x2) and w1.shape == x1.shape == (a.n_samples,)
    it = BatteryItem("h", "chord-quality", "m", "main", "l", a, "with", "diffmeans", "d", "reverse", 0.3, "continuous")
    back = BatteryItem.from_dict(json.loads(json.dumps(it.to_dict())))
    assert back == it and back.key() == it.key()
    with pytest.raises(Exception, match="applies to 'with'"):
        BatteryItem("h", "x", "m", "main", "l", a, "without", "diffmeans", "d", "reverse", 0.3, "continuous")


def test_rule_requires_both_measures_and_its_extra_conditions():
    r = Rule(6.0, 1.0, 0.8, "t", "d", "why", requires=(("concentration", 0.5),))
    assert r.passes({"target": 7, "damage": 0.5, "concentration": 0.6}, "with")
    assert not r.passes({"target": 7, "damage": 0.5, "concentration": 0.4}, "with")
    assert not r.passes({"target": 7, "damage": 1.5, "concentration": 0.6}, "with")
    assert r.passes({"target": -7, "damage": 0.5, "concentration": 0.6}, "without")
    assert not r.passes({"target": None, "damage": 0.5, "concentration": 0.6}, "with")


# -- a concept from a plugin, through the public hook ----------------------------------------------


class _Plugin:
    def __init__(self, concept):
        self.concept = concept

    @hookimpl
    def steerlab_register_concepts(self, registry):
        registry.add(self.concept)


def test_a_plugin_concept_is_registered_and_a_duplicate_names_both_plugins():
    from steerlab.builtins.concepts.loudness import Loudness

    class Quiet(Loudness):
        name = "quiet-test"

    plugin, twin = _Plugin(Quiet()), _Plugin(Quiet())
    plugins.register(plugin, name="quiet_plugin")
    try:
        assert concepts().owners["quiet-test"] == "quiet_plugin"
        plugins.register(twin, name="twin_plugin")
        try:
            concepts()
            failure = [f for f in plugins.failures() if f.plugin == "twin_plugin"]
            assert failure and "quiet_plugin" in failure[0].error and "twin_plugin" in failure[0].error
        finally:
            plugins.unregister(twin)
    finally:
        plugins.unregister(plugin)
    assert "quiet-test" not in concepts()
    with pytest.raises(DuplicateNameError):
        reg = concepts()
        reg.add(reg.get("note"))


# -- a tiny battery run: a toy codec measured, stft_24khz its control ------------------------------


class _Toy(AudioModel):
    name = "toy_battery_codec"
    family = "toy"
    sample_rate = 24_000
    hop = 8

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Conv1d(1, 16, kernel_size=16, stride=8, padding=4)
        self.decoder = torch.nn.ConvTranspose1d(16, 1, kernel_size=16, stride=8, padding=4)
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, wave, path="continuous", n_q=None):
        self.check_path(path)
        return self.decoder(self.encoder(wave))[..., : wave.shape[-1]]


class _ToyPlugin:
    @hookimpl
    def steerlab_register_models(self, registry):
        from steerlab.registry import ModelSpec

        registry.add(ModelSpec("toy_battery_codec", lambda options: _Toy(), "a toy codec for the battery tests"))

    @hookimpl
    def steerlab_register_layers(self, model, registry):
        if isinstance(model, _Toy):
            registry.add(LayerInfo("enc", "conv", "encoder", 16, 8, 8, model.sample_rate, 16, kernel_size=16))


@pytest.fixture(scope="module")
def tiny_battery(tmp_path_factory):
    from steerlab.battery.run import run_battery

    d = tmp_path_factory.mktemp("battery")
    (d / "tiny.toml").write_text(battery_toml('["stft_24khz"]'))
    toy = _ToyPlugin()
    plugins.register(toy, name="toy_battery")
    try:
        doc = run_battery(["note", "onset"], "toy_battery_codec", d / "out", True, config_file=d / "tiny.toml")
    finally:
        plugins.unregister(toy)
    return d / "out", doc


def test_every_verdict_carries_control_null_oracle_and_validation(tiny_battery):
    out, doc = tiny_battery
    assert (out / "steerability.json").is_file() and (out / "summary.csv").is_file()
    by = {t["concept"]: t for t in doc["concepts"]}
    note, onset = by["note"], by["onset"]
    main = [v for v in note["verdicts"] if v["model_role"] == "main"]
    # per method x removal (ablate, subtract, reverse, and the calibrated raise/lower) on the one layer and path
    assert {(v["method"], v["removal"]) for v in main} == {
        (m, r) for m in ("diffmeans", "random") for r in ("ablate", "subtract", "reverse", "reverse_calibrated")
    }
    for v in main:
        assert set(v["control"]) == {"stft_24khz"} and isinstance(v["control"]["stft_24khz"], bool)
        assert isinstance(v["null_steerable"], bool) and v["oracle_pass_share"] == 1.0 and v["oracle_steerable"]
        assert v["validation"] in ("validated", "not validated", "control")
        assert v["n_heldout"] == 3 and v["target_add_ci_lo"] <= v["target_add_median"] <= v["target_add_ci_hi"]
        if v["method"] == "random":
            assert v["label"].startswith("null:")
        else:
            assert v["label"] in ("steerable", "not steerable", "not validated")
    assert any(v["model_role"] == "positive_control" and v["model"] == "stft_24khz" for v in note["verdicts"])
    # a concept no control can vouch for: every learned method "not validated", and says why
    for v in onset["verdicts"]:
        assert v["control"] == {}
        if v["method"] != "random":
            assert v["label"] == "not validated" and v["validation_reason"].startswith("no control")
    # one shape for every concept: no control is said inside it, not by another type
    assert doc["stimuli"] == "synthetic"
    assert set(note) == set(onset) and note["no_control_reason"] is None
    assert onset["controls"] == {} and onset["no_control_reason"] == concepts().get("onset").no_control_reason
    for t in (note, onset):
        assert {k: set(v) for k, v in t["validation"].items()} == {
            f"{m}/{r}": {"status", "reason", "by_model", "by_control"}
            for m in ("diffmeans", "random")
            for r in ("ablate", "subtract", "reverse", "reverse_calibrated")
        }
    assert onset["validation"]["diffmeans/ablate"]["reason"] == "no control: " + onset["no_control_reason"]
    onset_run = json.loads((out / "onset" / "run.json").read_text())
    assert onset_run["controls"] == {} and onset_run["no_control_reason"] == onset["no_control_reason"]
    run = json.loads((out / "note" / "run.json").read_text())
    assert run["rule"]["min_target"] == 6.0 and run["rule"]["rationale"]
    assert set(run["controls"]) == {"stft_24khz"} and run["measured"]["grid"]["strengths"] == [1.0]
    rows = [json.loads(line) for line in (out / "note" / "results.jsonl").read_text().splitlines()]
    assert {r["op"] for r in rows} == {"add", "subtract", "reverse", "ablate", "add_calibrated", "reverse_calibrated"}
    assert all(r["target"] is not None and r["damage"] >= 0 for r in rows)


def test_a_folder_of_another_concept_set_is_refused_before_anything_is_written(tiny_battery, tmp_path):
    """Rerunning into a battery's folder with other concepts (or settings) is refused in one line
    naming the folder and what differs; steerability.json, summary.csv and report.html keep the
    first run's bytes and no concept folder is added. A folder written before battery.json
    existed is judged by its steerability.json."""
    from steerlab.battery.run import BATTERY_FILE, _settings, check_folder, run_battery
    from steerlab.errors import PlanError, SteerlabError
    from steerlab.partials import build

    out, _ = tiny_battery
    cfg = out.parent / "tiny.toml"
    files = ("steerability.json", "summary.csv", "report.html", BATTERY_FILE)
    before = {f: (out / f).read_bytes() for f in files}
    toy = _ToyPlugin()
    plugins.register(toy, name="toy_battery")
    try:
        with pytest.raises(
            PlanError, match=r"holds a steerability run of other settings: concepts note,onset \(this run: onset\)"
        ):
            run_battery(["onset"], "toy_battery_codec", out, True, config_file=cfg)
        with pytest.raises(PlanError, match=r"quick True \(this run: False\)"):
            run_battery(["onset", "note"], "toy_battery_codec", out, False, config_file=cfg)
        # every argument is checked before the folder: a mistyped layer is named as one, not as a setting
        with pytest.raises(SteerlabError, match=r"unknown layer 'nosuch'"):
            run_battery(["onset", "note"], "toy_battery_codec", out, True, ["nosuch"], config_file=cfg)
    finally:
        plugins.unregister(toy)
    assert {f: (out / f).read_bytes() for f in files} == before
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["note", "onset"]
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "steerability.json").write_bytes(before["steerability.json"])
    settings = _settings(["loudness"], "toy_battery_codec", True, (), (), "synthetic", build(cfg, True))
    with pytest.raises(PlanError, match=r"legacy holds .*concepts note,onset \(this run: loudness\)"):
        check_folder(legacy, settings)
    check_folder(legacy, {**settings, "concepts": ["onset", "note"]})  # the same run: resumed
    with pytest.raises(PlanError, match=r"onset holds another kind of run \(its run.json"):
        check_folder(out / "onset", settings)  # a concept's own folder (or a partials run) as the battery's


def test_stft_control_creates_the_note_under_diffmeans(tiny_battery):
    """The positive control vouches by measurement: adding the difference of means on stft_24khz
    creates the note (salience at f0 well over 6 dB beyond its neighbours) on every held-out pair."""
    out, doc = tiny_battery
    rule = concepts().get("note").rule
    rows = [json.loads(line) for line in (out / "note" / "results.jsonl").read_text().splitlines()]
    adds = [r for r in rows if r["model"] == "stft_24khz" and r["method"] == "diffmeans" and r["op"] == "add"]
    assert len(adds) == 3 and all(r["target"] > 30 and r["damage"] < 0.2 for r in adds)
    ablates = [r for r in rows if r["model"] == "stft_24khz" and r["method"] == "diffmeans" and r["op"] == "ablate"]
    assert all(r["target"] < -20 and rule.passes(r, "without") for r in ablates)
    nulls = [r for r in rows if r["model"] == "stft_24khz" and r["method"] == "random"]
    assert not any(rule.passes(r, "with" if r["op"] == "add" else "without") for r in nulls)
    note = next(t for t in doc["concepts"] if t["concept"] == "note")
    assert note["validation"]["diffmeans/ablate"]["status"] == "validated"


# -- resume after kill -9 ----------------------------------------------------------------------------


def _cmd(cfg: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "steerlab", "steerability", "-m", "stft_24khz", "-C", "loudness", "--quick"] + [
        "-c",
        str(cfg),
        "-o",
        str(out),
    ]


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "loudness" / "results.jsonl").read_text().splitlines()]


def test_kill_9_then_resume_equals_uninterrupted_run(tmp_path):
    cfg = tmp_path / "r.toml"
    cfg.write_text(battery_toml(max_batch=2))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    from steerlab.battery.run import run_battery

    run_battery(["loudness"], "stft_24khz", ref, True, config_file=cfg)  # what the command runs, in-process
    proc = subprocess.Popen(_cmd(cfg, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = killed / "loudness" / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if results.is_file() and results.stat().st_size > 0:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(results.read_bytes().split(b"\n")) - 1
    assert 0 < n_before < len(_rows(ref))
    with open(results, "ab") as f:  # a torn line, as a kill inside write() leaves
        f.write(b'{"key": "abc", "conf')
    done = subprocess.run(_cmd(cfg, killed), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    a, b = _rows(ref), _rows(killed)
    assert len(b) == len({r["key"] for r in b}) == len(a)
    by_key = {r["key"]: r for r in a}
    assert all(r == by_key[r["key"]] for r in b)
    assert json.loads((killed / "steerability.json").read_text()) == json.loads((ref / "steerability.json").read_text())


def test_sae_feature_direction_with_a_shipped_dictionary(tmp_path):
    """``-D`` gives the ``sae`` method a dictionary: the feature is learned, recorded with its
    provenance and the dictionary's hash, and steered like the other directions."""
    from steerlab.battery.runner import run_concept
    from steerlab.partials import build

    cfg = tmp_path / "s.toml"
    grid = '["sae", "random"]\npaths = ["continuous"]'
    cfg.write_text(battery_toml().replace('["diffmeans", "random"]', grid))
    c = concepts().get("loudness")
    out = run_concept(
        c, build(cfg, True), tmp_path / "run", "tiny_encodec_24khz", True, ["latent"], ["latent-features"]
    )
    sae = [p for p in out.directions.values() if p["method"] == "sae"]
    assert len(sae) == 1 and sae[0]["dictionary_layer"] == "latent" and sae[0]["size"] == 128
    assert 0 <= sae[0]["feature"] < 128 and sae[0]["norm"] == pytest.approx(1.0, abs=1e-6)  # a decoder row
    assert {r["method"] for r in out.rows} == {"sae", "random"}
    # 2 methods x 3 held-out pairs x (4 removals + 6 adds), and the sae method's code-space
    # removal (sae_ablate: its feature's code set to 0) once per held-out pair
    assert len(out.rows) == 2 * 3 * (4 + 6) + 3
    assert sorted(r["method"] for r in out.rows if r["op"] == "sae_ablate") == ["sae"] * 3
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert list(run["measured"]["dictionaries"]) == ["tiny_encodec_24khz:latent"]


def test_a_model_without_a_decoder_is_refused_in_one_line_before_anything_is_written(tmp_path):
    from click.testing import CliRunner

    from steerlab.cli import get_cli

    out = tmp_path / "out"
    res = CliRunner().invoke(get_cli(), ["steerability", "-m", "samplecnn_24khz", "-C", "note", "-o", str(out)])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "no decoder" in res.output and len(res.output.strip().splitlines()) == 1
    assert not out.exists()
    unknown = CliRunner().invoke(get_cli(), ["steerability", "-C", "nots", "-o", str(out)])
    assert unknown.exit_code != 0 and "Did you mean 'note'" in unknown.output and not out.exists()


@pytest.mark.parametrize(
    "bad, said",
    [
        (["-l", "nosuchlayer"], "unknown layer 'nosuchlayer'"),
        (["-l", "latent,nosuch"], "unknown layer 'nosuch'"),
        (["-D", "nosuchdict"], "dictionary 'nosuchdict' not found"),
    ],
)
def test_a_mistyped_layer_or_dictionary_is_refused_before_battery_json(tmp_path, bad, said):
    """Issue 15: the concepts are planned before battery.json is written, so a mistyped argument
    leaves nothing behind and the corrected rerun is not refused as 'other settings'."""
    from click.testing import CliRunner

    from steerlab.cli import get_cli

    out = tmp_path / "out"
    res = CliRunner().invoke(get_cli(), ["steerability", "--quick", "-C", "loudness", *bad, "-o", str(out)])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert said in res.output and len(res.output.strip().splitlines()) == 1  # no "concept loudness -> ..." line
    assert not out.exists()


def test_a_rerun_removes_the_temporaries_a_killed_write_left(tiny_battery):
    """Issue 15: kill -9 during the final writes left ``.report.html.<random>.html`` behind for
    good. A rerun (resume) of the battery removes its writer's temporaries, in the battery's
    folder and its concepts' (the old name form and the marked one), and no user dotfile."""
    from steerlab.artifacts import TEMP_MARK
    from steerlab.battery.run import run_battery

    out, _ = tiny_battery
    stale = [
        out / ".report.html.hgw_l16c.html",  # the name the issue found (before TEMP_MARK)
        out / f".summary.csv.{TEMP_MARK}ab_cd123.csv",
        out / "note" / f".results.jsonl.{TEMP_MARK}x1y2z3w4.jsonl",
        out / "note" / f".verdicts.json.{TEMP_MARK}q9r8s7t6.json",
    ]
    mine = [out / ".keep", out / ".notes.abcdefgh.txt", out / "note" / ".report.html"]
    for p in stale + mine:
        p.write_bytes(b"")
    toy = _ToyPlugin()
    plugins.register(toy, name="toy_battery")
    try:
        run_battery(["note", "onset"], "toy_battery_codec", out, True, config_file=out.parent / "tiny.toml")
    finally:
        plugins.unregister(toy)
    assert [p.name for p in stale if p.exists()] == []
    assert all(p.exists() for p in mine)
    for p in mine:
        p.unlink()
    assert [p.name for p in out.rglob(f"*{TEMP_MARK}*")] == []


def test_the_best_add_strength_names_its_unit(tiny_battery):
    """Issue 15: "best add" mixed RMS-relative strengths (ablate/subtract/reverse) and calibrated
    multiples (reverse_calibrated) unmarked; each row, summary.csv and the page name the unit."""
    import csv

    out, doc = tiny_battery
    rows = [v for t in doc["concepts"] for v in t["verdicts"]]
    assert {(v["removal"], v["best_add_strength_unit"]) for v in rows} == {
        ("ablate", "rms"), ("subtract", "rms"), ("reverse", "rms"), ("reverse_calibrated", "calibrated")
    }  # fmt: skip
    with open(out / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["removal"], r["best_add_strength_unit"]) for r in table] == [
        (v["removal"], v["best_add_strength_unit"]) for v in rows
    ]
    page = (out / "report.html").read_text()
    cal = next(v for v in rows if v["removal"] == "reverse_calibrated" and v["best_add_strength"] is not None)
    assert "best add (unit)" in page and f"{cal['best_add_strength']:.3g} × pairs’ diff" in page
    assert "× RMS" in page
