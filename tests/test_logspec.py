"""The third positive-control model ``logspec_24khz`` (docs/logspec.md): its layer, an inverse
exact to float32 round-off, and the analytic claims it is a control for, measured: adding the
constant vector ``c`` to the layer gives the input times ``e^c``, a tilt ramp gives the tilted
input, and the loudness pair's difference of means is the constant vector; a deterministic
weights hash that covers the floor."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from steerlab import api, tracing
from steerlab.errors import ModelLoadError

SR = 24_000


@pytest.fixture(scope="module")
def logspec():
    return api.load_model("logspec_24khz")


def _tones(freqs, amps, seconds: float, margin_s: float = 0.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, len(freqs))
    x = sum(a * np.sin(2 * np.pi * f * t + p) for f, a, p in zip(freqs, amps, phases))
    pad = np.zeros(int(margin_s * SR))
    return np.concatenate([pad, x, pad]).astype(np.float32)[None]


def _edit(model, wave: np.ndarray, fn):
    """(baseline, patched) decodes of ``wave`` with ``fn(act [bins, frames]) -> act`` on the
    input's frames of ``log_magnitude``."""
    layer = api.layers(model).get("log_magnitude")
    x = torch.from_numpy(wave)

    def edit(act, n_frames):
        out = act.clone()
        out[0, :, :n_frames] = fn(out[0, :, :n_frames])
        return out

    base, patched = tracing.run(model, [tracing.TraceItem(x), tracing.TraceItem(x, layer, edit)])
    return base.output.numpy()[0].astype(np.float64), patched.output.numpy()[0].astype(np.float64)


def test_layer_and_options(logspec, tmp_path):
    from steerlab import plugins

    assert plugins.models().owners["logspec_24khz"] == "steerlab.builtins.logspec"
    reg = api.layers(logspec)
    assert reg.names() == ["log_magnitude"]
    layer = reg.get("log_magnitude")
    assert (layer.channels, layer.stride, layer.receptive_field) == (2049, 1024, 4096)
    assert logspec.right_context == 2048 and not logspec.causal
    # the layer is ln(max(|X|, floor) / floor): silence reads 0, a partial of amplitude A at a bin
    # centre reads ln(A / floor) on its bin (stft_24khz's amplitude scale)
    k = 171  # 1001.95 Hz
    wave = _tones([k * SR / 4096], [0.25], 1.0, margin_s=0.5)
    with torch.no_grad():
        spec = logspec.stft.analyse(torch.from_numpy(wave)[None])
        act = logspec.layer(spec)[0]
    assert float(act[:, :3].abs().max()) == 0.0
    assert float(act[k, 20]) == pytest.approx(math.log(0.25 / 1e-12), abs=1e-4)
    assert api.load_model("logspec_24khz", random_init=True).weights_hash() == logspec.weights_hash()
    with pytest.raises(ModelLoadError, match="has no weights file"):
        api.load_model("logspec_24khz", checkpoint=tmp_path / "w.safetensors")
    with pytest.raises(ModelLoadError, match="floor must be a number"):
        api.load_model("logspec_24khz", floor=0.0)


def test_weights_hash_is_deterministic_and_covers_the_floor(logspec):
    """No learned weights: the hash is the window's and the floor's, the same on every build
    (pinned), and another floor is another model."""
    again = api.load_model("logspec_24khz")
    assert again.weights_hash() == logspec.weights_hash()
    assert logspec.weights_hash().startswith("b337887bf9e28a61")
    assert api.load_model("logspec_24khz", floor=1e-10).weights_hash() != logspec.weights_hash()


def test_unpatched_round_trip(logspec):
    """Unpatched, the decode is the input up to float32 round-off of ``exp(ln |X|)`` (measured:
    max error 1.2e-6, relative RMS 3.1e-7 on unit-variance noise; 2.4e-7 on tones in silence)."""
    x = np.random.default_rng(0).standard_normal(SR).astype(np.float32)[None]
    tones = _tones([440.0, 3000.7], [0.3, 0.1], 0.5, margin_s=0.2)
    for wave, max_err, rel in ((x, 5e-6, 1e-6), (tones, 1e-6, 1e-6)):
        with torch.no_grad():
            y = logspec(torch.from_numpy(wave)[None]).numpy()[0]
        assert y.shape == wave.shape
        assert np.abs(y - wave).max() < max_err
        assert np.sqrt(np.mean((y - wave) ** 2) / np.mean(wave**2)) < rel


@pytest.mark.parametrize("c", [0.5, -1.0, 3.0])
def test_adding_a_constant_vector_is_a_gain(logspec, c):
    """``|gX| = g|X|``: adding ``c * 1`` on every frame gives ``e^c x`` (measured: 5.6e-7 of the
    peak at most; 4.7e-7 measured), tones in silence included (the silent frames stay silent)."""
    wave = _tones([440.0, 3000.7], [0.3, 0.1], 0.5, margin_s=0.2)
    base, patched = _edit(logspec, wave, lambda a: a + c)
    expected = math.exp(c) * wave[0].astype(np.float64)
    assert np.abs(patched - expected).max() < 2e-6 * np.abs(expected).max()
    assert np.abs(base - wave[0]).max() < 1e-6


