"""The steerability map: concept x (model, layer), read back from finished runs.

``python -m steerlab.battery.map [--battery DIR ...] [--partials DIR ...] [--survey DIR] -o MAP.png``

Nothing is recomputed: every cell counts the verdicts the runs wrote.

- ``--battery``: ``steerlab steerability -o`` folders (``steerability.json``; measured-model rows,
  the random null left out, as :mod:`steerlab.survey.battery` reads them).
- ``--partials``: ``steerlab partials -o`` folders (``summary.csv``: the partial concept on models the
  battery refuses, such as CREPE; each row's label is partials' own rule,
  :func:`steerlab.partials.verdicts.label`: "steerable"/"not steerable" only where the run marks the
  method ``validated``, else its validation status).
- ``--survey``: a ``steerlab survey -o`` folder (``report.json``): each concept's held-out probe
  accuracy at the layer and the top of its shuffled-label 95% interval (``decodability``).

A map row is a concept (its synthetic variant; the survey's probes are of those pairs) or, where a run
measured them, the concept's rendered instruments (``partial (instrument)``: partials' ``instrument``
family). A cell (row, model, layer) holds, per method (difference of means first, then the probe, the SAE
feature), the counts of its labels over variants, decode paths and removals, and its word: "steerable"
if any verdict is, else "not steerable" if any is, else "no control" when the concept has no positive
control, else the most frequent other label ("not validated", "unchecked"); "not run" where no folder
holds the cell. Beside it the survey's decodability. Outputs: the PNG and an SVG beside it, ``.md``
(the table and the provenance) and ``.json`` (every cell, the command line and the sha256 of each input).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from steerlab.errors import ConfigError

FORMAT, FORMAT_VERSION = "steerlab-steerability-map", 1
METHODS = ("diffmeans", "probe", "sae")
SHORT = {"diffmeans": "DM", "probe": "probe", "sae": "SAE"}
CONCEPT_ORDER = ("partial", "note", "chord-quality", "brightness", "onset", "loudness")
NOT_RUN, NO_CONTROL, INSTRUMENT = "not run", "no control", "instrument"
COLOURS = {
    "steerable": "#4daf4a",
    "not steerable": "#e41a1c",
    "not validated": "#bdbdbd",
    NO_CONTROL: "#e0e0e0",
    "unchecked": "#e0e0e0",
    NOT_RUN: "#ffffff",
}
LAYER_KIND_ORDER = {"latent": 0, "quantized": 1}
Layers = dict[tuple[str, str], dict[str, Any]]  # (model, layer) -> the layer's table entry


def _file(path: Path) -> dict[str, Any]:
    from steerlab.provenance import file_entry

    return file_entry(path)


def _layers_of_run(doc: dict[str, Any]) -> Layers:
    """(model, layer) -> the layer's table entry (hop, kind, ...), from a run.json."""
    out: Layers = {}
    for m in doc.get("models", []):
        for layer in m.get("layers", []):
            out[(m["name"], layer["name"])] = layer
    return out


def _oracle_shares(path: Path) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """(model, family, target_hz, density) -> the ideal edit's unit (pass share, steerable), from a
    partials oracle.json."""
    if not path.is_file():
        return {}
    units = json.loads(path.read_text())["units"]
    return {(u["model"], u["family"], str(float(u["target_hz"])), str(u["density"])): u for u in units}


def _partial_oracle(row: dict[str, Any], units: dict[tuple[str, str, str, str], dict[str, Any]]) -> dict[str, Any]:
    key = (str(row["model"]), str(row.get("family")), str(float(row["target_hz"])), str(row["density"]))
    u = units.get(key)
    return {} if u is None else {"oracle_pass_share": u.get("pass_share"), "oracle_steerable": u.get("steerable")}


