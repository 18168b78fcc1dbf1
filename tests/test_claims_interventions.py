"""docs/interventions.md's figures: the default fade lengths, the steps per second of span at each
layer of the embedded codec, and the archetype example that explodes (first_conv-archetypes:8,
-a 0.5 --start 1 --end 2 on a 2.5 s chord: peak 38.1, +41 dB at 440 Hz, flagged clips and
level_jump). The 1.16 / 0.11 dB off-band figures and the 0.706 chunked value are asserted in
tests/test_run_contracts.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from steerlab import api


def test_frame_rates_fades_and_steps_per_second_of_span(embedded):
    from steerlab.runner import default_fade_frames

    layers = api.layers(embedded)
    rates = {
        name: layers.get(name).frame_rate
        for name in ("first_conv", "encoder.3.conv", "encoder.6.conv", "encoder.9.conv", "encoder.12.conv", "latent")
    }
    # "A 1 s span selects 24,000 steps at the first conv, 12,000 at a 12 kHz layer, 3,000 at 3 kHz,
    # 600 at 600 Hz and 75 at the latent"
    assert sorted(set(rates.values()), reverse=True) == [24_000, 12_000, 3_000, 600, 75]
    assert default_fade_frames(layers.get("first_conv")) == 240 and default_fade_frames(layers.get("latent")) == 1


def test_the_archetype_example_explodes_as_documented(tmp_path):
    from steerlab import cli

    runner = CliRunner()
    wav = tmp_path / "chord.wav"
    assert (
        runner.invoke(
            cli.get_cli(), ["synth", str(wav), "--kind", "chord", "--seed", "1", "--seconds", "2.5"]
        ).exit_code
        == 0
    )
    res = runner.invoke(
        cli.get_cli(),
        [
            "intervene",
            str(wav),
            "-l",
            "first_conv",
            "--archetype",
            "first_conv-archetypes:8",
            "-a",
            "0.5",
            "--start",
            "1",
            "--end",
            "2",
            "-t",
            "440",
            "-o",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "o" / "chord" / "scores.json").read_text())
    assert doc["intervention"] == "archetype"
    patched, _ = sf.read(tmp_path / "o" / "chord" / "patched.wav", dtype="float64")
    assert float(np.abs(patched).max()) == pytest.approx(38.1, abs=0.1)  # from the WAV itself
    assert doc["output_check"]["peak"] == pytest.approx(38.1, abs=0.1)
    assert doc["output_check"]["flags"] == ["clips", "level_jump"]
    assert doc["scores"]["spectral"]["targets"][0]["gain_db"] == pytest.approx(41.0, abs=1.0)
