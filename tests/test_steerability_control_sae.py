"""The battery's positive controls run the ``sae`` method too (issue 11 section 2): when the run
gives the measured model a dictionary, each control learns its own on the synthetic corpus (partials'
recipe, here a tiny one), its ``sae`` rows are swept like the other methods, and the measured
model's ``sae`` verdicts are marked validated or not validated from them, never "unchecked"."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

CONTROL, LAYER = "logspec_24khz", "log_magnitude"
TINY = """
[grid]
strengths = [1.0]
subtract_strengths = [1.0]
methods = {methods}
paths = ["continuous"]
[stimuli]
train_seeds = 2
test_seeds = 2
[controls]
positive_models = ["logspec_24khz"]
dictionary_size = 16
dictionary_k = 4
dictionary_clips = 2
dictionary_vectors = 256
dictionary_steps = 20
[run]
max_batch = 4
probe_frames = 16
bootstrap = 100
"""


def _run(cfg: Path, out: Path, notes: list[str]) -> dict:
    from steerlab.battery.run import run_battery

    return run_battery(
        ["brightness", "loudness"],
        "tiny_encodec_24khz",
        out,
        True,
        ["latent"],
        notify=notes.append,
        config_file=cfg,
        dictionaries=["latent-features"],
    )


@pytest.fixture(scope="module")
def sae_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("ctrl_sae")
    (d / "c.toml").write_text(TINY.format(methods='["sae", "random"]'))
    notes: list[str] = []
    doc = _run(d / "c.toml", d / "out", notes)
    return d, doc, notes


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "loudness" / "results.jsonl").read_text().splitlines()]


def test_the_control_learns_its_own_dictionary_and_runs_sae(sae_run):
    d, _, notes = sae_run
    from steerlab import dictionary as dictionary_io
    from steerlab.artifacts import file_sha256

    # one dictionary for both concepts (both vouched for by the control), in the battery's folder
    assert notes.count(f"learning an SAE dictionary on positive control {CONTROL} {LAYER}") == 1
    rows = _rows(d / "out")
    mine = [r for r in rows if r["model"] == CONTROL and r["method"] == "sae"]
    # 2 pairs x 11 settings: 10 of every method and sae_ablate (the sae method's removal in code space)
    assert len(mine) == 2 * 11 and {r["model_role"] for r in mine} == {"positive_control"}
    assert sum(r["op"] == "sae_ablate" for r in mine) == 2
    assert all(r["target"] is not None for r in mine)
    directions = json.loads((d / "out" / "loudness" / "verdicts.json").read_text())["verdicts"]
    assert any(v["model"] == CONTROL and v["method"] == "sae" for v in directions)
    run = json.loads((d / "out" / "loudness" / "run.json").read_text())
    recipe = run["measured"]["control_dictionary"]
    assert (recipe["size"], recipe["k"], recipe["clips"], recipe["vectors"], recipe["steps"]) == (16, 4, 2, 256, 20)
    rec = run["control_dictionaries"][f"{CONTROL}:{LAYER}"]
    assert rec["folder"] == f"../control_dictionaries/{CONTROL}__{LAYER}"
    other = json.loads((d / "out" / "brightness" / "run.json").read_text())["control_dictionaries"]
    assert other == run["control_dictionaries"]
    cached = dictionary_io.load(d / "out" / "loudness" / rec["folder"])
    assert (cached.layer, cached.config.size, cached.config.k) == (LAYER, 16, 4)
    assert rec["data_sha256"] == cached.data_hash and rec["recipe"]["steps"] == 20
    assert rec["sae_weights_sha256"] == file_sha256(d / "out" / "loudness" / rec["folder"] / "weights.safetensors")


def test_sae_validation_is_computed_from_the_controls_sae_verdicts(sae_run):
    d, doc, _ = sae_run
    table = next(t for t in doc["concepts"] if t["concept"] == "loudness")
    vs = table["verdicts"]
    csv_rows = list(csv.DictReader((d / "out" / "summary.csv").open()))
    removals = {v["removal"] for v in vs if v["method"] == "sae" and v["model_role"] == "main"}
    assert removals == {"ablate", "subtract", "reverse", "reverse_calibrated", "sae_ablate"}
    for removal in removals:
        ctrl = [v for v in vs if v["model"] == CONTROL and v["method"] == "sae" and v["removal"] == removal]
        assert len(ctrl) == 1
        # the null on the control: the calibrated removal is judged over every removal's null, the
        # others among themselves (steerlab.battery.verdicts._validation)
        nulls = [v for v in vs if v["model"] == CONTROL and v["method"] == "random"]
        if removal != "reverse_calibrated":
            nulls = [v for v in nulls if v["removal"] != "reverse_calibrated"]
        want = "validated" if ctrl[0]["steerable"] and not any(v["steerable"] for v in nulls) else "not validated"
        status = table["validation"][f"sae/{removal}"]
        assert status["status"] == want and status["by_control"][CONTROL]["total"] == 1
        main = [v for v in vs if v["model_role"] == "main" and v["method"] == "sae" and v["removal"] == removal]
        assert [v["validation"] for v in main] == [want]
        assert main[0]["control"] == {CONTROL: ctrl[0]["steerable"]}
        assert [
            r["validation"]
            for r in csv_rows
            if r["concept"] == "loudness"
            and r["model_role"] == "main"
            and r["method"] == "sae"
            and r["removal"] == removal
        ] == [want]
    assert "unchecked" not in (d / "out" / "summary.csv").read_text()


def test_resuming_reuses_the_cached_dictionary_and_rows(sae_run):
    """A run cut after its controls' dictionaries were cached (its directions and half its rows
    lost) learns none again and ends with the uninterrupted run's rows and verdicts."""
    import shutil

    d, doc, _ = sae_run
    out = d / "resumed"
    shutil.copytree(d / "out", out)
    for concept in ("brightness", "loudness"):
        (out / concept / "directions.safetensors").unlink()
    results = out / "loudness" / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[: len(lines) // 2]))
    weights = out / "control_dictionaries" / f"{CONTROL}__{LAYER}" / "weights.safetensors"
    before = weights.stat().st_mtime_ns
    notes: list[str] = []
    again = _run(d / "c.toml", out, notes)
    assert not any(n.startswith("learning an SAE dictionary") for n in notes)
    assert weights.stat().st_mtime_ns == before
    assert sorted(map(json.dumps, _rows(out))) == sorted(map(json.dumps, _rows(d / "out")))
    assert [t["validation"] for t in again["concepts"]] == [t["validation"] for t in doc["concepts"]]


def test_the_recipe_enters_the_hash_only_when_the_controls_run_sae(tmp_path):
    from steerlab.battery.registry import concepts
    from steerlab.battery.runner import prepare
    from steerlab.partials import build

    c = concepts().get("loudness")
    (tmp_path / "a.toml").write_text(TINY.format(methods='["diffmeans", "random"]'))
    (tmp_path / "b.toml").write_text(TINY.format(methods='["diffmeans", "random"]').replace("dictionary_size = 16", ""))
    hashes = []
    for f in ("a.toml", "b.toml"):
        _, chash, measured, _ = prepare(c, build(tmp_path / f, True), "tiny_encodec_24khz", True, ["latent"])
        assert "control_dictionary" not in measured
        hashes.append(chash)
    assert hashes[0] == hashes[1]  # the dictionary recipe is no part of a run without sae
    (tmp_path / "s.toml").write_text(TINY.format(methods='["sae", "random"]'))
    cfg = build(tmp_path / "s.toml", True)
    _, _, without_dict, _ = prepare(c, cfg, "tiny_encodec_24khz", True, ["latent"])
    assert "control_dictionary" not in without_dict  # sae asked for, but no dictionary given: nothing to validate
    _, _, with_dict, _ = prepare(c, cfg, "tiny_encodec_24khz", True, ["latent"], ["latent-features"])
    assert with_dict["control_dictionary"]["size"] == 16


@pytest.mark.parametrize("name", ["brightness", "note", "loudness"])
def test_a_non_finite_decode_scores_none_and_fails_the_rule(name):
    """A concentrated direction added to logspec's log-magnitudes overflows its exp (measured above:
    4 of brightness's 20 control sae rows); such a decode has no measure (librosa refuses it), so it
    scores None, fails the rule, and leaves the other rows of its batch as they are."""
    import numpy as np

    from steerlab.battery.registry import concepts

    c = concepts().get(name)
    spec = c.pairs(24_000, [0], 0.1, True)[0]
    w, x = c.render(spec)
    y = x.copy()
    y[1000:1010] = np.inf
    bad = c.score(w, y, spec)
    assert bad == {"target": None, "damage": None, "non_finite_decode": True}
    assert not c.rule.passes(bad, "with")
    mixed = c.score_many([("w", w, y, spec), ("w", w, x, spec)], {})
    assert mixed == [bad, c.score(w, x, spec)] and mixed[1]["target"] is not None


def test_the_battery_scores_a_non_finite_decode_none_for_any_concept():
    """The battery, not each concept, gives a non-finite decode its None score: a plugin's concept
    whose scorer would crash on it (as librosa does) is never called with it, and the finite rows
    of the same batch keep the concept's own values."""
    from types import SimpleNamespace

    import numpy as np

    from steerlab.battery.concept import NON_FINITE
    from steerlab.battery.registry import concepts
    from steerlab.battery.runner import _key, _scores

    spec = concepts().get("loudness").pairs(24_000, [0], 0.1, True)[0]
    seen = []

    class Plugin:  # no score_many, a scorer that refuses non-finite input
        def score(self, baseline, patched, pair):
            assert np.isfinite(patched).all(), "the battery handed a non-finite decode to the concept"
            seen.append(pair)
            return {"target": float(np.sum(patched - baseline)), "damage": 0.0}

    base = {("continuous", _key(spec), "without"): (np.zeros((1, 100)), None)}
    it = SimpleNamespace(path="continuous", pair=spec, role="without")
    bad = np.ones((1, 100))
    bad[0, 5] = np.nan
    out = _scores(SimpleNamespace(concept=Plugin()), [(it, np.ones((1, 100))), (it, bad)], base, {})
    assert out == [{"target": 100.0, "damage": 0.0}, NON_FINITE] and len(seen) == 1
