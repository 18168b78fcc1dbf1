"""``results.jsonl``: the append-only, crash-safe record of a partials run.

One JSON object per line, one line per work item, keyed by ``key`` (the item's
hash, which includes the configuration hash). Rows of one batch are written in
one ``write`` and flushed to the kernel before the next batch starts, so a kill of
the process (``kill -9`` included) loses at most the batch in flight; they are made
durable with ``fsync`` at most :data:`SYNC_INTERVAL_S` apart and by :meth:`ResultStore.sync`
at the run's end (group commit: one ``fsync`` per batch cost 1% of the battery's
sweep), so a crash of the machine loses at most that last second's rows, which a
rerun recomputes. On reopening, only
complete lines (ending in a newline and parsing as JSON) are kept; a torn last
line is cut off and its batch recomputed. A damaged line elsewhere, or rows of
another configuration, are refused: that folder is not this run's.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from steerlab import schema
from steerlab.errors import OutputError, PlanError

RESULTS = "results.jsonl"
SYNC_INTERVAL_S = 1.0  # the most time between a batch's write and its fsync (the first batch: at once)

_SCORE = schema.nullable(schema.number())  # null: a score the stimulus is too short to resolve
# What the report and the verdicts read from a row (sweep.make_row writes more; extra keys pass).
ROW_SCHEMA: schema.Schema = {
    "key": schema.string(nonempty=True),
    "config_hash": schema.string(nonempty=True),
    "model": schema.string(nonempty=True),
    "layer": schema.string(nonempty=True),
    "family": schema.string(),
    "target_hz": schema.number(above=0),
    "density": schema.integer(0),
    "seed": schema.integer(),
    "role": schema.string(),
    "method": schema.string(),
    "direction_id": schema.string(),
    "op": schema.string(),
    "strength": schema.number(),
    "path": schema.string(),
    "gain_db": _SCORE,
    "concentration": _SCORE,
    "offband_lsd_db": _SCORE,
    "codes_changed_share": schema.nullable(schema.number(0)),
}


class ResultStore:
    # what every row must hold; a subclass for another kind of row (the steerability battery's) sets its own
    row_schema: schema.Schema = ROW_SCHEMA

    def __init__(self, folder: Path, config_hash: str) -> None:
        self.path = Path(folder) / RESULTS
        self.config_hash = config_hash
        self.rows: dict[str, dict[str, Any]] = {}
        self.repaired = 0
        self._synced_at = -float("inf")  # time.monotonic() of the last fsync
        self._unsynced = False

    def open(self) -> ResultStore:
        """Read existing rows (repairing a torn tail); create the file if absent."""
        if not self.path.exists():
            self.path.touch()
            return self
        data = self.path.read_bytes()
        good_end = data.rfind(b"\n") + 1  # bytes after the last newline belong to an unfinished write
        lines = data[:good_end].split(b"\n")[:-1] if good_end else []
        for i, line in enumerate(lines, start=1):
            try:
                row = schema.check(
                    schema.parse_json(line.decode("utf-8"), "", PlanError), self.row_schema, "", PlanError
                )
                key, config_hash = row["key"], row["config_hash"]
            except (UnicodeDecodeError, PlanError) as exc:
                why = str(exc).lstrip(": ") if isinstance(exc, PlanError) else "not UTF-8"
                raise PlanError(
                    f"{self.path} line {i} is damaged ({why}); it is not a complete steerlab row "
                    "(move the file away to start the run afresh)"
                ) from None
            if config_hash != self.config_hash:
                raise PlanError(
                    f"{self.path.parent} holds results of another configuration (hash {config_hash}, "
                    f"this run {self.config_hash}); use a new output folder"
                )
            self.rows.setdefault(key, row)
        if good_end < len(data):
            self.repaired = len(data) - good_end
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
                f.flush()
                os.fsync(f.fileno())
        return self

    def done(self, key: str) -> bool:
        return key in self.rows

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        fresh = [r for r in rows if r["key"] not in self.rows]
        if not fresh:
            return
        blob = "".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in fresh).encode()
        try:
            with open(self.path, "ab") as f:
                f.write(blob)
                f.flush()
                self._unsynced = True
                if time.monotonic() - self._synced_at >= SYNC_INTERVAL_S:
                    self._fsync(f)
        except OSError as exc:
            raise OutputError(f"cannot append to {self.path}: {exc.strerror or exc}") from None
        for r in fresh:
            self.rows[r["key"]] = r

    def sync(self) -> None:
        """Make every row appended so far durable (``fsync``); the writer calls it when its
        batches are done."""
        if not self._unsynced:
            return
        try:
            with open(self.path, "ab") as f:
                self._fsync(f)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def _fsync(self, f: Any) -> None:
        os.fsync(f.fileno())
        self._synced_at, self._unsynced = time.monotonic(), False


_PROVENANCE_ENTRY: schema.Schema = {
    "unit": schema.mapping(),
    "method": schema.string(nonempty=True),
    "capture_path": schema.string(),
    "sha256_16": schema.string(nonempty=True),
}


def write_directions(path: Path, fmt: str, config_hash: str, vectors: dict, prov: dict, skipped: dict) -> None:
    """Write a run's learned directions (``{id: vector}`` plus the ``provenance`` and ``skipped``
    records) to ``path`` atomically, in the layout :func:`read_directions` checks; ``fmt`` names
    the run's format (``steerlab-partials``, ``steerlab-steerability``)."""
    import json

    import numpy as np
    from safetensors.numpy import save_file

    from steerlab.artifacts import atomic_path

    meta = {
        "format": fmt,
        "config_hash": config_hash,
        "provenance": json.dumps(prov, sort_keys=True),
        "skipped": json.dumps(skipped, sort_keys=True),
    }
    with atomic_path(Path(path)) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in vectors.items()}, str(tmp), metadata=meta)


