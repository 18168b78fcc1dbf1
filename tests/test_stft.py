"""The second positive-control model ``stft_24khz`` (docs/stft.md): its layer table, an exact
inverse, exact batching, a partial read as its amplitude on its main-lobe bins, the decoder's
add / lower rules to float precision, a plain forward hook equal to the traced patch, and the
directions a control is for: one bin's direction creates or deletes a partial, a random one
does not concentrate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steerlab import api, tracing
from steerlab.errors import ModelLoadError
from steerlab.interventions import Direction, Strength, channel_direction

SR = 24_000


@pytest.fixture(scope="module")
def stft():
    return api.load_model("stft_24khz")


def _tones(freqs, amps, seconds: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, len(freqs))
    return sum(a * np.sin(2 * np.pi * f * t + p) for f, a, p in zip(freqs, amps, phases)).astype(np.float32)[None]


def _noise(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)[None]


def _edit(model, wave: np.ndarray, fn):
    """(baseline, patched) decodes of ``wave`` with ``fn(act [bins, frames]) -> act`` at ``magnitude``."""
    layer = api.layers(model).get("magnitude")
    x = torch.from_numpy(wave)

    def edit(act, n_frames):
        return fn(act[0].clone())[None]

    base, patched = tracing.run(model, [tracing.TraceItem(x), tracing.TraceItem(x, layer, edit)])
    return base.output.numpy()[0].astype(np.float64), patched.output.numpy()[0].astype(np.float64)


def test_layer_table_matches_the_transform(stft):
    """Every number of docs/stft.md's layer table, computed here from the window itself."""
    from steerlab import plugins
    from steerlab.arch import main_lobe_hz

    assert plugins.models().owners["stft_24khz"] == "steerlab.builtins.stft"
    reg = api.layers(stft)
    assert reg.names() == ["magnitude"]
    layer = reg.get("magnitude")
    assert (layer.channels, layer.stride, layer.hop, layer.kernel_size, layer.receptive_field) == (
        2049,
        1024,
        1024,
        4096,
        4096,
    )
    assert layer.frame_rate == pytest.approx(23.4375) and layer.nyquist_hz == pytest.approx(11.71875)
    assert layer.receptive_field_ms == pytest.approx(170.667, abs=1e-3)
    assert stft.right_context == 2048 and not stft.causal and stft.hop == 1024
    assert stft.cfg.bin_hz == pytest.approx(5.859375)
    assert main_lobe_hz(layer) == pytest.approx(5.859375)  # what `steerlab arch` assumes: fs / N
    # the Hann window's real main lobe: first null at 2 bins (11.7 Hz), -3 dB half width 0.72 bins
    w = stft.window.double().numpy()
    nfft = 1 << 20
    spec = np.abs(np.fft.rfft(w, nfft))
    spec /= spec[0]
    bins = np.arange(spec.size) * len(w) / nfft  # in bins of the STFT
    first_null = bins[np.argmax(np.diff(spec) > 0)]
    half_power = bins[np.argmax(spec < 10 ** (-3 / 20))]
    assert first_null == pytest.approx(2.0, abs=1e-3)
    assert half_power * stft.cfg.bin_hz == pytest.approx(4.234, abs=0.005)  # -3 dB width 8.47 Hz (0.72 bins each side)
    # the highest sidelobe, -31.5 dB, 2.5 bins out; a partial 30 Hz away (the batch test's minimum
    # separation) leaks into a bin at -53.9 dB at most
    assert 20 * np.log10(spec[bins > 2.0].max()) == pytest.approx(-31.47, abs=0.05)
    assert 20 * np.log10(spec[bins > 30 / stft.cfg.bin_hz].max()) == pytest.approx(-53.9, abs=0.1)


def test_options_random_init_and_checkpoint(stft, tmp_path):
    assert api.load_model("stft_24khz", random_init=True).weights_hash() == stft.weights_hash()
    with pytest.raises(ModelLoadError, match="has no weights file.*drop checkpoint$"):
        api.load_model("stft_24khz", checkpoint=tmp_path / "w.safetensors")
    small = api.load_model("stft_24khz", n_fft=1024, hop=256)
    assert api.layers(small).get("magnitude").channels == 513
    with pytest.raises(ModelLoadError, match="no option 'window'; valid options: sample_rate, n_fft, hop"):
        api.load_model("stft_24khz", window=3)
    with pytest.raises(ModelLoadError, match="hop must divide n_fft / 2"):
        api.load_model("stft_24khz", hop=3000)