def test_a_per_frame_gain_is_a_smooth_gain_of_the_signal(logspec):
    """Adding ``c_m * 1`` to frame ``m`` only is ``x(n) g(n)``, ``g = sum_m w^2 e^{c_m} / sum_m w^2``:
    the same for every partial (what the battery's span-limited add does)."""
    wave = _tones([220.0, 1_500.0, 5_000.0], [0.2, 0.1, 0.05], 1.0)
    n_frames = api.layers(logspec).get("log_magnitude").frames_for(wave.shape[-1])
    c = torch.zeros(n_frames)
    c[8:16] = 1.0
    _, patched = _edit(logspec, wave, lambda a: a + c[None, : a.shape[-1]])
    w2 = (logspec.stft.window.double() ** 2).numpy()
    num, den = np.zeros(wave.shape[-1] + 4096), np.zeros(wave.shape[-1] + 4096)
    for m in range(n_frames):
        num[m * 1024 : m * 1024 + 4096] += w2 * math.exp(float(c[m]))
        den[m * 1024 : m * 1024 + 4096] += w2
    g = (num / np.maximum(den, 1e-30))[2048 : 2048 + wave.shape[-1]]
    assert np.abs(patched - wave[0] * g).max() < 2e-6 * np.abs(wave).max() * math.e


def _amplitude(y: np.ndarray, f: float, sl: slice) -> float:
    t = np.arange(len(y))[sl] / SR
    basis = np.stack([np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t)], 1)
    coef, *_ = np.linalg.lstsq(basis, y[sl], rcond=None)
    return float(np.hypot(*coef))


def test_a_tilt_ramp_gives_the_tilted_input(logspec):
    """Adding the ramp of +4 dB per octave about 1 kHz (the brightness pair's tilt) to every frame
    gives each partial times ``10^(4 log2(f / 1 kHz) / 20)``: measured within 0.007 dB from 110 Hz
    to 8 kHz (a partial's main lobe, +-11.7 Hz, sees a slightly different gain on each bin), and
    the decode is the tilted input to a relative RMS residual of 1.7e-5 (-95 dB)."""
    freqs = [110.0, 233.1, 440.0, 1_000.0, 2_217.5, 4_400.0, 8_000.0]
    amps = [0.1, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02]
    wave = _tones(freqs, amps, 1.5, seed=3)
    ramp = logspec.tilt_ramp(4.0)
    base, patched = _edit(logspec, wave, lambda a: a + ramp[:, None])
    mid = slice(6_000, -6_000)
    gains = [20 * math.log10(_amplitude(patched, f, mid) / _amplitude(base, f, mid)) for f in freqs]
    ideal = [4.0 * math.log2(f / 1000.0) for f in freqs]
    assert np.abs(np.subtract(gains, ideal)).max() < 0.02
    tilted = _tones(freqs, [a * 10 ** (g / 20) for a, g in zip(amps, ideal)], 1.5, seed=3)[0]
    resid = patched[mid] - tilted[mid]
    assert np.sqrt(np.mean(resid**2) / np.mean(tilted[mid] ** 2)) < 1e-4


def test_the_loudness_pairs_difference_of_means_is_the_constant_vector(logspec):
    """The loudness pair is ``(x, 2x)``: on every bin above the floor the layers differ by exactly
    ln 2, so the difference of means over the quick training pairs is constant over every bin that
    holds a held-out pair's sound (spread under 1e-4 of its value), cosine with ``1`` above 0.99."""
    from steerlab.partials.directions import diff_of_means
    from steerlab.plugins import concepts

    concept = concepts().get("loudness")
    margin = 2048 / SR

    def frames(x: np.ndarray) -> np.ndarray:
        w = torch.from_numpy(x.astype(np.float32))[None, None]
        w = torch.nn.functional.pad(w, (0, (-w.shape[-1]) % 1024))
        with torch.no_grad():
            return logspec.layer(logspec.stft.analyse(w))[0].numpy().T.astype(np.float64)

    pairs = [concept.render(s) for s in concept.pairs(SR, range(3), margin, True)]
    d = diff_of_means([frames(a) for a, _ in pairs], [frames(b) for _, b in pairs])
    assert d @ np.ones_like(d) / np.linalg.norm(d) / math.sqrt(len(d)) > 0.99
    held_out, _ = concept.render(concept.pairs(SR, [3], margin, True)[0])
    sound = frames(held_out)[4:-4].mean(0) > math.log(1e-4 / 1e-12)  # bins holding its partials
    assert sound.sum() > 100
    assert np.ptp(d[sound]) < 1e-4 * d[sound].mean()
