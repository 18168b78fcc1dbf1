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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from steerlab.artifacts import atomic_path
from steerlab.errors import SteerlabError

CHECKPOINT = "checkpoint.pt"
CURVE = "curve.jsonl"


def _rows(curve: Path) -> list[dict]:
    if not curve.exists():
        return []
    return [json.loads(line) for line in curve.read_text().splitlines() if line.strip()]


def _write_rows(curve: Path, rows: list[dict]) -> None:
    with atomic_path(curve) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))


def resume(out_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, identity: dict[str, Any],
           log: Callable[[str], None] = print) -> dict[str, Any]:
    """Load ``out_dir``'s checkpoint into ``model`` and ``opt`` when there is one.

    Returns the checkpoint's ``extra`` state plus ``step`` (0 and nothing else for a fresh
    folder). Raises :class:`SteerlabError` when the folder was started with another identity.
    """
    path = out_dir / CHECKPOINT
    if not path.exists():
        return {"step": 0}
    state = torch.load(path, weights_only=True)
    saved = json.loads(state.get("identity", "{}"))
    for key, value in identity.items():
        if saved.get(key) != value:
            raise SteerlabError(f"{out_dir} was started with another {key} ({_short(saved.get(key))}, now "
                                f"{_short(value)}); train into a new -o folder")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    step = int(state["step"])
    row = json.loads(state["row"]) if state.get("row") else None
    curve = out_dir / CURVE
    rows = [r for r in _rows(curve) if r["step"] < step] + ([row] if row is not None else [])
    if rows != _rows(curve):
        _write_rows(curve, rows)
    log(f"resumed from step {step}")
    return {**json.loads(state.get("extra", "{}")), "step": step}


def save(out_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int, row: dict,
         identity: dict[str, Any], extra: Optional[dict[str, Any]] = None) -> None:
    """Write the checkpoint at ``step`` (atomically), then append ``row`` to the curve.
    ``extra``: JSON-serialisable state a resume needs back (e.g. the best validation so far)."""
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "row": json.dumps(row),
             "identity": json.dumps(identity), "extra": json.dumps(extra or {})}
    with atomic_path(out_dir / CHECKPOINT) as tmp:
        torch.save(state, tmp)
    with open(out_dir / CURVE, "a") as f:
        f.write(json.dumps(row) + "\n")


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 24 else text[:21] + "..."
