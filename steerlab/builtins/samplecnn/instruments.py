"""The instrument-family task: which General MIDI family plays this note or chord?

The source documents' SampleCNN was trained on FMA genres, real music that cannot be
downloaded here. This task keeps what matters of it for steering research: real
instrument timbres (the samples of a General MIDI SoundFont, TimGM6mb.sf2, rendered
through ``tinysoundfont`` by :mod:`steerlab.corpus`), a musically meaningful label
(the GM family of the program: piano, organ, guitar, bass, strings, ...), and the
same sample-level CNN. Every clip is a pure function of its seeds, so the data are
regenerated, never stored (rendering a one-second clip takes about 4 ms).

Two held-out axes, each exact by construction and checkable from the manifests:

- **by note**: the pitch classes in :attr:`InstrumentTask.held_out_pitch_classes`
  (C, E flat, G, B flat by default: 1/3 of all keys) never sound in training; the
  ``by_note`` set is made only of them (notes, dyads, C minor, E flat major, C minor 7).
- **by instrument**: per family, ``test_programs_per_family`` of its 8 programs
  (drawn from ``split_seed``) never play in training; the ``by_instrument`` set is
  made only of them (at training pitch classes), ``by_both`` of them at held-out
  pitch classes. ``validation`` is fresh draws of the training programs and pitches.

Seeds: training batch ``step`` draws from ``default_rng([seed, step])``; held-out set
``name`` clip ``i`` from ``default_rng([seed, SPLITS.index(name), i])``, with
``seed + 10000`` for validation and 12345 for the test sets. Families take turns
clip by clip in held-out sets (balanced: chance is ``1 / families``), notes and
chords alternate family round by family round.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from steerlab import corpus
from steerlab.errors import ConfigError

TASK = "instruments"
SPLITS = ("validation", "by_note", "by_instrument", "by_both")
TEST_SPLITS = SPLITS[1:]
KINDS = ("note", "chord")
# Simultaneous-note shapes of the "chord" kind: dyads and corpus.CHORD_QUALITIES (offsets in semitones).
DYADS = {"minor_third": (0, 3), "major_third": (0, 4), "fourth": (0, 5), "fifth": (0, 7), "octave": (0, 12)}
CHORD_SHAPES = {**DYADS, **corpus.CHORD_QUALITIES}
VAL_SEED_OFFSET = 10_000
TEST_SEED = 12_345
PEAK = 0.9


# Keys TimGM6mb leaves silent inside the ranges of _key_range (holes in a program's key zones),
# measured by rendering every program at every key of its range: never drawn.
SILENT_KEYS = {65: (64,), 78: (79,)}  # alto sax E4, whistle G5


def _key_range(family: str) -> tuple[int, int]:
    """Lowest and highest MIDI key a clip of ``family`` may use (TimGM6mb's baritone sax and whistle
    fall silent above key 80)."""
    return (28, 67) if family == "bass" else (43, 79)


@dataclass(frozen=True)
class InstrumentTask:
    """The label set and the two held-out splits; recorded beside every set of weights.

    ``families``: GM family names (labels, in order); ``test_programs_per_family`` of each
    family's 8 programs are test-only, chosen by ``default_rng([split_seed, family index])``;
    ``held_out_pitch_classes`` (0 = C .. 11 = B) never sound in training; clips last ``seconds``.
    """

    families: tuple[str, ...] = tuple(corpus.GM_FAMILIES[i] for i in corpus.PITCHED_FAMILIES)
    test_programs_per_family: int = 2
    held_out_pitch_classes: tuple[int, ...] = (0, 3, 7, 10)
    split_seed: int = 0
    seconds: float = 1.0

    def __post_init__(self) -> None:
        unknown = [f for f in self.families if f not in corpus.GM_FAMILIES]
        if unknown or len(self.families) < 2 or len(set(self.families)) != len(self.families):
            raise ConfigError(
                f"families must be at least two distinct GM families ({', '.join(corpus.GM_FAMILIES)}), "
                f"got {list(self.families)}"
            )
        if not 1 <= self.test_programs_per_family <= 7:
            raise ConfigError(f"test_programs_per_family must be 1..7, got {self.test_programs_per_family}")
        pcs = self.held_out_pitch_classes
        if not pcs or len(set(pcs)) != len(pcs) or any(not 0 <= p <= 11 for p in pcs) or len(pcs) > 8:
            raise ConfigError(f"held_out_pitch_classes must be 1..8 distinct integers 0..11, got {list(pcs)}")
        if self.seconds < 0.5:
            raise ConfigError(f"seconds must be at least 0.5, got {self.seconds}", parameter="seconds")

    # -- the split -------------------------------------------------------------------------------

    @functools.cached_property
    def test_programs(self) -> dict[str, tuple[int, ...]]:
        """Test-only GM programs (0-127) of each family."""
        out = {}
        for name in self.families:
            f = corpus.GM_FAMILIES.index(name)
            picks = np.random.default_rng([self.split_seed, f]).choice(8, self.test_programs_per_family, replace=False)
            out[name] = tuple(sorted(8 * f + int(k) for k in picks))
        return out

    @functools.cached_property
    def train_programs(self) -> dict[str, tuple[int, ...]]:
        return {
            name: tuple(
                p
                for p in range(8 * corpus.GM_FAMILIES.index(name), 8 * corpus.GM_FAMILIES.index(name) + 8)
                if p not in self.test_programs[name]
            )
            for name in self.families
        }

    @property
    def train_pitch_classes(self) -> tuple[int, ...]:
        return tuple(p for p in range(12) if p not in self.held_out_pitch_classes)

    def split_axes(self, split: str) -> tuple[dict[str, tuple[int, ...]], tuple[int, ...]]:
        """Programs (per family) and pitch classes of a held-out set or of ``"train"``."""
        if split not in ("train", *SPLITS):
            raise ConfigError(f"unknown split {split!r}; choose from train, {', '.join(SPLITS)}")
        programs = self.test_programs if split in ("by_instrument", "by_both") else self.train_programs
        pcs = self.held_out_pitch_classes if split in ("by_note", "by_both") else self.train_pitch_classes
        return programs, pcs

    # -- records ---------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The task as recorded in ``config.json``: its fields plus the explicit split they imply."""
        d = asdict(self)
        d["families"] = list(self.families)
        d["held_out_pitch_classes"] = list(self.held_out_pitch_classes)
        return {
            "name": TASK,
            **d,
            "train_programs": {k: list(v) for k, v in self.train_programs.items()},
            "test_programs": {k: list(v) for k, v in self.test_programs.items()},
            "train_pitch_classes": list(self.train_pitch_classes),
        }

    @classmethod
    def from_json(cls, d: dict) -> InstrumentTask:
        """Inverse of :meth:`to_json`; raises ``ValueError`` when the recorded split is not the one its
        fields imply (a hand-edited or foreign record) or when it is not disjoint."""
        if d.get("name") != TASK:
            raise ConfigError(f"task name must be {TASK!r}, got {d.get('name')!r}")
        fields = {
            k: d[k] for k in ("families", "test_programs_per_family", "held_out_pitch_classes", "split_seed", "seconds")
        }
        task = cls(
            **{
                **fields,
                "families": tuple(fields["families"]),
                "held_out_pitch_classes": tuple(fields["held_out_pitch_classes"]),
            }
        )
        for key in ("train_programs", "test_programs", "train_pitch_classes"):
            if d.get(key) != task.to_json()[key]:
                raise ConfigError(
                    f"{key} {d.get(key)} is not the split its seed and fields give ({task.to_json()[key]})",
                    parameter=key,
                )
        return task

    # -- drawing clips ---------------------------------------------------------------------------

    def draw(
        self,
        rng: np.random.Generator,
        family: str,
        kind: str,
        programs: dict[str, tuple[int, ...]],
        pitch_classes: tuple[int, ...],
    ) -> corpus.RenderSpec:
        """One clip's score: a program of ``family`` from ``programs`` playing a note or chord whose
        every key has a pitch class in ``pitch_classes``; onset 0-0.1 s, held 0.35 s to the clip's end."""
        program = programs[family][int(rng.integers(len(programs[family])))]
        shapes = _shapes(program, kind, tuple(sorted(pitch_classes)))
        shape, root = shapes[int(rng.integers(len(shapes)))]
        onset = float(rng.uniform(0.0, 0.1))
        duration = float(rng.uniform(0.35, self.seconds - onset - 0.05))
        velocity = int(rng.integers(40, 121))
        offsets = (0,) if shape == "note" else CHORD_SHAPES[shape]
        notes = tuple(corpus.Note(root + o, velocity, onset, duration) for o in offsets)
        return corpus.RenderSpec(kind, program, notes, self.seconds, {"shape": shape, "root": root})

    def training_specs(self, seed: int, step: int, batch_size: int) -> list[corpus.RenderSpec]:
        """The clips of training step ``step`` (families and kinds uniform; training programs and pitches only)."""
        rng = np.random.default_rng([seed, step])
        programs, pcs = self.split_axes("train")
        specs = []
        for _ in range(batch_size):
            family = self.families[int(rng.integers(len(self.families)))]
            specs.append(self.draw(rng, family, KINDS[int(rng.integers(2))], programs, pcs))
        return specs

    def held_out_specs(self, split: str, n: int, seed: int) -> list[corpus.RenderSpec]:
        """``n`` clips of held-out set ``split``: family ``i % F``, kind alternating every ``F`` clips."""
        programs, pcs = self.split_axes(split)
        index, F = SPLITS.index(split), len(self.families)
        return [
            self.draw(np.random.default_rng([seed, index, i]), self.families[i % F], KINDS[(i // F) % 2], programs, pcs)
            for i in range(n)
        ]

    def all_training_specs(self, seed: int, steps: int, batch_size: int) -> Iterable[corpus.RenderSpec]:
        for step in range(steps):
            yield from self.training_specs(seed, step, batch_size)

    # -- rendering -------------------------------------------------------------------------------

    def render(self, specs: Sequence[corpus.RenderSpec], sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Waves ``[n, 1, samples]`` (each scaled to a peak of 0.9) and family targets ``[n]``.

        A clip that renders silent (a key without a sample: below -60 dBFS) raises ``ValueError``;
        with TimGM6mb, :meth:`draw` never draws one.
        """
        index = {name: i for i, name in enumerate(self.families)}
        renderer = _renderer(sample_rate)
        waves = np.zeros((len(specs), 1, int(round(self.seconds * sample_rate))), dtype=np.float32)
        for i, spec in enumerate(specs):
            audio = renderer.render(spec)
            peak = float(np.abs(audio).max())
            if not peak > 10 ** (corpus.SILENCE_DB / 20):
                raise ConfigError(f"program {spec.program} renders silent at keys {[n.pitch for n in spec.notes]}")
            waves[i, 0] = audio * (PEAK / peak)
        return torch.from_numpy(waves), torch.tensor([index[s.family] for s in specs], dtype=torch.long)


@functools.cache
def _shapes(program: int, kind: str, pitch_classes: tuple[int, ...]) -> list[tuple[str, int]]:
    """Every (shape, root) of ``kind`` inside ``program``'s key range whose keys all lie in
    ``pitch_classes`` and sound (:data:`SILENT_KEYS`)."""
    family = corpus.GM_FAMILIES[program // 8]
    low, high = _key_range(family)
    silent = SILENT_KEYS.get(program, ())
    shapes = {"note": (0,)} if kind == "note" else CHORD_SHAPES
    out = [
        (name, root)
        for name, offsets in shapes.items()
        for root in range(low, high - offsets[-1] + 1)
        if all((root + o) % 12 in pitch_classes and root + o not in silent for o in offsets)
    ]
    if not out:
        raise ConfigError(f"no {kind} of {family} fits pitch classes {list(pitch_classes)}")
    return out


@functools.lru_cache(maxsize=4)
def _renderer(sample_rate: int) -> corpus.Renderer:
    # one synthesizer per process and rate: loading the SoundFont is the slow part
    return corpus.Renderer(corpus.default_soundfont(), sample_rate)


def soundfont_record() -> dict[str, str]:
    """SHA-256 of the SoundFont and versions of the renderer's packages (data provenance)."""
    from importlib.metadata import PackageNotFoundError, version

    from steerlab.artifacts import file_sha256

    path = corpus.default_soundfont()
    out = {"soundfont": path.name, "soundfont_sha256": file_sha256(path)}
    for pkg in ("tinysoundfont", "pretty_midi"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def manifest(specs: Sequence[corpus.RenderSpec]) -> list[dict[str, Any]]:
    """Per clip, the ground truth in the layout of :func:`steerlab.corpus.render_corpus`'s manifest."""
    return [
        {"kind": s.kind, "program": s.program, "family": s.family, "notes": [asdict(n) for n in s.notes], **s.detail}
        for s in specs
    ]
