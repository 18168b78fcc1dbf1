"""Matched stimulus pairs for the partial-steerability batch test.

Step 1 of the protocol in SCIENCE.md: every stimulus is a mixture of partials
rendered twice from one seed, once without and once with the target partial
``f``, so the pair differs by exactly one sinusoid. A :class:`StimulusSpec` is the
whole recipe (family, target, density, f0, seed, amplitudes, phases, noise, fades);
:func:`render` turns it into the pair, :func:`design` builds the cross product the
batch test runs over, and :func:`write_set` writes WAV pairs plus ``manifest.csv``
from which :func:`read_manifest` rebuilds the specs.

Families (``density`` counts mixture partials, never the target):

- ``tone``: empty mixture (density 0), so the pair is silence vs a pure tone.
- ``harmonic``: harmonics ``1..density`` of ``f0``; the target is an added partial.
- ``chord``: notes of a chord shape on root ``f0``, each a harmonic tone; the
  ``density`` partials are dealt over the notes (root first). Partials of
  different notes may nearly coincide, as in any tempered chord.
- ``inharmonic``: ``density`` log-uniform random frequencies in
  ``[band_low_hz, band_high_hz]``, at least ``min_separation_hz`` apart.
- ``instrument``: a rendered General MIDI mixture (:mod:`steerlab.corpus`: tinysoundfont and
  the TimGM6mb SoundFont of the ``render`` extra) of ``density`` context notes, without and
  with one more note, all of one program and velocity drawn from the seed. The target note is
  the MIDI pitch nearest to ``target_hz``, and the spec's ``target_hz`` becomes that note's
  fundamental (``440 * 2 ** ((p - 69) / 12)``); context pitches are drawn from the seed with
  fundamentals in ``[band_low_hz, band_high_hz]``, no harmonic of theirs (below
  ``band_high_hz``) within ``min_separation_hz`` of the target's fundamental. The pair is two
  renders of one synthesizer (the same notes, and the target note in one of them): their
  difference, the ideal edit, is the rendered note; ``partials_hz`` in the manifest lists the
  context notes' nominal harmonics and the ``instrument`` column the MIDI ground truth.

Every mixture partial stays at least ``min_separation_hz`` away from the target, so
the target's band holds no context energy; a combination that cannot satisfy this
(or puts a harmonic at or above Nyquist) is *infeasible* and :func:`design` skips
it with a counted reason.

Margins (``margin_s``): silence of this many seconds before and after the sound in both
signals of the pair (fades and noise stay within the sound). A model whose filters are
longer than its fades spreads the sound's response beyond it; without margins that response
is cut off at the clip's edges, and an edit of it leaves a step there: a broadband click
that no ideal edit of the partial would make (measured on the positive control,
docs/partials.md). ``steerlab partials`` sets the margin from the tested layers'
receptive fields.

Noise (``snr_db``): white Gaussian, the same realisation in both signals, scaled so
``10 log10(P_mixture / P_noise)`` equals ``snr_db`` exactly, where ``P_mixture`` is the
mean power of the without-target mixture (for ``tone``, whose mixture is empty,
the target's power). Both signals of a pair share one scale factor, chosen so
neither peaks above 0.9; it is recorded.

numpy only: importing this module (and ``steerlab stimuli --help``) stays cheap.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from steerlab import validation as check
from steerlab.errors import CorpusBuildError, Infeasible, OutputError, StimulusError

_T = TypeVar("_T")

FAMILIES: tuple[str, ...] = ("tone", "harmonic", "chord", "inharmonic", "instrument")
PHASES: tuple[str, ...] = ("random", "zero")
# Amplitude rules for mixture partials, relative to the target's ``amplitude``:
# match: equal to it; rolloff: times f_ref / f (f_ref the note's f0, or the lowest
# inharmonic partial), i.e. 1/k for harmonic k; random: -12..0 dB, drawn from the seed.
CONTEXT_RULES: tuple[str, ...] = ("match", "rolloff", "random")
CHORDS: dict[str, tuple[int, ...]] = {
    "major": (0, 4, 7),
    "minor": (0, 3, 7),
    "major7": (0, 4, 7, 11),
    "minor7": (0, 3, 7, 10),
    "sus4": (0, 5, 7),
}
# Bumped whenever rendering changes, so keys never name two different audios.
STIMULUS_VERSION = 1
PEAK = 0.9
# Scaling aims a hair under PEAK so float32 rounding of the sum cannot cross it.
_PEAK_SAFE = PEAK * (1 - 2.0**-20)
_RANDOM_DB = 12.0
_MAX_DRAWS = 10_000

ContextAmplitude = float | str


@dataclass(frozen=True)
class StimulusSpec:
    """One matched pair; the spec alone regenerates both signals bit for bit.

    ``f0`` (and ``chord``) are required for harmonic and chord and must be None
    otherwise; ``band_*`` is used by inharmonic only. Numbers are normalised to
    plain ``int``/``float`` so equal specs have equal :meth:`key`.
    """

    family: str
    target_hz: float
    density: int = 0
    f0: float | None = None
    chord: str | None = None
    seed: int = 0
    sample_rate: int = 24_000
    duration_s: float = 1.0
    amplitude: float = 0.1
    context_amplitude: ContextAmplitude = "match"
    phase: str = "random"
    snr_db: float | None = None
    fade_ms: float = 10.0
    min_separation_hz: float = 30.0
    band_low_hz: float = 50.0
    band_high_hz: float = 8000.0
    margin_s: float = 0.0

    def __post_init__(self) -> None:
        put = lambda name, v: object.__setattr__(self, name, v)  # noqa: E731 (frozen)
        err = StimulusError
        check.choice("family", self.family, FAMILIES, error=err)
        check.choice("phase", self.phase, PHASES, error=err)
        put("sample_rate", check.integer("sample_rate", self.sample_rate, low=1, error=err))
        put("seed", check.integer("seed", self.seed, low=0, error=err))
        put("density", check.integer("density", self.density, low=0, error=err))
        nyquist = self.sample_rate / 2
        target = check.positive("target_hz", self.target_hz, error=err)
        if target >= nyquist:
            raise err(
                f"target_hz {target:g} is not below the Nyquist frequency {nyquist:g} Hz "
                f"(sample_rate {self.sample_rate})",
                parameter="target_hz",
            )
        if self.family == "instrument":  # the nearest MIDI pitch's fundamental
            target = midi_hz(nearest_midi(target))
            if target >= nyquist:
                raise err(
                    f"the MIDI note nearest to target_hz ({target:g} Hz) is not below the Nyquist "
                    f"frequency {nyquist:g} Hz",
                    parameter="target_hz",
                )
        put("target_hz", target)
        for name in ("duration_s", "amplitude", "min_separation_hz", "band_low_hz", "band_high_hz"):
            put(name, check.positive(name, getattr(self, name), error=err))
        put("fade_ms", check.non_negative("fade_ms", self.fade_ms, error=err))
        put("margin_s", check.non_negative("margin_s", self.margin_s, error=err))
        if 2 * self.fade_ms / 1000 > self.duration_s:
            raise err(
                f"fade_ms {self.fade_ms:g} is too long: fade in and out must fit in {self.duration_s:g} s",
                parameter=("fade_ms", "duration_s"),
            )
        if round(self.duration_s * self.sample_rate) < 1:
            raise err(
                f"duration_s {self.duration_s:g} gives no samples at {self.sample_rate} Hz", parameter="duration_s"
            )
        put("snr_db", check.number_or_none("snr_db", self.snr_db, error=err))
        ca = self.context_amplitude
        if isinstance(ca, str):
            check.choice("context_amplitude", ca, CONTEXT_RULES, what="context_amplitude rule", error=err)
        else:
            put("context_amplitude", check.positive("context_amplitude", ca, error=err))
        if self.family in ("harmonic", "chord"):
            if self.f0 is None:
                raise err(f"family {self.family!r} needs f0 (the fundamental or chord root, Hz)", parameter="f0")
            put("f0", check.positive("f0", self.f0, error=err))
        elif self.f0 is not None:
            raise err(f"f0 is only used by harmonic and chord; leave it None for {self.family!r}", parameter="f0")
        if self.family == "chord":
            put("chord", "major" if self.chord is None else self.chord)
            check.choice("chord", self.chord, CHORDS, error=err)
        elif self.chord is not None:
            raise err(f"chord is only used by family 'chord'; leave it None for {self.family!r}", parameter="chord")
        if self.family == "tone" and self.density != 0:
            raise Infeasible(
                "tone takes density 0", f"got density {self.density} (a tone pair is silence vs the target)"
            )
        if self.family != "tone" and self.density == 0:
            raise Infeasible("density 0 is only for tone", f"family {self.family!r} needs density >= 1")
        if self.family in ("inharmonic", "instrument"):
            if self.band_low_hz >= self.band_high_hz:
                raise err(
                    f"band_low_hz {self.band_low_hz:g} must be below band_high_hz {self.band_high_hz:g}",
                    parameter=("band_low_hz", "band_high_hz"),
                )
            if self.band_high_hz >= nyquist:
                raise err(
                    f"band_high_hz {self.band_high_hz:g} is not below the Nyquist frequency {nyquist:g} Hz "
                    f"(sample_rate {self.sample_rate}); lower the band",
                    parameter="band_high_hz",
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StimulusSpec:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StimulusSpec:
        unknown = sorted(set(d) - set(SPEC_FIELDS))
        if unknown:
            hint = check.did_you_mean(unknown[0], SPEC_FIELDS)
            raise StimulusError(
                f"unknown stimulus field(s) {', '.join(unknown)}.{hint} Valid fields: {', '.join(SPEC_FIELDS)}"
            )
        return cls(**d)

    def key(self) -> str:
        """16 hex digits of sha256 over the canonical JSON of the spec and STIMULUS_VERSION
        (:func:`steerlab.artifacts.config_hash`).

        ``margin_s`` (added after version 1) enters only when it is not 0, so the specs
        and results of earlier runs keep their keys: a zero margin renders the same audio."""
        cached = self.__dict__.get("_key")  # frozen: computed once (a batch test asks thousands of times)
        if cached is not None:
            return cached
        d = self.to_dict()
        if d["margin_s"] == 0.0:
            del d["margin_s"]
        from steerlab.artifacts import config_hash

        key = config_hash({**d, "stimulus_version": STIMULUS_VERSION})
        object.__setattr__(self, "_key", key)
        return key


SPEC_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(StimulusSpec))


@dataclass(frozen=True)
class Partials:
    """The mixture's sinusoids (unscaled amplitudes) and the target's phase."""

    freqs_hz: tuple[float, ...]
    amplitudes: tuple[float, ...]
    phases: tuple[float, ...]
    target_phase: float


@dataclass(frozen=True)
class Rendered:
    """A rendered pair and its parts. ``without``/``with_`` are float32 ``[samples]``;
    ``mixture``, ``target`` and ``noise`` are the unscaled float64 parts (fades applied),
    so ``without ~= scale * (mixture + noise)`` and ``with_ - without ~= scale * target``;
    all of them include the silent margins."""

    spec: StimulusSpec
    without: np.ndarray
    with_: np.ndarray
    mixture: np.ndarray
    target: np.ndarray
    noise: np.ndarray
    partials: Partials
    scale: float

    @property
    def noise_rms(self) -> float:
        return float(np.sqrt(np.mean(self.noise**2)))


def _streams(spec: StimulusSpec) -> list[np.random.Generator]:
    """Independent generators for frequencies, amplitudes, phases and noise: changing
    the SNR never moves a partial, and vice versa."""
    ss = np.random.SeedSequence([spec.seed, FAMILIES.index(spec.family), STIMULUS_VERSION])
    return [np.random.default_rng(s) for s in ss.spawn(4)]


def _too_close(spec: StimulusSpec, freqs: Sequence[float]) -> None:
    for f in freqs:
        if abs(f - spec.target_hz) < spec.min_separation_hz:
            raise Infeasible(
                "target within min_separation_hz of a mixture partial",
                f"{spec.family} partial {f:g} Hz is {abs(f - spec.target_hz):.3g} Hz from target "
                f"{spec.target_hz:g} Hz (min_separation_hz {spec.min_separation_hz:g})",
            )


def _below_nyquist(spec: StimulusSpec, freqs: Sequence[float]) -> None:
    nyquist = spec.sample_rate / 2
    if freqs and max(freqs) >= nyquist:
        raise Infeasible(
            "mixture partial at or above Nyquist",
            f"{spec.family} partial {max(freqs):g} Hz >= {nyquist:g} Hz (f0 {spec.f0}, density {spec.density})",
        )


def midi_hz(pitch: int) -> float:
    """Fundamental (Hz) of MIDI key ``pitch`` in equal temperament, A4 (69) = 440 Hz."""
    return 440.0 * 2.0 ** ((int(pitch) - 69) / 12.0)


def nearest_midi(hz: float) -> int:
    """The MIDI key whose fundamental is nearest to ``hz`` (in cents)."""
    return int(round(69 + 12 * math.log2(float(hz) / 440.0)))


MIDI_RANGE = (24, 96)  # context notes: C1 to C7


@dataclass(frozen=True)
class InstrumentScore:
    """The MIDI ground truth of an ``instrument`` pair: one GM ``program`` and ``velocity``
    for every note, the target's key and the context keys (all notes sound for the whole
    ``duration_s``)."""

    program: int
    velocity: int
    target_midi: int
    context_midi: tuple[int, ...]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))


def _harmonics(f0: float, high: float) -> list[float]:
    return [k * f0 for k in range(1, int(high // f0) + 1)] or [f0]


def instrument_score(spec: StimulusSpec) -> InstrumentScore:
    """The score of an ``instrument`` spec (cheap, no audio): program, velocity and context
    pitches drawn from the seed. Raises :class:`Infeasible` when ``density`` context notes
    cannot be placed (see the module docstring)."""
    if spec.family != "instrument":
        raise StimulusError(f"instrument_score needs family 'instrument', got {spec.family!r}")
    from steerlab.corpus import PITCHED_FAMILIES

    rng = _streams(spec)[0]
    program = int(rng.choice(PITCHED_FAMILIES)) * 8 + int(rng.integers(0, 8))
    velocity = int(rng.integers(60, 111))
    target = nearest_midi(spec.target_hz)
    high = min(spec.band_high_hz, spec.sample_rate / 2)
    keys = [
        k
        for k in range(MIDI_RANGE[0], MIDI_RANGE[1] + 1)
        if k != target
        and spec.band_low_hz <= midi_hz(k) <= high
        and all(abs(h - spec.target_hz) >= spec.min_separation_hz for h in _harmonics(midi_hz(k), high))
    ]
    if len(keys) < spec.density:
        raise Infeasible(
            "band too crowded for density",
            f"{len(keys)} MIDI keys in {spec.band_low_hz:g}-{high:g} Hz keep their harmonics "
            f"{spec.min_separation_hz:g} Hz from the target; density {spec.density}",
        )
    context = tuple(sorted(int(k) for k in rng.choice(keys, size=spec.density, replace=False)))
    return InstrumentScore(program, velocity, target, context)


def _given(value: _T | None, name: str) -> _T:
    """``value`` of a field the spec's own checks guarantee for its family (``f0`` for harmonic
    and chord, ``chord`` for chord); a :class:`StimulusError` if that guarantee is ever broken."""
    if value is None:
        raise StimulusError(f"{name} is required for this family", parameter=name)
    return value


def _mixture_freqs(spec: StimulusSpec, rng: np.random.Generator) -> tuple[list[float], list[float]]:
    """(frequencies, reference frequency per partial for the rolloff rule)."""
    if spec.family == "tone":
        return [], []
    if spec.family == "instrument":  # the context notes' nominal harmonics (the SoundFont renders them)
        high = min(spec.band_high_hz, spec.sample_rate / 2)
        freqs, refs = [], []
        for k in instrument_score(spec).context_midi:
            hs = [h for h in _harmonics(midi_hz(k), high) if h < high]
            freqs += hs
            refs += [midi_hz(k)] * len(hs)
        return freqs, refs
    if spec.family == "harmonic":
        f0 = _given(spec.f0, "f0")
        freqs = [k * f0 for k in range(1, spec.density + 1)]
        return freqs, [f0] * len(freqs)
    if spec.family == "chord":
        shape = CHORDS[_given(spec.chord, "chord")]
        per_note, extra = divmod(spec.density, len(shape))
        freqs, refs = [], []
        for i, semitones in enumerate(shape):
            root = _given(spec.f0, "f0") * 2.0 ** (semitones / 12)
            for k in range(1, per_note + (i < extra) + 1):
                freqs.append(k * root)
                refs.append(root)
        return freqs, refs
    # inharmonic: rejection sampling keeps partials apart from the target and each other
    lo, hi = math.log(spec.band_low_hz), math.log(spec.band_high_hz)
    freqs = []
    for _ in range(_MAX_DRAWS):
        if len(freqs) == spec.density:
            break
        f = float(np.exp(rng.uniform(lo, hi)))
        if all(abs(f - g) >= spec.min_separation_hz for g in (*freqs, spec.target_hz)):
            freqs.append(f)
    if len(freqs) < spec.density:
        raise Infeasible(
            "band too crowded for density",
            f"placed {len(freqs)} of {spec.density} partials {spec.min_separation_hz:g} Hz apart in "
            f"{spec.band_low_hz:g}-{spec.band_high_hz:g} Hz",
        )
    return freqs, [min(freqs)] * len(freqs)


def partials(spec: StimulusSpec) -> Partials:
    """The mixture's frequencies, amplitudes and phases for ``spec`` (cheap: no audio).

    Raises :class:`Infeasible` when the mixture cannot keep its partials below
    Nyquist and ``min_separation_hz`` away from the target.
    """
    freq_rng, amp_rng, phase_rng, _ = _streams(spec)
    freqs, refs = _mixture_freqs(spec, freq_rng)
    if spec.family == "instrument":  # amplitudes and phases are the SoundFont's: recorded as 0
        _below_nyquist(spec, freqs)
        return Partials(tuple(float(f) for f in freqs), (0.0,) * len(freqs), (0.0,) * len(freqs), 0.0)
    _below_nyquist(spec, freqs)
    _too_close(spec, freqs)
    ca = spec.context_amplitude
    if ca == "match":
        amps = [spec.amplitude] * len(freqs)
    elif ca == "rolloff":
        amps = [spec.amplitude * r / f for f, r in zip(freqs, refs)]
    elif ca == "random":
        amps = [spec.amplitude * 10 ** (-_RANDOM_DB * u / 20) for u in amp_rng.uniform(0, 1, len(freqs))]
    else:
        amps = [float(ca)] * len(freqs)
    if spec.phase == "random":
        target_phase = float(phase_rng.uniform(0, 2 * np.pi))
        phases = [float(p) for p in phase_rng.uniform(0, 2 * np.pi, len(freqs))]
    else:
        target_phase, phases = 0.0, [0.0] * len(freqs)
    return Partials(tuple(float(f) for f in freqs), tuple(float(a) for a in amps), tuple(phases), target_phase)


def fade(n: int, sample_rate: int, fade_ms: float) -> np.ndarray:
    """Raised-cosine fade in and out over ``fade_ms`` each: float64 ``[n]``, 1 in between."""
    w = np.ones(n)
    m = min(int(round(fade_ms * sample_rate / 1000)), n // 2)
    if m > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(m) / m)  # starts at exactly 0
        w[:m] = ramp
        w[n - m :] = ramp[::-1]
    return w


RENDER_HINT = "pip install 'steerlab[render]' (tinysoundfont and pretty_midi's TimGM6mb SoundFont)"


def check_renderer() -> None:
    """Raise a one-line :class:`StimulusError` unless the ``instrument`` family can render
    (tinysoundfont importable and the default SoundFont present)."""
    import importlib.util

    from steerlab.corpus import default_soundfont

    if importlib.util.find_spec("tinysoundfont") is None:
        raise StimulusError(f"the instrument family renders General MIDI notes and needs tinysoundfont: {RENDER_HINT}")
    try:
        default_soundfont()
    except CorpusBuildError as exc:
        raise StimulusError(f"the instrument family needs a SoundFont: {exc}") from None


_RENDERERS: dict[int, Any] = {}


def _render_notes(spec: StimulusSpec, score: InstrumentScore, keys: Sequence[int]) -> np.ndarray:
    """``keys`` of ``score`` rendered together for ``duration_s``: float64 ``[samples]``."""
    from steerlab.corpus import Note, Renderer, RenderSpec, default_soundfont

    check_renderer()
    r = _RENDERERS.get(spec.sample_rate)
    if r is None:
        r = _RENDERERS[spec.sample_rate] = Renderer(default_soundfont(), spec.sample_rate)
    notes = tuple(Note(int(k), score.velocity, 0.0, spec.duration_s) for k in keys)
    x = r.render(RenderSpec("chord", score.program, notes, spec.duration_s)).astype(np.float64)
    n = int(round(spec.duration_s * spec.sample_rate))
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def _instrument_parts(spec: StimulusSpec, env: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mixture, target) of an ``instrument`` spec, faded: the context notes rendered, and the
    difference of the render with the target note and the render without it, both scaled so
    the target's peak is ``amplitude``."""
    score = instrument_score(spec)
    without = _render_notes(spec, score, score.context_midi)
    with_ = _render_notes(spec, score, (*score.context_midi, score.target_midi))
    target = (with_ - without) * env
    peak = float(np.max(np.abs(target)))
    if peak <= 0:
        raise StimulusError(
            f"the SoundFont rendered MIDI note {score.target_midi} of program {score.program} as silence"
        )
    g = spec.amplitude / peak
    return without * env * g, target * g


