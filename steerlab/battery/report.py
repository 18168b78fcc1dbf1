"""``OUT/report.html`` of ``steerlab steerability``: every concept's verdicts, rule and sound.

One self-contained page (:mod:`steerlab.reporting`: figures and audio inlined, wide tables
scrolling in their own box) written at the end of a run, atomically. Per concept: the rule with
its thresholds and rationale, the controls that can vouch for it (or why none can), the oracle,
a map of the pass share of every (model, layer, path) by (method, removal) with its colour bar,
the verdict table (label, pass share, best setting, medians with 95% intervals, null, controls,
oracle, validation), and players for one held-out pair: the pair itself (the oracle: "with" is
the ideal edit of "without"), the model's unpatched decode of each, and the patched decodes of
the measured model's best learned verdict (add, best removal) and of the null's add
(:func:`steerlab.battery.runner.save_examples`). For ``partial`` (run by ``steerlab partials``)
the examples are those partials chose, and its own report.html sits in its folder.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from steerlab import reporting

REPORT = "report.html"
CSS = ".lab-steerable{color:#063;font-weight:bold}.small{font-size:11px;color:#555}"
# what each saved example is, in the order the page plays them
_PLAYED = (
    ("without", "the pair's without-signal (input)"),
    ("with", "the pair's with-signal: the oracle, the ideal edit of without"),
    ("baseline without", "decode of without, unpatched"),
    ("patched add", "decode of without, the best direction added"),
    ("baseline with", "decode of with, unpatched"),
    ("patched remove", "decode of with, the best removal"),
    ("patched null add", "decode of without, the null (random) direction added"),
)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return html.escape(str(v))


def _ci(row: Mapping[str, Any], key: str) -> str:
    m, lo, hi = (row.get(f"{key}_{s}") for s in ("median", "ci_lo", "ci_hi"))
    return f"{_fmt(m)}<br><span class=small>[{_fmt(lo)}, {_fmt(hi)}]</span>" if m is not None else "–"


def _control(row: Mapping[str, Any]) -> str:
    c = row.get("control")
    if isinstance(c, dict):
        return "<br>".join(f"{html.escape(k)}: {_fmt(v)}" for k, v in c.items()) or "no control"
    return _fmt(c)


def verdict_table(rows: list[dict[str, Any]]) -> str:
    """Every verdict of a concept as an HTML table in a scrolling box."""
    head = (
        "model", "role", "layer", "variant", "method", "path", "removal", "label", "pass share",
        "best add (unit)", "best removal", "target add", "damage add", "target remove", "damage remove",
        "null steerable", "controls", "oracle pass", "validation",
    )  # fmt: skip
    out = ["<table><tr>", *(f"<th>{h}</th>" for h in head), "</tr>"]
    for v in rows:
        label = _fmt(v.get("label"))
        cls = " class=lab-steerable" if v.get("label") == "steerable" else ""
        cells = [
            _fmt(v.get("model")),
            _fmt(v.get("model_role")),
            _fmt(v.get("layer")),
            _fmt(v.get("variant")),
            _fmt(v.get("method")),
            _fmt(v.get("path")),
            _fmt(v.get("removal")),
            f"<span{cls}>{label}</span>",
            _fmt(v.get("pass_share"), 2),
            _strength(v.get("best_add_strength"), v.get("best_add_strength_unit"), v.get("removal")),
            _fmt(v.get("best_remove")),
            _ci(v, "target_add"),
            _ci(v, "damage_add"),
            _ci(v, "target_remove"),
            _ci(v, "damage_remove"),
            _fmt(v.get("null_steerable")),
            _control(v),
            _fmt(v.get("oracle_pass_share"), 2),
            _fmt(v.get("validation"))
            + (f"<br><span class=small>{_fmt(v['validation_reason'])}</span>" if v.get("validation_reason") else ""),
        ]
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return reporting.scroll("".join(out))


def pass_share_figure(concept: str, rows: list[dict[str, Any]]) -> bytes | None:
    """PNG: the pass share of every (model, layer, path) row by (method, removal) column, with a
    colour bar from 0 to 1; None without verdicts."""
    if not rows:
        return None
    units = list(dict.fromkeys((v["model"], v["layer"], v["path"]) for v in rows))
    cols = list(dict.fromkeys((v["method"], v["removal"]) for v in rows))
    share = np.full((len(units), len(cols)), np.nan)
    for v in rows:
        share[units.index((v["model"], v["layer"], v["path"])), cols.index((v["method"], v["removal"]))] = v[
            "pass_share"
        ]
    fig, axes = reporting.figure(2.6 + 0.75 * len(cols), 1.4 + 0.32 * len(units))
    ax = axes[0, 0]
    im = ax.imshow(share, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for i in range(len(units)):
        for j in range(len(cols)):
            if np.isfinite(share[i, j]):
                ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    ax.set_xticks(range(len(cols)), [f"{m}\n{r}" for m, r in cols], fontsize=7)
    ax.set_yticks(range(len(units)), [f"{m} {layer} ({p})" for m, layer, p in units], fontsize=7)
    fig.colorbar(im, ax=ax, label="pass share")
    ax.set_title(f"{concept}: share of held-out pairs passing both ways at the best setting", fontsize=9)
    return reporting.png(fig)


def _rule(rule: Mapping[str, Any]) -> str:
    req = "".join(f"; {html.escape(k)} &ge; {_fmt(v)}" for k, v in rule.get("requires", ()))
    return (
        f"<p><b>Rule</b> (fixed before any model was measured): target &ge; {_fmt(rule['min_target'])} "
        f"({html.escape(rule['target'])}), damage &le; {_fmt(rule['max_damage'])} ({html.escape(rule['damage'])})"
        f"{req}; steerable when one setting passes both ways on at least {_fmt(rule['min_share'])} of the "
        f"held-out pairs.<br><span class=note>{html.escape(rule['rationale'])}</span></p>"
    )


def _controls(t: Mapping[str, Any]) -> str:
    c = t.get("controls")
    if isinstance(c, dict) and c:
        items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in c.items())
        return f"<p><b>Positive controls</b> that can vouch:</p><ul>{items}</ul>"
    if t.get("no_control_reason"):
        return f"<p><b>No control</b>: {html.escape(str(t['no_control_reason']))}</p>"
    return f"<p><b>Controls</b>: {_fmt(c if not isinstance(c, dict) else 'none ran')}</p>"


def _oracle(t: Mapping[str, Any]) -> str:
    orc = t.get("oracle") or {}
    if not orc:
        return ""
    cells = "".join(
        f"<tr><td>{html.escape(m)}</td><td>{_fmt(o.get('pass_share'), 2)}</td><td>{_fmt(o.get('median_target'))}</td>"
        f"<td>{_fmt(o.get('median_damage'))}</td></tr>"
        for m, o in orc.items()
    )
    return "<p><b>Oracle</b> (the ideal edit, the pair itself, scored by the same rule):</p>" + reporting.scroll(
        f"<table><tr><th>model</th><th>pass share</th><th>median target</th><th>median damage</th></tr>{cells}</table>"
    )


def _strength(value: Any, unit: Any, removal: Any) -> str:
    """A best add strength with its unit (``× RMS``: times the layer's RMS norm; ``× pairs'``:
    times the pairs' own difference, the calibrated add), the unit read from the row or, in a
    folder written before rows named it, from the removal (:func:`~steerlab.battery.verdicts.strength_unit`)."""
    from steerlab.battery.verdicts import strength_unit

    if value is None:
        return _fmt(value)
    unit = unit or strength_unit(str(removal))
    return f"{_fmt(value)} {'× pairs’ diff' if unit == 'calibrated' else '× RMS'}"


def _add_op(removal: Any) -> str:
    """The add op a verdict of ``removal`` pairs with (``add_calibrated`` for the calibrated one)."""
    from steerlab.battery.verdicts import ADD_OF

    return ADD_OF.get(str(removal), "add")


def _players(folder: Path, ex: Mapping[str, Any]) -> str:
    played = {e["name"]: e for e in ex.get("examples", [])}
    if not played:
        return f"<p class=note>No audio: {html.escape(str(ex.get('reason', 'no examples were saved')))}.</p>"
    b = ex["best"]
    head = (
        f"<p><b>Listen</b>: held-out pair seed {ex['seed']}"
        + ("" if ex.get("seed_passes") else " (the best setting passes on none: the first pair)")
        + f"; the best verdict of {html.escape(b['model'])}: {html.escape(b['method'])} at "
        f"{html.escape(b['layer'])} ({html.escape(b['path'])}), {html.escape(str(b['label']))}, pass share "
        f"{_fmt(b['pass_share'], 2)}; {_add_op(b.get('removal'))} at strength "
        f"{_strength(ex['best_add_strength'], None, b.get('removal'))}, removal "
        f"{html.escape(str(ex['best_remove']))}.</p>"
    )
    players = []
    for name, what in _PLAYED:
        e = played.get(name)
        if e is None or not (folder / e["file"]).is_file():
            continue
        score = f" (target {_fmt(e['target'])}, damage {_fmt(e['damage'])})" if "target" in e else ""
        players.append(reporting.audio_file_player(folder / e["file"], f"{name}: {what}{score}"))
    return head + f"<div class=players>{''.join(players)}</div>"


def _partial_players(folder: Path, examples: list[dict[str, Any]]) -> str:
    players = []
    for ex in examples:
        b, p = (folder / "examples" / f"{ex['key']}_{k}.wav" for k in ("baseline", "patched"))
        if not (b.is_file() and p.is_file()):
            continue
        op = "ablate" if ex["op"] == "ablate" else f"add {ex['strength']:g}"
        what = (
            f"{ex['model']} {ex['layer']} {ex['target_hz']:g} Hz d={ex['density']} {ex['method']} {op} ({ex['path']})"
        )
        players.append(reporting.audio_file_player(b, f"{what}: baseline"))
        players.append(reporting.audio_file_player(p, f"{what}: patched"))
    if not players:
        return "<p class=note>No audio: steerlab partials saved no examples (its [run] examples = 0).</p>"
    return (
        "<p><b>Listen</b>: the baseline and patched decodes steerlab partials chose (its report.html in "
        f"partial/ has them with its figures).</p><div class=players>{''.join(players)}</div>"
    )


def _title(t: Mapping[str, Any]) -> str:
    """A concept's heading: its name, and its stimulus variant where not synthetic."""
    return str(t["concept"]) + (f" ({t['variant']})" if "variant" in t else "")


def _summary(doc: Mapping[str, Any]) -> str:
    rows = []
    for t in doc["concepts"]:
        mine = [v for v in t["verdicts"] if v.get("model_role") == "main" and v.get("method") != "random"]
        n = sum(v.get("label") == "steerable" for v in mine)
        top = max((v.get("pass_share") or 0.0 for v in mine), default=None)
        rows.append(
            f"<tr><td><a href='#{html.escape(t.get('folder', t['concept']))}'>{html.escape(_title(t))}</a></td>"
            f"<td>{n} of {len(mine)}</td><td>{_fmt(top, 2)}</td></tr>"
        )
    return reporting.scroll(
        "<table><tr><th>concept</th><th>verdicts labelled steerable (measured model, learned methods)</th>"
        f"<th>best pass share</th></tr>{''.join(rows)}</table>"
    )


def render(folder: Path, doc: Mapping[str, Any], examples: Mapping[str, Mapping[str, Any]]) -> str:
    """The page's HTML: ``doc`` as ``steerability.json`` holds it, ``examples`` per concept
    (:func:`steerlab.battery.runner.save_examples`'s document, or ``{"partials": [...]}``)."""
    parts = [
        f"<h1>steerlab steerability: {html.escape(str(doc['model']))}</h1>",
        "<p>Per concept: is its change a steerable variable of the model? A verdict is <b>steerable</b> when "
        "one add strength and one removal setting pass the concept's rule both ways on enough held-out pairs; "
        "the positive controls, the null (a random direction of the same norm) and the oracle (the ideal edit) "
        "stand beside it. Every number: steerability.json, summary.csv and each concept's folder. A best add "
        "strength is in one of two units, named beside it: <b>× RMS</b> (add, the ablate/subtract/reverse "
        "verdicts: times the activation's RMS norm at the layer) or <b>× pairs’ diff</b> (add_calibrated, the "
        "reverse_calibrated verdicts: times the training pairs' own mean difference along the direction; "
        "best_add_strength_unit rms or calibrated).</p>",
        _summary(doc),
    ]
    for t in doc["concepts"]:
        name = t["concept"]
        sub = folder / t.get("folder", name)  # a rendered-instrument run sits in its own folder
        parts.append(f"<section id='{html.escape(sub.name)}'><h2>{html.escape(_title(t))}</h2>")
        if t.get("delegated_to"):
            parts.append(f"<p class=note>Run by {html.escape(t['delegated_to'])}.</p>")
        if t.get("rule"):
            parts.append(_rule(t["rule"]))
        parts.append(_controls(t) + _oracle(t))
        fig = pass_share_figure(name, t["verdicts"])
        if fig is not None:
            parts.append(f"<p>{reporting.img(fig, f'{name} pass share')}</p>")
        parts.append(verdict_table(t["verdicts"]))
        ex = examples.get(sub.name, {})
        parts.append(_partial_players(sub, ex["partials"]) if "partials" in ex else _players(sub, ex))
        parts.append("</section>")
    return reporting.page("steerlab steerability", parts, CSS)


def write_report(folder: str | Path, doc: Mapping[str, Any], examples: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write ``folder/report.html`` atomically (:func:`render`); returns its path."""
    from steerlab.artifacts import atomic_path

    folder = Path(folder)
    out = folder / REPORT
    with atomic_path(out) as tmp:
        Path(tmp).write_text(render(folder, doc, examples), encoding="utf-8")
    return out
