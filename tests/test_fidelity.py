"""The splice fidelity of a dictionary (steerlab.fidelity): its reconstruction spliced into the
layer, against the unspliced output, bracketed by zero and mean ablation."""

from __future__ import annotations

import math

import pytest
import torch

from steerlab.dictionary import Dictionary
from steerlab.fidelity import splice_fidelity
from steerlab.sae import SAEConfig, SparseAutoencoder, train_sae

LAYER = "encoder.3.conv"  # 24 channels


def _waves(n: int = 3, seconds: float = 0.25):
    from steerlab.synth import ClipSpec, synthesize

    return [synthesize(ClipSpec("chord", seed, 24_000, seconds))[None] for seed in range(n)]


def _wrap(sae: SparseAutoencoder, model, target: str = "feature") -> Dictionary:
    return Dictionary(sae=sae, model=model.name, layer=LAYER, target=target, weights_hash=None, data_description="t")


def _identity(width: int) -> SparseAutoencoder:
    """A relu SAE whose codes are (x + 1000) per dimension plus its negation: decode is exactly x."""
    sae = SparseAutoencoder(
        SAEConfig(width=width, size=2 * width, architecture="relu", k=1, center=False, normalize=False)
    )
    eye = torch.eye(width, dtype=torch.float64)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0) / math.sqrt(1))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def _zero(width: int) -> SparseAutoencoder:
    sae = SparseAutoencoder(SAEConfig(width=width, size=4, architecture="relu", k=1, center=False, normalize=False))
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_enc.fill_(-1.0)  # never fires: decode = b_dec = 0
        sae.b_dec.zero_()
    return sae


def test_identity_dictionary_recovers_everything(embedded):
    """relu(x) - relu(-x) = x: the splice changes nothing, so recovered is 1 and SI-SDR huge."""
    f = splice_fidelity(embedded, _wrap(_identity(24), embedded), _waves())
    print(f)
    assert f["output"] == "decoder" and f["distance"] == "mrstft"
    assert f["spliced"]["mrstft"] < 1e-4 and f["spliced"]["si_sdr_db"] > 60
    assert f["recovered_vs_zero"] == pytest.approx(1.0, abs=1e-4)
    assert f["recovered_vs_mean"] == pytest.approx(1.0, abs=1e-4)
    assert f["zero_ablation"]["mrstft"] > 0.1  # the references do change the decode


def test_zero_dictionary_is_the_zero_ablation(embedded):
    f = splice_fidelity(embedded, _wrap(_zero(24), embedded), _waves())
    assert f["spliced"] == pytest.approx(f["zero_ablation"], rel=1e-6)
    assert f["recovered_vs_zero"] == pytest.approx(0.0, abs=1e-6)


def test_learned_dictionary_recovers_part(embedded):
    """A small TopK dictionary learned on other clips keeps part of the decode: strictly between
    the ablation (0) and a perfect reconstruction (1)."""
    from steerlab import tracing
    from steerlab.loading import layers

    layer = layers(embedded).get(LAYER)
    train = [torch.from_numpy(w).float() for w in _waves(6, 0.5)[3:]]
    acts = tracing.run(embedded, [tracing.TraceItem(w, layer, None, save_activation=True) for w in train])
    x = torch.cat([r.activation.T for r in acts])
    sae, _ = train_sae(x, SAEConfig(width=24, size=32, k=4, epochs=20, batch_size=128))
    f = splice_fidelity(embedded, _wrap(sae, embedded), _waves())
    print({k: f[k] for k in ("spliced", "zero_ablation", "mean_ablation", "recovered_vs_zero", "recovered_vs_mean")})
    assert 0.0 < f["recovered_vs_zero"] < 1.0 and 0.0 < f["recovered_vs_mean"] < 1.0
    assert f["spliced"]["si_sdr_db"] > f["zero_ablation"]["si_sdr_db"]


def test_archetype_identity_and_wrong_model(embedded):
    f = splice_fidelity(embedded, _wrap(_identity(24), embedded, "archetype"), _waves(2))
    # r_t + (r_{t+1} - r_t) is r_{t+1} up to float32 round-off (measured 0.99976)
    assert f["recovered_vs_zero"] == pytest.approx(1.0, abs=1e-3)
    from steerlab.errors import SteerlabError

    with pytest.raises(SteerlabError):
        splice_fidelity(
            embedded,
            Dictionary(
                sae=_identity(24), model="other", layer=LAYER, target="feature", weights_hash=None, data_description="t"
            ),
            _waves(1),
        )
