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


def _model_dictionary(model, layer: str, sae: SparseAutoencoder) -> Dictionary:
    return Dictionary(sae=sae, model=model.name, layer=layer, target="feature", weights_hash=None, data_description="t")


@pytest.mark.parametrize(
    ("name", "layer", "width", "rate", "kind", "key"),
    [
        ("samplecnn_24khz", "block.3", 32, 24_000, "logits", "kl"),  # a classifier: KL and top-1 agreement
        ("crepe_tiny_16khz", "conv2", 16, 16_000, "other", "mean_abs_change"),  # pitch salience change
    ],
)
def test_classifier_and_pitch_branches(name, layer, width, rate, kind, key):
    """The identity dictionary recovers all of the output; a dictionary that never fires decodes to
    exactly 0, so its splice is bitwise the zero ablation."""
    from steerlab import api
    from steerlab.synth import ClipSpec, synthesize

    model = api.load_model(name)
    waves = [synthesize(ClipSpec("chord", seed, rate, 0.5))[None] for seed in range(2)]
    same = splice_fidelity(model, _model_dictionary(model, layer, _identity(width)), waves)
    assert same["output"] == kind and same["distance"] == key
    assert same["zero_ablation"][key] > 1e-3  # the reference does move the output
    assert same["spliced"][key] < 1e-6 * same["zero_ablation"][key]
    assert same["recovered_vs_zero"] == pytest.approx(1.0, abs=1e-6)
    assert same["recovered_vs_mean"] == pytest.approx(1.0, abs=1e-5)
    if kind == "logits":
        assert same["spliced"]["agreement"] == 1.0
    none = splice_fidelity(model, _model_dictionary(model, layer, _zero(width)), waves)
    assert none["spliced"] == none["zero_ablation"]  # exactly: the same patched pass
    assert none["recovered_vs_zero"] == 0.0


def _wav_folder(folder, n: int, rate: int = 24_000):
    import numpy as np
    import soundfile as sf

    folder.mkdir()
    for i in range(n):
        t = np.arange(rate * 3) / rate
        sf.write(folder / f"{i}.wav", 0.3 * np.sin(2 * np.pi * (110 + 50 * i) * t), rate)
    return folder


def test_held_out_files_are_left_out_of_training(tmp_path):
    from steerlab.capture import Corpus
    from steerlab.fidelity import held_out

    corpus = Corpus([str(_wav_folder(tmp_path / "a", 5))], 24_000, 1)
    h = held_out(corpus, 2, 1.5, seed=3)
    assert h.record["clips"] == 2 and h.record["seconds"] == 3.0
    assert [w.shape for w in h.waves] == [(1, 36_000)] * 2
    trained = {str(p) for p in h.train.sources[0].files()}
    assert len(trained) == 3 and trained.isdisjoint(h.record["ids"])
    assert held_out(corpus, 2, 1.5, seed=3).record["ids"] == h.record["ids"]  # seeded
    assert held_out(corpus, 5, 1.5).record["reason"].startswith("the corpus has 5 usable file(s)")


def test_held_out_generated_clips_are_fresh():
    from steerlab.capture import Corpus
    from steerlab.fidelity import held_out

    corpus = Corpus(["synth:3", "noise:2"], 24_000, 1, seed=0, clip_seconds=1.0)
    h = held_out(corpus, 3, 0.5)
    assert h.train is corpus  # the training corpus is unchanged
    assert [i.split(":")[0] for i in h.record["ids"]] == ["synth", "noise", "synth"]
    train = [w for _, w in corpus.clips()]
    assert all(
        not any(w[:, :12_000].shape == t[:, :12_000].shape and (w == t[:, :12_000]).all() for t in train)
        for w in h.waves
    )
    assert "reason" in held_out(Corpus(["sines:3"], 24_000, 1), 2).record


def test_learn_stores_fidelity_and_analyze_quotes_it(tmp_path):
    """The learn CLI writes metrics["fidelity"] measured on held-out clips; the analysis report quotes
    it, and measures a dictionary without one on its own corpus (saying so)."""
    import json

    from click.testing import CliRunner

    from steerlab import api, dictionary
    from steerlab.analysis import splice
    from steerlab.capture import Corpus
    from steerlab.cli import get_cli

    out = tmp_path / "d"
    args = ["learn", "features", "-l", LAYER, "--data", "synth:2", "--clip-seconds", "0.5", "-o", str(out)]
    res = CliRunner().invoke(
        get_cli(), [*args, "--size", "16", "--k", "2", "--epochs", "1", "--fidelity-seconds", "0.25"]
    )
    assert res.exit_code == 0, res.output
    f = json.loads((out / "config.json").read_text())["metrics"]["fidelity"]
    assert f["held_out"]["clips"] == 2 and f["held_out"]["seconds"] == 0.5
    assert f["n_clips"] == 2 and f["recovered_vs_zero"] < 1.0 and "Bricken" in f["references"]
    d = dictionary.load(out)
    model = api.load_model(d.model)
    corpus = Corpus.for_model(model, ["synth:1"], clip_seconds=0.25)
    quoted = splice.report(d, model, corpus, lambda m: None)
    assert quoted["recovered_vs_zero"] == f["recovered_vs_zero"] and "held out" in quoted["source"]
    del d.metrics["fidelity"]
    measured = splice.report(d, model, corpus, lambda m: None)
    assert measured["held_out"]["clips"] == 1 and "may have been in" in measured["source"]
    assert measured["recovered_vs_zero"] is not None and "splice fidelity" in measured["headline"]


