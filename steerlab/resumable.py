"""Resumable training runs, shared by the training recipes the plugins ship.

A run folder holds ``checkpoint.pt`` (model, optimizer, step, the last curve row, the
run's identity and any extra state) and ``curve.jsonl`` (one validation row per line).
At each validation the checkpoint is written first (atomically), then the row is
appended, so the checkpoint is always the truth. On resume the curve is rewritten to
match it: a row the checkpoint holds but the curve lacks (killed between the two
writes) is restored, and rows past the checkpoint's step (which this order cannot
produce, but a curve copied or edited by hand can hold) are dropped. A resumed run's
curve therefore equals an uninterrupted run's. (Before this module, two of the three
recipes appended the row first and never repaired the curve: a kill between the writes
duplicated the row on resume.)

``identity`` names what must not change between the first run and a resume (an
architecture config, the weights of a codec the data came from): a folder started
with another identity is refused with one line naming the difference.

Both files are read through the schema check (:mod:`steerlab.schema`): a checkpoint that
torch cannot read, or whose ``step``/``row``/``identity``/``extra`` is missing or of the
wrong type, and a curve line that is not a JSON object with an integer ``step``, are
refused with one line naming the file (and the key or line); nothing is guessed. The one
exception is a torn last curve line (no final newline: a kill during the append, which
follows the checkpoint's write), which is dropped and restored from the checkpoint.
Non-finite numbers in a row (a diverged loss) are written as ``null``, so every curve line
is standard JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from steerlab import schema
from steerlab.artifacts import atomic_path, clean_json
from steerlab.errors import RunFolderError, SteerlabError, first_line

CHECKPOINT = "checkpoint.pt"
CURVE = "curve.jsonl"

ROW_SCHEMA: schema.Schema = {"step": schema.integer(0)}
CHECKPOINT_SCHEMA: schema.Schema = {
    "model": schema.mapping(),
    "optimizer": schema.mapping(),
    "step": schema.integer(0),
    "row": schema.string(),
    "identity": schema.string(),
    "extra": schema.string(),
}


def _rows(curve: Path, torn_ok: bool = False) -> list[dict]:
    """The rows of ``curve`` (empty when absent). Raises :class:`RunFolderError` naming the
    file and line for a line that is not a JSON object with an integer ``step``; with
    ``torn_ok``, an unparseable last line without its newline is dropped instead."""
    if not curve.exists():
        return []
    try:
        text = curve.read_bytes().decode("utf-8")
    except OSError as exc:
        raise RunFolderError(f"cannot read {curve}: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError as exc:
        raise RunFolderError(f"{curve} is not UTF-8 text (byte {exc.start}); move it away to rebuild it") from None
    lines = text.split("\n")
    rows = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        source = f"{curve} line {i}"
        if torn_ok and i == len(lines):  # after the last newline: an append cut short
            try:
                doc = schema.parse_json(line, source, RunFolderError)
                rows.append(schema.check(doc, ROW_SCHEMA, source, RunFolderError))
            except RunFolderError:
                pass
            continue
        doc = schema.parse_json(line, source, RunFolderError)
        rows.append(schema.check(doc, ROW_SCHEMA, source, RunFolderError))
    return rows


def _dumps_row(row: dict) -> str:
    return json.dumps(clean_json(row), allow_nan=False)


def _write_rows(curve: Path, rows: list[dict]) -> None:
    with atomic_path(curve) as tmp:
        tmp.write_text("".join(_dumps_row(r) + "\n" for r in rows))


LEGACY_KEYS = frozenset({"model", "optimizer", "step"})


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, checked: ``model``/``optimizer`` state dicts, ``step``
    (int >= 0) and the JSON texts ``row`` (an object whose ``step`` is ``step``, or empty),
    ``identity`` and ``extra`` (objects), parsed; ``legacy`` False. A checkpoint written before
    this helper (exactly ``model``, ``optimizer`` and ``step``: the shipped codec run's) is read
    with no row, ``identity`` None (it recorded none), empty ``extra`` and ``legacy`` True.
    Raises :class:`RunFolderError` (one line naming the file and the key) for anything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a torn or foreign file
        raise RunFolderError(
            f"cannot read checkpoint {path}: {type(exc).__name__}: {first_line(exc)[:160]} "
            "(train into a new -o folder, or delete it to start afresh)"
        ) from None
    if isinstance(state, dict) and set(state) == LEGACY_KEYS:
        legacy = schema.check(state, {k: CHECKPOINT_SCHEMA[k] for k in LEGACY_KEYS}, path, RunFolderError)
        return {**legacy, "row": None, "identity": None, "extra": {}, "legacy": True}
    schema.check(state, CHECKPOINT_SCHEMA, path, RunFolderError)
    out = dict(state)
    out["legacy"] = False
    out["identity"] = schema.check(
        schema.parse_json(state["identity"], f"{path}: key 'identity'", RunFolderError),
        {},
        f"{path}: key 'identity'",
        RunFolderError,
    )
    out["row"] = None
    if state["row"]:
        row = schema.parse_json(state["row"], f"{path}: key 'row'", RunFolderError)
        schema.check(row, ROW_SCHEMA, path, RunFolderError, prefix="row.")
        if row["step"] != state["step"]:
            raise RunFolderError(
                f"{path}: key 'row.step' must be the checkpoint's step {state['step']}, got {row['step']}"
            )
        out["row"] = row
    try:  # internal state (a best loss may be Infinity): JSON's constants are accepted here
        extra = json.loads(state["extra"])
    except (ValueError, RecursionError) as exc:
        raise RunFolderError(f"{path}: key 'extra' is not valid JSON: {first_line(exc)}") from None
    out["extra"] = schema.check(extra, {}, f"{path}: key 'extra'", RunFolderError)
    return out


def resume(
    out_dir: Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    identity: dict[str, Any],
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Load ``out_dir``'s checkpoint into ``model`` and ``opt`` when there is one.

    Returns the checkpoint's ``extra`` state plus ``step`` (0 and nothing else for a fresh
    folder). A legacy checkpoint (:func:`read_checkpoint`) has no identity to compare: it is
    loaded when its tensors fit ``model`` and ``opt``, and the log says so. Raises
    :class:`SteerlabError` when the folder was started with another identity,
    and :class:`RunFolderError` (one line naming the file, and the key or line) when its
    checkpoint or curve is unreadable or malformed, or the checkpoint does not fit ``model``.
    """
    from steerlab.artifacts import remove_stale_temporaries

    remove_stale_temporaries(out_dir, recursive=False)  # a checkpoint write a kill cut short
    path = out_dir / CHECKPOINT
    if not path.exists():
        return {"step": 0}
    state = read_checkpoint(path)
    saved = state["identity"]
    if saved is None:  # a checkpoint from before identities: the weights' shapes are the only check
        log(f"{path} records no identity (written before steerlab kept one): checked by its tensors' shapes only")
        saved = identity
    for key, value in identity.items():
        if saved.get(key) != value:
            raise SteerlabError(
                f"{out_dir} was started with another {key} ({_short(saved.get(key))}, now "
                f"{_short(value)}); train into a new -o folder"
            )
    for name, target in (("model", model), ("optimizer", opt)):
        try:
            target.load_state_dict(state[name])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
            detail = lines[1] if len(lines) > 1 else lines[0]
            raise RunFolderError(f"{path}: key {name!r} does not fit this run: {detail[:200]}") from None
    step, row = state["step"], state["row"]
    curve = out_dir / CURVE
    on_disk = _rows(curve, torn_ok=True)
    rows = [r for r in on_disk if r["step"] < step] + ([row] if row is not None else [])
    if rows != on_disk or (curve.exists() and not curve.read_bytes().endswith(b"\n") and curve.stat().st_size):
        _write_rows(curve, rows)
    log(f"resumed from step {step}")
    return {**state["extra"], "step": step}


def save(
    out_dir: Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    step: int,
    row: dict,
    identity: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the checkpoint at ``step`` (atomically), then append ``row`` (a JSON object whose
    ``step`` is ``step``; non-finite numbers become null) to the curve.
    ``extra``: JSON-serialisable state a resume needs back (e.g. the best validation so far)."""
    row = json.loads(_dumps_row(row))  # non-finite numbers as null: the curve is standard JSON
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "step": step,
        "row": json.dumps(row),
        "identity": json.dumps(identity),
        "extra": json.dumps(extra or {}),
    }
    with atomic_path(out_dir / CHECKPOINT) as tmp:
        torch.save(state, tmp)
    with open(out_dir / CURVE, "a") as f:
        f.write(_dumps_row(row) + "\n")


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 24 else text[:21] + "..."