def render_note(spec: StimulusSpec, program: int, key: int) -> np.ndarray:
    """One MIDI ``key`` of GM ``program`` rendered alone at ``spec``'s velocity, duration and fades,
    with its margins: float64 mono ``[samples]``, as :func:`ideal_edit` is for the target (unscaled;
    all zeros where the SoundFont has no sample). For wrong-edit checks (``steerlab.partials.edits``)."""
    score = dataclasses.replace(instrument_score(spec), program=int(program))
    n = int(round(spec.duration_s * spec.sample_rate))
    x = _render_notes(spec, score, (int(key),)) * fade(n, spec.sample_rate, spec.fade_ms)
    m = int(round(spec.margin_s * spec.sample_rate))
    return np.pad(x, (m, m))


def render_parts(spec: StimulusSpec) -> Rendered:
    """Render ``spec`` and keep the parts; see :class:`Rendered`."""
    p = partials(spec)
    _, _, _, noise_rng = _streams(spec)
    sr = spec.sample_rate
    n = int(round(spec.duration_s * sr))
    t = np.arange(n) / sr
    env = fade(n, sr, spec.fade_ms)
    if spec.family == "instrument":
        mixture, target = _instrument_parts(spec, env)
    else:
        mixture = np.zeros(n)
        for f, a, ph in zip(p.freqs_hz, p.amplitudes, p.phases):
            mixture += a * np.sin(2 * np.pi * f * t + ph)
        mixture *= env
        target = spec.amplitude * np.sin(2 * np.pi * spec.target_hz * t + p.target_phase) * env
    noise = np.zeros(n)
    if spec.snr_db is not None:
        reference = mixture if spec.family != "tone" else target
        noise = noise_rng.standard_normal(n) * env
        # normalise the realised noise power, so the SNR is exact rather than expected
        noise *= math.sqrt(np.mean(reference**2) / 10 ** (spec.snr_db / 10) / np.mean(noise**2))
    without64 = mixture + noise
    peak = max(float(np.max(np.abs(without64))), float(np.max(np.abs(without64 + target))))
    scale = 1.0 if peak <= _PEAK_SAFE else _PEAK_SAFE / peak
    without = (scale * without64).astype(np.float32)
    # with = without + target in float32: the difference is the target to within rounding
    with_ = without + (scale * target).astype(np.float32)
    m = int(round(spec.margin_s * sr))
    if m:
        without, with_, mixture, target, noise = (np.pad(x, (m, m)) for x in (without, with_, mixture, target, noise))
    return Rendered(spec, without, with_, mixture, target, noise, p, scale)


