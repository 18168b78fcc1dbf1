"""Atomic, pickle-free writing of results and artifacts, and provenance records.

Every file steerlab writes goes through a temporary file in the same folder and
an ``os.replace``, so an interrupted run never leaves a half-written output.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def normal_permissions(path: Path, directory: bool = False) -> None:
    """Give a ``tempfile``-made file (0600) or folder (0700) the mode a plain ``open``/``mkdir``
    would (0666/0777 minus the umask): results are renamed into place and must not stay private."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_current_umask())


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success, with the mode a
    plain ``open`` would give (0666 minus the umask), whatever the writer did to the temporary file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        # after the writer, not before: some writers (safetensors) replace the file with a new 0600 one
        normal_permissions(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(obj: object, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save_safetensors(tensors: dict, path: Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Versions of steerlab and the libraries that decide its numbers (see :mod:`steerlab.provenance`)."""
    from steerlab.provenance import versions as all_versions

    return all_versions()
