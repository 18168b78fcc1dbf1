"""steerlab partials end to end on a tiny grid: controls, outputs, bad input, resume after kill -9."""

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
from click.testing import CliRunner

TINY = """
[grid]
layers = ["encoder.5.elu", "latent"]
targets_hz = [600.0]
densities = [2]
strengths = [0.3, 1.0]
subtract_strengths = [1.0]
methods = ["diffmeans", "probe", "random"]
[stimuli]
duration_s = 0.25
train_seeds = 2
test_seeds = 3
[controls]
positive_models = ["filterbank_24khz"]
positive_densities = [1]
[run]
max_batch = 8
probe_frames = 32
examples = 1
bootstrap = 200
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from steerlab import partials

    d = tmp_path_factory.mktemp("partials")
    (d / "tiny.toml").write_text(TINY)
    cfg = partials.build(d / "tiny.toml")
    outcome, out = partials.run(cfg, d / "run")
    return cfg, outcome, out


def test_outputs_and_provenance(tiny_run):
    cfg, outcome, out = tiny_run
    folder = outcome.folder
    for name in ("run.json", "results.jsonl", "summary.csv", "report.html", "directions.safetensors"):
        assert (folder / name).is_file(), name
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    assert len(rows) == len({r["key"] for r in rows}) == len(outcome.rows)
    r = rows[0]
    for field in (
        "config_hash",
        "weights_sha256",
        "versions",
        "stimulus",
        "strength",
        "path",
        "method",
        "op",
        "gain_db",
        "concentration",
        "offband_lsd_db",
        "run_seed",
    ):
        assert field in r
    quantized = [r for r in rows if r["path"] == "quantized"]
    assert quantized and all(0.0 <= r["codes_changed_share"] <= 1.0 for r in quantized)
    assert {r["model"] for r in rows} == {"tiny_encodec_24khz", "filterbank_24khz"}
    # 2 layers x 3 methods x 2 paths x 3 held-out x (2 add + 1 subtract + ablate), plus the control
    main = [r for r in rows if r["model_role"] == "main"]
    assert len(main) == 2 * 3 * 2 * 3 * 4
    # every method of the run ran on the control, not only the difference of means
    assert {r["method"] for r in rows if r["model_role"] == "positive_control"} == {"diffmeans", "probe", "random"}
    html = (folder / "report.html").read_text()
    assert "positive control" in html and "null (random)" in html and "ρ(score, share)" in html
    assert html.count("data:image/png;base64,") >= 4 and "data:audio/wav;base64," in html
    import csv

    summary = list(csv.DictReader(open(folder / "summary.csv")))
    assert "threshold_min_gain_db" in summary[0] and len(summary) == len(out["verdicts"])
    # each verdict row says which removal method it judges and whether its method's control passed
    assert {r["removal"] for r in summary} == {"ablate", "subtract"}
    val = out["controls"]["validation"]
    for r in summary:
        if r["model"] == "tiny_encodec_24khz" and r["method"] != "random":
            st = val[f"{r['method']}/{r['removal']}"]["status"]
            assert r["control_validation"] == st
            assert r["verdict"] == (
                ("steerable" if r["steerable"] == "True" else "not steerable") if st == "validated" else st
            )


def test_null_is_never_steerable_on_any_model(tiny_run):
    _, _, out = tiny_run
    null = [v for v in out["verdicts"] if v.method == "random"]
    assert {v.model for v in null} == {"tiny_encodec_24khz", "filterbank_24khz"}
    assert not any(v.steerable for v in null)


def test_positive_control_steers_on_every_held_out_stimulus(tiny_run):
    """Every learned method, by each removal method, on every held-out stimulus of the control:
    at the verdict's best settings, adding gains a concentrated partial with off-band damage
    under the threshold and removing deletes it likewise. Checked stimulus by stimulus (a median
    would let one bad stimulus of three through)."""
    cfg, outcome, out = tiny_run
    t = cfg.thresholds
    pos = [v for v in out["verdicts"] if v.model_role == "positive_control" and v.method != "random"]
    assert {(v.method, v.removal) for v in pos} == {
        (m, r) for m in ("diffmeans", "probe") for r in ("ablate", "subtract")
    }
    rows = [r for r in outcome.rows if r["model_role"] == "positive_control"]
    for v in pos:
        mine = [r for r in rows if (r["method"], r["target_hz"], r["density"]) == (v.method, v.target_hz, v.density)]
        adds = [r for r in mine if r["op"] == "add" and r["strength"] == v.best_add_strength]
        rem = [
            r
            for r in mine
            if r["op"] == v.removal and (v.removal == "ablate" or f"subtract {r['strength']:g}" == v.best_remove)
        ]
        assert len(adds) == len(rem) == v.n_heldout == cfg.stimuli.test_seeds
        for a in adds:
            assert a["gain_db"] >= t.min_gain_db and a["concentration"] >= t.min_concentration
            assert a["offband_lsd_db"] <= t.max_offband_db
        for r in rem:
            assert -r["gain_db"] >= t.min_loss_db and r["concentration"] >= t.min_concentration
            assert r["offband_lsd_db"] <= t.max_offband_db


def test_positive_control_is_found_steerable(tiny_run):
    """The verdicts themselves, and the validation they give each method and removal."""
    cfg, _, out = tiny_run
    assert out["controls"]["positive_ok"]
    pos = [v for v in out["verdicts"] if v.model_role == "positive_control" and v.method != "random"]
    assert pos and all(v.steerable and v.pass_share >= cfg.thresholds.min_share for v in pos)
    val = out["controls"]["validation"]
    assert {k: v["status"] for k, v in val.items() if not k.startswith("random")} == {
        f"{m}/{r}": "validated" for m in ("diffmeans", "probe") for r in ("ablate", "subtract")
    }


def test_oracle_passes_on_every_unit(tiny_run):
    """The ideal edit (the exact partial added to / removed from the waveform) passes the rule on
    every unit of both models: the rule and the scorer can call a partial steerable."""
    cfg, outcome, out = tiny_run
    from steerlab.partials.verdicts import oracle

    orc = oracle(outcome.plans, cfg.thresholds, {"band_hz": cfg.scoring.band_hz, "n_fft": cfg.scoring.n_fft})
    assert {o["model"] for o in orc} == {"tiny_encodec_24khz", "filterbank_24khz"}
    assert all(o["pass_share"] == 1.0 for o in orc)
    assert out["controls"]["oracle_steerable"] == out["controls"]["oracle_total"] == len(orc)


def test_margins_and_control_separation_are_recorded(tiny_run):
    """Each model's stimuli sit in silent margins set from its layers' receptive fields; the
    control's context partials keep out of the target's band. Both are in every row."""
    _, outcome, _ = tiny_run
    run = json.loads((outcome.folder / "run.json").read_text())
    margins = {m["name"]: m["margin_s"] for m in run["models"]}
    # tiny codec (causal): the latent's receptive field, 2718 samples; filterbank (centred): half of 16385
    assert margins == {"tiny_encodec_24khz": 2718 / 24_000, "filterbank_24khz": 8193 / 24_000}
    rows = [json.loads(line) for line in (outcome.folder / "results.jsonl").read_text().splitlines()]
    for r in rows:
        assert r["stimulus"]["margin_s"] == margins[r["model"]]
        span = r["edit_frames"]
        if r["op"] != "add":  # ablation and the (template-shaped) subtraction act on every frame
            assert span[0] == 0
        else:  # adding acts on the sound only
            assert span[0] == pytest.approx(margins[r["model"]] * r["layer_frame_rate_hz"], abs=1)
    pos = [r for r in rows if r["model_role"] == "positive_control"]
    assert all(r["stimulus"]["min_separation_hz"] > 30.0 for r in pos)


def test_cli_resume_completes_nothing_new(tiny_run, tmp_path):
    from steerlab import cli as cli_module

    cfg, outcome, _ = tiny_run
    cfg_file = outcome.folder.parent / "tiny.toml"
    res = CliRunner().invoke(cli_module.get_cli(), ["partials", "-c", str(cfg_file), "-o", str(outcome.folder)])
    assert res.exit_code == 0, res.output
    assert f"wrote 0 new rows ({len(outcome.rows)} in all)" in res.output
    # thresholds only change verdicts: same folder, same rows, new summary
    res = CliRunner().invoke(
        cli_module.get_cli(), ["partials", "-c", str(cfg_file), "--min-gain-db", "3", "-o", str(outcome.folder)]
    )
    assert res.exit_code == 0 and "wrote 0 new rows" in res.output
    assert "3.0" in (outcome.folder / "summary.csv").read_text().splitlines()[1]


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--layers", "encoder.99.conv"], "unknown layer 'encoder.99.conv'"),
        (["--model", "tiny_encodec"], "unknown model"),
        (["--model", "samplecnn_24khz"], "samplecnn_24khz has no decoder"),
        (["-c", "{toml_nyquist}"], "above the Nyquist frequency"),
        (["-c", "{toml_badkey}"], "Valid keys:"),
        (["-c", "missing.toml"], "config file not found"),
        (["--min-share", "2"], "thresholds.min_share must be a number in (0, 1], got 2.0"),
    ],
)
def test_bad_input_one_line_no_output(tmp_path, args, fragment):
    from steerlab import cli as cli_module

    (tmp_path / "nyq.toml").write_text("[grid]\ntargets_hz = [13000.0]\n")
    (tmp_path / "bad.toml").write_text("[run]\nseeds = 3\n")
    args = [a.format(toml_nyquist=tmp_path / "nyq.toml", toml_badkey=tmp_path / "bad.toml") for a in args]
    out = tmp_path / "out"
    res = CliRunner().invoke(cli_module.get_cli(), ["partials", "--quick", *args, "-o", str(out)])
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], res.output
    assert not out.exists()


def test_folder_of_another_configuration_is_refused(tiny_run):
    from steerlab import cli as cli_module

    _, outcome, _ = tiny_run
    before = (outcome.folder / "results.jsonl").read_bytes()
    res = CliRunner().invoke(cli_module.get_cli(), ["partials", "--quick", "-o", str(outcome.folder)])
    assert res.exit_code == 1, res.output
    # the settings that differ, by name, not the configuration hashes (as steerability's message)
    assert "holds a steerlab partials run of other settings: " in res.output
    assert "quick False (this run: True)" in res.output and "[grid] targets_hz" in res.output
    assert "hash" not in res.output and len(res.output.strip().splitlines()) == 1
    assert (outcome.folder / "results.jsonl").read_bytes() == before


SAE = """
[grid]
layers = ["latent"]
targets_hz = [600.0]
densities = [2]
strengths = [1.0]
subtract_strengths = [1.0]
methods = ["diffmeans", "sae", "random"]
paths = ["continuous"]
[stimuli]
duration_s = 0.2
train_seeds = 2
test_seeds = 2
[controls]
positive_models = []
[run]
probe_frames = 16
examples = 0
bootstrap = 100
"""


def test_sae_feature_direction_end_to_end_with_a_shipped_dictionary(tmp_path):
    """The 'sae' method with the feature dictionary shipped for the embedded codec's latent,
    given by name: the feature whose mean code changes most from without to with is steered like every
    other direction, and its provenance names the dictionary and the feature."""
    from steerlab import cli as cli_module
    from steerlab.api import load_model, resolve_dictionary

    (tmp_path / "sae.toml").write_text(SAE)
    res = CliRunner().invoke(
        cli_module.get_cli(),
        ["partials", "-c", str(tmp_path / "sae.toml"), "--dictionary", "latent-features", "-o", str(tmp_path / "run")],
    )
    assert res.exit_code == 0, res.output
    assert "(unchecked: no positive control ran)" in res.output and ": )" not in res.output  # no empty list
    rows = _rows(tmp_path / "run")
    sae = [r for r in rows if r["method"] == "sae"]
    # add, subtract, ablate and (the sae method's own removal in code space, issue 11) sae_ablate
    assert len(sae) == 2 * 4 and {r["op"] for r in sae} == {"add", "subtract", "ablate", "sae_ablate"}
    assert [r["op"] for r in rows[-2:]] == ["sae_ablate"] * 2  # after every other item
    assert {r["direction_id"] for r in sae} == {sae[0]["direction_id"]}
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["dictionaries"] == {"latent": "latent-features"}
    d = resolve_dictionary("latent-features", load_model("tiny_encodec_24khz")).dictionary
    from steerlab.partials.runner import _load_directions

    vectors, prov, _ = _load_directions(tmp_path / "run", rows[0]["config_hash"])
    p = prov[sae[0]["direction_id"]]
    assert p["source"] == "sae" and p["dictionary_data_hash"] == d.data_hash
    # the chosen feature's decoder direction (signed towards "with"), nothing else
    unit = vectors[sae[0]["direction_id"]] / np.linalg.norm(vectors[sae[0]["direction_id"]])
    feature = d.directions[p["feature"]].double().numpy()
    assert abs(abs(unit @ feature) / np.linalg.norm(feature) - 1.0) < 1e-6
    assert all(abs(r["gain_db"]) < 200 for r in sae)  # measured, finite
    # an archetype dictionary, or a name nothing ships, is refused in one line
    for bad, fragment in (("latent-archetypes", "archetype dictionary"), ("no-such", "not found")):
        res = CliRunner().invoke(
            cli_module.get_cli(),
            ["partials", "-c", str(tmp_path / "sae.toml"), "--dictionary", bad, "-o", str(tmp_path / "bad")],
        )
        assert res.exit_code == 1 and fragment in res.output and len(res.output.strip().splitlines()) == 1
        assert not (tmp_path / "bad").exists()


RESUME = """
[grid]
layers = ["encoder.8.elu"]
targets_hz = [500.0]
densities = [1, 3]
strengths = [0.5]
subtract_strengths = [1.0]
methods = ["diffmeans", "random"]
paths = ["continuous"]
[stimuli]
duration_s = 0.2
train_seeds = 2
test_seeds = 3
[controls]
positive_models = []
[run]
max_batch = 3
probe_frames = 16
examples = 0
bootstrap = 100
"""


def _cmd(cfg: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "steerlab", "partials", "-c", str(cfg), "-o", str(out)]


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


def test_kill_9_then_resume_equals_uninterrupted_run(tmp_path):
    cfg = tmp_path / "r.toml"
    cfg.write_text(RESUME)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(_cmd(cfg, ref), env=env, check=True, capture_output=True)
    proc = subprocess.Popen(_cmd(cfg, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = killed / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if results.is_file() and results.stat().st_size > 0:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(results.read_bytes().split(b"\n")) - 1
    assert 0 < n_before < len(_rows(ref))
    with open(results, "ab") as f:  # and a torn line, as a kill inside write() leaves
        f.write(b'{"key": "abc", "conf')
    done = subprocess.run(_cmd(cfg, killed), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    a, b = _rows(ref), _rows(killed)
    assert len(b) == len({r["key"] for r in b}) == len(a)
    by_key = {r["key"]: r for r in a}
    for r in b:
        assert r == by_key[r["key"]]
