"""Write a survey folder: ``report.json``, ``survey.csv``, ``figures/*.png`` and ``*.svg``, ``index.html``.

``survey.csv`` has one row per (model, layer): each statistic with its chance reference's mean and
95% interval and its status (``beyond chance``, ``at chance``, ``short of chance``; a flagged
statistic is anything but beyond), the probe accuracy of each concept beside its shuffled-label
interval, the battery's verdict per concept and the architecture's prediction. ``index.html`` is
built with :mod:`steerlab.reporting` like every steerlab report: self-contained (figures and audio
inlined), wide tables scrolling in their own box, titles fitted to their axes, the colour scale
with its bar, frequency on a logarithmic axis; and players of the fragments the narrowband measure
heard: per row, a listening reel of each top feature's strongest fragments and one of fragments at
random frames (:func:`steerlab.reporting.listening_reel`). The folder is written beside its target and renamed into place
(:func:`steerlab.dictionary._atomic_folder`: an existing folder is replaced only with
``overwrite`` and only when steerlab wrote it).
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from steerlab import reporting
from steerlab.artifacts import clean_json

REPORT_FILE, CSV_FILE, HTML_FILE = "report.json", "survey.csv", "index.html"
LABELS = {
    "participation_ratio": "participation ratio",
    "coverage": "coverage (mean best cosine)",
    "explained_variance": "explained variance (top m)",
    "usage_top_share": "usage: top-n share",
    "stability": "seed stability",
    "narrowband": "narrowband: eff. bandwidth (Hz)",
}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def csv_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The flat rows of ``survey.csv``."""
    out = []
    for r in doc["rows"]:
        row: dict[str, Any] = {
            "model": r["model"],
            "layer": r["layer"],
            "kind": r["layer_info"]["kind"],
            "channels": r["layer_info"]["channels"],
        }
        for key in doc["statistics"]:
            s = r[key]
            ci = s["chance"].get("ci95") or [None, None]
            row.update(
                {
                    key: s["value"],
                    f"{key}_chance_mean": s["chance"].get("mean"),
                    f"{key}_chance_lo": ci[0],
                    f"{key}_chance_hi": ci[1],
                    f"{key}_status": s["status"] if s["value"] is not None else f"null: {s['value_reason']}",
                }
            )
        for c, d in r["decodability"].items():
            ci = d["chance"].get("ci95") or [None, None]
            row.update(
                {
                    f"decodability_{c}": d["value"],
                    f"decodability_{c}_chance_hi": ci[1],
                    f"decodability_{c}_status": d["status"],
                    f"decodability_{c}_random_weights": d["random_weights_accuracy"],
                }
            )
        for c, b in r["battery"].items():
            row[f"battery_{c}"] = b["verdict"]
        row["arch_partial_score"] = r["prediction"].get("partial_score")
        out.append(row)
    return out


