"""Finished ``steerlab partials`` runs side by side (issue 12: the codec against CREPE).

Reads each run folder's ``summary.csv`` (verdicts, their control validation, the
architecture's prediction per unit), ``oracle.json`` (the ideal edit per unit) and
``run.json`` (models, layers, configuration) and writes, to one output folder:

- ``side_by_side.png`` / ``.svg``: per model, layer (and decode path) and family, the share
  of units (target × density) that are steerable per method and removal, beside the
  oracle's and the architecture's predicted share, each cell marked as the run marks it
  (``validated``, ``not validated``, ``unchecked``; ``control`` for the null); below, on a
  log frequency axis, each layer's main lobe and Nyquist against the stimuli's partial
  spacings (filled where the prediction says the partial survives);
- ``report.md``: the same as tables, how to read them, the per-unit table of
  :func:`steerlab.partials.report.side_by_side`, and provenance;
- ``report.json``: every number of the figure and the tables, with the command line and
  the sha256 of every input file.

A verdict whose method the run's positive controls did not validate is never shown as a
finding: its cell is grey and hatched and carries the word, not the share (the share stays
in ``report.json`` with ``"finding": false``). Nothing is recomputed from ``results.jsonl``:
what a run's own report says is what is compared.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steerlab.errors import OutputError

FORMAT, FORMAT_VERSION = "steerlab-partials-compare", 1
FIGURE, REPORT_MD, REPORT_JSON = "side_by_side", "report.md", "report.json"
SUMMARY, ORACLE, RUN = "summary.csv", "oracle.json", "run.json"
NULL = "random"
PREDICTED, ORACLE_KIND = "predicted", "oracle"
# how a cell may be read; only these are findings (the rest say why they are not)
FINDINGS = ("validated", "control", "ideal edit", "architecture")
FAMILY_NAMES = {
    "inharmonic": "sinusoids (inharmonic)",
    "harmonic": "sinusoids (harmonic)",
    "tone": "sinusoid (tone)",
    "chord": "sinusoids (chord)",
    "instrument": "rendered instruments",
}


@dataclass(frozen=True)
class Run:
    """One finished run folder: its summary rows, oracle units and run document."""

    folder: Path
    doc: dict[str, Any]
    rows: list[dict[str, str]]
    oracle: list[dict[str, Any]]

    @classmethod
    def read(cls, folder: str | Path) -> Run:
        f = Path(folder)
        missing = [n for n in (SUMMARY, ORACLE, RUN) if not (f / n).is_file()]
        if missing:
            raise OutputError(
                f"{f} holds no finished steerlab partials run (missing {', '.join(missing)}); "
                "give folders written by `steerlab partials`"
            )
        with open(f / SUMMARY, newline="") as fh:
            rows = list(csv.DictReader(fh))
        return cls(f, json.loads((f / RUN).read_text()), rows, json.loads((f / ORACLE).read_text())["units"])

    def layers(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(model, layer) -> the layer's rates: main lobe (fs / receptive field) and Nyquist."""
        out = {}
        for m in self.doc["models"]:
            for layer in m["layers"]:
                rf = layer.get("receptive_field_samples") or layer.get("receptive_field")
                out[(m["name"], layer["name"])] = {
                    "main_lobe_hz": m["sample_rate"] / rf if rf else None,
                    "nyquist_hz": layer.get("nyquist_hz"),
                    "sample_rate": m["sample_rate"],
                    "receptive_field_samples": rf,
                }
        return out

    def inputs(self) -> list[dict[str, Any]]:
        from steerlab.provenance import file_entry

        names = (RUN, SUMMARY, ORACLE, "results.jsonl")
        return [{**file_entry(self.folder / n), "role": n} for n in names if (self.folder / n).is_file()]


def _bool(x: str) -> bool | None:
    return {"True": True, "False": False}.get(x)


