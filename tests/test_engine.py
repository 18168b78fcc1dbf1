"""The one engine for patched passes (steerlab.engine): a swept partials pass and a single
``intervene`` patch alike, plugin code runs under the guard, weights are hashed once per run,
the API's named results and keyword-only spec."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import steerlab
from steerlab import api, engine, plugins
from steerlab.errors import InterventionError, PluginError
from steerlab.hookspecs import hookimpl
from steerlab.interventions import Direction, Span, Strength, channel_direction
from steerlab.model import AudioModel
from steerlab.partials import sweep
from steerlab.partials.plan import OP_ROLE, ModelPlan, WorkItem
from steerlab.partials.runner import LEVEL, TEMPLATE
from steerlab.stimuli import StimulusSpec
from tests.conftest import chord

LAYER = "encoder.6.conv"


def _sweep_item(model, op: str, strength: float) -> WorkItem:
    stim = StimulusSpec("inharmonic", 440.0, 2, seed=1, duration_s=0.25, sample_rate=model.sample_rate)
    return WorkItem(
        config_hash="h",
        model=model.name,
        layer=LAYER,
        stimulus=stim,
        role=OP_ROLE[op],
        method="diffmeans",
        direction_id="d0",
        op=op,
        strength=strength,
        path="continuous",
    )


@pytest.mark.parametrize("op, strength", [("add", 0.5), ("ablate", 0.0)])
def test_a_swept_pass_and_a_single_intervene_patch_alike(embedded, op, strength):
    """The same edit (type, direction, relative strength, span) on the same signal: the partials
    sweep (a WorkItem) and ``intervene`` (an InterventionSpec) go through one engine, so they use
    the same value and give the same patched decode, which differs from the baseline."""
    layer = api.layers(embedded).get(LAYER)
    v = np.random.default_rng(0).standard_normal(layer.channels)
    it = _sweep_item(embedded, op, strength)
    plan = ModelPlan(embedded, "subject", [layer], ["continuous"], (440.0,), (2,))
    ((swept, codes, info),) = sweep.run_batch(plan, [it], {"d0": v}, {}, max_batch=16)

    wave = sweep._wave(embedded, it.stimulus, it.role).numpy()
    spec = api.InterventionSpec(
        layer=LAYER,
        direction=Direction(v, {"source": "test"}),
        intervention=op,
        strength=Strength(strength),
        span=sweep.edit_span(op, it.stimulus, layer),
    )
    single = api.intervene(embedded, [wave], spec)[0]
    np.testing.assert_allclose(swept, single.patched, rtol=0, atol=1e-6)
    assert info["value"] == single.record["effective_value"]
    assert info["layer_rms_norm"] == single.record["layer_rms_norm"] > 0
    assert info["edit_frames"] == single.record["span_frames"] and codes is None
    assert np.abs(single.patched - single.baseline).max() > 1e-3  # the edit did something
    # one pass of the same composition is bitwise the same, whichever front end built the patch
    patches = [sweep.patch_for(embedded, it, {"d0": v}), engine.Patch(engine.resolve(embedded, spec))]
    outs = [engine.run(embedded, [engine.PassItem(torch.from_numpy(wave), p)], "continuous")[0] for p in patches]
    assert torch.equal(outs[0].output, outs[1].output) and outs[0].info["value"] == outs[1].info["value"]


def test_calibrated_subtraction_removes_the_measured_excess(embedded):
    """``subtract`` through the engine: ``v = -strength * c`` with ``c`` the item's projection
    excess, weights the template; with a template equal to the item's own projection above a
    zero level, c = 1 and the projection along the direction is removed where the template is."""
    layer = api.layers(embedded).get(LAYER)
    it = _sweep_item(embedded, "subtract", 1.0)
    wave = sweep._wave(embedded, it.stimulus, it.role)
    act = steerlab.capture_activations(embedded, [wave.numpy()], LAYER)[0]
    v = np.random.default_rng(1).standard_normal(layer.channels)
    u = v / np.linalg.norm(v)
    proj = u @ act.astype(np.float64)
    vectors = {"d0": v, "d0" + TEMPLATE: proj, "d0" + LEVEL: np.zeros_like(proj)}
    res = engine.run(embedded, [engine.PassItem(wave, sweep.patch_for(embedded, it, vectors))], "continuous")[0]
    assert res.info["projection_excess"] == pytest.approx(1.0, rel=1e-5)
    assert res.info["value"] == -1.0 * res.info["projection_excess"] and res.info["strength_mode"] == "projection"
    assert res.info["span_frames"] == [0, layer.frames_for(wave.shape[-1])]


class _Exploding:
    name = "explode"
    formula = "a_t <- boom"
    description = "raises inside apply"
    value_scale = "strength"

    def apply(self, act, direction, value, weight, state=None):
        raise RuntimeError("kaboom")


class _ExplodingPlugin:
    @hookimpl
    def steerlab_register_interventions(self, registry):
        registry.add(_Exploding())


def test_plugin_code_in_a_pass_runs_under_the_guard(embedded):
    """A type that fails inside a traced pass is reported as its plugin's failure (one line),
    not as a bare exception from inside the tracer."""
    plugins.reset()
    plugin = _ExplodingPlugin()
    plugins.register(plugin, name="exploding_plugin")
    try:
        layer = api.layers(embedded).get(LAYER)
        spec = api.InterventionSpec(layer=LAYER, direction=channel_direction(0, layer), intervention="explode")
        r = engine.resolve(embedded, spec)
        assert r.owner == "exploding_plugin" and r.layer is layer and r.path == "continuous"
        with pytest.raises(PluginError, match="plugin 'exploding_plugin' failed in intervention 'explode': .*kaboom"):
            engine.run(embedded, [engine.PassItem(torch.from_numpy(chord(0.2)), engine.Patch(r))], "continuous")
    finally:
        plugins.unregister(plugin)
        plugins.reset()


def test_a_patch_resolved_for_another_path_is_refused(embedded):
    layer = api.layers(embedded).get("latent")
    spec = api.InterventionSpec(layer="latent", direction=channel_direction(0, layer), path="quantized")
    patch = engine.Patch(engine.resolve(embedded, spec))
    with pytest.raises(InterventionError, match="patches resolved for path.s. quantized run on the continuous path"):
        engine.run(embedded, [engine.PassItem(torch.from_numpy(chord(0.2)), patch)], "continuous")


def test_weights_are_hashed_once_per_run(monkeypatch, tmp_path):
    """Every item's and chunk's record holds the weights hash; it is computed once and reused
    while the weights stay the same, and recomputed when they change in place."""
    import soundfile as sf

    from steerlab import runner

    model = api.load_model()
    calls = []
    real = AudioModel._compute_weights_hash
    monkeypatch.setattr(AudioModel, "_compute_weights_hash", lambda self, state: calls.append(1) or real(self, state))
    layer = api.layers(model).get("first_conv")
    spec = api.InterventionSpec(layer="first_conv", direction=channel_direction(3, layer), strength=Strength(0.5))
    results = api.intervene(model, [chord(0.2, seed=i) for i in range(3)], spec)
    hashes = {r.record["model"]["weights_sha256"] for r in results}
    assert len(calls) == 1 and len(hashes) == 1
    wav = tmp_path / "long.wav"
    sf.write(wav, chord(1.0, seed=5)[0], model.sample_rate, subtype="FLOAT")
    model.__dict__.pop("_weights_hash_cache")
    (doc,) = runner.intervene_files(model, [wav], spec, tmp_path / "out", chunk_s=0.25, overlap_s=0.05)
    assert doc["chunks"] >= 4 and len(calls) == 2 and doc["model"]["weights_sha256"] in hashes
    param = next(model.parameters())
    saved = param.detach().clone()
    with torch.no_grad():
        param.add_(1.0)
    changed = model.weights_hash()
    with torch.no_grad():
        param.copy_(saved)
    restored = model.weights_hash()
    assert len(calls) == 4 and changed not in hashes and restored in hashes


def test_intervention_spec_takes_keywords_only():
    with pytest.raises(TypeError):
        api.InterventionSpec("first_conv", None, "add")  # type: ignore[misc]
    spec = api.InterventionSpec(layer="first_conv", intervention="patch", options={"source": "a.wav"})
    assert spec.direction is None and spec.strength == Strength(1.0) and spec.span == Span()


def test_learned_direction_is_a_named_result(embedded):
    result = api.learned_direction("latent-features:5", embedded, "latent", "feature")
    ref, latent, direction = result  # still unpacks
    assert (result.ref, result.latent, result.direction) == (ref, latent, direction) and latent == 5
    assert result.direction.provenance["dictionary"]["spec"] == "latent-features"
