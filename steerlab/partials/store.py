"""``results.jsonl``: the append-only, crash-safe record of a partials run.

One JSON object per line, one line per work item, keyed by ``key`` (the item's
hash, which includes the configuration hash). Rows of one batch are written in
one ``write`` and made durable with ``fsync`` before the next batch starts, so a
kill (``kill -9`` included) loses at most the batch in flight. On reopening, only
complete lines (ending in a newline and parsing as JSON) are kept; a torn last
line is cut off and its batch recomputed. A damaged line elsewhere, or rows of
another configuration, are refused: that folder is not this run's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from steerlab.errors import OutputError
from steerlab.partials.plan import PlanError

RESULTS = "results.jsonl"


class ResultStore:
    def __init__(self, folder: Path, config_hash: str) -> None:
        self.path = Path(folder) / RESULTS
        self.config_hash = config_hash
        self.rows: dict[str, dict[str, Any]] = {}
        self.repaired = 0

    def open(self) -> "ResultStore":
        """Read existing rows (repairing a torn tail); create the file if absent."""
        if not self.path.exists():
            self.path.touch()
            return self
        data = self.path.read_bytes()
        good_end = data.rfind(b"\n") + 1  # bytes after the last newline belong to an unfinished write
        lines = data[:good_end].split(b"\n")[:-1] if good_end else []
        for i, line in enumerate(lines, start=1):
            try:
                row = json.loads(line)
                key, config_hash = row["key"], row["config_hash"]
            except (ValueError, KeyError, TypeError):
                raise PlanError(f"{self.path} line {i} is damaged; it is not a complete steerlab row "
                                "(move the file away to start the run afresh)") from None
            if config_hash != self.config_hash:
                raise PlanError(f"{self.path.parent} holds results of another configuration (hash {config_hash}, "
                                f"this run {self.config_hash}); use a new output folder")
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
                os.fsync(f.fileno())
        except OSError as exc:
            raise OutputError(f"cannot append to {self.path}: {exc.strerror or exc}") from None
        for r in fresh:
            self.rows[r["key"]] = r