def read_directions(path: Path, config_hash: str, suffixes: tuple[str, ...] = ()) -> tuple[dict, dict, dict] | None:
    """The learned directions of a run folder (``directions.safetensors``), checked.

    Returns ``(vectors, provenance, skipped)``, or None when the file is absent or belongs to
    another configuration (then the directions are learned again). The metadata's
    ``provenance`` must be a JSON object of ``{id: {unit, method, capture_path, sha256_16}}``
    and ``skipped`` a JSON object; every id needs its vector (whose hash must be the recorded
    ``sha256_16``) and one tensor per ``suffixes`` entry. Raises :class:`PlanError` with one
    line naming the file and the key otherwise (a torn or edited file: delete it to relearn).
    """
    import numpy as np

    from steerlab.partials.directions import vector_hash

    path = Path(path)
    if not path.is_file():
        return None
    hint = f"; delete {path.name} to learn the directions again"
    try:
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            meta = f.metadata() or {}
            if meta.get("config_hash") != config_hash:
                return None
            vectors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for a torn file
        text = str(exc).strip().splitlines()
        raise PlanError(f"cannot read {path}: {text[0][:160] if text else type(exc).__name__}{hint}") from None
    docs = {}
    for key in ("provenance", "skipped"):
        if key not in meta:
            raise PlanError(f"{path}: metadata key {key!r} is missing{hint}")
        docs[key] = schema.check(
            schema.parse_json(meta[key], f"{path}: metadata key {key!r}", PlanError),
            {},
            f"{path}: metadata key {key!r}",
            PlanError,
        )
    prov = docs["provenance"]
    for rid, entry in prov.items():
        schema.check(entry, _PROVENANCE_ENTRY, path, PlanError, prefix=f"provenance.{rid}.")
        for name in (rid, *(rid + s for s in suffixes)):
            if name not in vectors:
                raise PlanError(f"{path}: tensor {name!r} of direction {rid} is missing{hint}")
        if not np.isfinite(vectors[rid]).all() or vector_hash(vectors[rid]) != entry["sha256_16"]:
            raise PlanError(f"{path}: tensor {rid!r} does not match key 'provenance.{rid}.sha256_16'{hint}")
    return vectors, prov, docs["skipped"]
