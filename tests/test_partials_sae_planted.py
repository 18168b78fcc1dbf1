"""Planted truth for the ``sae`` method of ``steerlab partials`` (issue 11).

Two questions, each with a planted answer:

1. Selection and steering (:func:`steerlab.partials.directions.sae_feature`): given a dictionary
   that *does* hold a feature for the target, is that feature chosen, with the right sign, and is
   the steering direction its decoder row (so ablating along it removes the target and nothing
   else)? A hand-built TopK dictionary over non-negative "band" activations, the way the positive
   controls' layers look (a partial at a band centre is ``+A`` on one channel), with distractors
   the rules before issue 11 would have picked.
2. The stimulus recipe's data (:mod:`steerlab.partials.sae_data`): on planted band activations
   (quasi-stationary clips of matched pairs, contexts of random bands, two targets), does a TopK
   SAE trained with the recipe's settings recover the target's band and is it chosen? Measured:
   with the training stimuli alone (12, as ``--quick``) the dictionary memorises clips; with
   ``ceil(K ln K)`` stimuli the chosen feature is the band to a cosine over 0.94
   (docs/partials.md).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from steerlab.partials.directions import sae_feature
from steerlab.sae import SAEConfig, SparseAutoencoder

WIDTH = 16
TARGET = 5


def _planted_dictionary(rows: np.ndarray, k: int) -> SimpleNamespace:
    """A TopK SAE whose decoder rows are ``rows`` (unit) and whose encoder is their transpose, no
    centring, no bias: codes are the top ``k`` projections on the rows."""
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    sae = SparseAutoencoder(SAEConfig(width=WIDTH, size=len(rows), k=k, center=False, normalize=False))
    with torch.no_grad():
        sae.W_dec.copy_(torch.from_numpy(rows).float())
        sae.W_enc.copy_(torch.from_numpy(rows.T).float())
    return SimpleNamespace(sae=sae, directions=sae.directions, layer="bands", data_hash="planted")


def _e(*channels: int) -> np.ndarray:
    v = np.zeros(WIDTH)
    v[list(channels)] = 1.0
    return v


def test_the_planted_feature_is_selected_signed_and_steered_along_its_decoder_row():
    """Rows: one per band; a harmonic complex (target + octave); a 'detector' row on band 14,
    which the with-target frames excite by a small constant (a huge standardised effect, a tiny
    mean difference: the pre-issue-11 rule's pick); an 'absence' row ``-e_5`` (fires on nothing
    here). The target on band 5 varies in amplitude between clips. The rule must pick band 5's row
    (largest mean code difference), not the detector, the complex or the absence row."""
    rows = np.stack([*(_e(c) for c in range(WIDTH)), _e(TARGET, 11), -_e(TARGET)])
    d = _planted_dictionary(rows, k=4)
    rng = np.random.default_rng(0)
    without, with_ = [], []
    for i in range(6):
        ctx = np.zeros(WIDTH)
        ctx[rng.choice([c for c in range(WIDTH) if c not in (TARGET, 11, 14)], 1)] = rng.uniform(0.5, 1.5)
        frames = np.tile(ctx, (20, 1))
        without.append(frames)
        amp = 0.5 + 0.2 * i  # the target's amplitude varies between clips
        with_.append(frames + amp * _e(TARGET) + 0.01 * _e(14))
    vec, prov = sae_feature(without, with_, d)
    assert prov["feature"] == TARGET
    assert np.allclose(vec, _e(TARGET), atol=1e-6)  # the decoder row, unit, towards "with"
    assert prov["best_aligned_feature"] == TARGET and prov["best_aligned_cosine"] > 0.999
    # the rule before issue 11 (mean difference / pooled sd) would have picked the detector row
    c0 = np.concatenate([d.sae.encode(torch.from_numpy(w).float()).detach().numpy() for w in without])
    c1 = np.concatenate([d.sae.encode(torch.from_numpy(w).float()).detach().numpy() for w in with_])
    sd = np.sqrt(0.5 * (c0.var(0) + c1.var(0))) + 1e-12
    assert int(np.argmax(np.abs(c1.mean(0) - c0.mean(0)) / sd)) == 14
    # steering along the chosen row: ablation removes the target's band and leaves every other
    u = vec / np.linalg.norm(vec)
    for w1 in with_:
        ablated = w1 - np.outer(w1 @ u, u)
        assert np.allclose(ablated[:, TARGET], 0.0) and np.allclose(
            np.delete(ablated, TARGET, 1), np.delete(w1, TARGET, 1)
        )


def test_a_falling_feature_is_steered_towards_with():
    """The target *lowers* a feature's code (an 'absence' row ``-e_5`` fires on the without
    frames of a centred dictionary): the direction is minus its row, i.e. ``+e_5``."""
    rows = np.stack([-_e(TARGET), _e(2), _e(3)])
    d = _planted_dictionary(rows, k=1)
    base = np.tile(-_e(TARGET) + 0.1 * _e(2), (10, 1))
    vec, prov = sae_feature([base], [base + _e(TARGET)], d)
    assert prov["feature"] == 0 and prov["mean_code_difference"] < 0
    assert np.allclose(vec, _e(TARGET), atol=1e-6)


# planted band activations for the recipe test: WIDTH_R bands, each partial leaks 0.2 into its
# neighbours (a band's skirt), quasi-stationary clips of T frames, small noise
WIDTH_R, FRAMES = 48, 8
TARGETS, DENSITIES = (10, 30), (1, 4)


def _atom(band: int) -> np.ndarray:
    v = np.zeros(WIDTH_R)
    v[band] = 1.0
    return v + 0.2 * (np.roll(v, 1) + np.roll(v, -1))


def _pair(target: int, density: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, target, density])
    bands = rng.choice([c for c in range(WIDTH_R) if abs(c - target) > 1], density, replace=False)
    ctx = sum(a * _atom(b) for a, b in zip(rng.uniform(0.5, 1.5, density), bands))
    without = ctx + 0.01 * rng.standard_normal((FRAMES, WIDTH_R))
    return without, without + _atom(target)


def _recipe_data(n_stimuli: int) -> np.ndarray:
    """Both signals of ``n_stimuli`` stimuli: the 3 training seeds of each unit first, then further
    seeds (the recipe's order, :func:`steerlab.partials.sae_data.dictionary_specs`)."""
    units = [(t, d) for t in TARGETS for d in DENSITIES]
    clips = []
    for j in range(n_stimuli):
        t, d = units[j % len(units)]
        clips += list(_pair(t, d, j // len(units)))
    return np.concatenate(clips, 0).astype(np.float32)


def _chosen_cosines(n_stimuli: int, size: int) -> list[float]:
    from steerlab.partials.sae_data import fit

    recipe = {"size": size, "k": 8, "steps": 1000, "seed": 0}
    sae, _ = fit(_recipe_data(n_stimuli), recipe)
    d = SimpleNamespace(sae=sae, directions=sae.directions, layer="bands", data_hash="planted")
    out = []
    for t in TARGETS:
        for dens in DENSITIES:
            without, with_ = zip(*(_pair(t, dens, s) for s in range(3)))
            vec, _ = sae_feature(list(without), list(with_), d)
            atom = _atom(t) / np.linalg.norm(_atom(t))
            out.append(float(vec @ atom / np.linalg.norm(vec)))
    return out


def test_recipe_on_planted_bands_ceil_k_ln_k_stimuli_recover_the_band():
    """Measured (64 latents, k 8, 1000 steps, 8 frames a clip): with the training stimuli alone
    (12 stimuli, 24 clips, the old recipe) the chosen feature's cosine with the planted band is
    0.63-0.92 (clips memorised: 0.63 on two cells); with ``ceil(K ln K)`` = 267 stimuli (the
    recipe) 0.944-0.962 on every cell: the band is recovered and chosen, though not at 0.95 on
    every cell (the two targets' features mix; docs/partials.md)."""
    from steerlab.partials.sae_data import min_stimuli

    size = 64
    few = _chosen_cosines(12, size)
    many = _chosen_cosines(min_stimuli(size), size)
    assert min(few) < 0.8
    assert min(many) > 0.9 and np.mean(many) > np.mean(few) + 0.1
