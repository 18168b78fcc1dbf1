"""The reconstruction figure of docs/logspec.md: ``python -m steerlab.builtins.logspec.figure OUT.png``.

Left: a mixture of seven partials (110 Hz to 8 kHz) between 0.2 s silences, its unpatched decode's
error, and the error of the decode with ``c = 1`` added to every bin against ``e x``. Right: each
partial's gain (dB) when the +4 dB/octave ramp is added, against the tilt it stands for."""

from __future__ import annotations

import math
import sys

import numpy as np
import torch

from steerlab.builtins.logspec.model import LogSpecModel

SR = 24_000
FREQS = (110.0, 233.1, 440.0, 1_000.0, 2_217.5, 4_400.0, 8_000.0)
AMPS = (0.1, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02)


def _wave(amps, seconds: float = 1.0, margin_s: float = 0.2) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    phases = np.random.default_rng(3).uniform(0, 2 * np.pi, len(FREQS))
    x = sum(a * np.sin(2 * np.pi * f * t + p) for f, a, p in zip(FREQS, amps, phases))
    pad = np.zeros(int(margin_s * SR))
    return np.concatenate([pad, x, pad]).astype(np.float32)


def _decode(model: LogSpecModel, x: np.ndarray, add: torch.Tensor | None) -> np.ndarray:
    handle = None
    if add is not None:
        handle = model.log_magnitude.register_forward_hook(lambda m, i, out: out + add[:, None])
    try:
        with torch.no_grad():
            return model(torch.from_numpy(x)[None, None]).numpy()[0, 0].astype(np.float64)
    finally:
        if handle is not None:
            handle.remove()


def _amplitude(y: np.ndarray, f: float, sl: slice) -> float:
    t = np.arange(len(y))[sl] / SR
    basis = np.stack([np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t)], 1)
    coef, *_ = np.linalg.lstsq(basis, y[sl], rcond=None)
    return float(np.hypot(*coef))


def main(out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = LogSpecModel()  # what api.load_model("logspec_24khz") builds
    x = _wave(AMPS)
    base = _decode(model, x, None)
    gained = _decode(model, x, torch.ones(2049))
    ramp = model.tilt_ramp(4.0)
    tilted = _decode(model, x, ramp)
    mid = slice(int(0.3 * SR), int(1.1 * SR))
    gains = [20 * math.log10(_amplitude(tilted, f, mid) / _amplitude(base, f, mid)) for f in FREQS]

    t = np.arange(len(x)) / SR
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    a.plot(t, x, color="0.75", lw=0.5, label="input x")
    a.plot(t, (base - x) * 1e5, lw=0.6, label="decode - x (x 1e5)")
    a.plot(t, (gained - math.e * x) * 1e5, lw=0.6, label="decode with +1 on every bin - e x (x 1e5)")
    a.set(xlabel="time (s)", ylabel="amplitude", title="Reconstruction and a gain (errors x 1e5)")
    a.legend(fontsize=7, loc="lower left")
    f = np.array(FREQS)
    b.semilogx(f, 4.0 * np.log2(f / 1000.0), color="0.5", label="+4 dB/octave about 1 kHz")
    b.semilogx(f, gains, "o", label="measured partial gain")
    b.set(xlabel="frequency (Hz)", ylabel="gain (dB)", title="The tilt ramp added to every frame")
    b.legend(fontsize=7)
    fig.savefig(out, dpi=110)
    print(
        f"reconstruction max error {np.abs(base - x).max():.2e}; gain e^1 max error "
        f"{np.abs(gained - math.e * x).max():.2e}; tilt error per partial (dB) "
        + " ".join(f"{g - 4.0 * math.log2(fr / 1000.0):+.4f}" for g, fr in zip(gains, FREQS))
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "logspec-reconstruction.png")
