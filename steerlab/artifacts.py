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
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
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


#: what every temporary file of :func:`atomic_path` carries in its name, between the target's
#: name and mkstemp's random part: ``.report.html.steerlab-tmp-hgw_l16c.html``
TEMP_MARK = "steerlab-tmp-"
_RANDOM = r"[a-z0-9_]{8}"  # tempfile's names: 8 of a-z, 0-9 and _
_TEMP = re.compile(rf"^\.(?P<name>.+)\.{TEMP_MARK}{_RANDOM}(?P<suffix>\.[^.]+)$")
_OLD_TEMP = re.compile(rf"^\.(?P<name>.+)\.{_RANDOM}(?P<suffix>\.[A-Za-z0-9]+)$")
#: a folder :func:`steerlab.dictionary.save` builds before renaming it: ``.latent.steerlab-tmp-hgw_l16c``
#: (``...steerlab-tmp-old-hgw_l16c``: the folder it replaces, on its way out)
_TEMP_DIR = re.compile(rf"^\.(?P<name>.+)\.{TEMP_MARK}(old-)?{_RANDOM}$")


def is_stale_temporary(name: str) -> bool:
    """Whether a file name is one :func:`atomic_path` writes: ``.<target>.steerlab-tmp-<8>.<ext>``,
    or, from before :data:`TEMP_MARK`, ``.<target>.<8>.<ext>`` whose target ends in that same
    extension (``.report.html.hgw_l16c.html``); a user's own dotfile matches neither."""
    if _TEMP.match(name):
        return True
    old = _OLD_TEMP.match(name)
    return old is not None and old["name"].endswith(old["suffix"]) and old["name"] != old["suffix"]


def remove_stale_temporaries(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Delete the temporary files a killed :func:`atomic_path` left in ``folder`` (and the
    temporary folders of a killed :func:`steerlab.dictionary.save`; and, with
    ``recursive``, its subfolders): a resumed run calls it on the folders it writes before it
    writes. Only names :func:`is_stale_temporary` recognises are touched; returns the paths
    removed (none for a missing folder). A folder has one writer (steerlab's rule), so no live
    temporary is removed."""
    root = Path(folder)
    if not root.is_dir():
        return []
    found = root.rglob(".*") if recursive else root.glob(".*")
    gone = []
    for p in sorted(found):
        if p.is_symlink():
            continue
        if is_stale_temporary(p.name) and p.is_file():
            p.unlink(missing_ok=True)
            gone.append(p)
        elif _TEMP_DIR.match(p.name) and p.is_dir():  # a dictionary folder killed before its rename
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p)
    return gone


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success, with the mode a
    plain ``open`` would give (0666 minus the umask), whatever the writer did to the temporary file.
    The temporary's name carries :data:`TEMP_MARK`, so a rerun finds what a killed writer left
    (:func:`remove_stale_temporaries`)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{TEMP_MARK}", suffix=path.suffix or ".tmp")
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


def add_json_key(path: Path, key: str, make: Callable[[], object]) -> None:
    """Add ``key`` to the JSON object in ``path`` (a run's ``run.json``), with the value ``make()``
    made clean (:func:`clean_json`), once: a file that holds ``key`` already is left as it is;
    written atomically (:func:`atomic_write_json`)."""
    doc = json.loads(Path(path).read_text())
    if key not in doc:
        doc[key] = clean_json(make())
        atomic_write_json(doc, path)


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