def _csv_text(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    keys = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _figure(w: float, h: float, cols: int, rows: int = 1) -> tuple[Any, Any]:
    return reporting.figure(w, h, rows, cols, dpi=110)


def _save(fig: Any) -> tuple[bytes, bytes]:
    """PNG and SVG of the figure, titles fitted to their axes first; the figure is cleared."""
    png, svg = io.BytesIO(), io.BytesIO()
    try:
        reporting.fit_titles(fig)
        fig.savefig(png, format="png", dpi=110)
        fig.savefig(svg, format="svg")
    finally:
        fig.clear()
    return png.getvalue(), svg.getvalue()


def statistics_figure(doc: dict[str, Any]) -> tuple[bytes, bytes]:
    """One panel per statistic: the value at each (model, layer) as a dot, its chance reference's
    95% interval as a grey bar; a dot at chance is hollow."""
    rows, keys = doc["rows"], doc["statistics"]
    names = [f"{r['model']}\n{r['layer']}" for r in rows]
    fig, axes = _figure(4.0 * 3, 3.2 * 2, 3, 2)
    for ax, key in zip(axes.flat, keys):
        for i, r in enumerate(rows):
            s = r[key]
            ci = s["chance"].get("ci95")
            if ci:
                ax.plot([i, i], ci, color="0.6", lw=6, solid_capstyle="butt", label="chance 95%" if i == 0 else None)
            if s["value"] is not None:
                hollow = bool(s.get("at_chance"))
                ax.plot(i, s["value"], "o", mfc="white" if hollow else "C0", mec="C0", ms=7)
            else:
                ax.text(i, 0.5, "null", transform=ax.get_xaxis_transform(), ha="center", fontsize=7, color="C3")
        ax.set_title(LABELS.get(key, key), fontsize=9)
        ax.set_xticks(range(len(rows)), names, fontsize=6, rotation=30, ha="right")
        if key == "narrowband":
            _log_hz(ax, [r[key] for r in rows])
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle("statistics per layer (filled: beyond chance; hollow: at or short of chance)", fontsize=10)
    return _save(fig)


def _log_hz(ax: Any, stats: Sequence[dict[str, Any]]) -> None:
    """A logarithmic frequency axis (y) spanning the values and chance intervals, with margins."""
    hz = [v for s in stats for v in [s["value"], *(s["chance"].get("ci95") or [])] if v is not None and v > 0]
    if hz:
        reporting.log_frequency(ax, min(hz) / 1.5, max(hz) * 1.5, axis="y")
        ax.set_ylabel("Hz")


def decodability_figure(doc: dict[str, Any]) -> tuple[bytes, bytes]:
    """Held-out probe accuracy per concept (rows) and (model, layer) (columns), with a colour bar;
    cells at chance marked ``~``."""
    import numpy as np

    rows, concepts = doc["rows"], doc["concepts"]
    acc = np.array([[r["decodability"][c]["value"] for r in rows] for c in concepts], dtype=float)
    fig, axes = _figure(1.2 + 1.1 * len(rows), 1.0 + 0.45 * len(concepts), 1)
    ax = axes[0, 0]
    im = ax.imshow(acc, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for i, c in enumerate(concepts):
        for j, r in enumerate(rows):
            d = r["decodability"][c]
            mark = "~" if d.get("at_chance") else ""
            light = d["value"] is not None and d["value"] > 0.6  # viridis is light (yellow-green) there
            text = "null" if d["value"] is None else f"{d['value']:.2f}{mark}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="k" if light else "w")
    ax.set_yticks(range(len(concepts)), concepts, fontsize=8)
    ax.set_xticks(range(len(rows)), [f"{r['model']}\n{r['layer']}" for r in rows], fontsize=6, rotation=30, ha="right")
    fig.colorbar(im, ax=ax, label="held-out probe accuracy")
    ax.set_title("linear decodability (~: within the shuffled-label 95% interval)", fontsize=9)
    return _save(fig)


def figures(doc: dict[str, Any]) -> dict[str, bytes]:
    """``{relative path: bytes}`` of every figure, PNG and SVG."""
    out = {}
    for name, make in (("statistics", statistics_figure), ("decodability", decodability_figure)):
        png, svg = make(doc)
        out[f"figures/{name}.png"], out[f"figures/{name}.svg"] = png, svg
    return out


def _stat_cell(s: dict[str, Any]) -> str:
    if s["value"] is None:
        return f"<td class=null title='{html.escape(s['value_reason'], quote=True)}'>null</td>"
    ci = s["chance"].get("ci95")
    ref = f"[{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "no reference"
    flag = " class=flag" if s.get("at_chance") is not False else ""
    status = s.get("status") or "-"
    return f"<td{flag}>{s['value']:.3g}<br><small>chance {ref}<br>{html.escape(status)}</small></td>"


CSS = "td.flag{background:#fde7e7}td.null{color:#999}small{color:#555}figure{margin:1em 0}"


def reels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per row, the listening reels of the fragments its narrowband measure heard (the private
    ``_listen`` the survey keeps beside the numbers): ``{"row", "label", "wav", "fragments",
    "seconds"}`` for each top feature and for the random frames; empty when the survey kept none."""
    import numpy as np

    out = []
    for r in doc["rows"]:
        listen = r.get("narrowband", {}).get("_listen")
        if not listen:
            continue
        sr = listen["sample_rate"]
        widths = r["narrowband"].get("per_feature_hz", {})
        for name, f in listen["fragments"].items():
            f = np.asarray(f, dtype=np.float64)
            if not len(f) or not np.abs(f).max() > 0:
                continue
            reel = reporting.listening_reel(f, sr)
            bw = widths.get(name)
            label = name if not name.startswith("random") else "random frames (the chance reference)"
            label += f", bandwidth {bw:.0f} Hz" if bw is not None else ""
            out.append(
                {
                    "row": f"{r['model']} {r['layer']}",
                    "label": f"{label}: {len(f)} fragments",
                    "wav": reporting.wav_bytes(reel, sr),
                    "fragments": len(f),
                    "seconds": len(reel) / sr,
                }
            )
    return out


def _listen_html(doc: dict[str, Any], played: list[dict[str, Any]]) -> str:
    head = (
        "<h2>Listen: the top features' fragments</h2><p>What the narrowband measure heard: per model and layer, "
        "each top feature's strongest fragments (300 ms of context around the frame, strongest first, "
        "faded, played one after another), and fragments at random frames for comparison.</p>"
    )
    if not played:
        rows = [r for r in doc["rows"] if r["narrowband"].get("value") is None]
        why = (
            "no top feature of any row has fragments holding energy"
            + (f" ({html.escape(rows[0]['narrowband'].get('value_reason') or '')})" if rows else "")
            if doc["rows"]
            else "the survey measured no layer"
        )
        return head + f"<p class=note>No players: {why}.</p>"
    parts = [head]
    for row in dict.fromkeys(p["row"] for p in played):
        players = "".join(reporting.audio_player(p["wav"], p["label"]) for p in played if p["row"] == row)
        parts.append(f"<h3>{html.escape(row)}</h3><div class=players>{players}</div>")
    return "".join(parts)


def render_html(doc: dict[str, Any], figs: dict[str, bytes], played: Sequence[dict[str, Any]] = ()) -> str:
    """The self-contained ``index.html`` (:mod:`steerlab.reporting`); ``played``: :func:`reels`."""
    head = "".join(f"<th>{html.escape(LABELS[k])}</th>" for k in doc["statistics"])
    body = ""
    for r in doc["rows"]:
        cells = "".join(_stat_cell(r[k]) for k in doc["statistics"])
        body += f"<tr><th>{html.escape(r['model'])}<br>{html.escape(r['layer'])}</th>{cells}</tr>"
    dec_head = "".join(f"<th>{html.escape(c)}</th>" for c in doc["concepts"])
    dec_body = ""
    for r in doc["rows"]:
        cells = ""
        for c in doc["concepts"]:
            d, b = r["decodability"][c], r["battery"][c]
            cells += _stat_cell(d).replace("</small></td>", f"<br>battery: {html.escape(b['verdict'])}</small></td>")
        score = r["prediction"].get("partial_score")
        dec_body += (
            f"<tr><th>{html.escape(r['model'])}<br>{html.escape(r['layer'])}</th>{cells}<td>{_fmt(score)}</td></tr>"
        )
    imgs = "".join(f"<figure>{reporting.img(b, name)}</figure>" for name, b in figs.items() if name.endswith(".png"))
    agree = "".join(
        f"<li>{html.escape(k)}: {_fmt(v.get('spearman'))} over {v.get('n_rows')} rows"
        + (f" ({html.escape(v['spearman_reason'])})" if v.get("spearman_reason") else "")
        + "</li>"
        for k, v in doc["rank_agreement"].items()
        if isinstance(v, dict)
    )
    prov = doc["provenance"]
    parts = [
        "<h1>Where do the variables live?</h1>",
        "<p>One row per model and layer. Each statistic is shown beside its chance reference's 95% interval; "
        "shaded cells are <b>at or short of chance</b> (flagged). Full numbers and reasons for every null: "
        "report.json.</p>",
        "<h2>Dictionary and layer statistics</h2>",
        reporting.scroll(f"<table><tr><th></th>{head}</tr>{body}</table>"),
        "<h2>Linear decodability of each concept (held-out probe accuracy) and the battery's verdict</h2>",
        reporting.scroll(f"<table><tr><th></th>{dec_head}<th>arch: partial score</th></tr>{dec_body}</table>"),
        "<h2>Rank agreement of the architecture's prediction with the measurements (Spearman)</h2>",
        f"<ul>{agree}</ul>",
        imgs,
        _listen_html(doc, list(played)),
        f"<h2>Provenance</h2><p><code>{html.escape(prov['command_line'])}</code><br>config hash "
        f"{html.escape(doc['config_hash'])}; wall time {_fmt(prov.get('wall_time_s'))} s</p>",
    ]
    return reporting.page("steerlab survey", parts, CSS)


def write_report(doc: dict[str, Any], folder: str | Path, overwrite: bool = True) -> Path:
    """Write the survey folder atomically (see the module docstring); return its path."""
    from steerlab.artifacts import normal_permissions
    from steerlab.dictionary import _atomic_folder

    folder = Path(folder)
    played = reels(doc)  # from the working state the JSON leaves out
    doc = clean_json(doc, drop_private=True)
    figs = figures(doc)
    with _atomic_folder(folder, overwrite, REPORT_FILE) as work:
        (work / "figures").mkdir()
        normal_permissions(work / "figures", directory=True)
        for name, data in figs.items():
            (work / name).write_bytes(data)
            normal_permissions(work / name)
        (work / CSV_FILE).write_text(_csv_text(csv_rows(doc)))
        (work / HTML_FILE).write_text(render_html(doc, figs, played), encoding="utf-8")
        (work / REPORT_FILE).write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
        for p in (work / CSV_FILE, work / HTML_FILE, work / REPORT_FILE):
            normal_permissions(p)
    return folder
