"""steerlab partials, pieces without a model: config, resumable store, verdict rule, directions."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from steerlab.artifacts import config_hash
from steerlab.errors import PlanError
from steerlab.partials import config as C
from steerlab.partials.plan import WorkItem
from steerlab.partials.store import ResultStore
from steerlab.partials.verdicts import Thresholds, verdict
from steerlab.stimuli import StimulusSpec

# ---- config ---------------------------------------------------------------------------------------


def test_unknown_key_lists_valid_keys(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[thresholds]\nmin_gain = 3\n")
    with pytest.raises(C.ConfigError) as e:
        C.build(f)
    msg = str(e.value)
    assert "min_gain" in msg and "min_gain_db" in msg and "max_offband_db" in msg and "\n" not in msg


def test_unknown_table_lists_tables(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[grids]\nlayers = ['x']\n")
    with pytest.raises(C.ConfigError, match=r"unknown table \[grids\].*Did you mean 'grid'.*Valid tables"):
        C.build(f)


def test_layering_and_types(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[grid]\ntargets_hz = [440, 880]\nstrengths = [1.0, 0.5]\n[thresholds]\nmin_share = 0.6\n")
    cfg = C.build(f, quick=True, overrides={"thresholds": {"min_gain_db": 3.0}})
    assert cfg.grid.targets_hz == (440.0, 880.0)
    assert cfg.grid.strengths == (0.5, 1.0)  # sorted
    assert cfg.grid.densities == C.QUICK["grid"]["densities"]  # quick preset kept under the file
    assert (cfg.thresholds.min_share, cfg.thresholds.min_gain_db) == (0.6, 3.0)


@pytest.mark.parametrize(
    "section,key,value,fragment",
    [
        ("thresholds", "min_share", 1.5, r"thresholds.min_share must be a number in \(0, 1\], got 1.5"),
        ("thresholds", "min_concentration", -0.1, r"min_concentration must be a number in \[0, 1\], got -0.1"),
        ("grid", "targets_hz", [], "must not be empty"),
        ("grid", "methods", ["diffmean"], "Did you mean 'diffmeans'"),
        ("grid", "paths", ["quantised"], "unknown grid.paths"),
        ("stimuli", "test_seeds", 0, "test_seeds must be an integer >= 1"),
        ("scoring", "n_fft", 1001, "n_fft must be"),
        ("scoring", "note_tolerance_db", 0.0, "note_tolerance_db must be a finite number > 0"),
        ("scoring", "note_local_criterion_db", 100.0, r"note_local_criterion_db must be a number in \[-60, 60\]"),
    ],
)
def test_bad_values(section, key, value, fragment):
    with pytest.raises(C.ConfigError, match=fragment):
        C.PartialsConfig().merged({section: {key: value}})


def test_null_always_runs():
    cfg = C.PartialsConfig().merged({"grid": {"methods": ["diffmeans"]}, "controls": {"positive_methods": ["probe"]}})
    assert cfg.grid.methods == ("diffmeans", "random")
    assert cfg.controls.positive_methods == ("probe", "random")


def test_controls_default_to_every_method_and_take_a_list_of_models():
    cfg = C.PartialsConfig().merged({"grid": {"methods": ["diffmeans", "probe"]}})
    # every method the run uses runs on the controls by default
    assert cfg.controls.methods_for(cfg.grid.methods) == ("diffmeans", "probe", "random")
    c = (
        C.PartialsConfig()
        .merged(
            {
                "controls": {
                    "positive_models": ["filterbank_24khz", "stft_24khz"],
                    "positive_layers": {"stft_24khz": "bins"},
                }
            }
        )
        .controls
    )
    assert c.positive_models == ("filterbank_24khz", "stft_24khz") and c.layer_for("stft_24khz") == "bins"
    assert c.layer_for("filterbank_24khz") is None
    for bad, frag in (("filterbank_24khz", "must be a list"), (["a", "a"], "twice"), ([3], "model names")):
        with pytest.raises(C.ConfigError, match=frag):
            C.PartialsConfig().merged({"controls": {"positive_models": bad}})


def test_measurement_hash_ignores_thresholds():
    a, b = C.PartialsConfig(), C.PartialsConfig().merged({"thresholds": {"min_gain_db": 3.0}})
    assert config_hash(a.measurement_dict()) == config_hash(b.measurement_dict())
    c = C.PartialsConfig().merged({"grid": {"strengths": [0.5]}})
    assert config_hash(a.measurement_dict()) != config_hash(c.measurement_dict())


def test_note_rule_options_hash_only_with_the_instrument_family():
    """The note-partials rule's options change which bins an instrument pair is scored on, so they are
    hashed, but only in a run that scores instrument pairs: other runs keep their hash and rows."""
    d = C.PartialsConfig().measurement_dict()
    assert set(d["scoring"]) == {"band_hz", "n_fft"}
    other = C.PartialsConfig().merged({"scoring": {"note_local_criterion_db": 3.0}})
    assert config_hash(other.measurement_dict()) == config_hash(d)
    inst = C.PartialsConfig().merged({"grid": {"families": ["instrument"]}})
    assert inst.measurement_dict()["scoring"] == {
        "band_hz": 50.0,
        "n_fft": 4096,
        "note_local_criterion_db": 0.0,
        "note_tolerance_db": 1.0,
    }
    moved = inst.merged({"scoring": {"note_tolerance_db": 2.0}})
    assert config_hash(moved.measurement_dict()) != config_hash(inst.measurement_dict())
    assert inst.scoring.options()["note_tolerance_db"] == 1.0


# ---- work items -----------------------------------------------------------------------------------


def _item(**kw):
    spec = StimulusSpec("inharmonic", 440.0, 2, seed=1, duration_s=0.25)
    base = dict(
        config_hash="h",
        model="m",
        layer="l",
        stimulus=spec,
        role="without",
        method="diffmeans",
        direction_id="d",
        op="add",
        strength=0.5,
        path="continuous",
    )
    return WorkItem(**{**base, **kw})


def test_work_item_roundtrip_and_key():
    it = _item()
    again = WorkItem.from_dict(json.loads(json.dumps(it.to_dict())))
    assert again == it and again.key() == it.key()
    assert _item(strength=1.0).key() != it.key()
    assert _item(config_hash="other").key() != it.key()


@pytest.mark.parametrize(
    "kw",
    [
        dict(op="ablate", role="with", strength=0.5),
        dict(op="add", role="with"),
        dict(op="subtract", role="with", strength=0.0),
    ],
)
def test_work_item_validates(kw):
    with pytest.raises(ValueError):
        _item(**kw)


# ---- store ----------------------------------------------------------------------------------------

ROW = {
    "model": "m",
    "layer": "l",
    "family": "tone",
    "target_hz": 440.0,
    "density": 0,
    "seed": 0,
    "role": "heldout",
    "method": "diffmeans",
    "direction_id": "d",
    "op": "add",
    "strength": 1.0,
    "path": "continuous",
    "gain_db": 1.0,
    "concentration": 0.5,
    "offband_lsd_db": 0.1,
    "codes_changed_share": None,
}  # what store.ROW_SCHEMA requires


def _rows(n, h="h"):
    return [{**ROW, "key": f"k{i}", "config_hash": h, "x": i} for i in range(n)]


def test_store_cuts_torn_tail_and_never_duplicates(tmp_path):
    s = ResultStore(tmp_path, "h").open()
    s.append(_rows(3))
    with open(s.path, "ab") as f:
        f.write(b'{"key": "k3", "config_h')  # a write killed half way
    s2 = ResultStore(tmp_path, "h").open()
    assert sorted(s2.rows) == ["k0", "k1", "k2"] and s2.repaired > 0
    s2.append(_rows(5))  # k0..k2 again: only k3, k4 are new
    lines = s2.path.read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["k0", "k1", "k2", "k3", "k4"]


def test_store_group_commits_and_every_appended_row_is_readable_before_its_fsync(tmp_path, monkeypatch):
    """Rows are flushed at every append (a kill loses only the batch in flight), fsynced at most
    SYNC_INTERVAL_S apart (the first batch at once) and by sync() at the end."""
    from steerlab.partials import store as S

    synced: list[int] = []
    monkeypatch.setattr(S.os, "fsync", lambda fd: synced.append(fd))
    clock = [100.0]
    monkeypatch.setattr(S.time, "monotonic", lambda: clock[0])
    s = ResultStore(tmp_path, "h").open()
    s.append(_rows(1))
    assert len(synced) == 1  # the first batch: at once
    clock[0] += S.SYNC_INTERVAL_S / 2
    s.append(_rows(2))
    assert len(synced) == 1  # within the interval: written and flushed, not fsynced
    assert sorted(ResultStore(tmp_path, "h").open().rows) == ["k0", "k1"]  # another reader sees both
    clock[0] += S.SYNC_INTERVAL_S
    s.append(_rows(3))
    assert len(synced) == 2
    s.sync()
    assert len(synced) == 2  # nothing left unsynced
    clock[0] += 0.01
    s.append(_rows(4))
    s.sync()
    assert len(synced) == 3


def test_store_complete_json_without_newline_is_torn(tmp_path):
    s = ResultStore(tmp_path, "h").open()
    s.append(_rows(1))
    with open(s.path, "ab") as f:
        f.write(json.dumps(_rows(2)[1]).encode())
    assert sorted(ResultStore(tmp_path, "h").open().rows) == ["k0"]


def test_store_refuses_other_config_and_damage(tmp_path):
    s = ResultStore(tmp_path, "h").open()
    s.append(_rows(2))
    with pytest.raises(PlanError, match="another configuration"):
        ResultStore(tmp_path, "other").open()
    good = [json.dumps(r) for r in _rows(3)]
    s.path.write_text(f"{good[0]}\nnot json\n{good[2]}\n")
    with pytest.raises(PlanError, match="line 2 is damaged"):
        ResultStore(tmp_path, "h").open()
    s.path.write_text(f"{good[0]}\n{json.dumps({**_rows(2)[1], 'gain_db': 'loud'})}\n")  # parses, wrong type
    with pytest.raises(PlanError, match="line 2 is damaged \\(key 'gain_db' must be a finite number or null"):
        ResultStore(tmp_path, "h").open()


# ---- verdict rule ---------------------------------------------------------------------------------


def _group(add, rem, seeds=5):
    """Rows of one group: add[s] / rem[name] give (gain, conc, offband) per seed (or one for all)."""
    rows = []
    for seed in range(seeds):
        for s, v in add.items():
            g, c, o = v[seed] if isinstance(v, list) else v
            rows.append(dict(op="add", strength=s, seed=seed, gain_db=g, concentration=c, offband_lsd_db=o))
        for name, v in rem.items():
            g, c, o = v[seed] if isinstance(v, list) else v
            op, s = ("ablate", 0.0) if name == "ablate" else ("subtract", float(name))
            rows.append(dict(op=op, strength=s, seed=seed, gain_db=g, concentration=c, offband_lsd_db=o))
    for r in rows:
        r.update(
            model="m",
            model_role="main",
            layer="l",
            family="inharmonic",
            target_hz=440.0,
            density=1,
            method="diffmeans",
            path="continuous",
            codes_changed_share=None,
            layer_frame_rate_hz=75.0,
        )
    return rows


T = Thresholds()
GOOD_ADD, GOOD_REM = (10.0, 0.9, 0.5), (-10.0, 0.9, 0.5)


def test_steerable_when_all_criteria_hold():
    v = verdict(_group({0.5: GOOD_ADD}, {"ablate": GOOD_REM}), T, 200, 0)
    assert v.steerable and v.pass_share == 1.0 and v.best_add_strength == 0.5 and v.best_remove == "ablate"
    assert v.gain_db[0] == 10.0 and v.gain_db[1] <= 10.0 <= v.gain_db[2]


@pytest.mark.parametrize(
    "add,rem",
    [
        ((5.9, 0.9, 0.5), GOOD_REM),  # gain just short
        (GOOD_ADD, (-5.0, 0.9, 0.5)),  # loss short
        ((10.0, 0.4, 0.5), GOOD_REM),  # not concentrated adding
        (GOOD_ADD, (-10.0, 0.4, 0.5)),  # not concentrated removing
        ((10.0, 0.9, 1.5), GOOD_REM),  # off-band damage adding
        (GOOD_ADD, (-10.0, 0.9, 1.5)),  # off-band damage removing
    ],
)
def test_each_criterion_can_fail(add, rem):
    assert not verdict(_group({0.5: add}, {"ablate": rem}), T, 200, 0).steerable


def test_salience_rows_use_their_own_offband_and_null_scores_pass_nothing():
    """Rows of a model without a decoder carry ``offband_db`` (the salience off-band distance)
    and ``offband_lsd_db = None``; the rule reads ``offband_db``, and a null score (a change of
    nothing has no concentration) fails its criterion instead of raising."""
    rows = _group({0.5: GOOD_ADD}, {"ablate": GOOD_REM})
    for r in rows:
        r.update(offband_lsd_db=None, offband_db=0.5)
    assert verdict(rows, T, 200, 0).steerable
    for r in rows:
        r["offband_db"] = 1.5 if r["op"] == "add" else 0.5
    assert not verdict(rows, T, 200, 0).steerable
    rows = _group({0.5: (10.0, None, 0.5)}, {"ablate": GOOD_REM})
    v = verdict(rows, T, 200, 0)
    assert not v.steerable and v.add_share == 0.0
    rows = _group({0.5: GOOD_ADD}, {"ablate": (None, None, None)})
    assert not verdict(rows, T, 200, 0).steerable


def test_a_note_is_scored_by_its_support_on_audio_and_at_its_f0_on_a_salience():
    from types import SimpleNamespace

    from steerlab.partials.sweep import scored_by_note
    from steerlab.stimuli import StimulusSpec

    note = StimulusSpec("instrument", 1200.0, 1, sample_rate=24000, band_high_hz=7200.0)
    audio = SimpleNamespace(has_decoder=True, sample_rate=24000)
    salience = SimpleNamespace(has_decoder=False, sample_rate=16000)
    assert scored_by_note(audio, note) and not scored_by_note(salience, note)
    for family, density, f0 in (
        ("tone", 0, None),
        ("harmonic", 1, 200.0),
        ("chord", 1, 200.0),
        ("inharmonic", 1, None),
    ):
        assert not scored_by_note(audio, StimulusSpec(family, 1100.0, density, f0=f0))


def test_share_threshold_and_shared_setting():
    bad = (0.0, 0.0, 9.0)
    four_of_five = [GOOD_ADD] * 4 + [bad]
    three_of_five = [GOOD_ADD] * 3 + [bad] * 2
    assert verdict(_group({1.0: four_of_five}, {"ablate": GOOD_REM}), T, 200, 0).steerable
    assert not verdict(_group({1.0: three_of_five}, {"ablate": GOOD_REM}), T, 200, 0).steerable
    # each stimulus passes at *some* strength, but no single strength works on 80%: not steerable
    a = [GOOD_ADD, GOOD_ADD, bad, bad, bad]
    b = [bad, bad, GOOD_ADD, GOOD_ADD, GOOD_ADD]
    v = verdict(_group({0.5: a, 1.0: b}, {"ablate": GOOD_REM}), T, 200, 0)
    assert not v.steerable and v.pass_share == 0.6 and v.best_add_strength == 1.0


def test_removal_methods_get_separate_verdicts_and_the_verdicts_view_of_gain():
    from steerlab.partials.verdicts import verdicts

    bad = (-1.0, 0.9, 0.5)
    rows = _group({0.5: [GOOD_ADD, GOOD_ADD, GOOD_ADD, GOOD_ADD, (30.0, 0.1, 0.5)]}, {"ablate": GOOD_REM, "1.0": bad})
    by = {v.removal: v for v in verdicts(rows, T, 100, 0)}
    assert set(by) == {"ablate", "subtract"}
    assert by["ablate"].steerable and by["ablate"].best_remove == "ablate"
    assert not by["subtract"].steerable and by["subtract"].best_remove == "subtract 1"
    # raw median gain 10 dB; the verdict's view counts the unconcentrated 30 dB stimulus as 0 dB
    assert by["ablate"].gain_db[0] == 10.0 and by["ablate"].gain_passing_db == 10.0
    rows = _group(
        {0.5: [GOOD_ADD, GOOD_ADD, (30.0, 0.1, 0.5), (30.0, 0.1, 0.5), (30.0, 0.9, 3.0)]}, {"ablate": GOOD_REM}
    )
    (v,) = verdicts(rows, T, 100, 0)
    assert v.gain_db[0] == 30.0 and v.gain_passing_db == 0.0


def _verdict(model="m", role="main", method="diffmeans", removal="ablate", steerable=True, f=440.0):
    from steerlab.partials.verdicts import Verdict

    return Verdict(
        model,
        role,
        "L",
        "inharmonic",
        f,
        1,
        method,
        "continuous",
        removal,
        4,
        steerable,
        1.0 if steerable else 0.0,
        1.0,
        removal,
        1.0,
        1.0,
        *[(1.0, 1.0, 1.0)] * 6,
        None,
        75.0,
    )


def test_a_method_whose_control_failed_is_not_validated_never_not_steerable():
    from steerlab.partials.verdicts import label, validation

    vs = [
        _verdict(steerable=False),
        _verdict(method="probe", steerable=False),
        _verdict(method="sae", steerable=False),
        _verdict(method="random", steerable=False),
        _verdict("fb", "positive_control", steerable=True),
        _verdict("fb", "positive_control", f=880.0),
        _verdict("fb", "positive_control", method="probe", steerable=True),
        _verdict("fb2", "positive_control", method="probe", steerable=False),
        _verdict("fb2", "positive_control", steerable=True),
        _verdict("fb", "positive_control", method="random", steerable=False),
    ]
    val = validation(vs)
    assert val[("diffmeans", "ablate")]["status"] == "validated"
    assert val[("probe", "ablate")]["status"] == "not validated"  # one control of two failed
    assert val[("probe", "ablate")]["by_model"] == {"fb": [1, 1], "fb2": [0, 1]}
    # judged per control too: fb vouches for the probe, fb2 does not
    per = val[("probe", "ablate")]["by_control"]
    assert {c: p["status"] for c, p in per.items()} == {"fb": "validated", "fb2": "not validated"}
    assert val[("sae", "ablate")]["status"] == "unchecked"  # no control ran it
    assert {c: p["status"] for c, p in val[("sae", "ablate")]["by_control"].items()} == {
        "fb": "unchecked",
        "fb2": "unchecked",
    }
    # a method one control ran and passed but another control did not run is not validated by
    # both: unchecked, never validated
    part = validation(vs + [_verdict("fb", "positive_control", method="sae", steerable=True)])[("sae", "ablate")]
    assert part["status"] == "unchecked" and part["by_control"]["fb"]["status"] == "validated"
    assert [label(v, val) for v in vs[:4]] == ["not steerable", "not validated", "unchecked", "null: not steerable"]
    # a steerable null on a control invalidates every method
    vs2 = vs + [_verdict("fb", "positive_control", method="random", steerable=True, f=880.0)]
    assert validation(vs2)[("diffmeans", "ablate")]["status"] == "not validated"


# ---- directions -----------------------------------------------------------------------------------


def _planted(seed=0, n=6, frames=200, width=8, axis=3):
    rng = np.random.default_rng(seed)
    without = [rng.standard_normal((frames, width)) for _ in range(n)]
    with_ = [w + 2.0 * np.eye(width)[axis] for w in without]
    return without, with_


def test_probe_ignores_noise_floor_channels_and_shared_context():
    """Issue 11: a channel holding only a noise floor (std 1e-11) gave the old probe (coef / std)
    norms of 1e7+ and a direction on that channel. The paired probe's weight vector lies on the
    planted axis, with a norm of the layer's own scale, and nothing on a context channel that the
    two signals of a pair share."""
    from steerlab.partials.directions import probe

    rng = np.random.default_rng(1)
    without, with_ = [], []
    for _ in range(4):
        f = np.zeros((300, 6))
        f[:, 0] = 1e-11 * rng.standard_normal(300)  # noise floor
        f[:, 1] = 0.1 * (1 + 0.5 * rng.standard_normal())  # a context partial, different per stimulus
        f[:, 2] = 0.05 * rng.standard_normal(300)  # a busy channel
        w = f.copy()
        w[:, 3] += 0.1 + 0.01 * rng.standard_normal(300)  # the target
        w[:, 0] = 1e-11 * rng.standard_normal(300)
        without.append(f)
        with_.append(w)
    vec, info = probe(without, with_, 128, 0)
    u = vec / np.linalg.norm(vec)
    assert u[3] > 0.99 and abs(u[0]) < 1e-3 and abs(u[1]) < 1e-3
    assert np.linalg.norm(vec) < 1e4 and info["train_accuracy"] == 1.0


def test_probe_steers_along_its_activation_pattern_not_its_weights():
    """Issue 11: a partial with fades, whose onset and fade also reach the two neighbouring
    channels (as on filterbank_24khz, where the neighbours differ only during the target's 10 ms
    fades). A max-margin-like logistic probe leans on the neighbours to classify the fading
    frames, so its weights lie far from the partial (cosine with the pattern below 0.6); its
    activation pattern (Haufe et al. 2014) is how the activations change with the probe's
    score: on the target channel, neighbours at their mean share of the change (as in the
    difference of means), nothing on shared context channels."""
    from steerlab.partials.directions import diff_of_means, probe

    rng = np.random.default_rng(2)
    n, fade = 300, 30
    env = np.ones(n)
    env[:fade], env[-fade:] = np.linspace(0, 1, fade), np.linspace(1, 0, fade)
    edge = np.r_[np.ones(fade), np.zeros(n - 2 * fade), np.ones(fade)]
    without, with_ = [], []
    for _ in range(4):
        f = np.zeros((n, 7))
        f[:, 0] = 0.2 * (1 + 0.3 * rng.standard_normal())  # a context partial, shared
        f[:, 5] = 0.05 * np.abs(rng.standard_normal(n))  # a busy channel, shared
        w = f.copy()
        w[:, 3] += 0.1 * env + 1e-4 * rng.standard_normal(n)  # the target, with its fades
        w[:, [2, 4]] += (0.02 * edge * (1 - env))[:, None]  # the neighbours: during the fades only
        without.append(f)
        with_.append(w)
    vec, info = probe(without, with_, 300, 0)
    u = vec / np.linalg.norm(vec)
    dm = diff_of_means(without, with_)
    assert info["weights_cosine_to_pattern"] < 0.6  # the weights are not the partial
    assert u[3] > 0.999 and max(abs(u[2]), abs(u[4])) < 0.03 and abs(u[0]) < 1e-3 and abs(u[5]) < 1e-3
    assert u @ dm / np.linalg.norm(dm) > 0.999


def test_diffmeans_probe_random_recover_planted_axis():
    from steerlab.partials.directions import learn

    without, with_ = _planted()
    out = learn({"u": 1}, without, with_, ("diffmeans", "probe", "random", "sae"), 0, 64, None, ["a"])
    dm, pr, rnd = (out[m].vector / np.linalg.norm(out[m].vector) for m in ("diffmeans", "probe", "random"))
    assert dm[3] > 0.99 and pr[3] > 0.9
    assert abs(rnd[3]) < 0.9 and np.isclose(
        np.linalg.norm(out["random"].vector), np.linalg.norm(out["diffmeans"].vector)
    )
    assert isinstance(out["sae"], str) and "dictionary" in out["sae"]


def test_sae_feature_picks_the_separating_latent():
    import torch

    from steerlab.partials.directions import sae_feature
    from steerlab.sae import SAEConfig, SparseAutoencoder

    without, with_ = _planted(width=8, axis=5)
    sae = SparseAutoencoder(SAEConfig(width=8, size=16, architecture="relu"))
    with torch.no_grad():  # latent j reads and writes axis j (and its negative for j >= 8)
        eye = torch.eye(8)
        sae.W_dec.copy_(torch.cat([eye, -eye]))
        sae.W_enc.copy_(torch.cat([eye, -eye]).T)
    d = SimpleNamespace(sae=sae, directions=sae.directions, layer="l", data_hash="x")
    vec, info = sae_feature(without, with_, d)
    assert info["feature"] == 5 and vec[5] > 0.99


def test_sae_feature_is_the_brute_force_largest_mean_code_difference():
    """Against a brute-force choice: for every feature, the mean of its codes on with-target
    frames minus without, one feature at a time; the method must pick the largest in magnitude,
    signed, and return that feature's decoder direction."""
    import torch

    from steerlab.partials.directions import sae_feature
    from steerlab.sae import SAEConfig, SparseAutoencoder

    rng = np.random.default_rng(3)
    without = [rng.standard_normal((120, 8)) for _ in range(3)]
    with_ = [w + rng.standard_normal(8) * 0.3 + np.r_[0, 0, 1.5, 0, 0, 0, 0, 0] for w in without]
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(width=8, size=24, architecture="relu"))
    d = SimpleNamespace(sae=sae, directions=sae.directions, layer="l", data_hash="x")
    vec, info = sae_feature(without, with_, d)
    best, best_j = 0.0, None
    for j in range(24):
        with torch.no_grad():
            c0 = np.concatenate([sae.encode(torch.from_numpy(w).float())[:, j].double().numpy() for w in without])
            c1 = np.concatenate([sae.encode(torch.from_numpy(w).float())[:, j].double().numpy() for w in with_])
        if abs(c1.mean() - c0.mean()) > abs(best):
            best, best_j = c1.mean() - c0.mean(), j
    assert info["feature"] == best_j and info["mean_code_difference"] == pytest.approx(best, rel=1e-6)
    expected = np.sign(best) * sae.directions[best_j].double().numpy()
    assert np.allclose(vec, expected)


