"""One provenance record for every file steerlab writes that holds a number.

Scores, dictionary configs, run folders (learn, partials, train) and analysis
reports all embed :func:`record`, so any figure can be traced back and rerun: the
command line that made it, the content hash of every input file, the versions of
every library that computed a number, the wall time and the hardware.

Input files are hashed by content (sha256), not described: a folder of real
recordings is listed file by file, and generated data (``synth:N``) is named by
its spec and seed instead, since it has no file to hash.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Every library whose code computes or decodes a number steerlab reports.
LIBRARIES = (
    "steerlab",
    "torch",
    "torchaudio",
    "encodec",
    "nnsight",
    "numpy",
    "scipy",
    "scikit-learn",
    "soundfile",
    "safetensors",
    "transformer-lens",
    "matplotlib",
    "pluggy",
)


def versions() -> dict[str, str]:
    """Installed versions of :data:`LIBRARIES` (``"not installed"`` where absent), plus
    libsndfile, the C library that decodes every audio file."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    try:
        import soundfile

        out["libsndfile"] = str(soundfile.__libsndfile_version__)
    except (ImportError, OSError, AttributeError):
        out["libsndfile"] = "not available"
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def hardware() -> dict[str, Any]:
    """The machine: OS, CPU model and count, torch's thread count and accelerator (when torch
    is already imported; this never imports it)."""
    out: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    if out["omp_num_threads"] is None:  # no null without a reason in a record
        out["omp_num_threads_reason"] = "OMP_NUM_THREADS is not set: the libraries chose their thread counts"
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch_threads"] = torch.get_num_threads()
        cuda = torch.cuda.is_available()
        out["accelerator"] = torch.cuda.get_device_name(0) if cuda else None
        if not cuda:
            out["accelerator_reason"] = "torch sees no CUDA device: computed on the CPU"
    return out


def file_entry(path: str | Path) -> dict[str, Any]:
    """``{"path", "bytes", "sha256"}`` of one file (the path resolved)."""
    from steerlab.artifacts import file_sha256

    p = Path(path)
    return {"path": str(p.resolve()), "bytes": p.stat().st_size, "sha256": file_sha256(p)}


def input_entries(inputs: Iterable[Any]) -> list[dict[str, Any]]:
    """One entry per input: files are hashed; a folder becomes one entry per audio file in it
    (recursive, sorted); anything else (``synth:64``, ``noise:8``) is recorded as given."""
    from steerlab.capture import AUDIO_SUFFIXES

    out: list[dict[str, Any]] = []
    for item in inputs:
        p = Path(str(item)).expanduser()
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
            out.append({"folder": str(p.resolve()), "files": [file_entry(f) for f in files]})
        elif p.is_file():
            out.append(file_entry(p))
        else:
            out.append({"generated": str(item)})
    return out


def command_line(argv: list[str] | None = None) -> str:
    """The command line as a shell would take it back (``sys.argv`` by default)."""
    args = list(sys.argv if argv is None else argv)
    if args:
        args[0] = Path(args[0]).name
    return shlex.join(args)


def compute(device: Any = None) -> dict[str, Any]:
    """Where the numbers were computed (:func:`steerlab.devices.record`: device, its name, what
    was requested, dtype, autocast, threads). ``device``: the model that computed them, a
    torch.device or a string; None: the CPU. Without torch in the process (a writer that ran no
    model), the CPU, saying so."""
    if device is None and "torch" not in sys.modules:
        return {"device": "cpu", "device_reason": "torch was not used: nothing ran on an accelerator"}
    from steerlab import devices

    return devices.record(device)


def record(
    inputs: Iterable[Any] = (),
    started: float | None = None,
    argv: list[str] | None = None,
    device: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    """The provenance block every writer embeds.

    inputs: files, folders or data specs the result was computed from (hashed, see
      :func:`input_entries`).
    started: ``time.time()`` when the work began; gives ``wall_time_s`` (None if not given).
    device: the model (or torch.device) that computed the result, recorded under ``"compute"``
      (:func:`compute`); None: the CPU.
    extra: writer-specific fields (seed, data description) added as they are.

    Returns ``{"command_line", "argv", "cwd", "inputs", "versions", "hardware", "compute",
    "started_at", "finished_at", "wall_time_s", "process_wall_time_s", ...extra}``; times are
    UTC ISO 8601; ``process_wall_time_s`` is the time since this process started (None where
    the OS does not say), which covers writers that do not pass ``started``.
    """
    now = time.time()
    try:
        import psutil

        process_started: float | None = psutil.Process().create_time()
    except Exception:  # psutil missing or the OS refuses: the record just lacks this figure
        process_started = None

    def iso(t: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

    return {
        "command_line": command_line(argv),
        "argv": list(sys.argv if argv is None else argv),
        "cwd": os.getcwd(),
        "inputs": input_entries(inputs),
        "versions": versions(),
        "hardware": hardware(),
        "compute": compute(device),
        "started_at": iso(started) if started is not None else None,
        "finished_at": iso(now),
        "wall_time_s": round(now - started, 3) if started is not None else None,
        "process_wall_time_s": round(now - process_started, 3) if process_started is not None else None,
        **extra,
    }
