"""Planted truth for ``sae_ablate``, the ``sae`` method's removal in the SAE's code space (issue 11).

The SAE literature removes a feature by setting its code to zero and keeping the reconstruction error
(Marks et al. 2024, arXiv:2403.19647; Templeton et al. 2024): ``a' = a - z_j s W_dec[j]``,
``z = E(a)``. On a planted dictionary, with a centre, a scale, an impure target row and a channel the
dictionary cannot reconstruct (the error), the edit must remove exactly the feature's decoded
contribution, leave frames where the feature is inactive bitwise alone (where projecting the row out
does not), and change no other item of a partials run: its items come after every other, in batches
of their own, and only for ``sae``.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from steerlab.builtins.interventions.learned import FeatureClamp
from steerlab.partials import plan as plan_mod
from steerlab.partials.config import PartialsConfig, Thresholds
from steerlab.partials.plan import DirectionRef, ModelPlan, Unit, WorkItem, batches, work_items
from steerlab.partials.sweep import sae_code_ablation
from steerlab.partials.verdicts import verdicts
from steerlab.sae import SAEConfig, SparseAutoencoder
from steerlab.stimuli import StimulusSpec

WIDTH, TARGET, PARTNER, ERROR_BAND = 16, 5, 9, 15
CENTRE, SCALE = 0.3, 2.0


def _planted() -> tuple[SparseAutoencoder, np.ndarray, int]:
    """A TopK SAE (k = 2) whose rows are orthonormal: the target row ``0.96 e5 + 0.28 e9`` (impure,
    as the controls' features are), its partner ``-0.28 e5 + 0.96 e9``, and ``e_c`` for every other
    band but 15, which the dictionary cannot reconstruct. Encoder = decoder transpose, centre 0.3 on
    every channel, scale 2: codes are the rows' coefficients of ``(x - 0.3) / 2``."""
    rows = [np.eye(WIDTH)[c] for c in range(WIDTH) if c not in (TARGET, PARTNER, ERROR_BAND)]
    target = 0.96 * np.eye(WIDTH)[TARGET] + 0.28 * np.eye(WIDTH)[PARTNER]
    partner = -0.28 * np.eye(WIDTH)[TARGET] + 0.96 * np.eye(WIDTH)[PARTNER]
    rows = np.stack([target, partner, *rows])
    sae = SparseAutoencoder(SAEConfig(width=WIDTH, size=len(rows), k=2, center=True, normalize=True))
    with torch.no_grad():
        sae.W_dec.copy_(torch.from_numpy(rows).float())
        sae.W_enc.copy_(torch.from_numpy(rows.T).float())
        sae.center.fill_(CENTRE)
        sae.scale.fill_(SCALE)
    return sae, target, 0


def test_code_space_ablation_removes_exactly_the_features_decoded_contribution():
    sae, row, j = _planted()
    # frames [channels, 6]: the target's code 0.8 / 0.5 / 0 (a margin) / 0.05 (not in the top 2);
    # the partner, band 3 and the unreconstructable band 15 (the SAE's error) vary around it
    amp = np.array([0.8, 0.5, 0.0, 0.05, 0.7, 0.0])
    partner = np.array([0.2, 0.0, 0.3, 0.3, 0.1, 0.0])
    band3 = np.array([0.0, 0.1, 0.4, 0.9, 0.0, 0.0])
    err = np.array([0.5, 0.1, 0.2, 0.3, 0.0, 0.6])
    prow = -0.28 * np.eye(WIDTH)[TARGET] + 0.96 * np.eye(WIDTH)[PARTNER]
    code_space = np.outer(row, amp) + np.outer(prow, partner) + np.outer(np.eye(WIDTH)[3], band3)
    x = CENTRE + SCALE * code_space + np.outer(np.eye(WIDTH)[ERROR_BAND], err)  # raw [channels, frames]
    act = torch.from_numpy(x).float()
    state = sae_code_ablation(sae, j).state
    out = FeatureClamp().apply(act, None, 0.0, torch.ones(act.shape[1]), state).double().numpy()
    # expected by hand: the code is amp where the feature is in the top 2 (frame 3: 0.05 < 0.9 and 0.3)
    code = np.where(np.arange(6) == 3, 0.0, amp)
    expected = x - SCALE * np.outer(row, code)
    assert np.max(np.abs(out - expected)) < 1e-6  # measured: ~1e-7 (float32)
    assert np.array_equal(out[ERROR_BAND], x[ERROR_BAND].astype(np.float32))  # the error kept exactly
    # frames where the feature is inactive (the margin, frame 3) are left bitwise alone ...
    assert np.array_equal(out[:, [2, 3, 5]], act.numpy()[:, [2, 3, 5]])
    # ... where projecting the unit row out of the raw activation moves them (the centre's and the
    # partner's share along the row: 0.3 * (0.96 + 0.28) = 0.372 on frame 5, 0.8 at band 5 of frame 3)
    u = row / np.linalg.norm(row)
    projected = x - np.outer(u, u @ x)
    assert abs(u @ x[:, 5] - 0.372) < 1e-9 and np.max(np.abs(projected[:, 5] - x[:, 5])) > 0.3
    # the removed vector on a frame where the feature is active is its decoded contribution
    removed = x[:, 0] - out[:, 0]
    assert abs(np.linalg.norm(removed) - SCALE * 0.8) < 1e-5
    assert abs(removed @ u / np.linalg.norm(removed) - 1.0) < 1e-6


def _fake_plan(methods: tuple[str, ...]) -> tuple[ModelPlan, dict]:
    model = SimpleNamespace(name="m")
    layer = SimpleNamespace(name="latent")
    unit = Unit("m", plan_mod.MAIN, "latent", "inharmonic", 300.0, 1)
    specs = [StimulusSpec("inharmonic", 300.0, 1, seed=s, sample_rate=24000, duration_s=0.25) for s in (5, 6)]
    p = ModelPlan(model, plan_mod.MAIN, [layer], ["continuous"], (300.0,), (1,), methods=methods)  # type: ignore[arg-type]
    p.test[unit] = specs
    p.paths_for = lambda layer: ["continuous"]  # type: ignore[method-assign]
    p.capture_path = lambda layer, path: path  # type: ignore[method-assign]
    available = {DirectionRef(unit, m, "continuous"): m for m in methods}
    return p, available


def test_sae_ablate_items_come_after_every_other_item_only_for_sae_in_batches_of_their_own():
    cfg = PartialsConfig()
    without_sae, av0 = _fake_plan(("diffmeans", "random"))
    with_sae, av1 = _fake_plan(("diffmeans", "sae", "random"))
    a = work_items(without_sae, cfg, "h", av0)
    b = work_items(with_sae, cfg, "h", av1)
    assert all(it.op != "sae_ablate" for it in a)
    extra = [it for it in b if it.op == "sae_ablate"]
    assert len(extra) == 2 and all(it.method == "sae" and it.strength == 0.0 and it.role == "with" for it in extra)
    before = b[: len(b) - len(extra)]
    assert b[len(before) :] == extra  # after every other item
    assert [it.key() for it in before if it.method != "sae"] == [it.key() for it in a]
    for n in (3, 7, 16):  # the batches of every other item are those they had without sae_ablate
        old = [[it.key() for it in bt] for bt in batches(before, n)]
        new = [[it.key() for it in bt] for bt in batches(b, n) if bt[0].op != "sae_ablate"]
        assert old == new and all({it.op == "sae_ablate" for it in bt} != {True, False} for bt in batches(b, n))


def _row(method: str, op: str, strength: float, seed: int, gain: float, off: float) -> dict:
    return {
        "model": "m", "model_role": "main", "layer": "latent", "family": "inharmonic", "target_hz": 300.0,
        "density": 1, "method": method, "path": "continuous", "op": op, "strength": strength, "seed": seed,
        "gain_db": gain, "concentration": 0.9, "offband_db": off, "offband_lsd_db": off,
        "codes_changed_share": None, "layer_frame_rate_hz": 75.0,
    }  # fmt: skip


def test_sae_ablate_gets_its_own_verdict_and_leaves_the_others_unchanged():
    rows = []
    for s in range(5):
        rows += [_row("sae", "add", 1.0, s, 20.0, 0.2), _row("sae", "ablate", 0.0, s, -20.0, 3.0)]
        rows += [_row("sae", "subtract", 1.0, s, -5.0, 0.5)]
    old = verdicts(rows, Thresholds(), n_boot=50)
    new = verdicts(rows + [_row("sae", "sae_ablate", 0.0, s, -15.0, 0.4) for s in range(5)], Thresholds(), n_boot=50)
    assert [v.removal for v in old] == ["ablate", "subtract"] and not any(v.steerable for v in old)
    assert new[:2] == old  # the existing verdicts, field for field
    v = new[2]
    assert (v.removal, v.steerable, v.best_remove, v.pass_share) == ("sae_ablate", True, "sae_ablate", 1.0)
    assert WorkItem  # the item type accepts the op with strength 0 only (below)
    spec = StimulusSpec("inharmonic", 300.0, 1, seed=0, sample_rate=24000, duration_s=0.25)
    WorkItem("h", "m", "latent", spec, "with", "sae", "d", "sae_ablate", 0.0, "continuous")
    try:
        WorkItem("h", "m", "latent", spec, "with", "sae", "d", "sae_ablate", 1.0, "continuous")
    except Exception as exc:  # noqa: BLE001 - the library's ConfigError
        assert "sae_ablate" in str(exc)
    else:
        raise AssertionError("sae_ablate with a strength was accepted")


def test_the_battery_adds_sae_ablate_items_last_for_sae_only_in_batches_of_their_own():
    from steerlab.battery.concept import VARIANTS, PairSpec
    from steerlab.battery.plan import ConceptPlan, direction_id
    from steerlab.battery.plan import work_items as battery_items

    def concept_plan(methods: tuple[str, ...]) -> tuple[ConceptPlan, set[str]]:
        p, _ = _fake_plan(methods)
        pairs = [PairSpec("loudness", VARIANTS[0], s, 24000, 0.25, 0.1, 10.0) for s in (5, 6)]
        cp = ConceptPlan(SimpleNamespace(name="loudness"), p, [], pairs)  # type: ignore[arg-type]
        return cp, {direction_id("loudness", "m", "latent", m, "continuous") for m in methods}

    (cp0, av0), (cp1, av1) = concept_plan(("diffmeans", "random")), concept_plan(("diffmeans", "sae", "random"))
    a, b = battery_items(cp0, PartialsConfig(), "h", av0), battery_items(cp1, PartialsConfig(), "h", av1)
    extra = [it for it in b if it.op == "sae_ablate"]
    assert len(extra) == 2 and {it.method for it in extra} == {"sae"} and b[len(b) - 2 :] == extra
    assert [it.key() for it in b[: len(b) - 2] if it.method != "sae"] == [it.key() for it in a]
    old = [[it.key() for it in bt] for bt in batches(b[: len(b) - 2], 5)]  # type: ignore[arg-type]
    assert old == [[it.key() for it in bt] for bt in batches(b, 5) if bt[0].op != "sae_ablate"]  # type: ignore[arg-type]
