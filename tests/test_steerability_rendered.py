"""The battery's rendered-instrument pairs (General MIDI notes from the TimGM6mb SoundFont): each
pair differs only by its concept's change, is a function of its seed, and is checked by the
concept's unchanged rule (``python -m steerlab.battery.check --stimuli instrument``), whose
pass counts are pinned here as measured; and ``--stimuli`` runs the instrument variant in its own
folder, recorded and hashed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from steerlab import plugins
from steerlab.battery.check import check, summary, usable
from steerlab.battery.registry import concepts
from steerlab.builtins.concepts import _rendered
from steerlab.builtins.concepts._sound import PEAK, envelope
from steerlab.errors import ConfigError

pytest.importorskip("tinysoundfont", reason="the render extra renders the instrument pairs")

RENDERED = ("note", "chord-quality", "brightness", "onset", "loudness")
SR = 24_000


def _pair(name, seed=0):
    c = concepts().get(name)
    spec = c.pairs(SR, [seed], 0.1, True, variant="instrument")[0]
    return c, spec, *c.render(spec)


def test_rendered_notes_add_like_the_chord_rendered_at_once():
    """The mixtures sum notes rendered alone; tinysoundfont mixes voices by addition, so the sum
    is the chord rendered together to float32 rounding (measured: under 1e-6 of a 0.2 peak)."""
    from steerlab.corpus import Note, Renderer, RenderSpec, default_soundfont

    n = int(0.3 * SR)
    for program in (0, 16, 56):
        keys = (60, 63, 67)
        together = Renderer(default_soundfont(), SR).render(
            RenderSpec("chord", program, tuple(Note(k, _rendered.VELOCITY, 0.0, 0.3) for k in keys), 0.3)
        )
        summed = _rendered.mixture(program, keys, n, SR)
        assert np.max(np.abs(together[:n] - summed)) < 1e-5 * np.max(np.abs(summed))


def test_programs_span_families_and_pairs_are_seeded():
    from steerlab.corpus import GM_FAMILIES

    note = concepts().get("note")
    specs = note.pairs(SR, range(8), 0.1, True, variant="instrument")
    assert {s.param("program") for s in specs} == set(_rendered.PROGRAMS)  # every program in 8 seeds
    assert len({GM_FAMILIES[p // 8] for p in _rendered.PROGRAMS}) == 8
    onset = concepts().get("onset").pairs(SR, range(8), 0.1, True, variant="instrument")
    assert {s.param("program") for s in onset} == set(_rendered.FAST_ATTACK_PROGRAMS)
    for name in RENDERED:
        c = concepts().get(name)
        a = c.pairs(SR, [3], 0.1, True, variant="instrument")[0]
        synth = c.pairs(SR, [3], 0.1, True)[0]
        # the instrument pair plays the synthetic pair's notes: only the program and velocity are added
        assert {k: v for k, v in a.params if k not in ("program", "velocity")} == dict(synth.params)
        assert a.variant == "instrument" and a.key() != synth.key()
        w1, x1 = c.render(a)
        w2, x2 = c.render(c.pairs(SR, [3], 0.1, True, variant="instrument")[0])
        assert np.array_equal(w1, w2) and np.array_equal(x1, x2) and w1.shape == (a.n_samples,)
        assert max(np.max(np.abs(w1)), np.max(np.abs(x1))) == pytest.approx(PEAK)
    with pytest.raises(Exception, match="variant"):
        concepts().get("note").pairs(SR, [0], 0.1, True, variant="recorded")


@pytest.mark.parametrize("seed", [0, 1])
def test_rendered_pairs_differ_only_by_the_change(seed):
    a, b = _pair("loudness", seed)[2:]
    assert np.allclose(b, 2.0 * a, rtol=0, atol=1e-12)  # a gain of exactly 2, no velocity change

    c, spec, w, x = _pair("brightness", seed)
    lo, hi = spec.span_samples()
    # the concept's own tilt of the sound (one FFT over the sound, between its margins), nothing else
    assert np.allclose(x[lo:hi], _rendered.tilt(w[lo:hi], SR, 4.0), rtol=0, atol=1e-12)
    assert not np.any(x[:lo]) and not np.any(x[hi:])

    c, spec, w, x = _pair("onset", seed)
    after = lo + int(0.06 * SR)  # past the soft attack: the same samples
    assert np.array_equal(w[after:], x[after:]) and not np.allclose(w[lo:after], x[lo:after])

    c, spec, w, x = _pair("note", seed)
    n = hi - lo
    alone = _rendered.note(spec.param("program"), spec.param("target_midi"), n, SR)
    edit = alone * envelope(n, SR, spec.fade_ms, spec.fade_ms) * c.scale(spec)
    assert np.allclose((x - w)[lo:hi], edit, atol=1e-12) and not np.any((x - w)[:lo])

    c, spec, w, x = _pair("chord-quality", seed)
    r, p, lt = spec.param("root_midi"), spec.param("program"), spec.param("level_third")
    third = (_rendered.note(p, r + 4, n, SR) - _rendered.note(p, r + 3, n, SR)) * lt
    assert np.allclose((x - w)[lo:hi], third * envelope(n, SR, spec.fade_ms, spec.fade_ms) * c.scale(spec), atol=1e-12)


# measured with seeds 0-2 (GM programs 0 piano, 24 guitar, 56 trumpet; onset: 80, 24, 16 is not drawn), 24 kHz, quick
# (python -m steerlab.battery.check --stimuli instrument: seeds 0-4 give 5/5 and 0/5 likewise)
EXPECTED = {
    # every concept's rule holds: the oracle passes both ways, every wrong edit fails
    "onset": {"oracle +": (3, 3), "oracle -": (3, 3), "gain +6 dB": (0, 3), "noise": (0, 3), "tilt": (0, 3)},
    "loudness": {"oracle +": (3, 3), "oracle -": (3, 3), "noise": (0, 3), "tilt": (0, 3), "a note added": (0, 3)},
    "note": {
        "oracle +": (3, 3),
        "oracle -": (3, 3),
        "gain +6 dB": (0, 3),
        "noise": (0, 3),
        "semitone up": (0, 3),
        "tritone up": (0, 3),
    },
    "chord-quality": {
        "oracle +": (3, 3),
        "oracle -": (3, 3),
        "gain +6 dB": (0, 3),
        "noise": (0, 3),
        "major third added": (0, 3),
        "transposed": (0, 3),
    },
    "brightness": {
        "oracle +": (3, 3),
        "oracle -": (3, 3),
        "gain +6 dB": (0, 3),
        "noise": (0, 3),
        "partial at 4 kHz": (0, 3),
        "darker": (0, 3),
    },
}


@pytest.mark.parametrize("name", RENDERED)
def test_check_counts_on_rendered_pairs(name):
    c = concepts().get(name)
    rows = check(c, seeds=range(3), variant="instrument")
    s = summary(rows)
    assert s == EXPECTED[name], s
    assert usable(rows, c.rule.min_share)
    assert {r["variant"] for r in rows} == {"instrument"} and all(r["program"] in _rendered.PROGRAMS for r in rows)
    oracle = [r for r in rows if r["edit"] == "oracle +"]
    assert all(r["target"] >= c.rule.min_target and r["damage"] <= c.rule.max_damage for r in oracle)


def test_brightness_floor_reading_fails_the_ideal_tilt_only_at_peaks_near_the_floor():
    """Why brightness's first damage measure failed the ideal tilt on rendered sounds (the measure
    now reads those peaks as censored, :func:`~steerlab.builtins.concepts._bands.tilt_residual_censored`):
    the per-bin change is read with each spectrum floored 60 dB under its peak, and a rendered note
    has peaks that deep (a synthetic mixture has none). Peaks 20 dB or more above the floor follow
    the tilt to 0.5 dB."""
    from steerlab.builtins.concepts._sound import db_change_per_bin, freqs_for, power

    c, spec, w, x = _pair("brightness", 0)
    f, change = db_change_per_bin(w, x, SR, peaks_only=True)
    error = change - 4.0 * np.log2(np.maximum(f, 20.0) / 1000.0)
    pb = power(w)
    level = 10 * np.log10(np.maximum(np.interp(f, freqs_for(SR), pb), 1e-30) / pb.max())
    loud, deep = (level > -40) & (f >= 40), level < -55
    assert np.sqrt(np.mean(error[loud] ** 2)) < 0.5
    assert np.sqrt(np.mean(error[deep] ** 2)) > 2.0


def test_every_program_renders_every_key_the_concepts_play():
    """Keys 36-84 hold every key a concept's pair or wrong edit plays (45-80): a key a program
    renders as silence stops a run at the first pair on it (TimGM6mb's alto sax, 65, at E4)."""
    for program in _rendered.PROGRAMS:
        for key in range(36, 85):
            assert np.abs(_rendered.note(program, key, 2400, SR)).max() > 1e-3, (program, key)


def test_check_cli_on_rendered_pairs(capsys):
    from steerlab.battery.check import main

    main(["--stimuli", "instrument", "loudness"])
    out = capsys.readouterr().out
    assert "loudness (instrument) [GM programs 0, 24, 56, 73, 80]" in out and "usable: True" in out


def test_check_accepts_what_the_battery_accepts_and_says_partial_keeps_its_stimuli(capsys):
    """`--stimuli instrument partial`: the battery runs partial on its own stimuli and says so;
    the check does the same (its synthetic pairs, the battery's sentence), and no refusal that
    lists the variant it refuses among those the concept renders."""
    from steerlab.battery.check import main, variants_for
    from steerlab.battery.plan import own_stimuli
    from steerlab.battery.run import variants_run

    partial = concepts().get("partial")
    assert variants_run(partial, "instrument") == ("synthetic",) and variants_for(partial, "instrument") == [
        "synthetic"
    ]
    main(["--stimuli", "instrument", "partial"])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == own_stimuli(partial, "instrument")
    assert out[0] == "concept partial chooses its own stimuli (its [grid] families), not the instrument ones asked for"
    assert out[1].startswith("partial (synthetic):") and out[-1] == "  usable: True"


def test_a_concept_without_the_variant_is_refused_before_anything_is_written(tmp_path):
    from steerlab.battery.plan import check_variant, concept_pairs
    from steerlab.battery.run import run_battery
    from steerlab.builtins.concepts.loudness import Loudness

    class SynthOnly(Loudness):
        name, variants = "synth-only", ("synthetic",)

    with pytest.raises(ConfigError, match="no 'instrument' stimuli"):
        check_variant(SynthOnly(), "instrument")
    with pytest.raises(ConfigError, match="partial chooses its own stimuli \\(its \\[grid\\] families\\)"):
        concept_pairs(concepts().get("partial"), SR, [0], 0.1, True, "instrument")
    assert len(concept_pairs(SynthOnly(), SR, [0], 0.1, True)) == 1  # synthetic: called as before
    from steerlab.battery.check import variants_for

    # --stimuli both runs the variants a concept renders: synthetic only for these two
    assert variants_for(SynthOnly(), "both") == variants_for(concepts().get("partial"), "both") == ["synthetic"]
    assert variants_for(concepts().get("note"), "both") == ["synthetic", "instrument"]
    assert variants_for(SynthOnly(), "instrument") == [] and variants_for(SynthOnly(), "synthetic") == ["synthetic"]
    with pytest.raises(Exception, match="stimuli"):
        run_battery(["loudness"], "toy", tmp_path / "out", True, stimuli="recorded")
    assert not (tmp_path / "out").exists()


def test_both_variants_run_in_their_own_folders(tmp_path):
    from conftest import battery_toml
    from test_steerability import _ToyPlugin

    from steerlab.battery.run import run_battery

    (tmp_path / "tiny.toml").write_text(battery_toml())
    toy = _ToyPlugin()
    plugins.register(toy, name="toy_battery_rendered")
    try:
        doc = run_battery(
            ["loudness"],
            "toy_battery_codec",
            tmp_path / "out",
            True,
            config_file=tmp_path / "tiny.toml",
            stimuli="both",
        )
    finally:
        plugins.unregister(toy)
    out = tmp_path / "out"
    synth, inst = doc["concepts"]
    assert doc["stimuli"] == "both" and "variant" not in synth and inst["variant"] == "instrument"
    assert inst["folder"] == "loudness-instrument"
    assert {v["variant"] for v in synth["verdicts"]} == {"synthetic"}
    assert {v["variant"] for v in inst["verdicts"]} == {"instrument"}
    runs = [json.loads((out / f / "run.json").read_text()) for f in ("loudness", "loudness-instrument")]
    assert [r["concept"]["variants_run"] for r in runs] == [["synthetic"], ["instrument"]]
    assert runs[1]["measured"]["variant"] == "instrument" and "variant" not in runs[0]["measured"]
    assert runs[0]["config_hash"] != runs[1]["config_hash"]
    shares = [v["oracle_pass_share"] for v in inst["verdicts"] if v["model_role"] == "main"]
    assert shares and all(x == 1.0 for x in shares)  # loudness's rule holds on the rendered pairs
    html = (out / "report.html").read_text()
    assert "loudness (instrument)" in html and "id='loudness-instrument'" in html


def test_check_usage_error_is_one_line_as_the_cli_says_it():
    """Issue 15: `--stimuli bogus` printed argparse's usage block and "error:"; one line, "Error:"."""
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "steerlab.battery.check", "--stimuli", "bogus"], capture_output=True, text=True
    )
    assert res.returncode == 1 and res.stdout == ""
    (line,) = res.stderr.splitlines()  # (argparse words the choices by Python version)
    assert line.startswith("Error: argument --stimuli: invalid choice: 'bogus' (choose from ")
    assert line.endswith("(see 'python -m steerlab.battery.check -h')")
