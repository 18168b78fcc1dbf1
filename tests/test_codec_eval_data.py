"""`steerlab eval codec --data/--tones`: fidelity on the user's own audio, per octave band, and on pure tones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import needs

SR = 24_000
FB = Path("/usr/share/games/frozen-bubble/snd")
needs_ogg = needs((FB / "frozen-mainzik-2p.ogg").is_file(), "Debian package frozen-bubble-data is not installed")


def test_octave_errors_measure_gain_and_refuse_empty_bands():
    from steerlab.builtins.encodec.evaluation import OCTAVE_CENTRES_HZ, octave_errors

    rng = np.random.default_rng(0)
    noise = rng.standard_normal(SR)
    assert all(abs(e) < 1e-9 for e in octave_errors(noise, noise, SR))
    assert np.allclose(octave_errors(2 * noise, noise, SR), 20 * np.log10(2), atol=1e-9)  # +6.02 dB everywhere
    spec = np.fft.rfft(noise)
    spec[np.fft.rfftfreq(SR, 1 / SR) > 1000] = 0
    low = np.fft.irfft(spec, SR)  # nothing above 1 kHz: those bands cannot be measured
    errs = dict(zip(OCTAVE_CENTRES_HZ, octave_errors(noise, low, SR)))
    assert errs[2000] is None and errs[4000] is None and errs[8000] is None
    assert abs(errs[250]) < 1e-6


@needs_ogg
def test_eval_codec_data_on_real_music_reports_bands_and_beats_random_init(tmp_path):
    from click.testing import CliRunner

    from steerlab import cli

    (tmp_path / "music").mkdir()
    (tmp_path / "music" / "head.ogg").write_bytes((FB / "frozen-mainzik-2p.ogg").read_bytes()[:150_000])
    res = CliRunner().invoke(
        cli.get_cli(),
        ["eval", "codec", "--clips", "7", "--data", str(tmp_path / "music"), "--windows", "6", "--tones", "--json"],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    entry = doc["data"][str(tmp_path / "music")]
    trained, random = entry["tiny_encodec_24khz"]["continuous"], entry["tiny_encodec_24khz (random init)"]["continuous"]
    assert entry["files"][0]["sha256"] and trained["clips"] == 6
    assert trained["si_sdr_median"] > random["si_sdr_median"] + 30
    # the README's claim for the embedded codec on real music: the octaves below 1 kHz within 2 dB...
    assert all(abs(trained["octave_error_db"][b]["median_db"]) < 2 for b in ("125", "250", "500"))
    # ...and the band from 1 to 4 kHz lost (the known limit this model is documented with)
    assert all(trained["octave_error_db"][b]["median_db"] < -2 for b in ("1000", "2000", "4000"))
    tones = doc["tones_si_sdr_db"]["continuous"]
    assert tones["200"] > 20 and tones["4000"] < 0


def test_eval_codec_data_refuses_a_folder_of_silence(tmp_path):
    import soundfile as sf
    from click.testing import CliRunner

    from steerlab import cli

    sf.write(tmp_path / "silent.wav", np.zeros(3 * SR, np.float32), SR)
    res = CliRunner().invoke(cli.get_cli(), ["eval", "codec", "--clips", "1", "--data", str(tmp_path)])
    assert res.exit_code == 1 and "no 1 s window" in res.output and res.output.count("\n") == 1
