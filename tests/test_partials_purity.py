"""docs/partials.md, "What removal demands of a direction" (issue 11): how far an ablation direction
may stray from the partial's signature before the removal rule's off-band limit fails, and how close
the ``sae`` method's chosen feature comes under the ``independent`` recipe, measured on the
filterbank control (steerlab.partials.purity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steerlab.partials import purity


@pytest.fixture(scope="module")
def fb_plan():
    from steerlab import partials

    return purity.control_plan(partials.build(quick=True), "filterbank_24khz")


def _unit(plan, hz: float, density: int):
    return next(u for u in plan.test if round(u.target_hz) == hz and u.density == density)


def test_tilt_and_residual_geometry():
    from steerlab.errors import ConfigError

    d = np.zeros(8)
    d[3] = 1.0
    for shape in purity.RESIDUALS:
        r = purity.residual(d, shape)
        assert abs(r @ d) < 1e-12 and np.linalg.norm(r) == pytest.approx(1.0)
        for eps in (0.01, 0.03, 0.1):
            assert purity.tilted(d, r, eps) @ d == pytest.approx(1 / np.sqrt(1 + eps**2))
    with pytest.raises(ConfigError, match="residual"):
        purity.residual(d, "sparse")


def test_removal_fails_off_band_at_a_three_percent_tilt_that_concentration_does_not_see(fb_plan):
    """1223 Hz, density 1, first held-out stimulus: along the signature itself ablation removes
    32 dB with 0.01 dB off-band; tilted by eps = 0.03 (cosine 0.99955) towards every band alike the
    off-band distance is 1.7 dB (limit 1 dB), by eps = 0.1 (cosine 0.995, the SAE features' range)
    3.4-4.6 dB for both residual shapes; concentration stays >= 0.99 throughout, so only the off-band
    limit sees the tilt."""
    model, layer = fb_plan.model, fb_plan.layers[0]
    spec = fb_plan.test[_unit(fb_plan, 1223, 1)][0]
    d = purity.signature(model, layer, spec, model.default_path)
    exact = purity.ablation_scores(model, layer, spec, d, model.default_path)
    assert exact["loss_db"] > 30 and exact["offband_db"] < 0.1 and exact["concentration"] > 0.99
    scores = {
        (shape, eps): purity.ablation_scores(
            model, layer, spec, purity.tilted(d, purity.residual(d, shape), eps), model.default_path
        )
        for shape in purity.RESIDUALS
        for eps in (0.03, 0.1)
    }
    assert scores[("uniform", 0.03)]["offband_db"] > 1.2
    assert min(scores[(k, 0.1)]["offband_db"] for k in purity.RESIDUALS) > 3.0
    assert min(s["concentration"] for s in scores.values()) > 0.95
    assert min(s["loss_db"] for s in scores.values()) > 20  # every tilt still removes the partial


def test_sae_features_of_the_independent_recipe_miss_that_tolerance_on_every_seed(fb_plan):
    """The recipe's dictionary (seed 0, 3,000 steps: the one RUNI used, bitwise: its data hash and
    its chosen feature 7 at cosine 0.9766) and seeds 1 and 2: no chosen feature at 304 Hz reaches
    the cosine 0.99955 (eps 0.03) at which ablation already leaves more than 1 dB off-band; torch at
    one thread (the SAE's float sums, hence its features, depend on the thread count)."""
    from steerlab import partials

    cfg = partials.build(quick=True, overrides={"grid": {"sae_data": "independent"}})
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows, data = purity.sae_alignment(cfg, fb_plan, [3000], [0, 1, 2])
    finally:
        torch.set_num_threads(before)
    assert data["data_sha256"].startswith("deddfe7906c72f13") and data["frames"] == 16287
    at = {(r["seed"], round(r["target_hz"]), r["density"]): r for r in rows}
    assert at[(0, 304, 1)]["feature"] == 7 and at[(0, 304, 1)]["cosine"] == pytest.approx(0.9766, abs=5e-4)
    tolerance = 1 / np.sqrt(1 + 0.03**2)
    assert max(r["cosine"] for r in rows if round(r["target_hz"]) == 304) < tolerance
    assert all(r["cosine"] == pytest.approx(r["best_aligned_cosine"]) for r in rows)  # the rule picks the best


def test_sae_alignment_needs_a_stimulus_recipe(fb_plan):
    from steerlab import partials
    from steerlab.errors import PlanError

    with pytest.raises(PlanError, match="sae_data"):
        purity.sae_alignment(partials.build(quick=True), fb_plan, [10], [0])
