"""The steerability battery's verdicts, read back from ``steerlab steerability`` run folders.

A folder holds ``steerability.json`` as :func:`steerlab.battery.run.run_battery` writes it
(``{"model", "quick", "concepts": [{"concept", "verdicts": [row, ...]}, ...]}``, each row with
``model``, ``model_role``, ``layer``, ``method``, ``label``, ``steerable``, ``pass_share``). The
survey shows, per (model, layer, concept), the verdict of the measured model (``model_role``
``main``, the random null left out): ``steerable`` when any method's label is "steerable",
else "not steerable" when any is, else the label the battery gave (such as "not validated");
beside it the best pass share and whether the null passed. A concept the folders never ran at
that layer is "not run", with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from steerlab.errors import ConfigError

SUMMARY_JSON = "steerability.json"  # steerlab.battery.run.SUMMARY_JSON (not imported: no torch at read time)
NOT_RUN = "not run"


def read(folders: Sequence[str | Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """Every measured-model verdict row of the folders (concept name added), and the summary
    files read. Raises :class:`ConfigError` (one line) for a folder without a readable
    ``steerability.json``."""
    rows: list[dict[str, Any]] = []
    files: list[str] = []
    for folder in folders:
        path = Path(folder) / SUMMARY_JSON
        if not path.is_file():
            raise ConfigError(
                f"battery {folder}: no {SUMMARY_JSON} there (a `steerlab steerability -o` run folder)",
                parameter="battery",
            )
        try:
            doc = json.loads(path.read_text())
            concepts = doc["concepts"]
            for t in concepts:
                for v in t["verdicts"]:
                    if v.get("model_role") == "main" and v.get("method") != "random":
                        rows.append({**v, "concept": t["concept"]})
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"battery {folder}: {SUMMARY_JSON} is not a steerability summary ({type(exc).__name__}: {exc})",
                parameter="battery",
            ) from None
        files.append(str(path))
    return rows, files


from steerlab.battery.verdicts import NO_CONTROL  # noqa: E402


def verdict(
    rows: Sequence[dict[str, Any]],
    model: str,
    layer: str,
    concept: str,
    ran: bool,
    names: Sequence[str] = (),
) -> dict[str, Any]:
    """The battery's verdict of ``concept`` at ``layer`` of ``model`` (see the module docstring).
    ``names``: every name of the layer's tensor (the registry's ``names_of_tensor``: aliases and
    layers declared the same tensor); a verdict recorded under any of them is this layer's."""
    known = {layer, *names}
    mine = [r for r in rows if r.get("model") == model and r.get("layer") in known and r.get("concept") == concept]
    if not mine:
        why = (
            "no --battery folder was given"
            if not ran
            else f"the --battery folders hold no verdict of {concept!r} at {model} {layer}"
        )
        return {"verdict": NOT_RUN, "reason": why, "pass_share": None, "null_steerable": None}
    labels = [str(r.get("label")) for r in mine]
    word = "steerable" if "steerable" in labels else "not steerable" if "not steerable" in labels else labels[0]
    if word not in ("steerable", "not steerable") and all(
        str(r.get("validation_reason") or "").startswith(NO_CONTROL) for r in mine
    ):  # no positive control can vouch for the concept: not a failed control (as the map says)
        word = NO_CONTROL
    shares = [float(r["pass_share"]) for r in mine if r.get("pass_share") is not None]
    nulls = [r["null_steerable"] for r in mine if r.get("null_steerable") is not None]
    out: dict[str, Any] = {
        "verdict": word,
        "labels": sorted(set(labels)),
        "n_verdicts": len(mine),
        "pass_share": max(shares) if shares else None,
        "null_steerable": any(nulls) if nulls else None,
    }
    if not shares:
        out["pass_share_reason"] = "the verdicts record no pass share"
    if not nulls:
        out["null_steerable_reason"] = "the run has no random-null verdict beside these"
    return out
