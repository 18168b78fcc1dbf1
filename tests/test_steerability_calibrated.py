"""The battery's calibrated raise and lower (steerlab.battery.calibrated, pre-registered in
docs/steerability.md): the calibration measured on planted activations, the null calibrated by the
difference of means, and on ``logspec_24khz`` (a gain is the constant vector of its layer, by
construction: docs/logspec.md) the loudness pair's difference of means at calibrated strength 1
reproduces the pair's own +6.02 dB within 1 dB both ways, and 0.5 half of it; the other operations'
rows are unchanged by the calibrated ones."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import battery_toml

from steerlab.battery import calibrated, plan
from steerlab.battery.calibrated import CALIBRATED_STRENGTHS, calibration, projection_difference


def _planted(rng, n_clips=3, frames=40, channels=32, span=(10, 30), amount=2.5):
    """Clips of noise, and the same clips with ``amount * e`` added on ``span`` only (``e`` a unit
    vector): the pairs differ along ``e`` by exactly ``amount`` on the span, by 0 elsewhere."""
    e = rng.standard_normal(channels)
    e /= np.linalg.norm(e)
    without = [rng.standard_normal((frames, channels)) for _ in range(n_clips)]
    with_ = []
    for f in without:
        g = f.copy()
        g[span[0] : span[1]] += amount * e
        with_.append(g)
    return e, without, with_


def test_calibration_is_the_planted_mean_difference_on_the_span():
    rng = np.random.default_rng(0)
    e, without, with_ = _planted(rng)
    span = (10, 30)
    # the difference of means is over every frame: half of them hold the change, so it is 1.25 e,
    # but along its unit direction the pairs differ by the planted 2.5 on the span
    from steerlab.partials.directions import diff_of_means

    dm = diff_of_means(without, with_)
    assert np.linalg.norm(dm) == pytest.approx(1.25, rel=1e-9)
    cal = calibration("diffmeans", dm, without, with_, span, layer_rms_norm=4.0)
    assert cal["value"] == pytest.approx(2.5, rel=1e-9) and cal["source"] == "own"
    assert cal["rms_relative"] == pytest.approx(2.5 / 4.0, rel=1e-9)
    assert cal["strengths"] == [0.5, 1.0, 2.0] and cal["span_frames"] == [10, 30]
    # scale and sign: the direction's norm does not matter, its sign does
    assert projection_difference(-7 * dm, without, with_, span) == pytest.approx(-2.5, rel=1e-9)
    # over every frame the same pairs differ by half as much
    assert projection_difference(dm, without, with_, None) == pytest.approx(1.25, rel=1e-9)
    # a direction orthogonal to the change measures none of it
    o = rng.standard_normal(len(e))
    o -= (o @ e) * e
    assert abs(projection_difference(o, without, with_, span)) < 1e-9


def test_the_null_takes_the_difference_of_means_calibration():
    rng = np.random.default_rng(1)
    e, without, with_ = _planted(rng, channels=256)
    g = rng.standard_normal(len(e))
    cal = calibration("random", g, without, with_, (10, 30), layer_rms_norm=16.0)
    assert cal["source"] == "diffmeans" and cal["value"] == pytest.approx(2.5, rel=1e-9)
    # its own projection difference is the planted change's share along it: ~2.5/sqrt(256)
    assert cal["own_value"] == pytest.approx(2.5 * (g @ e) / np.linalg.norm(g), rel=1e-9)
    assert abs(cal["own_value"]) < 0.5


def test_calibrated_ops_are_planned_after_the_others_in_their_own_batches():
    assert plan.BATTERY_OP_ROLE["add_calibrated"] == "without"
    assert plan.BATTERY_OP_ROLE["reverse_calibrated"] == "with"
    assert CALIBRATED_STRENGTHS == (0.5, 1.0, 2.0)  # the pre-registered grid


@pytest.fixture(scope="module")
def logspec_runs(tmp_path_factory):
    """A tiny loudness run on logspec_24khz as the measured model, and the same run with no
    calibrated strengths (the battery before the calibrated ops)."""
    from steerlab.battery.registry import concepts
    from steerlab.battery.runner import run_concept
    from steerlab.partials import build

    d = tmp_path_factory.mktemp("calibrated")
    (d / "tiny.toml").write_text(battery_toml())
    cfg = build(d / "tiny.toml", True)
    c = concepts().get("loudness")
    full = run_concept(c, cfg, d / "full", "logspec_24khz", True)
    mp = pytest.MonkeyPatch()
    mp.setattr(plan, "CALIBRATED_STRENGTHS", ())
    try:
        before = run_concept(c, cfg, d / "before", "logspec_24khz", True)
    finally:
        mp.undo()
    return d, full, before


def _rows(outcome, op, strength=None, method="diffmeans"):
    return [r for r in outcome.rows if r["op"] == op and r["method"] == method and strength in (None, r["strength"])]


def test_logspec_gain_pair_strength_1_reproduces_the_pairs_gain(logspec_runs):
    """Stated before the run: within 1 dB of the pair's 20 log10 2 = 6.02 dB, up and down; 0.5
    gives half of it (the layer is linear in the gain's log), within 1 dB of 3.01 dB."""
    _, full, _ = logspec_runs
    gain = 20 * math.log10(2)
    ups, downs = _rows(full, "add_calibrated", 1.0), _rows(full, "reverse_calibrated", 1.0)
    assert len(ups) == len(downs) == 3
    assert all(abs(r["target"] - gain) < 1.0 for r in ups), [r["target"] for r in ups]
    assert all(abs(r["target"] + gain) < 1.0 for r in downs), [r["target"] for r in downs]
    halves = _rows(full, "add_calibrated", 0.5)
    assert all(abs(r["target"] - gain / 2) < 1.0 for r in halves), [r["target"] for r in halves]
    # the edit's value is strength x the direction's calibration, an absolute strength
    cal = next(p["calibration"] for p in full.directions.values() if p["method"] == "diffmeans")
    assert all(r["strength_mode"] == "absolute" and r["value"] == pytest.approx(cal["value"]) for r in ups)


def test_run_json_records_the_grid_and_every_directions_calibration(logspec_runs):
    d, full, _ = logspec_runs
    run = json.loads((d / "full" / "run.json").read_text())
    assert run["measured"]["grid"]["calibrated_strengths"] == [0.5, 1.0, 2.0]
    cal = run["calibration"]
    assert cal["strengths"] == [0.5, 1.0, 2.0] and set(cal["ops"]) == {"add_calibrated", "reverse_calibrated"}
    dirs = cal["directions"]
    assert set(dirs) == set(full.directions)
    dm = next(v for v in dirs.values() if v["method"] == "diffmeans")
    null = next(v for v in dirs.values() if v["method"] == "random")
    # the loudness pair differs by ln 2 on every bin holding sound (docs/logspec.md): along the
    # unit difference of means that is at most ln 2 sqrt(2049) = 31.4 nats
    assert 0.5 * math.log(2) * math.sqrt(2049) < dm["value"] <= math.log(2) * math.sqrt(2049) + 1e-6
    assert null["source"] == "diffmeans" and null["value"] == dm["value"] and abs(null["own_value"]) < dm["value"] / 5


def test_the_other_ops_rows_are_those_of_the_battery_without_calibrated_ops(logspec_runs):
    _, full, before = logspec_runs
    skip = ("key", "config_hash")
    mine = [
        {k: v for k, v in r.items() if k not in skip} for r in full.rows if r["op"] not in calibrated.CALIBRATED_OPS
    ]
    theirs = [{k: v for k, v in r.items() if k not in skip} for r in before.rows]
    assert len(before.rows) == 2 * 3 * 4 and len(full.rows) == 2 * 3 * (4 + 6)
    assert mine == theirs  # every field, floats compared exactly


def test_calibrated_verdicts_stand_beside_the_others(logspec_runs):
    from steerlab.battery.verdicts import table, verdicts

    _, full, before = logspec_runs
    vs = verdicts(full.concept, full.rows, 100, 0)
    assert {v.removal for v in vs} == {"ablate", "subtract", "reverse", "reverse_calibrated"}
    cal = [v for v in vs if v.removal == "reverse_calibrated"]
    assert all(v.best_add_strength in CALIBRATED_STRENGTHS for v in cal)
    assert all(v.best_remove is not None and v.best_remove.startswith("reverse_calibrated") for v in cal)
    old = [v for v in vs if v.removal != "reverse_calibrated"]
    assert old == verdicts(before.concept, before.rows, 100, 0)
    t = table(full.concept, vs, full.plans)
    assert "diffmeans/reverse_calibrated" in t["validation"]
    row = next(r for r in t["verdicts"] if r["removal"] == "reverse_calibrated" and r["method"] == "diffmeans")
    assert row["null_pass_share"] is not None and row["validation"] is not None
