"""Audio input and output for ``steerlab intervene`` and the Python API.

Everything a model sees enters through here: files are probed, read, mixed or
duplicated to the model's channel count and resampled to its rate; arrays handed
in from Python get the same checks. Long files are streamed in overlapping chunks
whose concatenation equals reading the whole file, and processed chunks are
crossfaded back together with :func:`overlap_add`. Outputs are written as 32-bit
float WAV through :func:`steerlab.artifacts.atomic_path`, so a failed run never
leaves a half-written file.

Shape convention: every array is ``[channels, samples]`` float32 (soundfile's own
``[samples, channels]`` layout never leaves this module). Problems a user can fix
raise :class:`AudioError` or :class:`OutputError` with one-line messages.

torch and torchaudio are imported inside the functions that resample, so importing
this module (and ``steerlab --help``) stays cheap.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf

from steerlab.artifacts import atomic_path
from steerlab.errors import AudioError, ConfigError, OutputError, PossiblyTruncatedWarning

PathLike = Union[str, "os.PathLike[str]"]

SUPPORTED_FORMATS = ("WAV", "FLAC", "OGG", "MP3")

# torchaudio.functional.resample defaults, restated so the chunk reader can size
# the source context the windowed-sinc kernel reaches into.
_LOWPASS_FILTER_WIDTH = 6
_ROLLOFF = 0.99
# torchaudio builds a [new/gcd, 2 * width + orig/gcd] float64 kernel (plus temporaries of that
# size); for rates with a tiny gcd (44101 -> 24000) that is gigabytes, and the process is killed
# instead of failing. Common rates (8k, 16k, 22.05k, 32k, 44.1k, 48k, 96k) stay far below this.
_MAX_KERNEL_ELEMENTS = 1 << 25
# A decode that yields fewer than this fraction of the frames the header declares is reported as
# possibly truncated (see :func:`scan`). Encoder delay and padding cost well under 1% of a real track.
TRUNCATION_FRACTION = 0.9


@dataclass(frozen=True)
class AudioInfo:
    """What :func:`probe` learns from a file's header, or :func:`scan` from decoding it.

    ``frames`` is the length steerlab uses: after :func:`scan`, the samples that
    actually decode (``decoded=True``); after :func:`probe`, the header's declared
    count, which for compressed formats is an estimate (MP3 encoder delay and
    padding: Debian's asc-music MP3s decode 5,510 to 8,359 samples fewer than their
    headers say). ``header_frames`` always keeps the header's figure; for WAV (RIFF, RIFX, RF64,
    WAVE_FORMAT_EXTENSIBLE) and AIFF it is what the file's own chunk list declares
    (:func:`_declared_frames`) when that exceeds what libsndfile can read, so a cut WAV's
    ``frames`` (even after :func:`probe`: the frames present) fall short of it.
    """

    path: Path
    sample_rate: int
    channels: int
    frames: int
    duration_s: float
    format: str  # libsndfile's major format name: "WAV", "FLAC", "OGG", "MP3", ...
    header_frames: int = 0
    decoded: bool = False
    truncation: str | None = None  # set by scan(): why the file looks cut short, else None

    @property
    def possibly_truncated(self) -> bool:
        """True when :func:`scan` decoded under ``TRUNCATION_FRACTION`` of the header's frames."""
        return self.truncation is not None

    def to_dict(self) -> dict[str, object]:
        """Plain data for provenance records; says how many samples the header over-declared.

        ``possibly_truncated: True`` and ``truncation_reason`` are added only for a file that
        looks cut short, so records of intact files keep their keys.
        """
        extra: dict[str, object] = {}
        if self.truncation is not None:
            extra = {"possibly_truncated": True, "truncation_reason": self.truncation}
        return {
            "path": str(self.path),
            "format": self.format,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "frames": self.frames,
            "duration_s": self.duration_s,
            "header_frames": self.header_frames,
            "decoded": self.decoded,
            "header_minus_decoded_frames": (self.header_frames - self.frames) if self.decoded else None,
            **extra,
        }


@dataclass(frozen=True)
class Conversion:
    """What :func:`load` did to a file's audio to fit the requested rate and channels.

    Channel changes happen one way only: several channels are averaged to mono
    ("mixed"), and mono is copied to every target channel ("duplicated"); a
    mismatch such as 3 -> 2 does both.
    """

    source_rate: int
    source_channels: int
    target_rate: int
    target_channels: int

    @property
    def resampled(self) -> bool:
        return self.source_rate != self.target_rate

    @property
    def mixed(self) -> bool:
        return self.source_channels > 1 and self.source_channels != self.target_channels

    @property
    def duplicated(self) -> bool:
        return self.target_channels > 1 and self.source_channels != self.target_channels

    def describe(self) -> str:
        """One line such as ``"resampled 44100 Hz -> 24000 Hz, mixed 2 channels -> 1"``."""
        steps = []
        if self.resampled:
            steps.append(f"resampled {self.source_rate} Hz -> {self.target_rate} Hz")
        if self.mixed:
            steps.append(f"mixed {self.source_channels} channels -> 1")
        if self.duplicated:
            steps.append(f"duplicated 1 channel -> {self.target_channels}")
        if not steps:
            unit = "channel" if self.target_channels == 1 else "channels"
            return f"no conversion ({self.target_rate} Hz, {self.target_channels} {unit})"
        return ", ".join(steps)

    def to_dict(self) -> dict[str, object]:
        """Plain data for provenance records: the fields, the flags and the description."""
        return {
            **asdict(self),
            "resampled": self.resampled,
            "mixed": self.mixed,
            "duplicated": self.duplicated,
            "description": self.describe(),
        }


