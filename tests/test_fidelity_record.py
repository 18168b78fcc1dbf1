"""`intervene` records the model's fidelity on the input it patched (SI-SDR of the baseline decode
against the input), whole or chunked, computed the same way as `eval codec`."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf
import torch

from steerlab import metrics

SR = 24_000


def test_accumulated_si_sdr_equals_the_whole_signal_metric():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((1, 30_000)) + 0.3
    est = 0.7 * ref + 0.2 * rng.standard_normal((1, 30_000))
    acc = metrics.SiSdrAccumulator()
    for a, b in ((0, 7_000), (7_000, 19_000), (19_000, 30_000)):  # pieces, as chunks arrive
        acc.add(ref[:, a:b], est[:, a:b])
    whole = float(metrics.si_sdr(torch.from_numpy(est), torch.from_numpy(ref)))
    assert abs(acc.result() - whole) < 1e-6
    silent = metrics.SiSdrAccumulator()
    silent.add(np.full((1, 100), 0.5), est[:, :100])
    assert silent.result() is None  # a constant reference has nothing to compare


def _cli(args):
    from click.testing import CliRunner

    from steerlab import cli

    return CliRunner().invoke(cli.get_cli(), args)


def test_intervene_records_fidelity_whole_and_chunked(tmp_path, embedded):
    t = np.arange(int(4.5 * SR)) / SR
    x = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    sf.write(tmp_path / "tone.wav", x, SR, subtype="FLOAT")
    docs = {}
    for chunk in ("60", "2"):
        res = _cli(
            [
                "intervene",
                str(tmp_path / "tone.wav"),
                "-l",
                "first_conv",
                "-c",
                "3",
                "-a",
                "0.2",
                "--chunk-s",
                chunk,
                "-o",
                str(tmp_path / f"o{chunk}"),
            ]
        )
        assert res.exit_code == 0, res.output
        docs[chunk] = json.loads((tmp_path / f"o{chunk}" / "tone" / "scores.json").read_text())
        assert "model fidelity SI-SDR" in res.stdout
    baseline, _ = sf.read(tmp_path / "o60" / "tone" / "baseline.wav", dtype="float32")
    expected = float(metrics.si_sdr(torch.from_numpy(baseline)[None], torch.from_numpy(x)[None]))
    whole, chunked = docs["60"]["fidelity"]["si_sdr_db"], docs["2"]["fidelity"]["si_sdr_db"]
    assert abs(whole - expected) < 0.01
    assert whole > 15  # the embedded codec reproduces low tones (README: 20-34 dB from 50 to 700 Hz)
    assert abs(chunked - whole) < 0.5  # chunked decodes agree with the whole one (overlap-stitched)
