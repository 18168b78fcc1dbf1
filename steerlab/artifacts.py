"""Atomic, pickle-free writing of results and artifacts, provenance records, and the one
JSON cleaner and config hash every artifact uses.

Every file steerlab writes goes through a temporary file in the same folder and
an ``os.replace``, so an interrupted run never leaves a half-written output.
:func:`clean_json` turns Python and numpy values into plain JSON (JSON has no NaN or
infinity: undefined numbers become null); :func:`config_hash` is the sha256 of a value's
canonical JSON (:func:`canonical_json`), the hash behind run config hashes, stimulus and
work-item keys, model config hashes and dictionary config digests.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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


def clean_json(obj: Any, *, drop_private: bool = False) -> Any:
    """``obj`` as plain JSON values: numpy arrays and scalars become Python lists and numbers,
    tuples become lists, keys become strings, and non-finite floats (NaN, infinity, which JSON
    cannot hold) become None. ``drop_private=True`` also drops keys starting with ``_``
    (a document's working state). Other values are returned as they are."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {
            (k if isinstance(k, str) else str(k)): clean_json(v, drop_private=drop_private)
            for k, v in obj.items()
            if not (drop_private and str(k).startswith("_"))
        }
    if isinstance(obj, (list, tuple)):
        return [clean_json(v, drop_private=drop_private) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean_json(obj.tolist(), drop_private=drop_private)
    if isinstance(obj, np.generic):
        return clean_json(obj.item(), drop_private=drop_private)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def canonical_json(obj: Any, *, compact: bool = True) -> str:
    """The canonical JSON text of ``obj``: keys sorted, iterables JSON does not know written as
    lists (``default=list``), and compact separators (``,`` and ``:``).
    ``compact=False`` keeps ``json.dumps``'s default separators (``, `` and ``: ``): the form the
    config hashes of model checkpoints and dictionaries were first written in, kept so that the
    hashes already in artifacts keep their values."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":") if compact else None, default=list)


def config_hash(obj: Any, n: int | None = 16, *, compact: bool = True) -> str:
    """The first ``n`` hex digits (all 64 when ``n`` is None) of the sha256 of
    :func:`canonical_json` of ``obj`` (UTF-8)."""
    return hashlib.sha256(canonical_json(obj, compact=compact).encode()).hexdigest()[:n]