def test_sae_feature_carries_the_change_and_steers_along_its_decoder_column():
    """Issue 11: the feature chosen is the one that carries the with-minus-without change, not
    the most *detectable* one. Feature 0 reads the target channel and fires on every with-target
    frame with a code raised by 1; feature 1 is a near-constant code (spread 1e-3) on a channel
    the target nudges by 0.01, so its standardised mean difference (about 10) is far larger than
    feature 0's (about 3) while it carries a hundredth of the change. The old rule (standardised
    difference) chose feature 1; the method must choose feature 0 and return its *decoder*
    row, which here differs from its encoder row (the encoder reads channels 0 and 2; the
    decoder writes channel 0)."""
    import torch

    from steerlab.partials.directions import sae_feature
    from steerlab.sae import SAEConfig, SparseAutoencoder

    rng = np.random.default_rng(0)
    without, with_ = [], []
    for _ in range(3):
        f = np.zeros((200, 4))
        f[:, 0] = 0.5 * np.abs(rng.standard_normal(200))  # the target channel: a busy background
        f[:, 1] = 1.0 + 1e-3 * rng.standard_normal(200)  # a steady, nearly noiseless channel
        f[:, 3] = rng.standard_normal(200)
        w = f.copy()
        w[:, 0] += 1.0  # the partial
        w[:, 1] += 0.01  # a small, very detectable side effect
        without.append(f)
        with_.append(w)
    sae = SparseAutoencoder(SAEConfig(width=4, size=2, k=1, architecture="relu", center=False, normalize=False))
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.0], [0.0, 0.0]]))
        sae.b_enc.zero_()
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]))
        sae.b_dec.zero_()
    d = SimpleNamespace(sae=sae, directions=sae.directions, layer="l", data_hash="x")
    vec, info = sae_feature(without, with_, d)
    c0 = np.concatenate(without)[:, 1]
    c1 = np.concatenate(with_)[:, 1]
    effect_1 = (c1.mean() - c0.mean()) / np.sqrt(0.5 * (c0.var() + c1.var()))
    assert effect_1 > 2 * info["effect_size"]  # the old rule would have chosen feature 1
    assert info["feature"] == 0 and np.allclose(vec, [1.0, 0.0, 0.0, 0.0])
    assert info["mean_code_difference"] == pytest.approx(1.0, abs=1e-6)
    assert info["best_aligned_feature"] == 0 and info["best_aligned_cosine"] > 0.99