def test_unpatched_round_trip_is_exact(stft):
    """Allen & Rabiner's analysis and Griffin & Lim's least-squares inverse: unmodified, the
    input comes back to float32 round-off (measured: max error 9.5e-7 on unit-variance noise,
    relative RMS 1.4e-7), at any length (odd lengths too) and whatever the content."""
    for seconds, seed in ((1.0, 0), (0.3711, 1)):
        x = 10 * _noise(seconds, seed)  # standard deviation 1
        with torch.no_grad():
            y = stft(torch.from_numpy(x)[None]).numpy()[0]
        assert y.shape == x.shape
        assert np.abs(y - x).max() < 1e-5
        assert np.sqrt(np.mean((y - x) ** 2) / np.mean(x**2)) < 1e-6


def test_batched_equals_unbatched_with_different_lengths(stft):
    layer = api.layers(stft).get("magnitude")
    waves = [torch.from_numpy(_noise(s, seed=i)) for i, s in enumerate((0.3, 0.17, 0.45))]

    def edit(act, n):
        out = act.clone()
        out[..., :n] += 0.05
        return out

    items = [tracing.TraceItem(w, layer, edit) for w in waves] + [tracing.TraceItem(w) for w in waves]
    batched = tracing.run(stft, items)
    for item, res in zip(items, batched):
        alone = tracing.run(stft, [item])[0]
        assert res.output.shape == item.wave.shape
        assert float((res.output - alone.output).abs().max()) < 1e-5
    assert float((batched[0].output - batched[3].output).abs().max()) > 1e-2  # the edit did something


def test_a_partial_reads_its_amplitude_on_its_main_lobe(stft):
    k = stft.bin_of(1000.0)
    f = stft.bin_centre(k)
    layer = api.layers(stft).get("magnitude")
    res = tracing.run(stft, [tracing.TraceItem(torch.from_numpy(_tones([f], [0.3], 1.0)), layer, save_activation=True)])
    act = res[0].activation[:, 4:-4].numpy()  # frames whose window lies inside the tone
    np.testing.assert_allclose(act[k], 0.3, rtol=1e-4)
    np.testing.assert_allclose(act[[k - 1, k + 1]], 0.15, rtol=1e-4)  # the Hann main lobe
    assert np.delete(act, [k - 1, k, k + 1], axis=0).max() < 1e-5 * 0.3


def test_raising_a_bin_adds_exactly_a_carrier_at_its_centre(stft):
    """Whatever the bin holds (here leakage of a tone 2.6 bins away), raising it by ``e`` on
    every frame adds ``e cos(2 pi f_k t)``; lowering scales the bin's own content."""
    k = stft.bin_of(700.0)
    wave = _tones([stft.bin_centre(k) + 2.6 * stft.cfg.bin_hz, 3_000.0], [0.2, 0.1], 0.6, seed=2)
    t = np.arange(wave.shape[-1]) / SR

    def raise_(a):
        a[k] += 0.02
        return a

    base, patched = _edit(stft, wave, raise_)
    np.testing.assert_allclose(patched - base, 0.02 * np.cos(2 * np.pi * stft.bin_centre(k) * t), atol=2e-6)

    def ablate_all_but(a):
        keep = a.clone()
        a.zero_()
        a[k - 40 : k + 41] = keep[k - 40 : k + 41]  # keep 700 Hz +- 234 Hz, delete the rest
        return a

    base, kept = _edit(stft, wave, ablate_all_but)
    only_low = _tones([stft.bin_centre(k) + 2.6 * stft.cfg.bin_hz], [0.2], 0.6, seed=2)[0]
    # away from the clip's abrupt edges (whose clicks are broadband), the 3 kHz tone is gone and the
    # low one kept, up to its sidelobes outside the kept bins (below -100 dB)
    mid = slice(4_096, -4_096)
    assert np.sqrt(np.mean((kept - only_low)[mid] ** 2)) < 1e-4 * np.sqrt(np.mean(only_low[mid] ** 2))


