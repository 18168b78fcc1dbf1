"""No null without a reason in scores.json (issue 10, new-user defects 8-10): every ``null`` a run
records has a sibling that says why (``K_reason`` beside ``K``, or the record's own ``reason`` /
``unresolved``), or is absent. Walked over the scores.json of several kinds of run: a normal one, a
1-sample input, no target, the quantized path, and a streamed input whose span crosses chunk
boundaries; and the CLI's summary line names every null score with its reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from steerlab import api, runner
from steerlab.interventions import Span, Strength, channel_direction
from steerlab.schema import unexplained_nulls as nulls_without_reason

SR = 24_000


def test_the_walker_finds_a_null_without_reason_and_accepts_one_with():
    """The check itself: it must fail on the defects reported (n_q, prepared, codes_changed_share)."""
    assert nulls_without_reason({"n_q": None, "a": [{"prepared": None}], "b": {"x": 1}}) == ["n_q", "a[0].prepared"]
    assert (
        nulls_without_reason(
            {
                "n_q": None,
                "n_q_reason": "continuous path",
                "t": {"gain_db": None, "unresolved": "too short"},
                "band_reason": None,
            }
        )
        == []
    )
    assert nulls_without_reason({"n_q": None, "n_q_reason": ""}) == ["n_q"]  # an empty reason is none


def _write(path, x, sr=SR):
    sf.write(path, np.asarray(x, dtype=np.float32).T, sr, subtype="FLOAT")
    return path


def _tone(seconds, f=300.0, sr=SR, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    return np.stack([0.3 * np.sin(2 * np.pi * f * (1 + 0.5 * c) * t) for c in range(channels)])


def _spec(model, path=None, n_q=None, span=Span(0.0, None, 240, 240)):
    info = api.layers(model).get("first_conv")
    return api.InterventionSpec(
        layer=info.name,
        direction=channel_direction(3, info),
        intervention="add",
        strength=Strength(0.5),
        span=span,
        path=path,
        n_q=n_q,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """scores.json of five kinds of run (the embedded model), by name."""
    model = api.load_model()
    tmp = tmp_path_factory.mktemp("nulls")
    one_s = _write(tmp / "one_s.wav", _tone(1.0))
    one_sample = _write(tmp / "one_sample.wav", np.full((1, 1), 0.5))
    long = _write(tmp / "long.wav", _tone(5.0, sr=44_100, channels=2), sr=44_100)
    out = {}
    out["normal"] = runner.intervene_files(model, [one_s], _spec(model), tmp / "a", [440.0])[0]
    out["one_sample"] = runner.intervene_files(model, [one_sample], _spec(model), tmp / "b", [440.0])[0]
    out["no_target"] = runner.intervene_files(model, [one_s], _spec(model), tmp / "c")[0]
    out["quantized"] = runner.intervene_files(model, [one_s], _spec(model, "quantized"), tmp / "d", [440.0])[0]
    out["streamed"] = runner.intervene_files(
        model, [long], _spec(model, span=Span(1.5, 3.5, 240, 240)), tmp / "e", [440.0], chunk_s=2.0
    )[0]
    # what was written is what was returned
    assert json.loads((tmp / "e" / "long" / "scores.json").read_text())["span_frames"] == out["streamed"]["span_frames"]
    return out


@pytest.mark.parametrize("name", ["normal", "one_sample", "no_target", "quantized", "streamed"])
def test_every_null_in_scores_json_has_a_reason(runs, name):
    assert nulls_without_reason(runs[name]) == []


def test_the_runs_do_hold_the_nulls_the_walker_must_explain(runs):
    """The walk is not vacuous: the runs record nulls of each kind reported, each with its reason."""
    normal, one, none, quant = runs["normal"], runs["one_sample"], runs["no_target"], runs["quantized"]
    assert normal["n_q"] is None and "bypasses the quantizer" in normal["n_q_reason"]
    assert normal["codes_changed_share"] is None and normal["codes_changed_share_reason"]
    assert normal["prepared"] is None and "no prepare step" in normal["prepared_reason"]
    assert quant["n_q"] == 8 and 0.0 <= quant["codes_changed_share"] <= 1.0  # all 8 codebooks of the embedded codec
    assert "n_q_reason" not in quant and "codes_changed_share_reason" not in quant
    s1 = one["scores"]["spectral"]
    for key in (
        "lsd_db",
        "centroid_shift_hz",
        "flatness_shift",
        "bandwidth_shift_hz",
        "mrstft",
        "concentration",
        "offband_lsd_db",
    ):
        assert s1[key] is None and s1[f"{key}_reason"], key
    assert one["fidelity"]["si_sdr_db"] is None and one["fidelity"]["reason"]
    sn = none["scores"]["spectral"]
    assert sn["concentration"] is None and "no target" in sn["concentration_reason"]
    assert sn["offband_lsd_db"] is None and sn["lsd_db"] > 0  # not lsd again under another name
    s = normal["scores"]["spectral"]
    assert s["concentration"] is not None and not any(k.endswith("_reason") for k in s)  # reasons only with nulls


def test_the_summary_line_names_every_null_score_with_its_reason(runs):
    from steerlab.cli.intervene import _summary_line

    one = _summary_line(runs["one_sample"])
    s = runs["one_sample"]["scores"]["spectral"]
    for name, key in (
        ("lsd", "lsd_db"),
        ("centroid shift", "centroid_shift_hz"),
        ("mrstft", "mrstft"),
        ("concentration", "concentration"),
    ):
        assert name in one and s[f"{key}_reason"] in one, name
    assert "lsd 0" not in one and "440 Hz not scored" in one  # no number from a 1-sample spectrum
    assert f"fidelity not measured ({runs['one_sample']['fidelity']['reason']})" in one
    none = _summary_line(runs["no_target"])
    assert "concentration, off-band lsd not scored (no target frequency given" in none
    normal = _summary_line(runs["normal"])
    assert "not scored" not in normal and "not measured" not in normal and "model fidelity SI-SDR" in normal


def test_analyze_report_explains_every_null_of_coverage_and_reconstruction(tmp_path):
    """New-user defect: ``analyze --quick`` on a small batchtopk dictionary wrote ``m_to_reach``
    nulls (a tolerance never reached) and ``mean_best_cosine_covered`` null (no vector covered)
    without reasons, and printed "dictionary None". 8 directions in a 32-channel layer cannot
    reach a relative error of 1e-6, and no vector reaches cosine 0.9999 with one of them."""
    from click.testing import CliRunner

    from steerlab.cli import get_cli
    from steerlab.schema import unexplained_nulls

    cli = get_cli()
    feats = tmp_path / "F"
    common = ["-l", "first_conv", "--data", "synth:2", "--epochs", "1", "--subsample", "0.05"]
    learn = ["learn", "features", *common, "--architecture", "batchtopk", "--size", "8", "--k", "2", "-o", str(feats)]
    res = CliRunner().invoke(cli, learn)
    assert res.exit_code == 0, res.output
    out = tmp_path / "R"
    analyze = ["analyze", str(feats), "--data", "synth:2", "-o", str(out), "--quick", "--max-vectors", "2000"]
    res = CliRunner().invoke(cli, [*analyze, "--only", "a,b", "--threshold", "0.9999", "--top-n", "4"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "report.json").read_text())
    assert unexplained_nulls(doc) == []
    reach = doc["analyses"]["b_reconstruction"]["summary"]["m_to_reach"]
    dictionary = reach["dictionary (most used first)"]
    assert dictionary["error<=1e-06"] is None  # the walk is not vacuous: 8 of 32 channels
    assert dictionary["error<=1e-06_reason"].startswith("not reached within the 8 directions tried")
    cov = doc["analyses"]["a_coverage"]["summary"]
    assert cov["share_covered"] == 0.0 and cov["mean_best_cosine_covered"] is None
    assert "no vector is covered at threshold 0.9999" in cov["mean_best_cosine_covered_reason"]
    assert "None" not in res.stdout and "dictionary not reached within 8" in res.stdout


def test_survey_report_explains_every_null(tmp_path):
    """``steerlab survey`` (tiny settings): every null of report.json has its reason, and the walk is
    not vacuous: the battery column is null ("not run") with its reason when no folder is given."""
    from click.testing import CliRunner

    from steerlab.cli import get_cli
    from steerlab.schema import unexplained_nulls

    out = tmp_path / "S"
    tiny = ["--clips", "2", "--max-vectors", "300", "--epochs", "1", "--pairs", "4", "--draws", "3"]
    res = CliRunner().invoke(get_cli(), ["survey", "--quick", *tiny, "-l", "first_conv", "-C", "onset", "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "report.json").read_text())
    assert unexplained_nulls(doc) == []
    cell = doc["rows"][0]["battery"]["onset"]
    assert cell["verdict"] == "not run" and cell["pass_share"] is None and cell["reason"]