def test_calibrated_subtraction_measures_the_partial_in_template_units():
    """projection_excess returns c where the item holds c times the training template along u
    above the without-target level, whatever the layer's norm; subtracting strength 1 x c x
    template brings the projection back to the level."""
    import torch

    from steerlab.partials.sweep import projection_excess

    rng = np.random.default_rng(0)
    u = torch.tensor([0.0, 0.6, 0.8])
    tpl = torch.from_numpy(np.r_[np.zeros(5), np.linspace(0, 1, 5), np.ones(20), np.linspace(1, 0, 5)])
    level = torch.full((35,), 0.3, dtype=torch.float64)
    for c, loud in ((0.5, 1.0), (2.0, 50.0)):  # loud: other channels far louder (a dense mixture)
        act = torch.from_numpy(rng.standard_normal((3, 35))) * 0.01
        act[0] += loud
        act += (u[:, None].double() * (level + c * tpl)[None]).double()
        assert projection_excess(act, u, tpl, level) == pytest.approx(c, abs=0.02)
        after = act - c * u[:, None].double() * tpl[None]
        assert projection_excess(after, u, tpl, level) == pytest.approx(0.0, abs=0.02)
    assert projection_excess(act, u, torch.zeros(35, dtype=torch.float64), level) == 0.0


