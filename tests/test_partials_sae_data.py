"""``--sae-data stimuli``: every model learns its SAE dictionaries on the run's own
stimuli (its training stimuli and further draws of the same units, ceil(K ln K) in all), with one
set of SAE settings for the measured model and the controls (steerlab.partials.sae_data). Tests
that fail if the recipe saw held-out stimuli, if control and main model were learned with
different settings, or if the method picked another feature than its rule says; and a measured
property: on a one-target filterbank control grid the recipe's dictionary holds the partial."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

STIM = """
[grid]
layers = ["latent"]
targets_hz = [300.0]
densities = [1, 4]
strengths = [0.3, 1.0]
subtract_strengths = [1.0]
methods = ["diffmeans", "sae", "random"]
sae_data = "stimuli"
[stimuli]
duration_s = 0.25
train_seeds = 3
test_seeds = 2
[controls]
positive_models = ["filterbank_24khz"]
dictionary_size = 16
[run]
max_batch = 16
examples = 0
bootstrap = 200
"""


@pytest.fixture(scope="module")
def stim_run(tmp_path_factory):
    from steerlab import partials

    d = tmp_path_factory.mktemp("saedata")
    (d / "stim.toml").write_text(STIM)
    cfg = partials.build(d / "stim.toml")
    outcome, out = partials.run(cfg, d / "run")
    return cfg, outcome


def _dicts(folder):
    from steerlab import dictionary as dictionary_io
    from steerlab.partials.sae_data import FOLDER

    return {p.name: dictionary_io.load(p) for p in sorted((folder / FOLDER).iterdir())}


def test_dictionaries_see_training_and_further_stimuli_never_held_out(stim_run):
    """ceil(K ln K) = 45 distinct stimuli for 16 latents: the 6 training stimuli of the two
    units, then seeds from SEED_OFFSET (39 more, 19-20 per unit), none held out."""
    from steerlab.partials.sae_data import SEED_OFFSET, dictionary_specs, min_stimuli

    cfg, outcome = stim_run
    dicts = _dicts(outcome.folder)
    assert set(dicts) == {"tiny_encodec_24khz__latent", "filterbank_24khz__bands"}
    for plan in outcome.plans:
        train = {s.key() for specs in plan.train.values() for s in specs}
        test = {s.key() for specs in plan.test.values() for s in specs}
        d = dicts[f"{plan.model.name}__{plan.layers[0].name}"]
        seen = set(d.data_manifest["stimuli"])
        assert train <= seen and not seen & test
        assert len(seen) == min_stimuli(16) == d.data_manifest["stimulus_recipe"]["min_stimuli"] == 45
    specs = dictionary_specs(outcome.plans[1], "bands", min_stimuli(16))
    extra = {s.seed for s in specs} - {0, 1, 2}
    assert extra == set(range(SEED_OFFSET, SEED_OFFSET + 20))  # 20 + 19 further stimuli, round robin


def test_held_out_stimuli_do_not_change_the_dictionary_data():
    """More held-out seeds, the same training data (hash of the very vectors the SAE is fitted to)."""
    import hashlib

    from steerlab import api, partials
    from steerlab.partials.plan import MAIN, plan_model
    from steerlab.partials.sae_data import dictionary_specs, stimulus_frames

    model = api.load_model("tiny_encodec_24khz")
    hashes = []
    for n_test in (1, 3):
        cfg = partials.build(
            overrides={
                "grid": {"layers": ("latent",), "targets_hz": (300.0,), "densities": (1,)},
                "stimuli": {"duration_s": 0.25, "train_seeds": 2, "test_seeds": n_test},
            }
        )
        plan = plan_model(cfg, model, MAIN, ["latent"], cfg.grid.targets_hz, cfg.grid.densities)
        x, _ = stimulus_frames(plan, plan.layers[0], dictionary_specs(plan, "latent", 12), 16384, 0, 16)
        hashes.append(hashlib.sha256(x.tobytes()).hexdigest())
    assert hashes[0] == hashes[1]


def test_same_sae_settings_for_main_model_and_controls(stim_run, tmp_path):
    from steerlab.partials.sae_data import recipe

    cfg, outcome = stim_run
    r = recipe(cfg)
    configs = []
    for d in _dicts(outcome.folder).values():
        c = d.config.to_dict()
        assert d.data_manifest["stimulus_recipe"] == r
        assert (c["size"], c["k"], c["seed"], c["kind_of_sae"], c["lr"], c["batch_size"]) == (
            r["size"],
            r["k"],
            r["seed"],
            "topk",
            r["lr"],
            r["batch_size"],
        )
        configs.append({k: v for k, v in c.items() if k not in ("width", "epochs")})
    assert configs[0] == configs[1]
    run = json.loads((outcome.folder / "run.json").read_text())
    assert run["stimulus_dictionary"] == r
    assert {k: v["data_sha256"] for k, v in run["stimulus_dictionaries"].items()} == {
        f"{d.model}:{d.layer}": d.data_hash for d in _dicts(outcome.folder).values()
    }


def test_the_chosen_feature_is_the_rules(stim_run):
    """Recomputed from the cached dictionary and a fresh capture of the training pairs: the
    feature with the largest |mean code difference|, steered along its decoder row towards 'with'."""
    import torch

    from steerlab.partials.directions import capture_pairs
    from steerlab.partials.runner import _load_directions

    cfg, outcome = stim_run
    dicts = _dicts(outcome.folder)
    vectors, prov, _ = _load_directions(outcome.folder, outcome.config_hash)
    checked = 0
    for plan in outcome.plans:
        layer = plan.layers[0]
        d = dicts[f"{plan.model.name}__{layer.name}"]
        for unit, specs in plan.train.items():
            rid = next(k for k, p in prov.items() if p["method"] == "sae" and p["unit"] == unit.__dict__)
            without, with_ = capture_pairs(plan.model, layer, specs, prov[rid]["capture_path"], 16)
            with torch.no_grad():
                c0 = d.sae.encode(torch.from_numpy(np.concatenate(without)).float()).double().numpy()
                c1 = d.sae.encode(torch.from_numpy(np.concatenate(with_)).float()).double().numpy()
            diff = c1.mean(0) - c0.mean(0)
            j = int(np.argmax(np.abs(diff)))
            assert prov[rid]["feature"] == j
            want = np.sign(diff[j]) * d.directions[j].double().numpy()
            got = vectors[rid] / np.linalg.norm(vectors[rid])
            assert np.allclose(got, want, atol=1e-6)
            checked += 1
    assert checked == 4


def test_control_stimulus_dictionary_holds_the_partial(stim_run):
    """Measured: on the filterbank control with one target (this grid), the recipe's dictionary
    (ceil(K ln K) stimuli) holds a feature for the partial and the rule chooses it: best-aligned
    cosine with the difference of means over 0.95, the chosen feature the best-aligned one. With
    the training stimuli alone (the recipe before, 128 latents) it was 0.85 here."""
    from steerlab.partials.runner import _load_directions

    cfg, outcome = stim_run
    _, prov, _ = _load_directions(outcome.folder, outcome.config_hash)
    sae = [p for p in prov.values() if p["method"] == "sae" and p["unit"]["model"] == "filterbank_24khz"]
    assert len(sae) == 2
    assert all(p["best_aligned_cosine"] > 0.95 and p["feature"] == p["best_aligned_feature"] for p in sae)


def test_defaults_leave_the_hash_and_dictionary_flag_refused_with_stimuli(tmp_path):
    from steerlab import partials
    from steerlab.cli import get_cli

    assert "sae_data" not in partials.build().measurement_dict()["grid"]
    assert (
        partials.build(overrides={"grid": {"sae_data": "stimuli"}}).measurement_dict()["grid"]["sae_data"] == "stimuli"
    )
    cli = get_cli()
    (tmp_path / "s.toml").write_text(STIM)
    res = CliRunner().invoke(
        cli, ["partials", "-c", str(tmp_path / "s.toml"), "-D", "latent-features", "-o", str(tmp_path / "bad")]
    )
    assert res.exit_code == 1 and "exclude each other" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    res = CliRunner().invoke(cli, ["partials", "--sae-data", "nope", "-o", str(tmp_path / "bad")])
    assert res.exit_code != 0 and not (tmp_path / "bad").exists()