def _reason(exc: BaseException) -> str:
    """The useful part of an exception, on one line and without a trailing period."""
    if isinstance(exc, sf.LibsndfileError):
        text = exc.error_string
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split()).rstrip(".")


_FD2_LOCK = threading.RLock()


class _Chatter:
    """What a C decoder wrote to file descriptor 2 inside :func:`_decoder_chatter`."""

    text = ""

    def add(self, text: str) -> None:
        """Append what another capture caught, keeping the first 4 kB in all."""
        self.text = (self.text + text)[:4096]

    def first_line(self) -> str | None:
        lines = [" ".join(line.split()) for line in self.text.splitlines()]
        return next((line for line in lines if line), None)


@contextlib.contextmanager
def _decoder_chatter() -> Iterator[_Chatter]:
    """Capture what C libraries write straight to file descriptor 2 while the block runs.

    libsndfile's MP3 decoder (libmpg123) prints notes such as ``Note: Illegal Audio-MPEG-Header
    ...`` on fd 2, bypassing Python. Inside the block fd 2 points at a temporary file; it is
    restored in ``finally``, and the text (its first 4 kB) is left in the yielded object: callers put
    its first line into the error when decoding fails and drop it when decoding succeeds.

    Thread-safety: fd 2 belongs to the whole process, so while the block runs anything any thread
    writes to stderr is captured too (and dropped if decoding succeeds). steerlab's own decodes
    take a lock, so their redirections never interleave; keep the block to one open or read, never
    a ``yield``. Where fd 2 cannot be duplicated (no stderr), the block runs uncaptured.
    """
    chatter = _Chatter()
    with _FD2_LOCK:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stderr.flush()  # Python's own pending output goes out before the switch
        try:
            saved = os.dup(2)
        except OSError:
            saved = -1
        if saved < 0:
            yield chatter
            return
        with tempfile.TemporaryFile() as tmp:
            try:
                os.dup2(tmp.fileno(), 2)
                yield chatter
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                chatter.text = tmp.read(4096).decode("utf-8", errors="replace")


# The largest MPEG audio Layer III frame (320 kbps at 32 kHz, padded: 144 * 320000 / 32000 + 1
# bytes). A file under this size that no decoder recognises is reported as too short to hold a
# frame rather than as "not decodable": the usual cause is a cut (`head -c 100 x.mp3`).
_MAX_MP3_FRAME_BYTES = 1441
_SOURCE_LOCATION = re.compile(r"^\[[^\]]*:\d+\]\s*")  # libmpg123's "[src/libmpg123/parse.c:f():1083] "


def _unreadable(path: Path, exc: BaseException, chatter: _Chatter, fmt: str | None = None) -> AudioError:
    """One line for a file that would not open or decode, saying what is true of it.

    libsndfile answers "File does not exist or is not a regular file (possibly a pipe?)" for
    any existing file whose format it does not recognise; that becomes "too short to hold an
    audio frame (N bytes)" for a file under ``_MAX_MP3_FRAME_BYTES`` (the decoder's chatter, such
    as libmpg123's "a one-frame stream? Duh", is dropped: the size says it all) and "not
    decodable (no audio format recognised)" otherwise, plus the first line the decoder printed
    (its source-location prefix removed)."""
    reason = _reason(exc)
    said = chatter.first_line()
    size = _size(path)
    if isinstance(exc, sf.LibsndfileError) and size is not None and "does not exist" in reason:
        if size < _MAX_MP3_FRAME_BYTES:
            return AudioError(f"cannot read audio {path}: too short to hold an audio frame ({size} bytes)")
        reason = "not decodable (no audio format recognised)"
    if fmt:
        reason = f"{reason} (decoding it as {fmt})"
    if said:
        reason = f"{reason}; the decoder reported: {_SOURCE_LOCATION.sub('', said).rstrip('.')}"
    return AudioError(f"cannot read audio {path}: {reason}; supported formats: {', '.join(SUPPORTED_FORMATS)}")


def _size(path: Path) -> int | None:
    """The size in bytes of a regular file, else None."""
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


# RIFF/WAVE format tags whose data chunk holds whole frames of ``block_align`` bytes (PCM, IEEE
# float, A-law, mu-law); any other codec (ADPCM, GSM, MP3-in-WAV) is sized by its 'fact' chunk.
_WAV_FRAME_TAGS = (0x0001, 0x0003, 0x0006, 0x0007)
_WAV_EXTENSIBLE = 0xFFFE
_WAV_ADPCM_TAGS = (0x0002, 0x0011)
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # what streaming writers leave in a size field they cannot go back to
_MAX_CHUNKS = 4096  # a header walk gives up (declares nothing) after this many chunks