def _float(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _status(values: set[str], where: str) -> str:
    if len(values) != 1:
        raise OutputError(
            f"{where}: the run's summary.csv marks one method with several validations "
            f"({sorted(values)}); rewrite it by rerunning `steerlab partials` on that folder"
        )
    return values.pop()


def cells(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Every cell of the comparison, measured models only (the controls are what validates).

    One cell per (model, path, layer, family, column): ``column`` is ``method/removal`` for a
    verdict, ``predicted`` for the architecture (units whose partial is predicted to survive the
    path) or ``oracle`` (units where the ideal edit passes the rule; the same on every layer).
    ``steerable`` of ``units`` and ``share`` as counted from the run's files; ``status`` as the run
    marks it; ``finding`` false where the controls did not vouch for the verdict."""
    out: list[dict[str, Any]] = []
    seen: dict[tuple, Path] = {}
    for run in runs:
        lay = run.layers()
        groups: dict[tuple, list[dict[str, str]]] = {}
        for r in run.rows:
            if r["model_role"] == "main":
                groups.setdefault((r["model"], r["path"], r["layer"], r["family"]), []).append(r)
        for (model, path, layer, family), rows in groups.items():
            key = (model, path, layer, family)
            if key in seen:
                raise OutputError(
                    f"{model} {layer} ({path}), family {family}, is in two runs: {seen[key]} and "
                    f"{run.folder}; give each cell once"
                )
            seen[key] = run.folder
            base = {
                "model": model,
                "path": path,
                "layer": layer,
                "family": family,
                "run": str(run.folder),
                **{k: lay.get((model, layer), {}).get(k) for k in ("main_lobe_hz", "nyquist_hz")},
            }
            out += _verdict_cells(base, rows) + [_predicted_cell(base, rows), _oracle_cell(base, run, rows)]
    return out


def _unit(r: dict[str, str]) -> tuple[float, int]:
    return (round(float(r["target_hz"]), 4), int(r["density"]))


def _verdict_cells(base: dict[str, Any], rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    by: dict[tuple[str, str], list[dict[str, str]]] = {}
    for r in rows:
        by.setdefault((r["method"], r["removal"]), []).append(r)
    out = []
    for (method, removal), rs in by.items():
        where = f"{base['run']}: {base['model']} {base['layer']} {method}/{removal}"
        status = _status({r["control_validation"] for r in rs}, where)
        k = sum(_bool(r["steerable"]) is True for r in rs)
        out.append(
            {
                **base,
                "column": f"{method}/{removal}",
                "method": method,
                "removal": removal,
                "kind": "null" if method == NULL else "verdict",
                "status": status,
                "status_reason": rs[0]["control_validation_reason"],
                "steerable": k,
                "units": len(rs),
                "share": k / len(rs),
                "finding": status in FINDINGS,
                "per_unit": [
                    {
                        "target_hz": _unit(r)[0],
                        "density": _unit(r)[1],
                        "steerable": _bool(r["steerable"]),
                        "pass_share": _float(r["pass_share"]),
                        "verdict": r["verdict"],
                    }
                    for r in rs
                ],
            }
        )
    return out


def _predicted_cell(base: dict[str, Any], rows: list[dict[str, str]]) -> dict[str, Any]:
    units: dict[tuple[float, int], dict[str, str]] = {}
    for r in rows:
        units.setdefault(_unit(r), r)
    per = [
        {
            "target_hz": t,
            "density": d,
            "survives": _bool(r["predicted_survives"]),
            "score": _float(r["predicted_score"]),
            "spacing_hz": _float(r.get("predicted_spacing_hz")),
            "aliased_to_hz": _float(r["aliased_to_hz"]),
        }
        for (t, d), r in units.items()
    ]
    k = sum(p["survives"] is True for p in per)
    scores = [p["score"] for p in per if p["score"] is not None]
    return {
        **base,
        "column": PREDICTED,
        "method": PREDICTED,
        "removal": None,
        "kind": PREDICTED,
        "status": "architecture",
        "status_reason": "steerlab arch: main lobe against partial spacing, Nyquist, aliasing",
        "steerable": k,
        "units": len(per),
        "share": k / len(per),
        "finding": True,
        "mean_score": sum(scores) / len(scores) if scores else None,
        "per_unit": per,
    }


def _oracle_cell(base: dict[str, Any], run: Run, rows: list[dict[str, str]]) -> dict[str, Any]:
    wanted = {_unit(r) for r in rows}
    per = [
        {
            "target_hz": round(float(o["target_hz"]), 4),
            "density": int(o["density"]),
            "steerable": o["steerable"],
            "pass_share": o["pass_share"],
            "median_gain_db": o.get("median_gain_db"),
            "median_concentration": o.get("median_concentration"),
        }
        for o in run.oracle
        if o["model"] == base["model"]
        and o["family"] == base["family"]
        and (round(float(o["target_hz"]), 4), int(o["density"])) in wanted
    ]
    k = sum(bool(p["steerable"]) for p in per)
    return {
        **base,
        "column": ORACLE_KIND,
        "method": ORACLE_KIND,
        "removal": None,
        "kind": ORACLE_KIND,
        "status": "ideal edit",
        "status_reason": "the exact partial added to / removed from the input, scored "
        "through the same output; layer-independent",
        "steerable": k,
        "units": len(per),
        "share": k / len(per) if per else None,
        "finding": True,
        "per_unit": per,
    }


# ---- layout shared by the figure and the tables ---------------------------------------------------


def _column_order(cs: list[dict[str, Any]]) -> list[str]:
    verdict = list(dict.fromkeys(c["column"] for c in cs if c["kind"] == "verdict"))
    rank = {"diffmeans": 0, "sae": 1, "probe": 2}
    verdict.sort(key=lambda col: (rank.get(col.split("/")[0], 3), col))
    null = sorted({c["column"] for c in cs if c["kind"] == "null"})
    return [PREDICTED, ORACLE_KIND, *verdict, *null]


def _rows(cs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(model, layer, path) in the runs' order: a model's layers together, each layer's paths together."""
    first = {}
    for key in ("model", "layer", "path"):
        first[key] = {v: i for i, v in enumerate(dict.fromkeys(c[key] for c in cs))}
    rows = dict.fromkeys((c["model"], c["layer"], c["path"]) for c in cs)
    return sorted(rows, key=lambda r: (first["model"][r[0]], first["layer"][r[1]], first["path"][r[2]]))


def _column_label(col: str) -> str:
    if col == PREDICTED:
        return "predicted\n(arch)"
    if col == ORACLE_KIND:
        return "oracle\n(ideal edit)"
    m, r = col.split("/")
    return f"{'null' if m == NULL else m}\n{r}"


def _row_label(cs: list[dict[str, Any]], row: tuple[str, str, str], many_paths: bool) -> str:
    c = next(c for c in cs if (c["model"], c["layer"], c["path"]) == row)
    lobe = "" if c["main_lobe_hz"] is None else f" · lobe {c['main_lobe_hz']:.0f} Hz"
    return f"{row[0]}\n{row[1]}{lobe}" + (f" · {row[2]}" if many_paths else "")


_SHORT = {
    "validated": "validated",
    "not validated": "not\nvalidated",
    "unchecked": "unchecked",
    "control": "null",
    "ideal edit": "ideal edit",
    "architecture": "predicted",
}


# ---- the figure ---------------------------------------------------------------------------------------


def figure(cs: list[dict[str, Any]], stem: Path) -> list[Path]:
    """``stem``.png and ``stem``.svg (each written atomically): the heatmaps per family and,
    below, the prediction on a log frequency axis."""
    import numpy as np
    from matplotlib.patches import Rectangle

    from steerlab.partials.report import _figure

    fams = list(dict.fromkeys(c["family"] for c in cs))
    cols, rows = _column_order(cs), _rows(cs)
    many_paths = len({r[2] for r in rows}) > 1 or any(
        len({c["path"] for c in cs if c["model"] == m}) > 1 for m, _, _ in rows
    )
    labels = [_row_label(cs, r, many_paths) for r in rows]
    pred_rows = list(dict.fromkeys((m, layer) for m, layer, _ in rows))
    top, bottom = 0.5 * len(rows) + 1.3, 0.38 * len(pred_rows) + 1.1
    fig = _figure(figsize=(2.6 + 0.8 * len(cols) * len(fams), top + bottom + 0.6))
    gs = fig.add_gridspec(2, len(fams), height_ratios=[top, bottom])
    by = {(c["model"], c["layer"], c["path"], c["family"], c["column"]): c for c in cs}
    im = None
    axes = []
    for j, fam in enumerate(fams):
        ax = fig.add_subplot(gs[0, j])
        axes.append(ax)
        grid = np.full((len(rows), len(cols)), np.nan)
        for a, row in enumerate(rows):
            for b, col in enumerate(cols):
                c = by.get((*row, fam, col))
                if c is not None and c["finding"] and c["share"] is not None:
                    grid[a, b] = c["share"]
        im = ax.imshow(np.ma.masked_invalid(grid), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for a, row in enumerate(rows):
            for b, col in enumerate(cols):
                c = by.get((*row, fam, col))
                if c is None:
                    ax.text(b, a, "not run", ha="center", va="center", fontsize=5.5, color="#888")
                    continue
                if not c["finding"]:  # a verdict the controls do not vouch for: no share, no colour
                    ax.add_patch(
                        Rectangle((b - 0.5, a - 0.5), 1, 1, facecolor="#e4e4e4", hatch="///", edgecolor="#b0b0b0", lw=0)
                    )
                    ax.text(b, a, _SHORT[c["status"]], ha="center", va="center", fontsize=5.5, color="#444")
                    continue
                dark = c["share"] is not None and c["share"] < 0.6
                word = f"\n{c['status']}" if c["kind"] == "verdict" else ""  # the other columns say what they are
                ax.text(
                    b,
                    a,
                    f"{c['steerable']}/{c['units']}{word}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if dark else "black",
                )
        ax.set_xticks(range(len(cols)), [_column_label(col) for col in cols], fontsize=6.5)
        ax.xaxis.tick_top()
        ax.set_yticks(range(len(rows)), labels if j == 0 else [""] * len(rows), fontsize=6.5)
        ax.set_xticks(np.arange(len(cols) + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(len(rows) + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", lw=1.5)
        ax.tick_params(which="minor", length=0)
        ax.set_title(FAMILY_NAMES.get(fam, fam), fontsize=8)
    cb = fig.colorbar(im, ax=axes[-1], shrink=0.95, pad=0.02)
    cb.set_label("share of units steerable\n(target × density)", fontsize=7)
    cb.ax.tick_params(labelsize=6)
    _prediction_axis(fig.add_subplot(gs[1, :]), cs, pred_rows)
    fig.suptitle(
        "Steerable share per model, layer and method, beside the oracle and the architecture's "
        "prediction\n(grey hatched: the run's positive controls did not validate the method; no finding)",
        fontsize=8.5,
    )
    out = []
    from steerlab.artifacts import atomic_path

    for ext in ("png", "svg"):
        path = stem.with_suffix(f".{ext}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=110)
        out.append(path)
    fig.clear()
    return out


def _prediction_axis(ax: Any, cs: list[dict[str, Any]], rows: list[tuple[str, str]]) -> None:
    """Per (model, layer): main lobe, Nyquist, and each unit's partial spacing (filled where
    the prediction has the partial survive), frequency on a log axis."""
    marks = {"inharmonic": "o", "harmonic": "D", "chord": "^", "tone": "v", "instrument": "s"}
    targets: set[float] = set()
    shown: set[str] = set()

    def once(name: str) -> str | None:
        if name in shown:
            return None
        shown.add(name)
        return name

    for y, (model, layer) in enumerate(rows):
        pred = [c for c in cs if c["model"] == model and c["layer"] == layer and c["column"] == PREDICTED]
        if not pred:
            continue
        lobe, nyq = pred[0]["main_lobe_hz"], pred[0]["nyquist_hz"]
        if lobe:
            ax.plot([lobe], [y], marker="|", ms=16, mew=2.5, color="black", ls="", label=once("main lobe (fs / RF)"))
        if nyq:
            ax.plot([nyq], [y], marker="x", ms=7, mew=1.5, color="#c0392b", ls="", label=once("layer Nyquist"))
        seen_units: set[tuple] = set()
        for c in pred:
            for k, u in enumerate(c["per_unit"]):
                targets.add(u["target_hz"])
                if u["spacing_hz"] is None or (c["family"], u["target_hz"], u["density"]) in seen_units:
                    continue
                seen_units.add((c["family"], u["target_hz"], u["density"]))
                fam = FAMILY_NAMES.get(c["family"], c["family"])
                dy = 0.18 * ((k % 4) - 1.5) / 1.5
                ax.plot(
                    [u["spacing_hz"]],
                    [y + dy],
                    marker=marks.get(c["family"], "o"),
                    ms=5,
                    ls="",
                    color="#1f77b4" if c["family"] != "instrument" else "#ff7f0e",
                    mfc="none" if not u["survives"] else None,
                    label=once(f"partial spacing, {fam} (filled: predicted to survive)"),
                )
    for t in sorted(targets):
        ax.axvline(t, color="grey", lw=0.7, ls=":", label=once("targets"))
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)), [f"{m}\n{layer}" for m, layer in rows], fontsize=6.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel("frequency (Hz), log scale", fontsize=7)
    ax.tick_params(axis="x", labelsize=6.5)
    ax.set_title(
        "The prediction: a partial spacing left of the main lobe cannot be resolved; a target above the Nyquist folds",
        fontsize=8,
    )
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=4, frameon=False)


# ---- report.md and report.json ------------------------------------------------------------------------


def _md_cell(c: dict[str, Any] | None) -> str:
    if c is None:
        return "–"
    if not c["finding"]:
        return f"*{c['status']}*"
    return f"{c['steerable']}/{c['units']}" + ("" if c["kind"] in (PREDICTED, ORACLE_KIND) else f" ({c['status']})")


def markdown(doc: dict[str, Any], figure_name: str, per_unit: str) -> str:
    """report.md: how to read it, one table per family (the figure's cells), the per-unit
    table, the validations with their reasons, and provenance."""
    cs = doc["cells"]
    cols, rows = _column_order(cs), _rows(cs)
    by = {(c["model"], c["layer"], c["path"], c["family"], c["column"]): c for c in cs}
    out = [
        "# steerlab partials: runs side by side",
        "",
        f"![side by side]({figure_name}.png)",
        "",
        (
            "Each cell: units (target × density) steerable out of the units measured, for the model's layer "
            "and decode path, the stimulus family and the method with its removal (ablate, calibrated subtract). "
            "`predicted`: units whose partial the architecture predicts to survive the path (main lobe against "
            "the partial spacing, Nyquist, aliasing; `steerlab arch`). `oracle`: units where the ideal edit "
            "passes the rule through the same output (it does not depend on the layer). A verdict counts as a "
            "finding only where the run's positive controls *validated* its method (`validated`); *not "
            "validated* and *unchecked* cells give no share. `null`: the random direction, which must be "
            "steerable nowhere."
        ),
        "",
    ]
    for fam in dict.fromkeys(c["family"] for c in cs):
        out += [
            f"## {FAMILY_NAMES.get(fam, fam)}",
            "",
            "| model | layer (main lobe) | path | "
            + " | ".join(_column_label(c).replace("\n", " ") for c in cols)
            + " |",
            "| --- | --- | --- | " + " | ".join("---" for _ in cols) + " |",
        ]
        for m, layer, path in rows:
            if not any((m, layer, path, fam, col) in by for col in cols):
                continue
            first = next(by[(m, layer, path, fam, col)] for col in cols if (m, layer, path, fam, col) in by)
            lobe = "?" if first["main_lobe_hz"] is None else f"{first['main_lobe_hz']:.0f} Hz"
            out.append(
                f"| {m} | {layer} ({lobe}) | {path} | "
                + " | ".join(_md_cell(by.get((m, layer, path, fam, col))) for col in cols)
                + " |"
            )
        out.append("")
    out += ["## Validation (as each run's summary.csv gives it)", ""]
    said = {(c["run"], c["model"], c["family"], c["column"]): c for c in cs if c["kind"] == "verdict"}
    for (run, model, fam, col), c in said.items():
        out.append(f"- {model}, {fam}, {col} (`{run}`): **{c['status']}** ({c['status_reason']})")
    out += [
        "",
        "## Per unit (difference of means)",
        "",
        per_unit,
        "",
        "## Provenance",
        "",
        f"Command: `{doc['provenance']['command_line']}`",
        "",
    ]
    for r in doc["runs"]:
        out.append(
            f"- `{r['folder']}`: config hash `{r['config_hash']}`"
            + "".join(f"; {e['role']} sha256 `{e['sha256'][:16]}`" for e in r["files"])
        )
    return "\n".join(out) + "\n"


def compare(folders: Sequence[str | Path], out_dir: str | Path, argv: list[str] | None = None) -> dict[str, Any]:
    """Write the side-by-side figure (PNG, SVG), ``report.md`` and ``report.json`` of finished
    ``steerlab partials`` runs to ``out_dir``; returns the report document."""
    import time

    from steerlab import provenance
    from steerlab.artifacts import atomic_path, atomic_write_json
    from steerlab.partials.report import side_by_side

    started = time.time()
    if not folders:
        raise OutputError("give at least one run folder written by `steerlab partials`")
    runs = [Run.read(f) for f in folders]
    cs = cells(runs)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror or exc}; choose a writable folder") from None
    figure(cs, out / FIGURE)
    rec = provenance.record(inputs=[e["path"] for r in runs for e in r.inputs()], argv=argv, started=started)
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "runs": [
            {
                "folder": str(r.folder),
                "config_hash": r.doc.get("config_hash"),
                "quick": r.doc.get("quick"),
                "models": [{"name": m["name"], "role": m["role"]} for m in r.doc["models"]],
                "files": r.inputs(),
            }
            for r in runs
        ],
        "columns": _column_order(cs),
        "cells": cs,
        "figures": [f"{FIGURE}.png", f"{FIGURE}.svg"],
        "provenance": rec,
    }
    with atomic_path(out / REPORT_MD) as tmp:
        tmp.write_text(markdown(doc, FIGURE, side_by_side([r.folder for r in runs])))
    atomic_write_json(doc, out / REPORT_JSON)
    return doc
