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

pytest.importorskip("steerlab_crepe")

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
    assert all(r["gain_db"] is not None and r["offband_db"] is not None and r["offband_lsd_db"] is None
               for r in crepe)
    # the null is steerable nowhere; the control's difference of means passes on the mixture
    assert not any(v.steerable for v in out["verdicts"] if v.method == "random")
    fb = [v for v in out["verdicts"] if v.model == "filterbank_24khz" and v.family == "inharmonic"
          and v.method == "diffmeans"]
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

    (tmp_path / "c.toml").write_text(TOML.replace("targets_hz = [300.0]", "targets_hz = [3000.0]")
                                     .replace("[run]", '[run]\nmodel = "crepe_tiny_16khz"'))
    cfg = partials.build(tmp_path / "c.toml")
    with pytest.raises(partials.ConfigError, match="outside the output bins of crepe_tiny_16khz"):
        partials.run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
