"""Write an analysis report folder: ``report.json``, ``report.html``, ``figures/*.png`` and ``audio/*.wav``.

The HTML is self-contained (figures and audio embedded as base64 PNG and WAV, built with
:mod:`steerlab.reporting`), so it can be mailed or archived alone; the fragments behind
the shown directions (analysis i) can be listened to there. Beside every figure it shows our headline, post 1's corresponding
statement, the analysis's table and its provenance (seeds, dictionary config hash,
model weights hash, data description and hash, versions). The folder is written into
a temporary folder beside the target and renamed into place.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from steerlab import reporting
from steerlab.artifacts import clean_json

REPORT_FILE, HTML_FILE = "report.json", "report.html"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list) and len(v) > 12:  # a curve or a per-item list: the numbers are in report.json
        return f"{len(v)} values (in report.json)"
    if isinstance(v, (list, dict)):
        text = json.dumps(v)
        return text if len(text) <= 160 else text[:157] + "..."
    return str(v)


def _table(obj: Any) -> str:
    """A small HTML table of a summary dict or a list of row dicts."""
    if isinstance(obj, dict) and obj and all(isinstance(v, dict) for v in obj.values()):
        cols = list(dict.fromkeys(k for v in obj.values() for k in v))
        head = "".join(f"<th>{html.escape(c)}</th>" for c in ["", *cols])
        rows = "".join(
            "<tr><th>"
            + html.escape(str(name))
            + "</th>"
            + "".join(f"<td>{html.escape(_fmt(v.get(c, '')))}</td>" for c in cols)
            + "</tr>"
            for name, v in obj.items()
        )
        return reporting.scroll(f"<table><tr>{head}</tr>{rows}</table>")
    if isinstance(obj, dict):
        return reporting.scroll(
            "<table>"
            + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in obj.items())
            + "</table>"
        )
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        shown = obj[:25]
        cols = list(dict.fromkeys(k for r in shown for k in r))
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in shown
        )
        more = f"<p class=note>{len(obj) - len(shown)} more rows in report.json</p>" if len(obj) > len(shown) else ""
        return reporting.scroll(f"<table><tr>{head}</tr>{rows}</table>") + more
    return ""


_STYLE = """.source{background:#f4f4f4;border-left:4px solid #888;padding:.4em .8em}
.ours{border-left:4px solid #2a7;padding:.4em .8em}.prov{font-size:11px;color:#555;overflow-wrap:anywhere}"""


def _players(entry: dict[str, Any], files: dict[str, bytes]) -> str:
    """The listening reels of an analysis (``entry["listen"]``), one player each."""
    reels = [r for r in entry.get("listen") or () if r["file"] in files]
    if not reels:
        return ""
    players = "".join(
        reporting.audio_player(
            files[r["file"]], f"{r['label']}: {r['fragments']} fragments of {r['fragment_ms']:.0f} ms, strongest first"
        )
        for r in reels
    )
    return (
        "<h3>Listen</h3><p class=note>Each player plays a direction's top-activating fragments one after "
        "another (each with its context, faded in and out, 150 ms apart); <i>random vectors</i> is the "
        "reference: fragments behind randomly chosen vectors. Fragments come only from frames whose listening "
        "window and receptive field (with its warm-up) lie inside the clip: real audio, never zero padding.</p>"
        f"<div class=players>{players}</div>"
    )


#: the opening note of a report, by the dictionary's target
INTROS = {
    "feature": "Features are SAE directions over response vectors r_t (the layer's activations at one frame): "
    "what the layer represents at an instant. ",
    "archetype": "Archetypes are SAE directions over generators g_t = r_(t+1) - r_t (recurring motions of "
    "the activation trajectory); they are unrelated to the 'archetypal SAE' of the SAE literature. ",
}


def sae_parameters(dictionary: dict[str, Any]) -> dict[str, Any]:
    """The header rows of the dictionary's SAE: its architecture and only the parameters that
    architecture uses (``k`` for :data:`steerlab.sae_names.K_ARCHITECTURES`, ``l1`` for relu, the
    fields :meth:`steerlab.sae.SAEConfig.to_dict` stores for it, such as jumprelu's ``l0``); a
    parameter left to its default says so (docs/sae.md gives the defaults)."""
    from steerlab.sae_names import K_ARCHITECTURES

    sae = dictionary.get("sae") or {}
    arch = sae.get("kind_of_sae", "topk")
    rows: dict[str, Any] = {"architecture": arch}
    if arch in K_ARCHITECTURES:
        rows["k"] = dictionary.get("k", sae.get("k"))
    if arch == "relu":
        rows["l1"] = sae.get("l1")
    for key in ("l0", "bandwidth", "threshold_init", "prefixes"):  # stored only for their architecture
        if key in sae:
            rows[key] = "default (docs/sae.md)" if sae[key] is None else sae[key]
    return rows


def render_html(doc: dict[str, Any], figures: dict[str, bytes]) -> str:
    d, m, data = doc["dictionary"], doc["model"], doc["data"]
    parts = [
        f"<h1>Analysis of a {html.escape(d['kind'])} dictionary: {html.escape(m['name'])} "
        f"{html.escape(d['layer'])}</h1>",
        f"<p class=note>{INTROS.get(d['kind'], '')}Post 1 "
        "is the source document (seeds/002_7ca0d68a1f069fae.txt); its numbers are for its models and FMA "
        "small and are quoted, never reused.</p>",
        _table(
            {
                "dictionary": d["path"],
                "kind": d["kind"],
                "size x width": f"{d['size']} x {d['width']}",
                **sae_parameters(d),
                "dictionary config sha256": d["config_sha256"],
                "model": m["name"],
                "model weights hash": m["weights_hash"],
                "data": data["description"],
                "data sha256": data["sha256"],
                "vectors": f"{data['n_vectors']} kept of {data['vectors_seen']}",
                "quick run": doc["options"]["quick"],
                "versions": doc["versions"],
            }
        ),
        "<h3>Options</h3>",
        _table(doc["options"]),
    ]
    if doc.get("fidelity"):
        f = doc["fidelity"]
        parts.append(f"<h3>Splice fidelity</h3><p class=ours>{html.escape(f['headline'])}</p>")
        parts.append(f"<p class=note>{html.escape(f['formula'])}. {html.escape(f['references'])}.</p>")
        parts.append(_table({k: f[k] for k in ("spliced", "zero_ablation", "mean_ablation") if k in f}))
    for key, a in doc["analyses"].items():
        parts.append(f"<section id={key}><h2>{a['letter']}. {html.escape(a['title'])}</h2>")
        if a["status"] != "ran":
            parts.append(f"<p class=note><b>Skipped:</b> {html.escape(a['reason'])}</p>")
            parts.append(f"<p class=source>{html.escape(a['source'])}</p></section>")
            continue
        parts.append(f"<p class=ours><b>Ours:</b> {html.escape(a['headline'])}</p>")
        parts.append(f"<p class=source><b>Post 1:</b> {html.escape(a['source'])}</p>")
        parts.append(reporting.img(figures[a["figure"]], a["title"]))
        parts.append(_players(a, figures))
        p = a["provenance"]
        parts.append(
            f"<p class=prov>seeds {html.escape(json.dumps(p['seeds']))}; dictionary config sha256 "
            f"{p['dictionary_config_sha256']}; model weights {p['model_weights_hash']}; data "
            f"{html.escape(str(p['data']['description']))} (sha256 {html.escape(json.dumps(p['data']['sha256']))}); "
            f"versions {html.escape(json.dumps(p['versions']))}</p>"
        )
        parts.append(_table(a["summary"]))
        if isinstance(a.get("table"), (list, dict)) and not (isinstance(a["table"], dict) and "curves" in a["table"]):
            parts.append(_table(a["table"]))
        parts.append("</section>")
    title = f"steerlab analysis: {d['kind']} dictionary of {m['name']} {d['layer']}"
    return reporting.page(title, parts, _STYLE)


def write_report(doc: dict[str, Any], figures: dict[str, bytes], folder: str | Path, overwrite: bool = False) -> Path:
    """Write the report folder atomically; return its path."""
    from steerlab.artifacts import normal_permissions
    from steerlab.dictionary import _atomic_folder

    folder = Path(folder)
    doc = clean_json(doc, drop_private=True)
    with _atomic_folder(folder, overwrite, REPORT_FILE) as work:
        (work / "figures").mkdir()
        normal_permissions(work / "figures", directory=True)
        for name, png in figures.items():  # figures/*.png and audio/*.wav
            (work / name).parent.mkdir(exist_ok=True)
            (work / name).write_bytes(png)
            normal_permissions(work / name)
        (work / HTML_FILE).write_text(render_html(doc, figures))
        (work / REPORT_FILE).write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
        for p in (work / HTML_FILE, work / REPORT_FILE):
            normal_permissions(p)
    return folder