def read_battery(folder: Path) -> tuple[list[dict[str, Any]], Layers, list[Path]]:
    """Measured-model rows of a steerability folder, the layer table of its runs, the files read."""
    path = folder / "steerability.json"
    if not path.is_file():
        raise ConfigError(f"{folder}: no steerability.json (a `steerlab steerability -o` folder)", parameter="battery")
    doc = json.loads(path.read_text())
    rows: list[dict[str, Any]] = []
    layers: Layers = {}
    files = [path]
    for t in doc["concepts"]:
        no_control = t.get("controls") == NO_CONTROL or t.get("no_control_reason") is not None  # older: a string
        oracle = _oracle_shares(folder / t["concept"] / "oracle.json") if t["concept"] == "partial" else {}
        if oracle:
            files.append(folder / t["concept"] / "oracle.json")
        for v in t["verdicts"]:
            if v.get("model_role") == "main" and v.get("method") != "random":
                row = {**v, "concept": t["concept"], "no_control": no_control, "source": str(folder)}
                if row.get("oracle_pass_share") is None and oracle:
                    row.update(_partial_oracle(v, oracle))
                rows.append(row)
        run = folder / t["concept"] / "run.json"
        if run.is_file():
            layers.update(_layers_of_run(json.loads(run.read_text())))
            files.append(run)
    return rows, layers, files


def read_partials(folder: Path) -> tuple[list[dict[str, Any]], Layers, list[Path]]:
    """Measured-model rows of a partials folder as partial-concept rows, its layer table, the files."""
    summary, run = folder / "summary.csv", folder / "run.json"
    if not summary.is_file() or not run.is_file():
        raise ConfigError(
            f"{folder}: no summary.csv and run.json (a finished `steerlab partials -o` folder)", parameter="partials"
        )
    with open(summary, newline="") as fh:
        raw = list(csv.DictReader(fh))
    oracle = _oracle_shares(folder / "oracle.json")
    rows = []
    for r in raw:
        if r["model_role"] != "main" or r["method"] == "random":
            continue
        word = "steerable" if r["steerable"] == "True" else "not steerable"
        label = r.get("verdict") or (word if r["control_validation"] == "validated" else r["control_validation"])
        rows.append(
            {
                "concept": "partial",
                "model": r["model"],
                "layer": r["layer"],
                "variant": r["family"],
                "method": r["method"],
                "path": r["path"],
                "removal": r["removal"],
                "label": label,
                "pass_share": float(r["pass_share"]) if r.get("pass_share") not in (None, "") else None,
                "no_control": False,
                "source": str(folder),
                **_partial_oracle(r, oracle),
            }
        )
    files = [summary, run] + ([folder / "oracle.json"] if oracle else [])
    return rows, _layers_of_run(json.loads(run.read_text())), files


def read_survey(folder: Path) -> tuple[dict[tuple[str, str, str], dict[str, Any]], Layers, list[Path]]:
    """(concept, model, layer) -> decodability (accuracy, chance interval top, status), the layers."""
    path = folder / "report.json"
    if not path.is_file():
        raise ConfigError(f"{folder}: no report.json (a `steerlab survey -o` folder)", parameter="survey")
    doc = json.loads(path.read_text())
    dec: dict[tuple[str, str, str], dict[str, Any]] = {}
    layers: Layers = {}
    for r in doc["rows"]:
        layers[(r["model"], r["layer"])] = r["layer_info"]
        for c, d in r["decodability"].items():
            ci = d.get("chance", {}).get("ci95") or [None, None]
            dec[(c, r["model"], r["layer"])] = {
                "accuracy": d.get("value"),
                "chance_hi": ci[1],
                "status": d.get("status"),
                "random_weights_accuracy": d.get("random_weights_accuracy"),
            }
    return dec, layers, [path]


def _word(labels: Counter[str], no_control: bool) -> str:
    if labels["steerable"]:
        return "steerable"
    if labels["not steerable"]:
        return "not steerable"
    if no_control:
        return NO_CONTROL
    return labels.most_common(1)[0][0]


def _layer_key(info: dict[str, Any] | None, name: str) -> tuple[float, int, str]:
    """Within one model: by hop (samples), the latent before the quantized codes, then by name."""
    if not info or not info.get("hop_samples"):
        return (float("inf"), 9, name)
    return (float(info["hop_samples"]), LAYER_KIND_ORDER.get(str(info.get("kind")), -1), name)