def test_margin_option_validates():
    assert C.PartialsConfig().stimuli.margin_s == "auto"
    assert C.PartialsConfig().merged({"stimuli": {"margin_s": 0}}).stimuli.margin_s == 0.0
    with pytest.raises(C.ConfigError, match="stimuli.margin_s must be a finite number >= 0"):
        C.PartialsConfig().merged({"stimuli": {"margin_s": -0.5}})
    with pytest.raises(C.ConfigError, match='margin_s must be a number of seconds >= 0 or "auto"'):
        C.PartialsConfig().merged({"stimuli": {"margin_s": "wide"}})


def test_auto_margin_covers_the_receptive_field():
    from steerlab.partials.plan import margin_for

    layers = [SimpleNamespace(receptive_field=rf) for rf in (7, 2718, 120)]
    cfg = C.PartialsConfig()
    causal = SimpleNamespace(causal=True, sample_rate=24_000, output_length=lambda n: n)
    centred = SimpleNamespace(causal=False, sample_rate=24_000, output_length=lambda n: n)
    generator = SimpleNamespace(causal=True, sample_rate=24_000, output_length=lambda n: 24_000)
    assert margin_for(cfg, causal, layers) == 2718 / 24_000  # responds up to R after the sound
    assert margin_for(cfg, centred, layers) == 1359 / 24_000  # R / 2 either side
    assert margin_for(cfg.merged({"stimuli": {"margin_s": 0.05}}), causal, layers) == 0.05
    assert margin_for(cfg, generator, layers) == 0.0  # a continuation is not the input's response


