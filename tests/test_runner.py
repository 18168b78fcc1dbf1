"""File-level runs: outputs, records, long inputs in chunks, the 48 kHz model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from steerlab import api, metrics, runner
from steerlab.interventions import Span, Strength, channel_direction
from tests.conftest import chord


def _spec(model, layer="first_conv", alpha=0.5, span=Span()):
    info = api.layers(model).get(layer)
    return api.InterventionSpec(
        layer=info.name, direction=channel_direction(3, info), intervention="add", strength=Strength(alpha), span=span
    )


def test_outputs_and_record(embedded, tmp_path):
    wav = tmp_path / "in.wav"
    sf.write(wav, chord(0.5, sr=44_100, seed=2)[0], 44_100)  # resampled to 24 kHz on the way in
    docs = runner.intervene_files(embedded, [wav], _spec(embedded), tmp_path / "out", [440.0])
    folder = tmp_path / "out" / "in"
    assert sorted(p.name for p in folder.iterdir()) == ["baseline.wav", "patched.wav", "scores.json", "spectrogram.png"]
    doc = json.loads((folder / "scores.json").read_text())
    assert doc == json.loads(json.dumps(docs[0]))
    assert doc["input"]["conversion"].startswith("resampled 44100 Hz -> 24000 Hz")
    assert doc["model"]["weights_sha256"] == embedded.weights_hash()
    assert doc["layer"] == "encoder.0.conv" and doc["path"] == "continuous"
    assert doc["direction"] == {"source": "channel", "channel": 3, "norm": 1.0}
    assert doc["strength_mode"] == "relative"
    assert doc["effective_value"] == pytest.approx(0.5 * doc["layer_rms_norm"])
    assert set(doc["versions"]) >= {"torch", "encodec", "nnsight", "steerlab"}
    base, sr = sf.read(folder / "baseline.wav")
    assert sr == 24_000 and len(base) == round(0.5 * 24_000)
    assert not any(p.name.startswith(".") for p in (tmp_path / "out").iterdir())


def test_long_input_streams_in_chunks(embedded, tmp_path):
    wav = tmp_path / "long.wav"
    x = np.concatenate([chord(1.0, seed=s)[0] for s in range(4)])
    sf.write(wav, x, 24_000, subtype="FLOAT")
    spec = _spec(embedded, span=Span(1.5, 2.5))
    whole = runner.intervene_files(embedded, [wav], spec, tmp_path / "whole", [440.0], chunk_s=60.0)[0]
    chunked = runner.intervene_files(embedded, [wav], spec, tmp_path / "chunked", [440.0], chunk_s=1.0, overlap_s=0.25)[
        0
    ]
    # 1 s chunks, overlap rounded to 19 frames of 320 samples: starts every 17920 samples
    assert chunked["scores"]["spectral"]["chunked"]["chunks"] == 6
    for name in ("baseline.wav", "patched.wav"):
        a, _ = sf.read(tmp_path / "whole" / "long" / name)
        b, _ = sf.read(tmp_path / "chunked" / "long" / name)
        assert a.shape == b.shape == x.shape
        import torch

        sdr = float(metrics.si_sdr(torch.from_numpy(b), torch.from_numpy(a)))
        assert sdr > 20.0, f"{name}: chunked decode departs from the whole-file decode ({sdr:.1f} dB)"
    # the patch lands only inside its span in both runs
    wb, _ = sf.read(tmp_path / "chunked" / "long" / "baseline.wav")
    wp, _ = sf.read(tmp_path / "chunked" / "long" / "patched.wav")
    diff = np.abs(wp - wb)
    assert diff[: int(1.4 * 24_000)].max() < 1e-6 < diff[int(1.5 * 24_000) : int(2.5 * 24_000)].max()
    g_whole = whole["scores"]["spectral"]["targets"][0]["gain_db"]
    g_chunk = chunked["scores"]["spectral"]["targets"][0]["gain_db"]
    assert g_chunk == pytest.approx(g_whole, abs=0.5)


def test_48khz_stereo_runs_and_batches_equal_lengths(tmp_path):
    from steerlab import plugins, tracing
    from steerlab.builtins.encodec.codec import OFFICIAL_48KHZ
    from steerlab.builtins.encodec.loaders import random_codec

    model = random_codec("encodec_48khz", OFFICIAL_48KHZ)
    model.layer_registry = plugins.layers_for(model)
    assert not model.ragged_batching
    x = np.stack([chord(0.3, sr=48_000, seed=1)[0], chord(0.3, sr=48_000, seed=2)[0]])
    res = api.intervene(model, [x, x[::-1].copy(), x[:, :9000].copy()], _spec(model, "encoder.3.conv", 2.0))
    assert all(r.patched.shape == r.baseline.shape for r in res)
    assert res[0].baseline.shape == (2, x.shape[-1]) and res[2].baseline.shape == (2, 9000)
    assert np.abs(res[0].patched - res[0].baseline).max() > 1e-5
    import torch

    alone = tracing.run(model, [tracing.TraceItem(torch.from_numpy(x))])[0].output.numpy()
    assert np.abs(alone - res[0].baseline).max() < 1e-5
