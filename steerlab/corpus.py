"""Real and rendered audio as data: General MIDI renders with exact ground truth, and clips of long files.

Two corpus builders, each writing WAV clips and one ``manifest.json`` (format
``steerlab-corpus``) that records how every clip was made, so a folder can be
checked, regenerated and split by its ground truth:

- :func:`render_corpus` renders notes, intervals, chords, melodies and drum
  patterns of General MIDI programs through a SoundFont with ``tinysoundfont``
  (a self-contained synthesizer wheel; optional extra ``steerlab[render]``). The
  default SoundFont is TimGM6mb.sf2, the General MIDI bank that ships inside the
  ``pretty_midi`` wheel. The manifest holds, per clip, the program, its GM
  family, and every note's pitch, velocity, onset and duration.
- :func:`clip_corpus` cuts fixed-length clips out of long files (produced music
  from Debian's packages, say): the samples that decode are trusted, never a
  header's estimate; clips quieter than a floor are skipped and counted; each
  clip records its source file's SHA-256 and its offset.

Both are deterministic in ``seed`` (NumPy's ``default_rng`` seeded with
``[seed, index]`` per clip).
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from steerlab.errors import CorpusBuildError

FORMAT = "steerlab-corpus"
VERSION = 1
RENDER_KINDS = ("note", "interval", "chord", "melody", "drums")
# General MIDI level 1 families: programs 8k .. 8k+7 (0-based) belong to family k.
GM_FAMILIES = (
    "piano",
    "chromatic_percussion",
    "organ",
    "guitar",
    "bass",
    "strings",
    "ensemble",
    "brass",
    "reed",
    "pipe",
    "synth_lead",
    "synth_pad",
    "synth_effects",
    "ethnic",
    "percussive",
    "sound_effects",
)
# Families with a definite pitch that sustains or decays like an instrument note
# (synth effects, percussive and sound effects are left out of the pitched draws).
PITCHED_FAMILIES = tuple(
    i for i, f in enumerate(GM_FAMILIES) if f not in ("synth_effects", "percussive", "sound_effects")
)
CHORD_QUALITIES = {
    "major": (0, 4, 7),
    "minor": (0, 3, 7),
    "diminished": (0, 3, 6),
    "augmented": (0, 4, 8),
    "dominant7": (0, 4, 7, 10),
    "major7": (0, 4, 7, 11),
    "minor7": (0, 3, 7, 10),
}
# GM percussion keys (channel 10): kick, snare, closed/open hi-hat, toms, crash, ride, clap.
DRUM_KEYS = (36, 38, 42, 46, 45, 48, 49, 51, 39)
SILENCE_DB = -60.0
FLUSH_SAMPLES = 2048  # discarded after sounds_off, so no voice of the previous clip survives


@dataclass(frozen=True)
class Note:
    """One MIDI note: ``pitch`` (MIDI key), ``velocity`` (1-127), ``onset_s`` and ``duration_s`` in seconds."""

    pitch: int
    velocity: int
    onset_s: float
    duration_s: float


@dataclass(frozen=True)
class RenderSpec:
    """One rendered clip: a General MIDI ``program`` (0-127; ``None`` for the drum kit) playing ``notes``."""

    kind: str
    program: int | None
    notes: tuple[Note, ...]
    seconds: float
    detail: dict = field(default_factory=dict)

    @property
    def family(self) -> str:
        return "drums" if self.program is None else GM_FAMILIES[self.program // 8]


def default_soundfont() -> Path:
    """Path of TimGM6mb.sf2 inside the installed ``pretty_midi`` package (found without importing it)."""
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusBuildError(
            "no SoundFont given and pretty_midi (which ships TimGM6mb.sf2) is not installed; "
            "install steerlab[render] or pass soundfont (a .sf2 file)",
            parameter="soundfont",
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "TimGM6mb.sf2"
    if not path.is_file():
        raise CorpusBuildError(
            f"pretty_midi is installed but {path} is missing; pass soundfont (a .sf2 file)", parameter="soundfont"
        )
    return path


def _pitched_program(rng: np.random.Generator, programs: tuple[int, ...] | None) -> int:
    if programs:
        return int(rng.choice(programs))
    family = int(rng.choice(PITCHED_FAMILIES))
    return family * 8 + int(rng.integers(0, 8))


def _root(rng: np.random.Generator, program: int, span: int) -> int:
    """A root key such that ``root + span`` stays in a comfortable range for the program's family."""
    low, high = (28, 60) if GM_FAMILIES[program // 8] == "bass" else (43, 84)
    return int(rng.integers(low, max(low + 1, high - span)))


def draw_spec(
    rng: np.random.Generator, kind: str, seconds: float, programs: tuple[int, ...] | None = None
) -> RenderSpec:
    """Draw one clip's score: the ground truth a rendered clip is made from.

    Notes start at 0.05 s and end at least 0.3 s before the clip ends, so release tails fit.
    """
    if kind not in RENDER_KINDS:
        raise CorpusBuildError(f"unknown render kind {kind!r}; choose from {', '.join(RENDER_KINDS)}")
    usable = max(0.2, seconds - 0.35)

    def vel() -> int:  # one velocity draw, used by every branch
        return int(rng.integers(50, 120))

    if kind == "drums":
        step = float(rng.choice([0.125, 0.25]))
        onsets = np.arange(0.05, usable, step)
        notes = tuple(Note(int(rng.choice(DRUM_KEYS)), vel(), float(t), 0.1) for t in onsets)
        return RenderSpec(kind, None, notes, seconds, {"step_s": step})
    program = _pitched_program(rng, programs)
    if kind == "note":
        return RenderSpec(kind, program, (Note(_root(rng, program, 0), vel(), 0.05, usable - 0.05),), seconds)
    if kind == "interval":
        semis = int(rng.integers(1, 13))
        root = _root(rng, program, semis)
        v = vel()
        notes = (Note(root, v, 0.05, usable - 0.05), Note(root + semis, v, 0.05, usable - 0.05))
        return RenderSpec(kind, program, notes, seconds, {"semitones": semis})
    if kind == "chord":
        quality = str(rng.choice(list(CHORD_QUALITIES)))
        offsets = CHORD_QUALITIES[quality]
        root = _root(rng, program, offsets[-1])
        v = vel()
        notes = tuple(Note(root + o, v, 0.05, usable - 0.05) for o in offsets)
        return RenderSpec(kind, program, notes, seconds, {"quality": quality, "root": root})
    count = int(rng.integers(3, 9))
    length = (usable - 0.05) / count
    root = _root(rng, program, 12)
    scale = (0, 2, 4, 5, 7, 9, 11, 12)
    notes = tuple(Note(root + int(rng.choice(scale)), vel(), 0.05 + i * length, 0.9 * length) for i in range(count))
    return RenderSpec(kind, program, notes, seconds)


class Renderer:
    """A ``tinysoundfont`` synthesizer with one SoundFont loaded; renders :class:`RenderSpec` to mono float32."""

    def __init__(self, soundfont: Path, sample_rate: int) -> None:
        try:
            import tinysoundfont
        except ImportError as exc:
            raise CorpusBuildError(
                "rendering needs tinysoundfont: pip install 'steerlab[render]' "
                "(on Debian, PyAudio, which it requires, builds after apt-get install portaudio19-dev)"
            ) from exc
        self.sample_rate = int(sample_rate)
        self.soundfont = Path(soundfont)
        self._synth = tinysoundfont.Synth(samplerate=self.sample_rate)
        try:
            self._sfid = self._synth.sfload(str(self.soundfont))
        except Exception as exc:  # tinysoundfont raises its own exception type or OSError
            raise CorpusBuildError(f"cannot load SoundFont {self.soundfont}: {exc}") from exc

    def render(self, spec: RenderSpec) -> np.ndarray:
        """``spec`` rendered as float32 ``[samples]`` (stereo output averaged), ``seconds * sample_rate`` long."""
        synth, chan = self._synth, 9 if spec.program is None else 0
        synth.notes_off()
        synth.sounds_off()
        # sounds_off fades voices out over the next generated samples (up to 256 measured): without
        # this discarded flush the previous clip's tail leaks into this one, and a clip is no longer
        # a function of its spec alone
        self._generate(FLUSH_SAMPLES)
        if spec.program is None:
            synth.program_select(chan, self._sfid, 128, 0, True)
        else:
            synth.program_select(chan, self._sfid, 0, spec.program)
        events = sorted(
            [(n.onset_s, 1, n) for n in spec.notes] + [(n.onset_s + n.duration_s, 0, n) for n in spec.notes],
            key=lambda e: (e[0], e[1]),
        )
        total = int(round(spec.seconds * self.sample_rate))
        out, cursor = [], 0
        for t, is_on, note in events:
            pos = min(total, int(round(t * self.sample_rate)))
            if pos > cursor:
                out.append(self._generate(pos - cursor))
                cursor = pos
            synth.noteon(chan, note.pitch, note.velocity) if is_on else synth.noteoff(chan, note.pitch)
        if total > cursor:
            out.append(self._generate(total - cursor))
        synth.notes_off()
        synth.sounds_off()
        return np.concatenate(out).astype(np.float32)

    def _generate(self, n: int) -> np.ndarray:
        stereo = np.frombuffer(self._synth.generate(n), dtype=np.float32).reshape(-1, 2)
        return stereo.mean(axis=1)


def _level_db(x: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def _provenance(inputs: list, started: float) -> dict:
    """The one provenance record every steerlab writer embeds (:func:`steerlab.provenance.record`:
    command line, input content hashes, versions, wall time, hardware), same key names."""
    from steerlab import provenance

    return provenance.record(inputs=inputs, started=started)


class _Staged:
    """Build a corpus folder under a temporary name beside ``out_dir`` and rename it into place only
    when complete, so a failure or a kill leaves no half-written corpus. An existing non-empty
    ``out_dir`` is refused (choose a new folder) rather than mixed with new clips."""

    def __init__(self, out_dir: str | Path) -> None:
        self.final = Path(out_dir)
        if self.final.exists() and (not self.final.is_dir() or any(self.final.iterdir())):
            raise CorpusBuildError(f"{self.final} already exists and is not empty; choose a new output folder")
        self.final.parent.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Path:
        import tempfile

        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.", dir=self.final.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        import shutil

        if exc_type is None:
            from steerlab.artifacts import normal_permissions

            normal_permissions(self.tmp, directory=True)
            if self.final.exists():
                self.final.rmdir()  # empty, checked above
            self.tmp.rename(self.final)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _write_manifest(out_dir: Path, doc: dict) -> None:
    from steerlab.artifacts import atomic_write_json

    atomic_write_json(doc, out_dir / "manifest.json")


def render_corpus(
    out_dir: str | Path,
    count: int,
    seed: int,
    *,
    kinds: tuple[str, ...] = RENDER_KINDS,
    seconds: float = 2.0,
    sample_rate: int = 24_000,
    soundfont: str | Path | None = None,
    programs: tuple[int, ...] | None = None,
    peak: float = 0.9,
    log=None,
) -> dict:
    """Render ``count`` clips of General MIDI instruments into ``out_dir``; returns the manifest.

    Clip ``i`` is of kind ``kinds[i % len(kinds)]`` and drawn from ``default_rng([seed, i])``.
    Each clip is scaled by one gain (recorded) so its peak is at most ``peak``; a draw that renders
    silent (below -60 dBFS RMS: a program without a sample at that key) is redrawn, and the redraws
    are counted in the manifest. Files: ``render-{i:05d}-{kind}.wav`` (float32 mono).

    Raises :class:`CorpusBuildError` for bad options, a missing renderer or an unreadable SoundFont.
    """
    from steerlab.artifacts import file_sha256

    started = time.time()
    from steerlab.audio import write_wav

    for name, value, low in (("count", count, 0), ("seconds", seconds, 0.5), ("sample_rate", sample_rate, 0)):
        if not value > low:
            raise CorpusBuildError(f"{name} must be above {low:g}, got {value}", parameter=name)
    bad = [k for k in kinds if k not in RENDER_KINDS]
    if bad or not kinds:
        raise CorpusBuildError(f"unknown render kind(s) {bad or kinds}; choose from {', '.join(RENDER_KINDS)}")
    if programs and any(not 0 <= p <= 127 for p in programs):
        raise CorpusBuildError(f"GM programs are 0-127, got {programs}")
    sf2 = Path(soundfont) if soundfont else default_soundfont()
    renderer = Renderer(sf2, sample_rate)
    with _Staged(out_dir) as out:
        clips, redraws = [], 0
        for i in range(count):
            rng = np.random.default_rng([seed, i])
            kind = kinds[i % len(kinds)]
            for _ in range(8):
                spec = draw_spec(rng, kind, seconds, programs)
                audio = renderer.render(spec)
                if _level_db(audio) > SILENCE_DB:
                    break
                redraws += 1
            else:
                raise CorpusBuildError(f"clip {i} ({kind}) rendered silent in 8 draws; check the SoundFont {sf2}")
            gain = min(1.0, peak / float(np.abs(audio).max()))
            name = f"render-{i:05d}-{kind}.wav"
            write_wav(out / name, (audio * gain)[None], sample_rate)
            clips.append(
                {
                    "file": name,
                    "sha256": file_sha256(out / name),
                    "kind": kind,
                    "program": spec.program,
                    "family": spec.family,
                    "gain": gain,
                    "level_db": _level_db(audio * gain),
                    "notes": [asdict(n) for n in spec.notes],
                    **spec.detail,
                }
            )
            if log and (i + 1) % 100 == 0:
                log(f"rendered {i + 1}/{count}")
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "source": "render",
            "seed": seed,
            "count": count,
            "seconds": seconds,
            "sample_rate": sample_rate,
            "kinds": list(kinds),
            "soundfont": {"path": str(sf2), "sha256": file_sha256(sf2)},
            "redraws": redraws,
            "provenance": _provenance([sf2], started),
            "clips": clips,
        }
        _write_manifest(out, doc)
    return doc


_QUIET_ROUNDS = 8  # rounds of redraws a file gets before its quiet stretches count as run out


def _clip_quota(lengths: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Clips per file, summing to exactly ``count`` (see :func:`clip_corpus`): one per file and the
    rest by largest remainders in proportion to ``lengths`` when ``count >= len(lengths)``, else one
    each for ``count`` files drawn without replacement with probability proportional to length."""
    files = len(lengths)
    if count < files:
        rng = np.random.default_rng([seed, files])
        chosen = rng.choice(files, size=count, replace=False, p=lengths / lengths.sum())
        return np.bincount(chosen, minlength=files)
    share = (count - files) * lengths / lengths.sum()
    quota = np.floor(share).astype(int)
    order = np.argsort(-(share - quota), kind="stable")  # largest remainder first, ties to the earlier file
    quota[order[: count - files - int(quota.sum())]] += 1
    return quota + 1


def clip_corpus(
    sources: list[str | Path],
    out_dir: str | Path,
    count: int,
    seed: int,
    *,
    seconds: float = 3.0,
    sample_rate: int = 24_000,
    min_level_db: float = -45.0,
    log=None,
    skip_bad_files: bool = False,
) -> dict:
    """Cut exactly ``count`` clips of ``seconds`` from the audio files ``sources`` into ``out_dir``; returns the manifest.

    Allocation (the manifest's ``count`` equals ``requested``): with at least as many clips as
    files long enough to hold one, every such file gets one clip and the other ``count - files``
    are shared in proportion to decoded length by largest remainders (Hamilton's method, ties to
    the earlier file); with fewer clips than files, ``count`` distinct files are drawn with
    probability proportional to length (``default_rng([seed, len(files)])``, without
    replacement) and get one clip each. Offsets within a file are drawn from
    ``default_rng([seed, file_index])``, spread (every third of three times as many sorted
    draws); each clip is mixed to mono at ``sample_rate`` (:func:`steerlab.audio.load`). A
    draw below ``min_level_db`` dBFS RMS (silent intros and gaps) is counted in
    ``skipped_quiet`` and drawn again, up to ``_QUIET_ROUNDS`` rounds per file; what a file
    still lacks then goes to the files that have not run out, longest first. Only when every
    file has run out of loud stretches is ``count`` below ``requested``, and the manifest says
    why (``shortfall_reason``). Files: ``clip-{i:05d}.wav``, in file order, by offset.

    Every file is checked before any clip is written (:func:`steerlab.capture.check_audio_files`):
    an unreadable, empty or NaN file raises :class:`steerlab.capture.BadFilesError` (one line:
    how many, the first) unless ``skip_bad_files``, which skips them and lists them under the
    manifest's ``skipped_files`` (``{path, reason}``; their count in ``files_skipped``). Raises :class:`CorpusBuildError` when no source is usable.
    """
    from steerlab.artifacts import file_sha256
    from steerlab.audio import load, write_wav
    from steerlab.capture import check_audio_files

    started = time.time()
    for name, value in (("count", count), ("seconds", seconds)):
        if not value > 0:
            raise CorpusBuildError(f"{name} must be positive, got {value}", parameter=name)
    paths, bad = check_audio_files(_expand(sources), skip_bad_files, "SOURCES")
    if not paths:
        raise CorpusBuildError(f"no usable audio file in {', '.join(map(str, sources))}: all {len(bad)} skipped")
    if bad and log:
        from steerlab.capture import bad_files_note

        log(bad_files_note(bad, "SOURCES"))
    decoded = [(p, load(p, sample_rate, 1)[0][0]) for p in paths]  # every file decodes before any clip is cut
    n = int(round(seconds * sample_rate))
    usable = [(p, x) for p, x in decoded if len(x) >= n]
    if not usable:
        raise CorpusBuildError(f"no source is at least {seconds} s long: {', '.join(map(str, paths))}")
    quota = _clip_quota(np.array([len(x) for _, x in usable], dtype=float), count, seed)
    rngs = [np.random.default_rng([seed, fi]) for fi in range(len(usable))]
    offsets: list[list[int]] = [[] for _ in usable]
    exhausted = [False] * len(usable)
    skipped = 0

    def draw(fi: int, want: int) -> None:
        """Up to ``want`` more loud offsets for file ``fi``; marks it exhausted when rounds run out."""
        nonlocal skipped
        x = usable[fi][1]
        for _ in range(_QUIET_ROUNDS):
            if want <= 0:
                return
            for offset in np.sort(rngs[fi].integers(0, len(x) - n + 1, 3 * want))[::3][:want]:
                if _level_db(x[offset : offset + n]) < min_level_db:
                    skipped += 1
                else:
                    offsets[fi].append(int(offset))
                    want -= 1
        exhausted[fi] = want > 0

    for fi, k in enumerate(quota):
        draw(fi, int(k))
    by_length = sorted(range(len(usable)), key=lambda i: -len(usable[i][1]))
    while (missing := count - sum(map(len, offsets))) > 0 and not all(exhausted):
        for fi in by_length:  # what quiet files lacked, from the files that still have loud stretches
            if not exhausted[fi] and missing > 0:
                before = len(offsets[fi])
                draw(fi, missing)
                missing -= len(offsets[fi]) - before
    with _Staged(out_dir) as out:
        clips: list[dict] = []
        for fi, (path, x) in enumerate(usable):
            sha = file_sha256(path)
            for offset in sorted(offsets[fi]):
                clip = x[offset : offset + n]
                name = f"clip-{len(clips):05d}.wav"
                write_wav(out / name, clip[None], sample_rate)
                clips.append(
                    {
                        "file": name,
                        "sha256": file_sha256(out / name),
                        "source": str(path),
                        "source_sha256": sha,
                        "offset_s": offset / sample_rate,
                        "level_db": _level_db(clip) if np.any(clip) else None,
                    }
                )  # digital silence: no level
            if log:
                log(f"{path}: {len(clips)} clips so far")
        shortfall = {}
        if len(clips) < count:
            shortfall = {
                "shortfall_reason": (
                    f"{len(clips)} of the {count} requested clips: every source ran out of stretches of {seconds} s "
                    f"above {min_level_db} dBFS RMS ({skipped} quiet draws in {_QUIET_ROUNDS} rounds per file); "
                    "add louder sources or lower min_level_db"
                )
            }
            if log:
                log(shortfall["shortfall_reason"])
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "source": "clips",
            "seed": seed,
            "count": len(clips),
            "requested": count,
            "skipped_quiet": skipped,
            "min_level_db": min_level_db,
            "seconds": seconds,
            "sample_rate": sample_rate,
            "files": [
                {"path": str(p), "sha256": file_sha256(p), "decoded_seconds": len(x) / sample_rate} for p, x in decoded
            ],
            "files_skipped": len(bad),
            "skipped_files": bad,
            "provenance": _provenance(list(sources), started),
            "clips": clips,
            **shortfall,
        }
        _write_manifest(out, doc)
    return doc


def loud_windows(signals: list, count: int, length: int, floor_db: float = -45.0) -> list:
    """Up to ``count`` windows of ``length`` samples spread evenly over the non-overlapping windows of
    ``signals`` (arrays or tensors ``[channels, samples]``) whose RMS level is above ``floor_db`` dBFS:
    held-out evaluation data that skips silent intros and gaps. Empty when no window is loud enough."""
    cands = [x[:, s : s + length] for x in signals for s in range(0, x.shape[-1] - length + 1, length)]
    loud = [w for w in cands if _level_db(np.asarray(w, dtype=np.float64)) > floor_db]
    if not loud:
        return []
    keep = sorted(set(np.linspace(0, len(loud) - 1, min(count, len(loud))).round().astype(int).tolist()))
    return [loud[i] for i in keep]


def _expand(sources: list[str | Path]) -> list[Path]:
    from steerlab.audio import SUPPORTED_FORMATS

    suffixes = {"." + s.lower() for s in SUPPORTED_FORMATS}
    paths: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            paths += sorted(
                q for q in p.rglob("*") if q.is_file() and not q.is_symlink() and q.suffix.lower() in suffixes
            )
        elif p.is_file():
            paths.append(p)
        else:
            raise CorpusBuildError(f"source {p} does not exist; pass audio files or folders of them")
    if not paths:
        raise CorpusBuildError(f"no audio files ({', '.join(sorted(suffixes))}) in {', '.join(map(str, sources))}")
    return paths


def _manifest_schemas():
    from steerlab import schema as S

    note = S.obj(
        {"pitch": S.integer(0, 127), "velocity": S.integer(0, 127), "onset_s": S.number(0), "duration_s": S.number(0)}
    )
    level = S.nullable(S.number())  # a clip of silence has no level in dB (written as null, never -Infinity)
    common = {
        "format": S.one_of(FORMAT),
        "version": S.one_of(VERSION),
        "source": S.one_of("render", "clips"),
        "seed": S.integer(),
        "count": S.integer(0),
        "seconds": S.number(above=0),
        "sample_rate": S.integer(1),
        "provenance": S.mapping(),
    }
    render_clip = {
        "file": S.filename(),
        "sha256": S.sha256(),
        "kind": S.one_of(*RENDER_KINDS),
        "program": S.nullable(S.integer(0, 127)),
        "family": S.one_of(*GM_FAMILIES, "drums"),
        "gain": S.number(above=0),
        "level_db": level,
        "notes": S.array(note),
    }
    long_clip = {
        "file": S.filename(),
        "sha256": S.sha256(),
        "source": S.string(nonempty=True),
        "source_sha256": S.sha256(),
        "offset_s": S.number(0),
        "level_db": level,
    }
    by_source = {
        "render": {
            "kinds": S.array(S.one_of(*RENDER_KINDS), nonempty=True),
            "soundfont": S.obj({"path": S.string(), "sha256": S.sha256()}),
            "redraws": S.integer(0),
            "clips": S.array(S.obj(render_clip)),
        },
        "clips": {
            "requested": S.integer(0),
            "skipped_quiet": S.integer(0),
            "min_level_db": level,
            "files_skipped": S.optional(S.integer(0)),
            "shortfall_reason": S.optional(S.string()),  # only when count < requested
            "skipped_files": S.optional(S.array(S.obj({"path": S.string(), "reason": S.string()}))),
            "files": S.array(S.obj({"path": S.string(), "sha256": S.sha256(), "decoded_seconds": S.number(0)})),
            "clips": S.array(S.obj(long_clip)),
        },
    }
    return common, by_source


def read_manifest(folder: str | Path) -> dict:
    """The ``manifest.json`` of a corpus folder, checked against its schema.

    Every key the builders write is required with its type (per clip too: file name,
    SHA-256, ground truth); keys of the other source's layout are not. Raises
    :class:`CorpusBuildError` with one line naming the file and the dotted key
    (``.../manifest.json: key 'clips[3].notes[0].pitch' must be ...``) for a missing,
    unreadable or non-JSON file, another format or version, or any key that does not fit.
    """
    from steerlab import schema

    path = Path(folder) / "manifest.json"
    common, by_source = _manifest_schemas()
    doc = schema.read_json(
        path, common, CorpusBuildError, format=FORMAT, versions=(VERSION,), what="steerlab corpus manifest"
    )
    schema.check(doc, by_source[doc["source"]], path, CorpusBuildError)
    if len(doc["clips"]) != doc["count"]:
        raise CorpusBuildError(
            f"{path}: key 'clips' holds {len(doc['clips'])} clips but key 'count' says {doc['count']}"
        )
    return doc