def build(
    battery: Sequence[str | Path] = (), partials: Sequence[str | Path] = (), survey: str | Path | None = None
) -> dict[str, Any]:
    """The map document: ``columns`` [(model, layer)], ``concepts``, ``cells`` and ``inputs``."""
    rows: list[dict[str, Any]] = []
    layers: Layers = {}
    files: list[Path] = []
    for f in battery:
        found, lay, fs = read_battery(Path(f))
        rows += found
        layers.update(lay)
        files += fs
    for f in partials:
        found, lay, fs = read_partials(Path(f))
        rows += found
        layers.update(lay)
        files += fs
    dec: dict[tuple[str, str, str], dict[str, Any]] = {}
    if survey is not None:
        dec, lay_s, fs = read_survey(Path(survey))
        for k, v in lay_s.items():
            layers.setdefault(k, v)
        files += fs
    if not rows and not dec:
        raise ConfigError(
            "nothing to map: give battery, partials or survey folders", parameter=("battery", "partials", "survey")
        )
    models = list(dict.fromkeys([r["model"] for r in rows] + [k[1] for k in dec]))
    columns = []
    for m in models:
        here = {r["layer"] for r in rows if r["model"] == m} | {k[2] for k in dec if k[1] == m}
        columns += [(m, n) for n in sorted(here, key=lambda n: _layer_key(layers.get((m, n)), n))]
    for r in rows:  # rendered instruments get a row of their own, beside the concept's synthetic row
        r["row"] = f"{r['concept']} ({INSTRUMENT})" if r.get("variant") == INSTRUMENT else r["concept"]
    seen = {r["concept"] for r in rows} | {k[0] for k in dec}
    names = [c for c in CONCEPT_ORDER if c in seen] + sorted(seen - set(CONCEPT_ORDER))
    present = {r["row"] for r in rows}
    concepts = [x for c in names for x in (c, f"{c} ({INSTRUMENT})") if x == c or x in present]
    cells = []
    for c in concepts:
        for m, layer in columns:
            mine = [r for r in rows if r["row"] == c and r["model"] == m and r["layer"] == layer]
            methods = {}
            for meth in [x for x in METHODS if any(r["method"] == x for r in mine)]:
                got = [r for r in mine if r["method"] == meth]
                labels = Counter(str(r["label"]) for r in got)
                shares = [r["pass_share"] for r in got if r.get("pass_share") is not None]
                ideal = [r["oracle_pass_share"] for r in got if r.get("oracle_pass_share") is not None]
                methods[meth] = {
                    "word": _word(labels, any(r["no_control"] for r in got)),
                    "labels": dict(labels),
                    "n_verdicts": len(got),
                    "variants": sorted({str(r.get("variant")) for r in got}),
                    "best_pass_share": max(shares) if shares else None,
                    "oracle_pass_share_range": [min(ideal), max(ideal)] if ideal else None,
                    "oracle_fails_everywhere": (
                        all(r.get("oracle_steerable") is False for r in got)
                        if all(r.get("oracle_steerable") is not None for r in got)
                        else None
                    ),
                    "sources": sorted({r["source"] for r in got}),
                }
            cells.append(
                {
                    "concept": c,
                    "model": m,
                    "layer": layer,
                    "methods": methods,
                    "word": methods[next(iter(methods))]["word"] if methods else NOT_RUN,
                    "decodability": dec.get((c, m, layer)),
                }
            )
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "columns": [list(c) for c in columns],
        "concepts": concepts,
        "cells": cells,
        "inputs": [_file(p) for p in files],
    }


def _dec_text(d: dict[str, Any] | None) -> str:
    if not d or d.get("accuracy") is None:
        return "-"
    hi = d.get("chance_hi")
    mark = "" if d.get("status") == "beyond chance" else " ~"
    return f"{d['accuracy']:.2f}{mark}" + (f" (chance <= {hi:.2f})" if hi is not None else "")