def test_positive_control_keeps_context_partials_out_of_the_target_band():
    from steerlab.partials.plan import MAIN, POSITIVE, band_reach_hz, separation_for

    centres = np.geomspace(100.0, 8000.0, 64)
    bank = SimpleNamespace(centres_hz=centres)
    k = int(np.argmin(np.abs(np.log(centres / 1223.0))))
    assert band_reach_hz(bank, 1223.0) == pytest.approx(centres[k + 1] - centres[k])
    assert band_reach_hz(SimpleNamespace(), 1223.0) is None
    cfg = C.PartialsConfig()
    assert separation_for(cfg, bank, POSITIVE, 1223.0) == pytest.approx(centres[k + 1] - centres[k])
    assert separation_for(cfg, bank, MAIN, 1223.0) == cfg.stimuli.min_separation_hz
    assert separation_for(cfg, bank, POSITIVE, 101.0) == cfg.stimuli.min_separation_hz  # 7 Hz reach < 30 Hz


def test_prediction_agreement_counts_and_graded_correlation():
    from steerlab.partials.report import agreement
    from steerlab.partials.verdicts import Verdict

    def v(f, steerable, gain):
        return Verdict(
            "m",
            "main",
            "L",
            "inharmonic",
            f,
            1,
            "diffmeans",
            "continuous",
            "ablate",
            5,
            steerable,
            1.0 if steerable else 0.0,
            1.0,
            "ablate",
            1.0,
            1.0,
            (gain, gain, gain),
            (9.0,) * 3,
            (0.9,) * 3,
            (0.9,) * 3,
            (0.1,) * 3,
            (0.1,) * 3,
            None,
            75.0,
        )

    vs = [v(100.0, False, 1.0), v(200.0, False, 2.0), v(300.0, False, 5.0), v(400.0, False, 9.0)]
    pred = lambda score, surv: SimpleNamespace(score=score, survives_path=surv)  # noqa: E731
    preds = {
        ("m", "L", "inharmonic", f, 1): pred(s, s > 0.5)
        for f, s in ((100.0, 0.1), (200.0, 0.2), (300.0, 0.6), (400.0, 0.9))
    }
    (a,) = agreement(vs, preds)
    # nothing passes: the share-based correlations are undefined, the graded one is not
    assert a["rho_score_share"] is None and a["rho_survives_steerable"] is None
    assert a["rho_score_gain"] == pytest.approx(1.0)
    assert (a["agree"], a["compared"], a["survives_not_steerable"], a["steerable_not_predicted"]) == (2, 4, 2, 0)