def _declared_frames(path: Path) -> int | None:
    """The frame count a RIFF/RIFX/RF64/BW64 WAVE or an AIFF/AIFC file's own header declares, or None.

    libsndfile reports the frames a file actually holds, so a WAV cut short looks intact to a
    header-versus-decode comparison (a PCM_U8 WAV cut to half its bytes declares 264,600 data
    bytes in its 'data' chunk and libsndfile says 66,139 frames). This reads the chunk list itself
    (stdlib only; chunk layout from the Microsoft/IBM RIFF spec, EBU Tech 3306 for RF64 and Apple's
    AIFF 1.3 / AIFF-C specs): WAVE's declared frames are the 'data' chunk's size over the 'fmt '
    chunk's block alignment (for PCM, float, A-law, mu-law and WAVE_FORMAT_EXTENSIBLE with one of
    those subformats), whole blocks times samples per block for MS and IMA ADPCM, otherwise the
    'fact' chunk's sample count; RF64's 'data' size comes from its
    'ds64' chunk; AIFF's is the 'COMM' chunk's numSampleFrames. Chunks are padded to even sizes.

    Returns None where the header declares nothing usable: another container, a size left as
    0 or 0xFFFFFFFF by a streaming writer, a malformed or unreadable chunk list. Never raises
    for a bad file (the decoder's own error says what is wrong); reads a few bytes per chunk.
    """
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12:
                return None
            kind, form = head[:4], head[8:12]
            if kind in (b"RIFF", b"RF64", b"BW64") and form == b"WAVE":
                end = "<"
            elif kind == b"RIFX" and form == b"WAVE":
                end = ">"
            elif kind == b"FORM" and form in (b"AIFF", b"AIFC"):
                end = ">"
            else:
                return None
            fmt: tuple[int, int, int] | None = None  # (format tag, block align, ADPCM frames per block)
            fact: int | None = None
            ds64_data: int | None = None
            for _ in range(_MAX_CHUNKS):
                header = f.read(8)
                if len(header) < 8:
                    return None
                cid = header[:4]
                (size,) = struct.unpack(end + "I", header[4:])
                body_at = f.tell()
                if form != b"WAVE":  # AIFF/AIFC: COMM states the frame count outright
                    if cid == b"COMM":
                        comm = f.read(6)
                        return int(struct.unpack(">hI", comm)[1]) if len(comm) == 6 else None
                elif cid == b"ds64":
                    ds64 = f.read(24)
                    if len(ds64) == 24:
                        ds64_data = int(struct.unpack("<QQQ", ds64)[1])
                elif cid == b"fmt ":
                    body = f.read(min(size, 40))
                    if len(body) < 14:
                        return None
                    tag, _, _, _, align = struct.unpack(end + "HHIIH", body[:14])
                    if tag == _WAV_EXTENSIBLE and len(body) >= 26:
                        tag = int(struct.unpack(end + "H", body[24:26])[0])  # the subformat GUID's first two bytes
                    per_block = 0  # ADPCM (MS 0x0002, IMA 0x0011): wSamplesPerBlock after cbSize
                    if tag in _WAV_ADPCM_TAGS and len(body) >= 20:
                        per_block = int(struct.unpack(end + "H", body[18:20])[0])
                    fmt = (int(tag), int(align), per_block)
                elif cid == b"fact" and size >= 4:
                    body = f.read(4)
                    if len(body) == 4:
                        fact = int(struct.unpack(end + "I", body)[0])
                elif cid == b"data":
                    if kind != b"RIFF" and kind != b"RIFX" and size == 0xFFFFFFFF:
                        size = ds64_data if ds64_data is not None else size
                    if size in _UNKNOWN_SIZES or fmt is None:
                        return None
                    tag, align, per_block = fmt
                    if tag in _WAV_FRAME_TAGS and align > 0:
                        return size // align
                    if per_block > 0 and align > 0:  # whole blocks only: a partial last block is padding
                        return (size // align) * per_block
                    return fact if fact not in (None, 0, 0xFFFFFFFF) else None
                f.seek(body_at + size + (size & 1))
    except (OSError, struct.error):
        return None
    return None


def _check_rate_channels(sample_rate: int, channels: int) -> None:
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ConfigError(f"sample_rate must be a positive integer, got {sample_rate!r}", parameter="sample_rate")
    if int(channels) != channels or channels < 1:
        raise ConfigError(f"channels must be a positive integer, got {channels!r}", parameter="channels")


def probe(path: PathLike) -> AudioInfo:
    """Read a file's header: rate, channels, length and format.

    Raises :class:`AudioError` if the file is missing, is a directory, cannot be
    decoded, or holds no samples.
    """
    p = Path(path)
    if not p.exists():
        raise AudioError(f"audio file not found: {p}")
    if p.is_dir():
        raise AudioError(f"audio path {p} is a directory; pass an audio file (WAV, FLAC, OGG, MP3)")
    if _size(p) == 0:
        raise AudioError(f"cannot read audio {p}: empty file (0 bytes)")
    chatter = _Chatter()  # bound even if the capture itself fails to start
    try:
        with _decoder_chatter() as chatter:
            info = sf.info(str(p))
    except (sf.SoundFileError, OSError) as exc:
        raise _unreadable(p, exc, chatter) from exc
    if info.frames <= 0:
        raise AudioError(f"audio file {p} is empty (0 samples)")
    # libsndfile counts the frames a WAV or AIFF really holds; what its header declares (more, for
    # a cut file) comes from the chunk list, so scan()'s truncation rule sees the cut
    declared = _declared_frames(p) if info.format in ("WAV", "WAVEX", "RF64", "AIFF") else None
    return AudioInfo(
        path=p,
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
        duration_s=info.frames / info.samplerate,
        format=str(info.format),
        header_frames=max(int(info.frames), declared or 0),
    )


_SCAN_BLOCK = 1 << 18  # frames decoded per read while scanning: a few MB, whatever the file's length


def scan(path: PathLike) -> AudioInfo:
    """Decode a whole file once, in bounded memory, and return what it really holds.

    The header's frame count is only an estimate for compressed formats, so this
    counts the samples that decode (``frames``, ``decoded=True``; the header's figure
    stays in ``header_frames``) and checks every sample is finite. Run it on every
    input before any expensive work, so an unusable file fails first, not after
    minutes of processing. Cost: one decode pass (an MP3 decodes at about 1,000x
    real time here), memory ``_SCAN_BLOCK`` frames.

    Truncation rule: a file from which fewer than ``TRUNCATION_FRACTION`` (90%) of the header's
    frames decode gets ``truncation`` (a one-line reason; ``possibly_truncated`` is True, and
    :meth:`AudioInfo.to_dict` adds ``possibly_truncated`` and ``truncation_reason``). A shortfall
    alone is no damage: encoder delay and padding cost an MP3 a fixed one to a few thousand
    samples (Debian's asc-music tracks: 5,510 to 8,359 of millions, under 1%), so the margin is
    ten times what a real file of more than a fraction of a second loses. The rule sees only
    what the header declares: an MP3 with a Xing/Info tag (LAME and libsndfile write one) states
    its true length, so a cut copy is caught; one without (asc-music's) has its length
    estimated from the file's size, which shrinks with the cut, so only a cut leaving a few
    frames (under about 1 kB) is caught. A WAV or AIFF declares its length in its own chunk list
    (read by :func:`_declared_frames`, since libsndfile reports only the frames still present),
    so a cut one is caught. The file is still usable: this is a warning, not an error
    (a :class:`~steerlab.errors.PossiblyTruncatedWarning`, which the CLI prints as one line).

    Decoder notes that C libraries print on stderr (libmpg123's ``Note: Illegal
    Audio-MPEG-Header ...``) are captured (:func:`_decoder_chatter`): dropped when decoding
    succeeds, the first line put in the error when it fails.

    Raises :class:`AudioError` for missing, unreadable, empty or non-finite files.
    """
    info = probe(path)
    n = bad = 0
    first_bad: float | None = None
    chatter = _Chatter()  # what the decoder said while the file was opened and read
    for block in _blocks(info.path, _SCAN_BLOCK, chatter, info.format):  # [T, C]
        finite = np.isfinite(block)
        if not finite.all():
            if first_bad is None:
                first_bad = (n + int(np.argmax(~finite.all(axis=1)))) / info.sample_rate
            bad += int(finite.size - np.count_nonzero(finite))
        n += block.shape[0]
    if bad:
        raise AudioError(
            f"audio file {info.path} contains {bad} NaN or infinite samples (the first at "
            f"{first_bad:.3f} s); clean the file (replace or remove the non-finite samples) and retry"
        )
    if n == 0:
        said = chatter.first_line()
        raise AudioError(
            f"audio file {info.path} is empty: its header declares {info.header_frames} samples but none decode"
            + (f"; the decoder reported: {_SOURCE_LOCATION.sub('', said).rstrip('.')}" if said else "")
        )
    truncation = None
    if n < TRUNCATION_FRACTION * info.header_frames:
        truncation = (
            f"only {n} of the {info.header_frames} samples its header declares decode "
            f"({n / info.header_frames:.0%}, {n / info.sample_rate:.2f} of {info.header_frames / info.sample_rate:.2f} s)"
            "; the file may be truncated or damaged"
        )
        # one warning per file and message (the warnings registry dedups a file scanned twice)
        warnings.warn(PossiblyTruncatedWarning(f"{info.path.name}: {truncation}"), stacklevel=1)
    return AudioInfo(
        info.path,
        info.sample_rate,
        info.channels,
        n,
        n / info.sample_rate,
        info.format,
        info.header_frames,
        decoded=True,
        truncation=truncation,
    )


def resampled_length(frames: int, source_rate: int, target_rate: int) -> int:
    """Samples at ``target_rate`` that ``frames`` samples at ``source_rate`` become (as in :func:`load`)."""
    g = math.gcd(source_rate, target_rate)
    return -(-frames * (target_rate // g) // (source_rate // g))


def _check_finite(x: np.ndarray, path: Path, where: str = "") -> None:
    bad = int(x.size - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise AudioError(
            f"audio file {path} contains {bad} NaN or infinite samples{where}; "
            "clean the file (replace or remove the non-finite samples) and retry"
        )


def _mix(x: np.ndarray, target_channels: int) -> np.ndarray:
    """[C, T] -> [1, T] by averaging, when the channel counts differ and C > 1."""
    if x.shape[0] > 1 and x.shape[0] != target_channels:
        # float64 accumulation then one rounding: the float32 mean is correctly rounded.
        return x.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)
    return x


def _duplicate(x: np.ndarray, target_channels: int) -> np.ndarray:
    """[1, T] -> [target_channels, T] by copying; other shapes pass through."""
    if x.shape[0] == 1 and target_channels > 1:
        return np.repeat(x, target_channels, axis=0)
    return x


def _kernel_width(source_rate: int, target_rate: int) -> int:
    """Source samples (in gcd-reduced units) the sinc kernel reaches on each side."""
    g = math.gcd(source_rate, target_rate)
    src, dst = source_rate // g, target_rate // g
    return math.ceil(_LOWPASS_FILTER_WIDTH * src / (min(src, dst) * _ROLLOFF))


def _check_ratio(path: Path, source_rate: int, target_rate: int) -> None:
    """Refuse rate pairs whose resampling filter would not fit in memory."""
    if source_rate == target_rate:
        return
    g = math.gcd(source_rate, target_rate)
    size = (target_rate // g) * (2 * _kernel_width(source_rate, target_rate) + source_rate // g)
    if size > _MAX_KERNEL_ELEMENTS:
        raise AudioError(
            f"cannot resample {path} from {source_rate} Hz to {target_rate} Hz: the rates share only a "
            f"factor of {g}, which needs a {size:,}-coefficient filter; convert the file to a standard "
            "rate (e.g. 44100 or 48000 Hz) first"
        )


def _resample(x: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """[C, T] float32 at ``source_rate`` -> [C, T'] float32 at ``target_rate``."""
    if source_rate == target_rate:
        return x
    import torch
    import torchaudio.functional as AF

    with torch.no_grad():
        y = AF.resample(torch.from_numpy(np.ascontiguousarray(x)), source_rate, target_rate)
    return y.numpy().astype(np.float32, copy=False)


def _convert(x: np.ndarray, source_rate: int, target_rate: int, channels: int) -> np.ndarray:
    """Mix, resample, duplicate, in that order: resampling runs on as few channels as possible."""
    return _duplicate(_resample(_mix(x, channels), source_rate, target_rate), channels)


def _blocks(path: Path, frames: int, chatter: _Chatter | None = None, fmt: str | None = None) -> Iterator[np.ndarray]:
    """Every sample that decodes, as float32 ``[T, C]`` blocks of at most ``frames`` frames, in order.

    The one decode loop of this module: each open, read and close runs inside
    :func:`_decoder_chatter` (never across a ``yield``), so libmpg123's notes (``Warning: Xing
    stream size off by more than 1% ...`` for a cut MP3) never reach the terminal; the text of
    everything captured (its first 4 kB) is added to ``chatter``. A failure raises :class:`AudioError`
    (:func:`_unreadable`, ``fmt`` naming the format being decoded)."""
    chatter = chatter if chatter is not None else _Chatter()
    said = _Chatter()
    f = None
    try:
        with _decoder_chatter() as said:
            f = sf.SoundFile(str(path))
        chatter.add(said.text)
        while True:
            with _decoder_chatter() as said:
                block = f.read(frames, dtype="float32", always_2d=True)
            chatter.add(said.text)
            if block.shape[0] == 0:
                return
            yield block
    except (sf.SoundFileError, OSError) as exc:
        chatter.add(said.text)
        raise _unreadable(path, exc, chatter, fmt) from exc
    finally:
        if f is not None:
            with _decoder_chatter():
                f.close()


def iter_blocks(path: PathLike, block_frames: int = _SCAN_BLOCK) -> Iterator[np.ndarray]:
    """Stream a file as it decodes: float32 ``[channels, n]`` blocks of at most ``block_frames``
    samples at the file's own rate and channel count, no conversion and no checks on the values.

    For code outside this module that reads audio without :func:`load` (constant-file checks,
    report players): decoder notes C libraries print on stderr are captured as :func:`scan`
    captures them, so a cut MP3 never prints libmpg123's ``Warning: Xing stream size off ...``.
    Memory: one block. Raises :class:`AudioError` for a file that does not open or decode."""
    if int(block_frames) != block_frames or block_frames < 1:
        raise ConfigError(f"block_frames must be a positive integer, got {block_frames!r}", parameter="block_frames")
    for block in _blocks(Path(path), int(block_frames)):
        yield np.ascontiguousarray(block.T)


def _read_decoded(path: Path) -> np.ndarray:
    """Every sample that decodes, float32 ``[T, C]``, read block by block: never an array sized by the
    header, whose frame count a damaged or truncated compressed file can overstate by billions."""
    blocks = list(_blocks(path, _SCAN_BLOCK))
    if blocks:
        return np.concatenate(blocks)
    with _decoder_chatter(), sf.SoundFile(str(path)) as f:  # opened above: only the channel count is new
        return np.zeros((0, f.channels), np.float32)


def load(
    path: PathLike, sample_rate: int, channels: int, info: AudioInfo | None = None
) -> tuple[np.ndarray, Conversion]:
    """Read a whole file as float32 ``[channels, samples]`` at ``sample_rate``.

    Channels are averaged to mono when the file has more than one and the counts
    differ; mono is then copied to every requested channel. Resampling uses
    ``torchaudio.functional.resample`` with its defaults (Hann-windowed sinc, 6 zero
    crossings, rolloff 0.99): a well-kept, tested band-limited implementation that
    runs on the same tensors the models use, rather than a hand-written filter.
    The output has ``resampled_length(decoded, file_rate, sample_rate)`` samples,
    where ``decoded`` is the number of samples that decode (never the header's
    estimate; :func:`scan` reports both). ``info``: the file's :func:`probe` or
    :func:`scan` result, when the caller already has it.

    Raises :class:`AudioError` for missing, unreadable or empty files and for
    files holding NaN or infinite samples.
    """
    _check_rate_channels(sample_rate, channels)
    info = info if info is not None else probe(path)
    _check_ratio(info.path, info.sample_rate, int(sample_rate))
    data = _read_decoded(info.path)  # [T, C]
    if data.shape[0] == 0:
        raise AudioError(f"audio file {info.path} is empty (0 samples)")
    _check_finite(data, info.path)
    x = np.ascontiguousarray(data.T)  # [C, T]
    conv = Conversion(info.sample_rate, info.channels, int(sample_rate), int(channels))
    return _convert(x, info.sample_rate, int(sample_rate), int(channels)), conv


def load_audio(
    path: PathLike, sample_rate: int | None = None, channels: int | None = None
) -> tuple[np.ndarray, Conversion]:
    """Read an audio file (WAV, FLAC, OGG, MP3, ...) for the Python API: ``steerlab.load_audio``.

    Returns ``(wave, conversion)``: ``wave`` is float32 ``[channels, samples]``; ``conversion``
    (a :class:`Conversion`; ``.describe()`` one line, ``.to_dict()`` plain data) says what was
    done to fit ``sample_rate`` (Hz) and ``channels``. ``None`` keeps the file's own rate or
    channel count; pass a model's ``sample_rate`` and ``channels`` to feed it
    (``load_audio(path, model.sample_rate, model.channels)``). Conversion as :func:`load`:
    several channels are averaged to mono, mono is copied to every channel, resampling is
    band-limited, and the length is what decodes, never the header's estimate. Raises
    :class:`AudioError` for missing, unreadable, empty or non-finite files,
    :class:`ConfigError` for a non-positive rate or channel count.
    """
    info = probe(path)
    rate = info.sample_rate if sample_rate is None else sample_rate
    return load(path, rate, info.channels if channels is None else channels, info=info)


def validate_array(x: object, name: str = "audio") -> np.ndarray:
    """Check audio passed from Python and return it as float32 ``[channels, samples]``.

    Accepts anything ``numpy.asarray`` understands (including CPU torch tensors).
    A 1-D array is taken as mono and becomes ``[1, samples]``. Raises
    :class:`AudioError` for other ranks, an apparent ``[samples, channels]``
    layout, integer samples, empty arrays and NaN or infinite values.
    """
    expected = "expected shape [channels, samples] (or [samples] for mono)"
    try:
        a = np.asarray(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise AudioError(f"{name} is not an array ({_reason(exc)}); {expected}") from exc
    if a.dtype.kind != "f":
        hint = " (integer PCM: divide by 32768 for int16)" if a.dtype.kind in "iu" else ""
        raise AudioError(f"{name} has dtype {a.dtype}; expected floating-point samples in [-1, 1]{hint}, {expected}")
    if a.ndim == 1:
        a = a[None, :]
    elif a.ndim != 2:
        raise AudioError(f"{name} has shape {tuple(a.shape)}; {expected}")
    if a.size == 0:
        raise AudioError(f"{name} is empty (shape {tuple(a.shape)}); {expected} with at least one sample")
    if a.shape[0] > a.shape[1]:
        raise AudioError(
            f"{name} has shape {tuple(a.shape)}, which looks like [samples, channels]; {expected}: transpose it"
        )
    out = np.ascontiguousarray(a, dtype=np.float32)  # checked after the cast: 1e300 becomes inf
    bad = int(out.size - np.count_nonzero(np.isfinite(out)))
    if bad:
        raise AudioError(
            f"{name} contains {bad} NaN or infinite samples (as float32); "
            "expected finite values, shape [channels, samples]"
        )
    return out


def iter_chunks(
    path: PathLike,
    sample_rate: int,
    channels: int,
    chunk_s: float,
    overlap_s: float,
    info: AudioInfo | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Stream a file as overlapping chunks, converted exactly like :func:`load`.

    Yields ``(start, chunk)`` where ``start`` is the chunk's first sample at
    ``sample_rate`` and ``chunk`` is float32 ``[channels, n]``. Chunks hold
    ``round(chunk_s * sample_rate)`` samples (the last may be shorter), consecutive
    chunks share ``round(overlap_s * sample_rate)`` samples, and together they
    cover ``resampled_length(frames, file_rate, sample_rate)`` samples, where
    ``frames`` is the number of samples that decode: ``info`` from :func:`scan`, or
    a scan made here first (one decode pass, which also finds non-finite samples
    before any chunk is yielded). A header's estimate is never trusted: seeking
    past the decodable end of an MP3 returns nothing.

    Memory stays bounded: each chunk seeks and reads only its own source range
    plus some context. Resampling a cut-out piece would see zeros past its edges
    and differ from the whole-file result there, so every read starts on the
    resampler's period (``file_rate / gcd`` source samples, where input and output
    samples line up) and extends past both ends by more than the sinc kernel's
    reach; after trimming, each chunk equals the matching slice of ``load()`` up
    to float rounding. The period is short for common rates (147 samples for
    44100 -> 24000) and grows as the rates share smaller factors.
    """
    _check_rate_channels(sample_rate, channels)
    chunk = round(chunk_s * sample_rate)
    overlap = round(overlap_s * sample_rate)
    if chunk < 1:
        raise ConfigError(
            f"chunk_s must give at least one sample at {sample_rate} Hz, got {chunk_s!r}", parameter="chunk_s"
        )
    if not 0 <= overlap < chunk:
        raise ConfigError(
            f"overlap_s must be >= 0 and shorter than chunk_s, got {overlap_s!r} with chunk_s {chunk_s!r}",
            parameter=("overlap_s", "chunk_s"),
        )
    if info is None or not info.decoded:
        info = scan(path)
    src, dst = info.sample_rate, int(sample_rate)
    _check_ratio(info.path, src, dst)
    g = math.gcd(src, dst)
    period_src, period_dst = src // g, dst // g
    # Context on each side, in periods: more than the kernel's reach (0 when not resampling).
    margin = 0 if src == dst else math.ceil(_kernel_width(src, dst) / period_src) + 1
    total = resampled_length(info.frames, src, dst)
    chatter = _Chatter()
    try:
        with _decoder_chatter() as chatter:  # fd 2 is captured per open or read, never across a yield
            f = sf.SoundFile(str(info.path))
        with f:
            start = 0
            while True:
                end = min(start + chunk, total)
                first = max(0, start // period_dst - margin)  # in periods
                last = -(-end // period_dst) + margin
                s, e = first * period_src, min(info.frames, last * period_src)
                with _decoder_chatter() as chatter:
                    f.seek(s)
                    data = f.read(e - s, dtype="float32", always_2d=True)  # [T, C]
                if data.shape[0] == 0:
                    raise AudioError(
                        f"audio file {info.path} ended early, at {s} of the {info.frames} samples that "
                        "decoded when it was scanned; was it changed while being read?"
                    )
                _check_finite(data, info.path, f" between {s / src:.2f} s and {e / src:.2f} s")
                y = _convert(np.ascontiguousarray(data.T), src, dst, channels)
                base = first * period_dst  # target index of y[:, 0]
                piece = y[:, start - base : end - base]
                if piece.shape[1] != end - start:
                    got = s + data.shape[0]
                    raise AudioError(
                        f"audio file {info.path} ended early, at {got} of the {info.frames} samples "
                        "that decoded when it was scanned; was it changed while being read?"
                    )
                yield start, np.ascontiguousarray(piece)
                if end >= total:
                    return
                start += chunk - overlap
    except (sf.SoundFileError, OSError) as exc:
        raise _unreadable(info.path, exc, chatter, info.format) from exc


def overlap_add(pieces: list[tuple[int, np.ndarray]], total: int, overlap: int) -> np.ndarray:
    """Join ``(start, [C, n])`` pieces into one float32 ``[C, total]`` signal.

    Where pieces overlap they are crossfaded linearly over ``overlap`` samples:
    each piece fades in over its first ``overlap`` samples (unless it starts at 0)
    and out over its last ``overlap`` (unless it reaches ``total``). The result is
    normalised by the summed weights, so identical pieces reproduce the signal
    exactly and uneven overlaps still give a weighted average. Raises
    :class:`ConfigError` (a ``ValueError``) for pieces outside ``[0, total)``, mismatched channel counts or
    samples no piece covers.
    """
    if total < 1:
        raise ConfigError(f"total must be positive, got {total}", parameter="total")
    if overlap < 0:
        raise ConfigError(f"overlap must be >= 0, got {overlap}", parameter="overlap")
    if not pieces:
        raise ConfigError("overlap_add needs at least one piece", parameter="pieces")
    n_channels = np.asarray(pieces[0][1]).shape[0]
    acc = np.zeros((n_channels, total), dtype=np.float64)
    weight = np.zeros(total, dtype=np.float64)
    # Ramps stay strictly inside (0, 1) so a lone piece's edge never divides by zero.
    ramp_in = np.arange(1, overlap + 1, dtype=np.float64) / (overlap + 1)
    for start, x in pieces:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[0] != n_channels:
            raise ConfigError(
                f"piece at {start} has shape {x.shape}; expected [{n_channels}, samples]", parameter="pieces"
            )
        n = x.shape[1]
        if start < 0 or start + n > total:
            raise ConfigError(f"piece [{start}, {start + n}) lies outside [0, {total})", parameter="pieces")
        w = np.ones(n, dtype=np.float64)
        k = min(overlap, n)
        if start > 0 and k:
            w[:k] = np.minimum(w[:k], ramp_in[:k])
        if start + n < total and k:
            w[n - k :] = np.minimum(w[n - k :], ramp_in[:k][::-1])
        acc[:, start : start + n] += w * x
        weight[start : start + n] += w
    gaps = np.flatnonzero(weight == 0)
    if gaps.size:
        raise ConfigError(f"no piece covers sample {gaps[0]} (of {gaps.size} uncovered samples)", parameter="pieces")
    return (acc / weight).astype(np.float32)


def check_writable_dir(path: PathLike) -> Path:
    """Create ``path`` (with parents) if needed and prove it writable with a temp file.

    Raises :class:`OutputError` with a one-line message otherwise.
    """
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p, prefix=".steerlab-write-check.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OutputError(f"cannot write to directory {p}: {_reason(exc)}; choose a writable output directory") from exc
    return p


@contextlib.contextmanager
def output_dir(path: PathLike) -> Iterator[Path]:
    """:func:`check_writable_dir` for a command's output folder, undone if the block fails.

    Yields the folder. When the block raises (an error, Ctrl-C, SIGTERM as
    ``steerlab.cli.Terminated``), the folders this call created (``path`` and any missing
    parents) are removed again, deepest first, as long as they are empty: an interrupted
    command leaves no new empty output folder, while a folder that existed before, or that
    holds a finished result, is kept. The block must remove its own partial files first
    (the per-input work folders of :func:`steerlab.runner.intervene_files` do).
    """
    p = Path(path).absolute()
    created = [d for d in (p, *p.parents) if not d.exists()]  # deepest first
    out = check_writable_dir(path)
    try:
        yield out
    except BaseException:
        for d in created:
            try:
                d.rmdir()  # only an empty folder: never removes anything the block finished
            except OSError:
                break
        raise


def _float_wav_bytes(x: np.ndarray, sample_rate: int) -> bytes:
    """A 32-bit IEEE-float WAV file (RIFF: fmt, fact, data) of ``x [channels, samples]``."""
    import struct

    channels, frames = x.shape
    data = np.ascontiguousarray(x.T, dtype="<f4").tobytes()  # interleaved frames
    fmt = struct.pack("<HHIIHH", 3, channels, sample_rate, 4 * channels * sample_rate, 4 * channels, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<II", 4, frames)
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_wav(path: PathLike, audio: np.ndarray, sample_rate: int) -> Path:
    """Write float32 ``[channels, samples]`` audio as 32-bit float WAV, atomically.

    Float samples are stored as they are (no clipping or dithering), so reading
    the file back gives the same array bit for bit. The RIFF chunks (fmt, fact,
    data) are written here rather than by libsndfile, which adds a PEAK chunk
    holding the current time: identical audio gives identical bytes. The parent
    directory must exist; if it does not or cannot be written, or ``path`` does not end in
    ``.wav``, :class:`OutputError` is raised and no file is left behind.
    """
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ConfigError(f"sample_rate must be a positive integer, got {sample_rate!r}", parameter="sample_rate")
    x = validate_array(audio)
    p = Path(path)
    if p.suffix.lower() != ".wav":  # WAV bytes under another name mislead every reader of the name
        raise OutputError(f"cannot write WAV data to {p}: the name must end in .wav; use write_audio for other formats")
    try:
        with atomic_path(p) as tmp:
            tmp.write_bytes(_float_wav_bytes(x, int(sample_rate)))
    except OSError as exc:
        raise OutputError(f"cannot write {p}: {_reason(exc)}; choose a writable output directory") from exc
    return p


#: suffix -> (libsndfile format, subtype) that :func:`write_audio` writes; a WAV goes through
#: :func:`write_wav` (float, byte-reproducible). The encoded formats store samples in [-1, 1].
WRITE_FORMATS: dict[str, tuple[str, str]] = {
    ".wav": ("WAV", "FLOAT"),
    ".flac": ("FLAC", "PCM_24"),
    ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}


def write_audio(path: PathLike, audio: np.ndarray, sample_rate: int) -> Path:
    """Write float32 ``[channels, samples]`` audio in the format ``path``'s suffix names, atomically.

    ``.wav`` is :func:`write_wav` (32-bit float, exact); ``.flac`` is 24-bit PCM, ``.ogg`` Ogg
    Vorbis and ``.mp3`` MPEG layer III, written by libsndfile (through soundfile), which store
    samples in [-1, 1]. Raises :class:`OutputError` (one line, no file left behind) for any other
    suffix, for audio beyond [-1, 1] in an encoded format (it would be clipped), for a rate the
    encoder refuses, or for a directory that cannot be written.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in WRITE_FORMATS:
        raise OutputError(
            f"cannot write audio to {p}: {'unsupported suffix ' + repr(p.suffix) if p.suffix else 'no suffix'}; "
            f"name the file with one of {', '.join(WRITE_FORMATS)}"
        )
    if suffix == ".wav":
        return write_wav(p, audio, sample_rate)
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ConfigError(f"sample_rate must be a positive integer, got {sample_rate!r}", parameter="sample_rate")
    x = validate_array(audio)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 1.0:
        raise OutputError(
            f"cannot write {p}: {suffix} stores samples in [-1, 1] and the audio peaks at {peak:.3g}; "
            "write a .wav (float) or scale the audio"
        )
    fmt, subtype = WRITE_FORMATS[suffix]
    try:
        with atomic_path(p) as tmp:
            sf.write(str(tmp), x.T, int(sample_rate), format=fmt, subtype=subtype)
    except (sf.SoundFileError, OSError) as exc:
        raise OutputError(f"cannot write {p} as {fmt}: {_reason(exc)}; choose another format or rate") from exc
    return p