def render(spec: StimulusSpec) -> tuple[np.ndarray, np.ndarray]:
    """The matched pair ``(without, with)``: float32 mono ``[samples]``, same mixture and noise."""
    r = render_parts(spec)
    return r.without, r.with_


def ideal_edit(spec: StimulusSpec) -> np.ndarray:
    """The ideal edit of ``spec``'s pair, float64 mono ``[samples]`` (margins included): the target
    exactly as it enters ``with`` (``scale * target``; ``with - without`` equals it to float32
    rounding). For ``instrument``, the target note rendered alone; the note-partials rule of
    docs/partials.md scores an instrument pair on its partials (``steerlab.scoring.note_bands``)."""
    r = render_parts(spec)
    return r.scale * r.target


def log_grid(f_min: float, f_max: float, n: int) -> list[float]:
    """``n`` log-spaced frequencies from ``f_min`` to ``f_max`` inclusive (rounded to 0.01 Hz)."""
    f_min = check.positive("f_min", f_min, error=StimulusError)
    f_max = check.positive("f_max", f_max, error=StimulusError)
    n = check.integer("n", n, low=1, error=StimulusError)
    if n > 1 and f_max <= f_min:
        raise StimulusError(f"grid needs f_min < f_max, got {f_min:g} and {f_max:g}", parameter=("f_min", "f_max"))
    if n == 1:
        return [round(f_min, 2)]
    return [round(float(f), 2) for f in np.geomspace(f_min, f_max, n)]


