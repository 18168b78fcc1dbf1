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


# ---- every report figure: titles that fit, a colour bar on every colour scale, log frequency axes


def test_fit_titles_wraps_a_title_wider_than_its_axes():
    from steerlab import reporting

    fig, axes = reporting.figure(4, 3, cols=2)
    long = "a title much longer than the narrow panel it belongs to, in a figure of two panels"
    axes[0, 0].set_title(long)
    axes[0, 1].set_title("short")
    assert reporting.overflowing_titles(fig) == [long]  # the measurement sees the overflow
    reporting.fit_titles(fig)
    assert reporting.overflowing_titles(fig) == []
    assert axes[0, 0].get_title().count("\n") >= 2 and axes[0, 0].get_title().replace("\n", " ") == long
    assert axes[0, 1].get_title() == "short"  # a title that fits is left alone


@pytest.fixture
def saved(monkeypatch):
    """Every figure saved through steerlab.reporting, inspected the moment it is written: titles
    that overflow their axes, colour-mapped artists without a colour bar, and each axes' scales."""
    from steerlab import reporting

    seen: list[dict] = []

    def inspect(fig):
        reporting.fit_titles(fig)
        mapped = [
            a
            for ax in fig.axes
            for a in (*ax.images, *ax.collections)
            if getattr(a, "get_array", lambda: None)() is not None and a.get_cmap() is not None
        ]
        bars = {a.colorbar.ax for a in mapped if a.colorbar is not None}  # a colour bar's own swatch
        mapped = [a for a in mapped if a.axes not in bars]
        scales = {(a.get_cmap().name, a.get_clim()) for a in mapped if a.colorbar is not None}
        seen.append(
            {
                "overflow": reporting.overflowing_titles(fig),
                # an artist without its own bar is served by one of the same colour map and limits
                "no_colorbar": [type(a).__name__ for a in mapped if (a.get_cmap().name, a.get_clim()) not in scales],
                "mapped": len(mapped),
                "scales": {
                    ax.get_title().split(":")[-1].strip(): (ax.get_xscale(), ax.get_yscale()) for ax in fig.axes
                },
            }
        )

    png, save_png = reporting.png, reporting.save_png
    monkeypatch.setattr(reporting, "png", lambda fig: (inspect(fig), png(fig))[1])
    monkeypatch.setattr(reporting, "save_png", lambda fig, path, dpi=None: (inspect(fig), save_png(fig, path, dpi))[1])
    return seen


def test_analysis_figures_fit_and_have_colour_bars(saved):
    from steerlab.analysis import plots

    rng = np.random.default_rng(0)
    curve = {"thresholds": [0.1, 0.5, 0.9], "share_covered": [1.0, 0.5, 0.1]}
    plots.coverage(rng.uniform(-1, 1, 200), curve, curve, 0.7)
    example = {"original": [1.0, 2.0], "reconstruction": [1.0, 1.9], "m": 2}
    plots.reconstruction([1, 2, 4], {"dictionary": [0.5, 0.1, 0.01]}, 2, example)
    plots.usage({"dictionary": [0.5, 0.2, 0.1]}, 2, "share of vectors in which each direction is strongly active " * 2)
    plots.redundancy(np.eye(6), list(range(6)), {0: rng.normal(size=12), 1: rng.normal(size=12)})
    plots.stability([{"a": 1, "b": 2, "top_vs_top": 0.5, "top_vs_all": 0.6}], 0.3)
    plots.dependence({"real (dictionary)": [0.5, 0.1]}, {"real": 0.6, "noise": None}, 2, "weights dependence " * 4)
    plots.locality([{"archetype": 3, "radius": 1.0, "random_radius": 1.2}], 0.5, 0.25, 0.4)
    freqs = np.fft.rfftfreq(512, 1 / 24_000)
    panel = {"fragments": rng.normal(size=(4, 256)), "power": rng.uniform(size=(4, len(freqs))), "freqs": freqs}
    plots.fragments([{**panel, "label": "direction 12 of a long-named dictionary"}], 24_000, 3429.0)
    plots.trajectories({"sine": rng.normal(size=(30, 2)), "noise": rng.normal(size=(30, 2))}, [0.7, 0.2])

    assert len(saved) == 9
    assert [s["overflow"] for s in saved] == [[]] * 9
    assert [s["no_colorbar"] for s in saved] == [[]] * 9
    assert saved[3]["mapped"] == 1 and saved[8]["mapped"] == 2  # redundancy's matrix, both trajectories
    assert saved[7]["scales"]["spectra"] == ("log", "linear")  # fragments: spectra on a log frequency axis


def test_spectrogram_and_partials_figures_fit_with_colour_bars_and_log_frequency(saved, tmp_path):
    from types import SimpleNamespace

    from steerlab.partials.report import _heatmap

    base = clip()
    title = "tiny_encodec_24khz encoder.5.elu: add the diffmeans direction for 2000 Hz at strength 1.0 " * 2
    spectrogram_figure(base, 0.5 * base, SR, tmp_path / "s.png", target_hz=[2000.0], title=title)
    vs = [
        SimpleNamespace(density=d, layer=layer, target_hz=f, steerable=d == 1, pass_share=0.5, method="diffmeans")
        for d in (1, 2)
        for layer in ("encoder.5.elu", "latent")
        for f in (600.0, 1200.0)
    ]
    panels = [("diffmeans, subtract (calibrated)", lambda v: True)]
    head = "tiny_encodec_24khz, continuous path: what the verdict sees: median gain adding where concentrated"
    _heatmap(vs, panels, ["encoder.5.elu", "latent"], [600.0, 1200.0], [1, 2], head, lambda v: v.pass_share,
             (0, 1), "viridis", tmp_path / "h.png")  # fmt: skip

    spec, heat = saved
    assert spec["overflow"] == [] and heat["overflow"] == []
    assert spec["no_colorbar"] == [] and spec["mapped"] == 3
    assert heat["no_colorbar"] == [] and heat["mapped"] == 2  # one colour bar serves both panels
    assert {spec["scales"][t] for t in ("baseline", "patched", "patched − baseline")} == {("linear", "log")}
