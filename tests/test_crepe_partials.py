"""``steerlab partials`` on a model whose output is a pitch salience (CREPE tiny), with controls.

The batch test scores a model without a decoder through the scorer its plugin registers for
its output kind (``pitch_salience``): gain at the target's bins in dB, concentration of the
salience change there, and the salience off-band distance (docs/partials.md, "Models whose
output is not a sound"). The oracle is the ideal edit (the exact target partial added to or
removed from the waveform) scored through the same model's output. Reduced grid: about 20 s.
"""

from __future__ import annotations

import json

import pytest
from conftest import import_or_skip

import_or_skip("steerlab.builtins.crepe")

TOML = """
[grid]
layers = ["conv1"]
targets_hz = [300.0]
densities = [1]
families = ["tone", "inharmonic"]
strengths = [0.3, 1.0]
subtract_strengths = [1.0]
methods = ["diffmeans", "random"]
[stimuli]
duration_s = 0.25
band_high_hz = 7200.0
train_seeds = 3
test_seeds = 3
[controls]
positive_models = ["filterbank_24khz"]
[run]
max_batch = 16
probe_frames = 64
examples = 1
bootstrap = 100
"""


@pytest.fixture(scope="module")
def crepe_run(tmp_path_factory):
    from steerlab import partials

    d = tmp_path_factory.mktemp("crepe_partials")
    (d / "c.toml").write_text(TOML.replace("[run]", '[run]\nmodel = "crepe_tiny_16khz"'))
    cfg = partials.build(d / "c.toml")
    return partials.run(cfg, d / "run")


def test_partials_runs_on_a_salience_model_with_controls_and_the_oracle(crepe_run):
    outcome, out = crepe_run
    rows = outcome.rows
    crepe = [r for r in rows if r["model"] == "crepe_tiny_16khz"]
    control = [r for r in rows if r["model"] == "filterbank_24khz"]
    assert crepe and control, "both the salience model and its audio positive control ran"
    assert {r["output_kind"] for r in crepe} == {"pitch_salience"}
    assert {r["output_kind"] for r in control} == {"audio"}
    # scored in salience space: every row has a gain, and an off-band distance in dB
    assert all(r["gain_db"] is not None and r["offband_db"] is not None and r["offband_lsd_db"] is None for r in crepe)
    # the null is steerable nowhere; the control's difference of means passes on the mixture
    assert not any(v.steerable for v in out["verdicts"] if v.method == "random")
    fb = [
        v
        for v in out["verdicts"]
        if v.model == "filterbank_24khz" and v.family == "inharmonic" and v.method == "diffmeans"
    ]
    assert fb and all(v.steerable for v in fb)
    # validation is per method, from the audio control, and names it
    val = out["controls"]["validation"]
    assert "filterbank_24khz" in val["diffmeans/ablate"]["by_control"]
    # the oracle, through the same CREPE: a pure tone over silence passes the salience rule
    orc = {(o["model"], o["family"]): o for o in out["controls"]["oracle_units"]}
    tone = orc[("crepe_tiny_16khz", "tone")]
    assert tone["output_kind"] == "pitch_salience"
    assert tone["steerable"] and tone["pass_share"] == 1.0
    assert tone["median_gain_db"] > 20 and tone["median_concentration"] > 0.8
    assert tone["median_offband_db"] == 0.0  # silence holds no pitch off the target
    # ... while a partial added to a one-partial mixture moves CREPE's (monophonic) pitch
    # away from the context partial: the change is not concentrated at the target (a finding)
    mix = orc[("crepe_tiny_16khz", "inharmonic")]
    assert mix["median_concentration"] < 0.5 and not mix["steerable"]
    # examples of a salience model are arrays [bins, frames], the audio control's are WAVs
    ex = list((outcome.folder / "examples").iterdir())
    assert {p.suffix for p in ex} == {".npy", ".wav"}
    import numpy as np

    assert all(np.load(p).shape[0] == 360 for p in ex if p.suffix == ".npy")
    run = json.loads((outcome.folder / "run.json").read_text())
    assert [m["name"] for m in run["models"]][:1] == ["crepe_tiny_16khz"]


def test_salience_targets_outside_the_bins_are_refused(tmp_path):
    from steerlab import partials

    (tmp_path / "c.toml").write_text(
        TOML.replace("targets_hz = [300.0]", "targets_hz = [3000.0]").replace(
            "[run]", '[run]\nmodel = "crepe_tiny_16khz"'
        )
    )
    cfg = partials.build(tmp_path / "c.toml")
    with pytest.raises(partials.ConfigError, match="outside the output bins of crepe_tiny_16khz"):
        partials.run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_cli_family_option_and_a_missing_renderer_are_one_line_errors(tmp_path, monkeypatch):
    import importlib.util

    from click.testing import CliRunner

    from steerlab import cli as cli_module

    main = cli_module.get_cli()
    r = CliRunner().invoke(main, ["partials", "-m", "crepe_tiny_16khz", "-f", "nope", "-o", str(tmp_path / "a")])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "unknown grid.families 'nope'" in r.output
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "tinysoundfont" else real(n, *a))
    (tmp_path / "c.toml").write_text(TOML)
    r = CliRunner().invoke(
        main,
        [
            "partials",
            "-m",
            "crepe_tiny_16khz",
            "-f",
            "instrument",
            "-c",
            str(tmp_path / "c.toml"),
            "-o",
            str(tmp_path / "b"),
        ],
    )
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "steerlab[render]" in r.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_salience_offband_distance_counts_damage_to_held_pitches_only():
    """``offband_db``: RMS of 10 log10(p / b) over cells farther than 100 cents from the target
    where the baseline holds a pitch (salience >= 0.5); 0 where it holds none."""
    import numpy as np

    from steerlab.builtins.crepe.salience import GUARD_CENTS, score_salience

    bins = 32.70 * 2.0 ** (np.arange(360) * 20 / 1200)
    t = int(np.argmin(np.abs(bins - 300.0)))
    b = np.full((360, 4), 0.01)
    p = b.copy()
    p[t - 2 : t + 3] = 0.9  # a new peak at the target, nothing held off it
    r = score_salience(b, p, bins, 15.625, 0.032, [bins[t]])["targets"][0]
    assert r["offband_db"] == 0.0 and r["offband_cells"] == 0 and r["concentration"] > 0.99
    c = t - 40  # a held pitch 800 cents below the target, halved by the patch
    b[c] = p[c] = 0.8
    p[c] = 0.4
    r = score_salience(b, p, bins, 15.625, 0.032, [bins[t]])["targets"][0]
    assert r["offband_cells"] == 4 and r["offband_db"] == pytest.approx(10 * np.log10(2), rel=1e-9)
    # a held pitch within the guard (80 cents away) is not off-band
    b2, p2 = np.full((360, 4), 0.01), np.full((360, 4), 0.01)
    b2[t + 4] = 0.8
    assert 4 * 20 < GUARD_CENTS
    assert score_salience(b2, p2, bins, 15.625, 0.032, [bins[t]])["targets"][0]["offband_cells"] == 0