class Design(list):
    """The specs of a design (a plain list of :class:`StimulusSpec`) plus ``skipped``:
    a reason -> count mapping of infeasible combinations left out."""

    def __init__(self, specs: Iterable[StimulusSpec] = (), skipped: dict[str, int] | None = None):
        super().__init__(specs)
        self.skipped: dict[str, int] = dict(skipped or {})

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())


def design(
    families: Sequence[str],
    targets: Sequence[float],
    densities: Sequence[int],
    f0s: Sequence[float],
    seeds: Sequence[int],
    *,
    snrs: Sequence[float | None] = (None,),
    **common: Any,
) -> Design:
    """Cross product of families x targets x densities x f0s x seeds x snrs.

    ``tone`` takes density 0 and no f0 (one spec per target, seed and SNR);
    ``inharmonic`` takes no f0. ``common`` holds the remaining StimulusSpec fields
    (sample_rate, duration_s, amplitude, context_amplitude, phase, fade_ms,
    min_separation_hz, band_low_hz, band_high_hz, chord). Infeasible combinations
    are skipped and counted in ``Design.skipped``; bad inputs (unknown family, a
    target at or above Nyquist, ...) raise :class:`StimulusError`, as does a design
    in which every combination is infeasible.
    """
    unknown = sorted(set(common) - set(SPEC_FIELDS))
    fixed = {"family", "target_hz", "density", "f0", "seed", "snr_db"} & set(common)
    if unknown or fixed:
        raise StimulusError(f"design() got unexpected field(s) {', '.join(unknown + sorted(fixed))}")
    for name, values in (("families", families), ("targets", targets), ("seeds", seeds), ("snrs", snrs)):
        if not len(values):
            raise StimulusError(f"design needs at least one of {name}")
    for family in families:
        check.choice("family", family, FAMILIES, error=StimulusError)
    if "instrument" in families:
        check_renderer()  # before any file is written
    if any(f != "tone" for f in families) and not len(densities):
        raise StimulusError("design needs at least one density for harmonic, chord or inharmonic")
    if any(f in ("harmonic", "chord") for f in families) and not len(f0s):
        raise StimulusError("harmonic and chord need at least one f0")
    for d in densities:
        check.integer("density", d, low=0, error=StimulusError)
    for root in f0s:
        check.positive("f0", root, error=StimulusError)
    chord = common.pop("chord", None)
    out = Design()
    seen: set[StimulusSpec] = set()
    # Validate the inputs every combination shares (raises for a bad target, SNR or option).
    for target in targets:
        for snr in snrs:
            StimulusSpec("tone", target, snr_db=snr, seed=seeds[0], **common)
    for family in dict.fromkeys(families):
        fam_densities = (0,) if family == "tone" else densities
        fam_f0s = f0s if family in ("harmonic", "chord") else (None,)
        extra = {"chord": chord} if family == "chord" else {}
        for target in targets:
            for density in fam_densities:
                for f0 in fam_f0s:
                    for seed in seeds:
                        for snr in snrs:
                            try:
                                spec = StimulusSpec(
                                    family, target, density, f0, seed=seed, snr_db=snr, **extra, **common
                                )
                                partials(spec)
                            except Infeasible as exc:
                                out.skipped[exc.reason] = out.skipped.get(exc.reason, 0) + 1
                                continue
                            if spec not in seen:
                                seen.add(spec)
                                out.append(spec)
    if not out:
        reasons = "; ".join(f"{r} ({c})" for r, c in out.skipped.items())
        raise StimulusError(f"no feasible stimuli: all {out.n_skipped} combinations were skipped: {reasons}")
    return out