def _oracle_text(cell: dict[str, Any]) -> str | None:
    """The ideal edit's pass share over the cell's units (the same on every layer), as min-max;
    "fails" where it passes on no unit (then "not steerable" is the output's verdict, not the layer's)."""
    for v in cell["methods"].values():
        if v.get("oracle_pass_share_range"):
            lo, hi = v["oracle_pass_share_range"]
            text = f"ideal edit {lo:.2f}" if lo == hi else f"ideal edit {lo:.2f}-{hi:.2f}"
            return text + (" (fails)" if v.get("oracle_fails_everywhere") else "")
    return None


def _method_text(cell: dict[str, Any], sep: str) -> str:
    if not cell["methods"]:
        return NOT_RUN
    parts = []
    for meth, v in cell["methods"].items():
        n = v["labels"].get(v["word"], 0) if v["word"] != NO_CONTROL else v["n_verdicts"]
        parts.append(f"{SHORT.get(meth, meth)}: {v['word']} {n}/{v['n_verdicts']}")
    return sep.join(parts)


def markdown(doc: dict[str, Any]) -> str:
    """One row per concept, one column per (model, layer): verdict words per method, decodability."""
    cols = [tuple(c) for c in doc["columns"]]
    by = {(c["concept"], c["model"], c["layer"]): c for c in doc["cells"]}
    out = ["| concept | " + " | ".join(f"{m} `{layer}`" for m, layer in cols) + " |"]
    out.append("| --- " * (len(cols) + 1) + "|")
    for concept in doc["concepts"]:
        cells = []
        for m, layer in cols:
            cell = by[(concept, m, layer)]
            text = _method_text(cell, "; ") if cell["methods"] else "battery: not run"
            ideal = _oracle_text(cell)
            text += f"; {ideal}" if ideal else ""
            cells.append(f"{text}; probe acc. {_dec_text(cell['decodability'])}")
        out.append(f"| {concept} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


#: inches of the figure: a cell, and what surrounds the grid at any size (the two-line title, the
#: rotated two-line column labels, the legend's two rows, the pads)
CELL_W_IN, CELL_H_IN, AROUND_H_IN = 1.55, 0.75, 2.5
#: the widest the two-line title is at 8 pt: the figure is never narrower, whatever the columns
TITLE_W_IN = 7.4
#: inches per character of a row label at 8 pt (DejaVu Sans averages about 0.55 em)
LABEL_CHAR_IN = 0.062


def _figure_size(concepts: Sequence[str], cols: Sequence[tuple[str, str]]) -> tuple[float, float]:
    """(width, height) in inches for ``concepts`` rows and ``cols`` columns: the grid's cells plus
    room for every label, the title and the legend, so one concept lays out as well as many."""
    label_in = 0.3 + LABEL_CHAR_IN * max((len(c) for c in concepts), default=0)
    # the last column's label is rotated 30 degrees to the right of its cell: room for its run
    col_in = LABEL_CHAR_IN * 0.75 * max((max(len(m), len(layer)) for m, layer in cols), default=0)
    width = max(TITLE_W_IN, label_in + CELL_W_IN * len(cols) + col_in / 2 + 0.4)
    return width, AROUND_H_IN + CELL_H_IN * len(concepts)


def figure(doc: dict[str, Any], png: Path) -> None:
    """The map as a grid (:func:`map_figure`) written to ``png`` and the ``.svg`` beside it."""
    from steerlab.artifacts import atomic_path

    fig = map_figure(doc)
    with atomic_path(png) as tmp:  # an interrupted run leaves no half-written figure
        fig.savefig(tmp, dpi=120, format="png")
    with atomic_path(png.with_suffix(".svg")) as tmp:
        fig.savefig(tmp, format="svg")


def map_figure(doc: dict[str, Any]) -> Any:
    """The map as a matplotlib ``Figure``: colour = the first method's word (difference of means),
    hatched where it is no finding (not validated, no control, unchecked); text = every method's
    word and the survey's probe accuracy (``~``: within the shuffled-label interval). Sized by
    :func:`_figure_size`, so 1 to N concepts lay out with nothing clipped."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    cols = [tuple(c) for c in doc["columns"]]
    by = {(c["concept"], c["model"], c["layer"]): c for c in doc["cells"]}
    nr, nc = len(doc["concepts"]), len(cols)
    fig = Figure(figsize=_figure_size(doc["concepts"], cols), layout="constrained")
    ax = fig.subplots()
    for i, concept in enumerate(doc["concepts"]):
        for j, col in enumerate(cols):
            cell = by[(concept, col[0], col[1])]
            word = cell["word"]
            finding = word in ("steerable", "not steerable")
            first: dict[str, Any] = next(iter(cell["methods"].values()), {})
            ideal_fails = word == "not steerable" and first.get("oracle_fails_everywhere")
            ax.add_patch(
                Rectangle(
                    (j, i),
                    1,
                    1,
                    facecolor=COLOURS.get(word, "#e0e0e0"),
                    edgecolor="white",
                    hatch="xx" if ideal_fails else None if finding or word == NOT_RUN else "//",
                    lw=1.5,
                )
            )
            lines = []
            for meth, v in cell["methods"].items():
                lines.append(f"{SHORT.get(meth, meth)}: {v['word']}")
            if not cell["methods"]:
                lines.append("battery not run")
            ideal = _oracle_text(cell)
            if ideal:
                lines.append(ideal)
            d = cell["decodability"]
            if d and d.get("accuracy") is not None:
                mark = "" if d.get("status") == "beyond chance" else "~"
                hi = d.get("chance_hi")
                lines.append(f"probe acc {d['accuracy']:.2f}{mark}" + (f" | {hi:.2f}" if hi is not None else ""))
            ax.text(j + 0.5, i + 0.5, "\n".join(lines), ha="center", va="center", fontsize=6.3)
    ax.set_xlim(0, nc)
    ax.set_ylim(nr, 0)
    ax.set_xticks([j + 0.5 for j in range(nc)], [f"{m}\n{layer}" for m, layer in cols], fontsize=7, rotation=30)
    ax.set_yticks([i + 0.5 for i in range(nr)], doc["concepts"], fontsize=8)
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    handles = [
        Patch(
            facecolor=COLOURS[w], edgecolor="0.5", hatch=None if w in ("steerable", "not steerable") else "//", label=w
        )
        for w in ("steerable", "not steerable", "not validated", NO_CONTROL)
    ] + [
        Patch(
            facecolor=COLOURS["not steerable"], edgecolor="0.5", hatch="xx", label="not steerable, ideal edit fails too"
        ),
        Patch(facecolor="white", edgecolor="0.5", label="battery not run"),
    ]
    # below everything, in the figure's own margin: constrained layout makes room for it
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(  # centred on the figure, not over the grid, which long row labels push right
        "steerability map: colour = difference of means (validated words only are findings; hatched: no finding)\n"
        "probe acc = survey's held-out linear decodability | top of its shuffled-label 95% interval (~: at chance)",
        fontsize=8,
    )
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    from steerlab.artifacts import atomic_path, atomic_write_json

    p = argparse.ArgumentParser(prog="python -m steerlab.battery.map", description=__doc__.split("\n\n")[0])
    p.add_argument("--battery", action="append", default=[], help="a `steerlab steerability -o` folder (repeatable)")
    p.add_argument("--partials", action="append", default=[], help="a `steerlab partials -o` folder (repeatable)")
    p.add_argument("--survey", default=None, help="a `steerlab survey -o` folder")
    p.add_argument("-o", "--output", required=True, help="the figure (PNG); .svg, .md and .json are written beside")
    a = p.parse_args(argv)
    try:
        doc = build(a.battery, a.partials, a.survey)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc["command_line"] = " ".join(["python -m steerlab.battery.map", *(argv if argv is not None else sys.argv[1:])])
    figure(doc, out)
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text(markdown(doc))
    atomic_write_json(doc, out.with_suffix(".json"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
