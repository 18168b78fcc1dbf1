"""Ideal and wrong edits of matched pairs, scored on the waveforms by the verdict's own rule.

A verdict rule for a concept is usable when the ideal edit (the oracle) passes it and wrong edits of
the same energy fail it. This module builds both for a stimulus and scores them the way the batch test
scores an item (:func:`steerlab.partials.sweep.score_output`, the waveform as the perfect decode), so
the checks of docs/partials.md ("The note-partials rule") are one command:

    python -m steerlab.partials.edits            # the table of docs/partials.md

Wrong edits are added to the without-target signal and pass when *adding* them passes (stricter than
the verdict, which also needs removal). Instrument pairs: the same program a semitone, a fifth and an
octave up, another program (program + 40) at the target's pitch and a fifth up, Gaussian noise with the
note's envelope, each scaled to the ideal note's energy; half the ideal edit. Sinusoid pairs: a partial
15, 40 and 100 Hz above the target and a fifth up, noise, half the ideal edit; there each is scored by
the band rule and by the note-partials rule (the note is one partial), to compare the two.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from steerlab.partials.config import ScoringConfig, Thresholds
from steerlab.partials.verdicts import _passes_add, _passes_remove

INSTRUMENT_EDITS = ("oracle", "semitone", "fifth", "octave", "other_program", "other_program_fifth", "noise", "half")
SINUSOID_EDITS = ("oracle", "+15 Hz", "+40 Hz", "+100 Hz", "fifth", "noise", "half")
OTHER_PROGRAM = 40  # "another instrument": program + 40 (mod 128), five GM families away


def _scaled(x: np.ndarray, energy: float) -> np.ndarray | None:
    e = float(np.sum(x**2))
    return None if e <= 0 else x * math.sqrt(energy / e)


def edits(spec: Any) -> dict[str, np.ndarray]:
    """The ideal edit and the wrong edits of ``spec``'s pair (float64 ``[samples]``, margins
    included), each wrong one with the ideal edit's energy; a wrong note the SoundFont renders as
    silence is left out."""
    from steerlab.stimuli import fade, ideal_edit, instrument_score, render_note

    ideal = ideal_edit(spec)
    energy = float(np.sum(ideal**2))
    sr, n = spec.sample_rate, round(spec.duration_s * spec.sample_rate)
    m = round(spec.margin_s * sr)
    env = fade(n, sr, spec.fade_ms)
    out: dict[str, Any] = {"oracle": ideal}
    if spec.family == "instrument":
        score = instrument_score(spec)
        other = (score.program + OTHER_PROGRAM) % 128
        for name, program, key in (
            ("semitone", score.program, score.target_midi + 1),
            ("fifth", score.program, score.target_midi + 7),
            ("octave", score.program, score.target_midi + 12),
            ("other_program", other, score.target_midi),
            ("other_program_fifth", other, score.target_midi + 7),
        ):
            out[name] = _scaled(render_note(spec, program, key), energy)
    else:
        t = np.arange(n) / sr
        for name, f in (
            ("+15 Hz", spec.target_hz + 15),
            ("+40 Hz", spec.target_hz + 40),
            ("+100 Hz", spec.target_hz + 100),
            ("fifth", 1.5 * spec.target_hz),
        ):
            out[name] = _scaled(np.pad(np.sin(2 * np.pi * f * t) * env, (m, m)), energy)
    noise = np.random.default_rng([spec.seed, 12]).standard_normal(n) * env
    out["noise"] = _scaled(np.pad(noise, (m, m)), energy)
    out["half"] = 0.5 * ideal
    return {k: v for k, v in out.items() if v is not None}


def check(
    specs: Sequence[Any], thresholds: Thresholds | None = None, scoring: ScoringConfig | None = None
) -> list[dict[str, Any]]:
    """One row per (spec, edit): ``passes`` (adding passes; for the oracle, adding and removing),
    ``add`` and ``remove`` scores (:func:`steerlab.partials.sweep.score_output`) under the rule the
    batch test uses for the spec's family on audio (the note-partials rule for ``instrument``, the band
    rule otherwise), and, for sinusoid pairs, ``passes_note`` under the note-partials rule."""
    from steerlab.partials.sweep import score_output
    from steerlab.scoring import NoteRule, ScoreConfig, note_bands
    from steerlab.stimuli import render

    thresholds, scoring = thresholds or Thresholds(), scoring or ScoringConfig()
    opts = scoring.options()
    rule = NoteRule(scoring.note_local_criterion_db, scoring.note_tolerance_db)
    rows = []
    for spec in specs:
        wave = SimpleNamespace(has_decoder=True, sample_rate=spec.sample_rate)
        without, with_ = (x.astype(np.float64) for x in render(spec))
        ideal = with_ - without
        note = note_bands(
            ideal, without, spec.sample_rate, ScoreConfig(band_hz=scoring.band_hz, n_fft=scoring.n_fft), rule
        )
        rules = {"note": note} if spec.family == "instrument" else {"band": None, "note": note}
        for name, e in edits(spec).items():
            row: dict[str, Any] = {
                "family": spec.family,
                "target_hz": spec.target_hz,
                "density": spec.density,
                "seed": spec.seed,
                "edit": name,
            }
            for rname, bands in rules.items():
                a = score_output(wave, without, without + e, spec.target_hz, opts, note=bands)
                r = score_output(wave, with_, with_ - e, spec.target_hz, opts, note=bands)
                ok = _passes_add(a, thresholds) and (name != "oracle" or _passes_remove(r, thresholds))
                key = "_note" if rname == "note" and spec.family != "instrument" else ""
                row.update({f"passes{key}": bool(ok), f"add{key}": a, f"remove{key}": r})
            rows.append(row)
    return rows


def summary(rows: list[dict[str, Any]], min_share: float = 0.8) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (family, edit): pairs passing, units (target, density) whose pass share reaches ``min_share``
    and the largest unit share; for sinusoids also the note-partials rule's count and agreement."""
    units: dict[tuple, list[bool]] = defaultdict(list)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        units[(r["family"], r["edit"], r["target_hz"], r["density"])].append(r["passes"])
        s = out.setdefault((r["family"], r["edit"]), {"pairs": 0, "passing": 0, "passing_note": 0, "agree": 0})
        s["pairs"] += 1
        s["passing"] += r["passes"]
        if "passes_note" in r:
            s["passing_note"] += r["passes_note"]
            s["agree"] += r["passes_note"] == r["passes"]
    for (fam, edit), s in out.items():
        shares = [sum(v) / len(v) for (f, e, _, _), v in units.items() if (f, e) == (fam, edit)]
        s.update(units=len(shares), units_steerable=sum(x >= min_share for x in shares), max_unit_share=max(shares))
    return out


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of :func:`summary`."""
    lines = [
        (
            "| family | edit | pairs passing (rule of the family) | units >= 0.8 | max unit share "
            "| note-partials rule (sinusoids) | agree |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (fam, edit), s in summary(rows).items():
        note = f"{s['passing_note']}/{s['pairs']}" if fam != "instrument" else "–"
        agree = f"{s['agree']}/{s['pairs']}" if fam != "instrument" else "–"
        lines.append(
            f"| {fam} | {edit} | {s['passing']}/{s['pairs']} | {s['units_steerable']}/{s['units']} | "
            f"{s['max_unit_share']:.2f} | {note} | {agree} |"
        )
    return "\n".join(lines)


def grid(
    family: str, targets: Sequence[float], densities: Sequence[int], seeds: Sequence[int], **common: Any
) -> list[Any]:
    """The feasible specs of a grid (24 kHz, 0.25 s, 0.113 s margins unless ``common`` says otherwise)."""
    from steerlab.stimuli import Infeasible, StimulusSpec, partials

    kw = {"sample_rate": 24000, "duration_s": 0.25, "margin_s": 0.113, **common}
    specs = []
    for f in targets:
        for d in densities:
            for s in seeds:
                try:
                    spec = StimulusSpec(family, f, d, seed=s, **kw)
                    partials(spec)
                except Infeasible:
                    continue
                specs.append(spec)
    return specs


TARGETS = (150.0, 300.0, 500.0, 1200.0, 1500.0, 4000.0)


def main(argv: Sequence[str] = ()) -> None:
    """Print the table of docs/partials.md: instrument pairs at densities 1-16 and sinusoid pairs at
    1, 4, 16, targets :data:`TARGETS`, seeds 0-5."""
    rows = check(grid("instrument", TARGETS, (1, 2, 4, 8, 16), range(6)))
    rows += check(grid("inharmonic", TARGETS, (1, 4, 16), range(6)))
    print(table(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