# ---- manifest ----------------------------------------------------------------------------------

EXTRA_COLUMNS: tuple[str, ...] = (
    "without_file",
    "with_file",
    "scale",
    "target_phase",
    "partials_hz",
    "partial_amplitudes",
    "partial_phases",
    "noise_rms",
    "instrument",  # instrument family: the MIDI ground truth (JSON of InstrumentScore), else empty
)
MANIFEST_COLUMNS: tuple[str, ...] = ("key", *SPEC_FIELDS, *EXTRA_COLUMNS, "stimulus_version")
MANIFEST_NAME = "manifest.csv"


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest exact round trip
    return str(value)


def _floats(values: Iterable[float]) -> str:
    return ";".join(repr(float(v)) for v in values)


def file_names(spec: StimulusSpec) -> tuple[str, str]:
    k = spec.key()
    return f"{k}_without.wav", f"{k}_with.wav"


def manifest_row(r: Rendered) -> dict[str, str]:
    spec = r.spec
    without_file, with_file = file_names(spec)
    row = {"key": spec.key(), **{k: _cell(v) for k, v in spec.to_dict().items()}}
    row.update(
        without_file=without_file,
        with_file=with_file,
        scale=_cell(r.scale),
        target_phase=_cell(r.partials.target_phase),
        partials_hz=_floats(r.partials.freqs_hz),
        partial_amplitudes=_floats(r.partials.amplitudes),
        partial_phases=_floats(r.partials.phases),
        noise_rms=_cell(r.noise_rms),
        instrument=instrument_score(spec).to_json() if spec.family == "instrument" else "",
        stimulus_version=str(STIMULUS_VERSION),
    )
    return row


