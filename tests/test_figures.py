"""steerlab.figures: a real, readable PNG that shows the change it is meant to show."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from steerlab.errors import OutputError, SteerlabError
from steerlab.figures import spectrogram_figure

SR = 8_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def clip(seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    return 0.3 * np.sin(2 * np.pi * 300 * t) + 0.01 * rng.standard_normal(t.size)


def read_png(path):
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_MAGIC
    return imread(path, format="png")


def test_figure_is_a_valid_png_and_shows_an_added_tone(tmp_path):
    base = clip()
    t = np.arange(base.size) / SR
    with_tone = base + 0.2 * np.sin(2 * np.pi * 2000 * t)

    spectrogram_figure(base, with_tone, SR, tmp_path / "tone.png", target_hz=[2000.0], title="add 2 kHz")
    spectrogram_figure(base, base.copy(), SR, tmp_path / "same.png", target_hz=[2000.0], title="add 2 kHz")

    tone_img, same_img = read_png(tmp_path / "tone.png"), read_png(tmp_path / "same.png")
    assert tone_img.ndim == 3 and tone_img.shape[2] in (3, 4)
    assert tone_img.shape[0] > 100 and tone_img.shape[1] > 100
    assert tone_img.shape == same_img.shape
    changed = np.abs(tone_img[..., :3] - same_img[..., :3]).max(axis=2) > 0.05
    assert changed.mean() > 0.01  # a visible share of the picture, not a few anti-aliased pixels
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.png", "tone.png"]  # no temp files left


def test_stereo_and_no_targets(tmp_path):
    stereo = np.stack([clip(seed=1), clip(seed=2)])
    spectrogram_figure(stereo, 0.5 * stereo, SR, tmp_path / "stereo.png")
    assert read_png(tmp_path / "stereo.png").shape[0] > 100


def test_bad_inputs_raise_and_write_nothing(tmp_path):
    base = clip()
    with pytest.raises(SteerlabError, match="valid range"):
        spectrogram_figure(base, base, SR, tmp_path / "f.png", target_hz=[SR])
    with pytest.raises(SteerlabError, match="differ in shape"):
        spectrogram_figure(base, base[:-1], SR, tmp_path / "f.png")
    with pytest.raises(OutputError, match="does not exist"):
        spectrogram_figure(base, base, SR, tmp_path / "missing" / "f.png")
    assert list(tmp_path.iterdir()) == []


def test_importing_figures_does_not_import_matplotlib():
    import subprocess

    code = "import steerlab.figures, sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