def test_probe_c_is_chosen_by_cross_validation_on_training_pairs():
    """Issue 11: the probe's C comes from leave-one-pair-out log-loss with the one-SE rule. With
    pure-noise differences nothing generalises: the held-out loss is lowest (about ln 2) at the
    most regularised C, which must be chosen; with a clean planted axis the held-out loss falls
    with C and a C far above the smallest is chosen. One pair: nothing to hold out, C = 1."""
    from steerlab.partials.directions import PROBE_CS, choose_c

    rng = np.random.default_rng(0)
    noise = [rng.standard_normal((40, 10)) for _ in range(4)]
    c, info = choose_c(noise)
    assert c == min(PROBE_CS) and info["cv_folds"] == 4
    assert abs(info["cv_log_loss"][0] - np.log(2)) < 0.01 and info["cv_log_loss"][-1] > info["cv_log_loss"][0]
    planted = [np.c_[1.0 + 0.1 * rng.standard_normal((40, 1)), 0.3 * rng.standard_normal((40, 9))] for _ in range(4)]
    c2, info2 = choose_c(planted)
    assert c2 >= 1.0 and info2["cv_log_loss"][list(PROBE_CS).index(c2)] < 0.1
    assert choose_c(noise[:1])[0] == 1.0 and choose_c(noise[:1])[1]["cv_folds"] == 0