def write_float_wav(path: Path, x: np.ndarray, sample_rate: int) -> Path:
    """Write mono float32 ``[samples]`` as a byte-reproducible 32-bit float WAV, atomically."""
    from steerlab.audio import write_wav

    return write_wav(path, np.asarray(x, dtype=np.float32)[None], sample_rate)


def write_set(
    specs: Iterable[StimulusSpec],
    out_dir: str | Path,
    progress: Callable[[StimulusSpec], None] | None = None,
) -> Path:
    """Write ``<key>_without.wav``/``<key>_with.wav`` per spec and ``manifest.csv``; return the manifest path.

    Every file is written atomically, the manifest last, so a manifest only ever
    lists files that exist. Duplicate specs are written once. Rendering is a pure
    function of the spec, so writing the same specs twice gives identical bytes.
    """
    from steerlab.audio import output_dir

    with output_dir(out_dir) as out:  # a new folder is removed again if interrupted before its first file
        try:
            return _write_set(specs, out, progress)
        except OSError as exc:
            reason = " ".join((exc.strerror or str(exc)).split())
            raise OutputError(f"cannot write stimuli to {out}: {reason}; choose a writable output directory") from exc


def _write_set(specs: Iterable[StimulusSpec], out: Path, progress: Callable[[StimulusSpec], None] | None) -> Path:
    from steerlab.artifacts import atomic_path

    rows: dict[str, dict[str, str]] = {}
    for spec in specs:
        key = spec.key()
        if key not in rows:
            r = render_parts(spec)
            without_file, with_file = file_names(spec)
            write_float_wav(out / without_file, r.without, spec.sample_rate)
            write_float_wav(out / with_file, r.with_, spec.sample_rate)
            rows[key] = manifest_row(r)
        if progress is not None:
            progress(spec)
    path = out / MANIFEST_NAME
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows.values())
    return path