# --- what splice_fidelity accepts, and what it does not measure --------------------------------


def test_a_1d_wave_is_mono_and_measures_as_its_2d_form(embedded):
    """A 1-D wave raised "ValueError: not enough values to unpack"; capture_activations takes it
    as mono, and so does this (the shared steerlab.capture.check_waves)."""
    d = _wrap(_identity(24), embedded)
    waves = _waves(2)
    assert splice_fidelity(embedded, d, [w[0] for w in waves]) == splice_fidelity(embedded, d, waves)


def test_bad_waves_are_refused_in_one_line(embedded):
    """A stereo wave to a mono model raised a raw torch RuntimeError; an all-NaN clip returned NaN
    everywhere."""
    import numpy as np

    from steerlab.errors import AudioError, ConfigError

    d = _wrap(_identity(24), embedded)
    stereo = np.repeat(_waves(1)[0], 2, axis=0)
    with pytest.raises(ConfigError, match=r"waves\[0\] has 2 channels but .* takes 1") as e:
        splice_fidelity(embedded, d, [stereo])
    assert "\n" not in str(e.value) and e.value.parameters == ("waves",)
    with pytest.raises(AudioError, match=r"waves\[1\] contains 6000 NaN or infinite samples") as e:
        splice_fidelity(embedded, d, [_waves(1)[0], np.full((1, 6000), np.nan, np.float32)])
    assert "\n" not in str(e.value)


def test_a_clip_shorter_than_the_mrstft_window_nulls_it_with_reasons(embedded):
    """A 10-sample clip gave mean_ablation.mrstft 0.0 (a zero-padded window, not the audio) and
    recovered_vs_mean null without a reason; intervene nulls MR-STFT under 2048 samples."""
    import numpy as np

    from steerlab import scoring

    d = _wrap(_identity(24), embedded)
    tiny = _waves(1)[0][:, 1000:1010]
    f = splice_fidelity(embedded, d, [tiny])
    n_out = 10  # the codec's decode of 10 samples
    reason = scoring.resolution(n_out, 24_000)["mrstft_reason"]
    assert reason == "10 samples are shorter than the longest MR-STFT window (2048 samples)"
    for block in ("spliced", "zero_ablation", "mean_ablation"):
        assert f[block]["mrstft"] is None and f[block]["mrstft_reason"] == f"clip 0: {reason}"
        assert np.isfinite(f[block]["si_sdr_db"])  # measured: SI-SDR needs no window
    for key in ("recovered_vs_zero", "recovered_vs_mean"):
        assert f[key] is None and f[f"{key}_reason"] == f"the mrstft distance is not measured: clip 0: {reason}"
    # one short clip among long ones nulls the block's mean: no mean over a subset posing as all
    mixed = splice_fidelity(embedded, d, [*_waves(1), np.ascontiguousarray(_waves(2)[1][:, :2047])])
    assert mixed["spliced"]["mrstft"] is None and mixed["spliced"]["mrstft_reason"].startswith("clip 1: 2047 samples")
    assert splice_fidelity(embedded, d, [np.ascontiguousarray(_waves(1)[0][:, :2048])])["spliced"]["mrstft"] < 1e-4


def test_a_null_recovered_share_always_has_a_reason(embedded, monkeypatch):
    """An ablation that leaves the output unchanged (D(ablated) = 0) gives a null share, and
    splice_fidelity itself says why (measure() used to add it; direct callers got none)."""
    from steerlab import fidelity

    real = fidelity._distance

    def unchanged_by_mean(model, clean, other):
        out = real(model, clean, other)
        return out if calls.append(1) or len(calls) <= 6 else {k: 0.0 for k in out}  # 3 clips x 2 blocks first

    calls: list[int] = []
    monkeypatch.setattr(fidelity, "_distance", unchanged_by_mean)
    f = splice_fidelity(embedded, _wrap(_identity(24), embedded), _waves())
    assert f["recovered_vs_zero"] == pytest.approx(1.0, abs=1e-4) and "recovered_vs_zero_reason" not in f
    assert f["recovered_vs_mean"] is None
    assert f["recovered_vs_mean_reason"] == "mean ablation leaves the output unchanged on these clips (D(ablated) = 0)"