def test_a_plain_forward_hook_equals_the_traced_patch(stft):
    """``intervene``'s traced add equals a plain torch forward hook on ``stft.magnitude`` that adds
    ``alpha * rms * d``, with ``rms`` measured by the hook itself (frames of the input only)."""
    wave = _tones([220.0, 1_500.0], [0.2, 0.1], 0.5, seed=4)
    layer = api.layers(stft).get("magnitude")
    d = channel_direction(stft.bin_of(440.0), layer)
    spec = api.InterventionSpec(layer="magnitude", direction=d, intervention="add", strength=Strength(0.5))
    base, patched, _, _ = api.run_pairs(stft, [wave], spec)

    n_frames = layer.frames_for(wave.shape[-1])
    unit = torch.from_numpy(d.vector / np.linalg.norm(d.vector)).float()

    def hook(module, inputs, output):
        valid = output[0, :, :n_frames]
        rms = valid.pow(2).sum(0).mean().sqrt()
        out = output.clone()
        out[0, :, :n_frames] += 0.5 * rms * unit[:, None]
        return out

    x = torch.from_numpy(wave)[None]
    x = torch.nn.functional.pad(x, (0, stft.padded_length(wave.shape[-1]) - wave.shape[-1]))
    handle = stft.magnitude.register_forward_hook(hook)
    try:
        with torch.no_grad():
            plain = stft(x)[0, :, : wave.shape[-1]].numpy()
    finally:
        handle.remove()
    with torch.no_grad():
        bare = stft(x)[0, :, : wave.shape[-1]].numpy()
    assert np.abs(base[0] - bare).max() < 1e-6
    err = np.abs(patched[0] - plain).max()
    assert err < 1e-6 * max(1.0, np.abs(plain).max())
    assert np.abs(plain - bare).max() > 1e-2  # the patch did something


@pytest.mark.parametrize("hz", [150.0, 1_000.0, 4_000.0])
def test_adding_a_bin_direction_creates_the_partial_and_ablating_it_deletes_it(stft, hz):
    k = stft.bin_of(hz)
    f = stft.bin_centre(k)
    layer = api.layers(stft).get("magnitude")
    context = _tones([f * 0.71, f * 1.37, f * 1.9], [0.2, 0.15, 0.1], 0.6, seed=k)
    spec = api.InterventionSpec(
        layer="magnitude", direction=channel_direction(k, layer), intervention="add", strength=Strength(0.5)
    )
    (res,) = api.intervene(stft, [context], spec, target_hz=[f], scorers=["spectral"])
    target = res.scores["spectral"]["targets"][0]
    # measured: +22.2, +37.5, +54.5 dB at concentration 0.995 (150, 1000, 4000 Hz)
    assert target["gain_db"] >= 15.0 and target["concentration"] > 0.95
    # ablating the three bins of its main lobe deletes a partial at f from the mixture
    with_ = context + _tones([f], [0.2], 0.6, seed=k + 1)
    lobe = np.zeros(layer.channels)
    lobe[[k - 1, k, k + 1]] = [0.5, 1.0, 0.5]
    spec = api.InterventionSpec(
        layer="magnitude", direction=Direction(lobe, {"source": "main lobe"}), intervention="ablate"
    )
    (res,) = api.intervene(stft, [with_], spec, target_hz=[f], scorers=["spectral"])
    target = res.scores["spectral"]["targets"][0]
    # measured: -19.8, -20.6, -20.7 dB at concentration 0.998
    assert target["gain_db"] <= -15.0 and target["concentration"] > 0.95


def test_a_random_direction_does_not_concentrate(stft):
    f = stft.bin_centre(stft.bin_of(440.0))
    layer = api.layers(stft).get("magnitude")
    direction = Direction(np.random.default_rng(11).standard_normal(layer.channels), {"source": "random", "seed": 11})
    spec = api.InterventionSpec(layer="magnitude", direction=direction, intervention="add", strength=Strength(0.5))
    (res,) = api.intervene(stft, [_tones([200.0, 900.0], [0.2, 0.1], 0.6)], spec, target_hz=[f], scorers=["spectral"])
    target = res.scores["spectral"]["targets"][0]
    assert target["concentration"] < 0.05
    assert res.scores["spectral"]["change_rms"] > 0.01  # it did change the sound, just not at f