_INT_COLUMNS = ("density", "seed", "sample_rate")
_NULLABLE_COLUMNS = ("f0", "chord", "snr_db")


def _parse_field(name: str, text: str | None) -> Any:
    """A manifest cell as the spec field's type; :class:`StimulusError` words what it must be
    (the caller names the file, line and column)."""
    if text is None:
        raise StimulusError("is missing (the row has too few cells)")
    if name in ("family", "phase") or (name == "chord" and text != ""):
        return text
    if name in _NULLABLE_COLUMNS and text == "":
        return None
    if name == "context_amplitude" and text in CONTEXT_RULES:
        return text
    if name in _INT_COLUMNS:
        if not text.strip().lstrip("-").isdigit():
            raise StimulusError(f"must be an integer, got {text[:40]!r}")
        return int(text)
    try:
        value = float(text)
    except ValueError:
        raise StimulusError(f"must be a number, got {text[:40]!r}") from None
    if not math.isfinite(value):
        raise StimulusError(f"must be a finite number, got {text[:40]!r}")
    return value


def read_manifest(path: str | Path) -> list[StimulusSpec]:
    """Rebuild the specs of a ``manifest.csv`` (or a folder holding one), in row order.

    Every row is checked column by column: a cell of the wrong type, a row the spec's own
    validation refuses, an unknown stimulus version, or a recorded key that differs from its
    spec's key raises :class:`StimulusError` with one line naming the file, the line and the
    column (``manifest.csv line 3: column 'density' must be an integer, got 'x'``); so do a
    missing file, a file that is not UTF-8 CSV, and missing columns. Nothing is defaulted
    except ``margin_s``, which manifests written before it existed lack (then 0, as they
    were rendered).
    """
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_NAME
    if not p.is_file():
        raise StimulusError(f"stimulus manifest not found: {p}")
    specs = []
    try:
        with open(p, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            optional = {"margin_s"}
            missing = [
                c
                for c in ("key", *SPEC_FIELDS, "stimulus_version")
                if c not in (reader.fieldnames or []) and c not in optional
            ]
            if missing:
                raise StimulusError(f"{p} is not a stimulus manifest: missing column(s) {', '.join(missing)}")
            for row in reader:
                i = reader.line_num
                if None in row or None in row.values():
                    n = len(reader.fieldnames or []) + len(row.get(None) or []) - sum(v is None for v in row.values())
                    raise StimulusError(
                        f"{p} line {i}: the row has {n} cells, the header {len(reader.fieldnames or [])}"
                    )
                if row["stimulus_version"] != str(STIMULUS_VERSION):
                    raise StimulusError(
                        f"{p} line {i}: stimulus version {row['stimulus_version']!r} is not supported "
                        f"(this steerlab renders version {STIMULUS_VERSION}); regenerate the set"
                    )
                fields = {}
                for name in SPEC_FIELDS:
                    if name in row:
                        try:
                            fields[name] = _parse_field(name, row[name])
                        except StimulusError as exc:
                            raise StimulusError(f"{p} line {i}: column {name!r} {exc}") from None
                try:
                    spec = StimulusSpec(**fields)
                except (ValueError, TypeError) as exc:  # StimulusError and Infeasible are ValueErrors
                    raise StimulusError(f"{p} line {i}: bad row: {str(exc).strip().splitlines()[0]}") from None
                if spec.key() != row["key"]:
                    raise StimulusError(f"{p} line {i}: key {row['key']} does not match its fields (key {spec.key()})")
                specs.append(spec)
    except UnicodeDecodeError as exc:
        raise StimulusError(f"{p} is not UTF-8 text (byte {exc.start}); not a stimulus manifest") from None
    except csv.Error as exc:
        raise StimulusError(f"{p} is not a readable CSV manifest: {exc}") from None
    except OSError as exc:
        raise StimulusError(f"cannot read {p}: {exc.strerror or type(exc).__name__}") from None
    return specs
