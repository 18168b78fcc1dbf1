"""Outputs of a finished partials run: ``summary.csv``, ``figures/`` and ``report.html``.

The report is one self-contained HTML file (figures and audio inlined as base64, built
with :mod:`steerlab.reporting`: example decodes play in the page, tables scroll rather than
widen it, titles are wrapped to fit their panels) that
puts, beside every verdict table, the two controls (the positive-control model and
the random null) and, per layer, the architecture's prediction (:mod:`steerlab.arch`)
with its rank agreement with the measured verdicts. Everything is regenerated from
``results.jsonl`` and ``run.json``, so changing only thresholds needs no new passes.
"""

from __future__ import annotations

import csv
import html
import math
from pathlib import Path
from typing import Any

import numpy as np

from steerlab import reporting
from steerlab.artifacts import atomic_path
from steerlab.partials.config import PartialsConfig
from steerlab.partials.verdicts import Verdict, control_summary, label, validation

SUMMARY, REPORT = "summary.csv", "report.html"


# ---- architecture prediction ------------------------------------------------------------------


def predictions(plans: list, cfg: PartialsConfig) -> dict[tuple, Any]:
    """(model, layer, family, target, density) -> :class:`steerlab.arch.Prediction`."""
    from steerlab import api
    from steerlab.arch import Mixture, predict

    out: dict[tuple, Any] = {}
    s = cfg.stimuli
    for plan in plans:
        all_layers = list(api.layers(plan.model))  # the whole path, so path Nyquist is right
        for family in cfg.grid.families:
            mix = Mixture(
                family,
                cfg.grid.f0_hz if family in ("harmonic", "chord") else None,
                cfg.grid.chord,
                s.band_low_hz,
                s.band_high_hz,
                s.min_separation_hz,
            )
            targets = plan.targets_hz
            if family == "instrument":  # the nearest MIDI note's fundamental, as the stimuli have it
                from steerlab.stimuli import midi_hz, nearest_midi

                targets = tuple(dict.fromkeys(midi_hz(nearest_midi(f)) for f in targets))
            rep = predict(all_layers, targets, plan.densities, mix, plan.model.name)
            for layer in plan.layers:
                for f in targets:
                    for d in rep.densities:
                        out[(plan.model.name, layer.name, family, float(f), int(d))] = rep.get(layer.name, f, d)
    return out


def agreement(vs: list[Verdict], preds: dict[tuple, Any]) -> list[dict[str, Any]]:
    """Agreement of the architecture's prediction with the measurement, per model, family,
    method and path: Spearman of predicted score with measured pass share and with the median
    gain adding (graded, so still defined when no unit passes), of predicted survival with the
    verdict, and the plain counts of units where prediction and verdict agree or not."""
    from steerlab.arch import rank_agreement

    groups: dict[tuple, list[Verdict]] = {}
    for v in vs:
        groups.setdefault((v.model, v.family, v.method, v.path), []).append(v)
    out = []
    for (model, family, method, path), g in groups.items():
        ps = [preds.get((v.model, v.layer, v.family, v.target_hz, v.density)) for v in g]
        score = [p.score if p is not None else None for p in ps]
        surv = [p.survives_path if p is not None else None for p in ps]
        pairs = [(bool(s), v.steerable) for s, v in zip(surv, g) if s is not None]
        out.append(
            {
                "model": model,
                "family": family,
                "method": method,
                "path": path,
                "n": len(g),
                "rho_score_share": rank_agreement(score, [v.pass_share for v in g]),
                "rho_survives_steerable": rank_agreement(surv, [float(v.steerable) for v in g]),
                "rho_score_gain": rank_agreement(score, [v.gain_db[0] for v in g]),
                "predicted_survive": sum(bool(s) for s in surv),
                "measured_steerable": sum(v.steerable for v in g),
                "agree": sum(p == m for p, m in pairs),
                "compared": len(pairs),
                "survives_not_steerable": sum(p and not m for p, m in pairs),
                "steerable_not_predicted": sum(m and not p for p, m in pairs),
            }
        )
    return out


# ---- summary.csv --------------------------------------------------------------------------------


def write_summary(
    path: Path, vs: list[Verdict], preds: dict, cfg: PartialsConfig, config_hash: str, weights: dict[str, str]
) -> None:
    thresholds = {f"threshold_{k}": v for k, v in cfg.thresholds.__dict__.items()}
    val = validation(vs)
    controls = sorted({v.model for v in vs if v.model_role == "positive_control"})
    rows = []
    for v in vs:
        p = preds.get((v.model, v.layer, v.family, v.target_hz, v.density))
        st = val.get((v.method, v.removal), {})
        per = st.get("by_control", {})
        rows.append(
            {
                **v.flat(),
                "verdict": label(v, val),
                "control_validation": st.get("status"),
                "control_validation_reason": st.get("reason"),
                # the same judged by each control alone: "validated", "not validated", "unchecked"
                **{f"control_validation_{c}": per.get(c, {}).get("status") for c in controls},
                "weights_sha256": weights.get(v.model),
                "predicted_score": None if p is None else p.score,
                "predicted_survives": None if p is None else p.survives_path,
                "aliased_to_hz": None if p is None else p.aliased_to,
                # the partial spacing the prediction compared with the layer's main lobe
                "predicted_spacing_hz": None if p is None else p.spacing_hz,
                **thresholds,
                "bootstrap": cfg.run.bootstrap,
                "seed": cfg.run.seed,
                "config_hash": config_hash,
            }
        )
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["config_hash"], lineterminator="\n")
            w.writeheader()
            w.writerows(rows)


# ---- figures ------------------------------------------------------------------------------------


def _figure(**kw: Any):
    return reporting.new_figure(**kw)


def _save(fig: Any, path: Path) -> Path:
    return reporting.save_png(fig, path, dpi=90)


def _heatmap(
    sel: list[Verdict],
    panels: list[tuple[str, Any]],
    layers: list[str],
    targets: list[float],
    dens: list[int],
    title: str,
    get: Any,
    lim: tuple[float, float],
    cmap: str,
    path: Path,
) -> Path:
    """One figure: panels (rows: ``panels`` as (label, predicate); columns: densities) of layer x target."""
    fig = _figure(figsize=(2.4 * len(dens) + 1.5, 1.3 + (0.45 * len(layers) + 0.9) * len(panels)))
    axes = np.atleast_2d(fig.subplots(len(panels), len(dens), squeeze=False))
    im = None
    for i, (name, keep) in enumerate(panels):
        for j, d in enumerate(dens):
            grid = np.full((len(layers), len(targets)), np.nan)
            mark = np.zeros_like(grid, dtype=bool)
            for v in sel:
                if keep(v) and v.density == d and v.layer in layers:
                    a, b = layers.index(v.layer), targets.index(v.target_hz)
                    grid[a, b], mark[a, b] = get(v), v.steerable
            ax = axes[i, j]
            im = ax.imshow(grid, vmin=lim[0], vmax=lim[1], cmap=cmap, aspect="auto", origin="upper")
            for a in range(len(layers)):
                for b in range(len(targets)):
                    if mark[a, b]:
                        ax.text(b, a, "✓", ha="center", va="center", color="white", fontsize=10)
            ax.set_xticks(range(len(targets)), [f"{t:g}" for t in targets], fontsize=7)
            ax.set_yticks(range(len(layers)), layers if j == 0 else [""] * len(layers), fontsize=7)
            ax.set_title(f"{name}, density {d}", fontsize=8)
            if i == len(panels) - 1:
                ax.set_xlabel("target Hz", fontsize=7)
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.suptitle(title, fontsize=9, wrap=True)
    return _save(fig, path)


def heatmaps(vs: list[Verdict], folder: Path, model: str, path: str, layers: list[str]) -> list[Path]:
    """Panels (method [and removal]) x density, each layer (rows) x target (columns): the pass
    share per removal method (✓ = steerable); the raw median gain adding beside the verdict's view
    of it (the gain counted only where the add is concentrated and spares the off-band, else 0 dB),
    and the median concentration. Gain panels are at the add strength of the best ablation recipe."""
    sel = [v for v in vs if v.model == model and v.path == path]
    if not sel:
        return []
    methods = list(dict.fromkeys(v.method for v in sel))
    removals = list(dict.fromkeys(v.removal for v in sel))
    dens = sorted({v.density for v in sel})
    targets = sorted({v.target_hz for v in sel})
    layers = [name for name in layers if any(v.layer == name for v in sel)]
    share_panels = [
        (f"{m}, {r}", (lambda v, m=m, r=r: v.method == m and v.removal == r))
        for m in methods
        for r in removals
        if any(v.method == m and v.removal == r for v in sel)  # sae_ablate: the sae method's only
    ]
    main_r = "ablate" if "ablate" in removals else removals[0]
    add_panels = [(m, (lambda v, m=m: v.method == m and v.removal == main_r)) for m in methods]
    head = f"{model}, {path} path"
    out = [
        _heatmap(
            sel,
            share_panels,
            layers,
            targets,
            dens,
            f"{head}: pass share per removal method (✓ steerable)",
            lambda v: v.pass_share,
            (0, 1),
            "viridis",
            folder / f"heatmap_{model}_{path}_share.png",
        ),
        _heatmap(
            sel,
            add_panels,
            layers,
            targets,
            dens,
            f"{head}: median gain adding (dB), raw",
            lambda v: v.gain_db[0],
            (-12, 24),
            "RdBu_r",
            folder / f"heatmap_{model}_{path}_gain.png",
        ),
        _heatmap(
            sel,
            add_panels,
            layers,
            targets,
            dens,
            f"{head}: what the verdict sees: median gain adding where concentrated and off-band spared (dB)",
            lambda v: v.gain_passing_db,
            (-12, 24),
            "RdBu_r",
            folder / f"heatmap_{model}_{path}_gain_verdict.png",
        ),
        _heatmap(
            sel,
            add_panels,
            layers,
            targets,
            dens,
            f"{head}: median concentration adding",
            lambda v: v.concentration_add[0],
            (0, 1),
            "magma",
            folder / f"heatmap_{model}_{path}_concentration.png",
        ),
    ]
    return out


def dose_response(
    rows: list[dict], folder: Path, model: str, path: str, layers: list[str], thresholds: Any
) -> Path | None:
    """Per density (panel rows) and layer: median gain adding against strength (× the layer's RMS
    norm), and beside it median loss subtracting against the calibrated strength (× the item's
    measured projection excess), one line per method; the dotted lines are the thresholds."""
    sel = [r for r in rows if r["model"] == model and r["path"] == path and r["op"] in ("add", "subtract")]
    if not sel:
        return None
    layers = [name for name in layers if any(r["layer"] == name for r in sel)]
    dens = sorted({r["density"] for r in sel})
    methods = list(dict.fromkeys(r["method"] for r in sel))
    fig = _figure(figsize=(3.0 * 2 * len(layers) + 0.5, 2.4 * len(dens) + 0.8))
    axes = np.atleast_2d(fig.subplots(len(dens), 2 * len(layers), squeeze=False))
    acc: dict[tuple, list[float]] = {}
    for r in sel:
        sign = 1.0 if r["op"] == "add" else -1.0
        acc.setdefault((r["density"], r["layer"], r["op"], r["method"], r["strength"]), []).append(sign * r["gain_db"])
    for i, d in enumerate(dens):
        for j, layer in enumerate(layers):
            for k, (op, xlabel, thr) in enumerate(
                (
                    ("add", "add: strength (× layer RMS norm)", thresholds.min_gain_db),
                    ("subtract", "subtract: strength (× projection)", thresholds.min_loss_db),
                )
            ):
                ax = axes[i, 2 * j + k]
                for m in methods:
                    xs = sorted(s for (dd, ll, oo, mm, s) in acc if (dd, ll, oo, mm) == (d, layer, op, m))
                    if xs:
                        ax.plot(
                            xs, [float(np.median(acc[(d, layer, op, m, x)])) for x in xs], marker="o", ms=3, label=m
                        )
                ax.axhline(thr, color="grey", lw=0.8, ls=":")
                ax.set_xscale("log")
                ax.set_title(f"{layer}, d={d}: {'gain' if op == 'add' else 'loss'}", fontsize=8)
                ax.set_xlabel(xlabel, fontsize=7)
                ax.tick_params(labelsize=7)
                if k == 0 and j == 0:
                    ax.set_ylabel("median dB at target", fontsize=7)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(f"{model}, {path} path: dose-response per density", fontsize=9)
    return _save(fig, folder / f"dose_{model}_{path}.png")


# ---- report.html --------------------------------------------------------------------------------


def _fmt(x: Any, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _controls_box(ctrl: dict, status: dict, orc: list[dict]) -> str:
    lines = []
    for name, st in (status.get("models") or {}).items():
        if st != "run":
            lines.append(f"<b class=bad>NOT RUN</b> positive control {html.escape(name)}: {html.escape(st)}")
            continue
        by = ctrl["positive_by_model"].get(name, {})
        ok = bool(by) and all(a == b for a, b in by.values())
        cells = ", ".join(f"{html.escape(k)} {a}/{b}" for k, (a, b) in by.items())
        lines.append(
            f"<b class={'ok' if ok else 'bad'}>{'PASS' if ok else 'FAIL'}</b> positive control "
            f"{html.escape(name)} ({html.escape(str(status['layers'].get(name)))}): steerable cells per "
            f"method/removal: {cells}"
        )
    if not lines:
        lines.append(f"<b class=bad>UNCHECKED</b> positive control: {html.escape(str(status.get('positive')))}")
    nok = ctrl["null_ok"]
    per = ", ".join(f"{m} {a}/{b}" for m, (a, b) in ctrl["null_by_model"].items())
    lines.append(
        f"<b class={'ok' if nok else 'bad'}>{'PASS' if nok else 'FAIL'}</b> null (norm-matched random "
        f"direction) steerable in {ctrl['null_steerable']}/{ctrl['null_total']} verdicts ({per}); must be 0"
    )
    n_ok = sum(o["steerable"] for o in orc)
    offs = [o["median_offband_db"] for o in orc if o["median_offband_db"] is not None]
    off = float(np.median(offs)) if offs else math.nan
    lines.append(
        f"<b class={'ok' if n_ok == len(orc) else 'bad'}>{'PASS' if n_ok == len(orc) else 'FAIL'}</b> oracle "
        f"(the exact partial added to / removed from the waveform, scored in the model's output space by the same scorer): passes in {n_ok}/{len(orc)} "
        f"stimulus units; median off-band distance {_fmt(off)} dB. Where the oracle fails, no direction can pass."
    )

    def per_control(v: dict) -> str:
        return "; ".join(
            f"{html.escape(c)}: {html.escape(p['status'])} ({p['steerable']}/{p['total']})"
            for c, p in v.get("by_control", {}).items()
        )

    vals = "".join(
        f"<li>{html.escape(k)}: <b class={'ok' if v['status'] == 'validated' else 'bad'}>"
        f"{html.escape(v['status'])}</b> ({html.escape(v['reason'])})<br><small>per control: "
        f"{per_control(v)}</small></li>"
        for k, v in ctrl["validation"].items()
        if v["status"] != "control"
    )
    lines.append(
        f"Validation per method/removal (a verdict of a method that is not validated is reported as "
        f"such, never as not steerable):<ul>{vals}</ul>"
    )
    return "<div class=controls>" + "<br>".join(lines) + "</div>"


def model_role(vs: list[Verdict], model: str) -> str:
    return next((v.model_role for v in vs if v.model == model), "main")


def _verdict_table(
    vs: list[Verdict], preds: dict, model: str, path: str, ctrl_html: str, val: dict | None = None
) -> str:
    val = validation(vs) if val is None else val
    sel = [v for v in vs if v.model == model and v.path == path]
    cols = [c for c in dict.fromkeys((v.method, v.removal) for v in sel) if c[0] != "random"]
    cols += [c for c in dict.fromkeys((v.method, v.removal) for v in sel) if c[0] == "random"]
    cells: dict[tuple, dict[tuple, Verdict]] = {}
    for s in sel:
        cells.setdefault((s.layer, s.family, s.target_hz, s.density), {})[(s.method, s.removal)] = s

    def status(m: str, r: str) -> str:
        st = val.get((m, r), {})
        per = "".join(f"<br>{html.escape(c)}: {html.escape(p['status'])}" for c, p in st.get("by_control", {}).items())
        return f"<small>{html.escape(st.get('status', ''))}{per}</small>"

    head = "".join(
        f"<th>{html.escape(m if m != 'random' else 'null (random)')}<br>add + {html.escape(r)}"
        f"<br>{status(m, r) if model_role(vs, model) == 'main' else ''}</th>"
        for m, r in cols
    )
    body = []
    for (layer, family, f, d), by in cells.items():
        p = preds.get((model, layer, family, f, d))
        pred = "–" if p is None else f"{'survives' if p.survives_path else 'no'} ({_fmt(p.score)})"
        tds = []
        for c in cols:
            v = by.get(c)
            if v is None:
                tds.append("<td>–</td>")
                continue
            word = label(v, val)
            cls = (
                "yes"
                if v.steerable
                else ("no" if word in ("not steerable", "null: not steerable", "control: not steerable") else "unv")
            )
            tip = (
                f"gain {_fmt(v.gain_db[0], 1)} dB [{_fmt(v.gain_db[1], 1)}, {_fmt(v.gain_db[2], 1)}], "
                f"loss {_fmt(v.loss_db[0], 1)} dB, conc {_fmt(v.concentration_add[0])}/"
                f"{_fmt(v.concentration_remove[0])}, off-band {_fmt(v.offband_add_db[0])}/"
                f"{_fmt(v.offband_remove_db[0])} dB; best add {v.best_add_strength}, remove {v.best_remove}"
            )
            tds.append(
                f"<td class={cls} title='{html.escape(tip)}'>{'✓' if v.steerable else '✗'} "
                f"{v.pass_share:.2f} <small>{html.escape(word)}</small><br><small>"
                f"{_fmt(v.gain_db[0], 1)}/{_fmt(v.loss_db[0], 1)} dB, c {_fmt(v.concentration_add[0])}"
                f"</small></td>"
            )
        body.append(
            f"<tr><td>{html.escape(layer)}</td><td>{family}</td><td>{f:g}</td><td>{d}</td>"
            f"<td>{pred}</td>{''.join(tds)}</tr>"
        )
    table = (
        f"<table><tr><th>layer</th><th>family</th><th>target Hz</th><th>density</th>"
        f"<th>predicted (score)</th>{head}</tr>{''.join(body)}</table>"
    )
    return f"<div class=pair>{reporting.scroll(table)}{ctrl_html}</div>"


CSS = """td,th{text-align:center;padding:3px 6px}
td.yes{background:#d9f2d9}td.no{background:#fbe3e3}td.unv{background:#eee;color:#666}.ok{color:#070}.bad{color:#b00}
.controls{border:2px solid #888;padding:6px;margin:6px 0;background:#f7f7f7;max-width:420px;flex:0 0 360px}
.pair{display:flex;gap:1em;align-items:flex-start}.pair>.scroll{flex:1 1 auto;min-width:0}
.pair>img{min-width:0}"""


def write_report(
    folder: Path,
    outcome: Any,
    cfg: PartialsConfig,
    vs: list[Verdict],
    preds: dict,
    agree: list[dict],
    figures: list[Path],
    run_doc: dict,
) -> dict[str, Any]:
    """Write report.html; returns the controls summary (with the oracle's counts)."""
    from steerlab.partials.verdicts import oracle

    ctrl = control_summary(vs)
    status = outcome.control_status
    orc = oracle(outcome.plans, cfg.thresholds, cfg.scoring.options(), cfg.run.max_batch)
    ctrl["oracle_steerable"], ctrl["oracle_total"] = sum(o["steerable"] for o in orc), len(orc)
    ctrl["oracle_units"] = orc  # per (model, family, target, density): pass share and medians
    cbox = _controls_box(ctrl, status, orc)
    val = validation(vs)
    t = cfg.thresholds
    parts = ["<h1>Are partials steerable? — steerlab partials</h1>"]
    models = "".join(
        f"<li>{html.escape(p.model.name)} ({p.role}): weights sha256 <code>"
        f"{run_doc['weights_sha256'][p.model.name][:16]}</code>, layers "
        f"{', '.join(layer.name for layer in p.layers)}; paths {', '.join(p.paths)}; targets "
        f"{', '.join(f'{x:g}' for x in p.targets_hz)} Hz; densities {', '.join(map(str, p.densities))}; "
        f"sounds in {p.margin_s * 1000:.0f} ms of silent margin either side"
        f"{'; skipped stimuli ' + html.escape(str(p.skipped)) if p.skipped else ''}</li>"
        for p in outcome.plans
    )
    vers = ", ".join(f"{k} {v}" for k, v in run_doc["versions"].items())
    parts.append(
        f"<p>config hash <code>{outcome.config_hash}</code>; seed {cfg.run.seed}; "
        f"{'quick grid; ' if run_doc.get('quick') else ''}{len(outcome.rows)} rows; versions: {vers}</p>"
        f"<ul>{models}</ul>"
    )
    parts.append(
        f"<h2>Rule</h2><p>Steerable when one add strength gains ≥ {t.min_gain_db:g} dB in the "
        f"{cfg.scoring.band_hz:g} Hz band at the target and one removal (subtract or ablate) loses ≥ "
        f"{t.min_loss_db:g} dB, each with concentration ≥ {t.min_concentration:g} and off-band "
        f"log-spectral distance ≤ {t.max_offband_db:g} dB, on ≥ {t.min_share:.0%} of held-out stimuli "
        f"({cfg.stimuli.test_seeds} per unit; directions learned on {cfg.stimuli.train_seeds} others). "
        "Removal is judged twice, by ablation and by calibrated subtraction (strength × the item's measured "
        "projection excess along the direction), each with its own verdict. "
        "Cells: ✓/✗, pass share, the verdict's name, median gain/loss (dB), median concentration adding; "
        "hover for CIs. A method's verdicts are called steerable or not steerable only where that method "
        "passed on every positive control (and the null failed there); otherwise they read "
        "<i>not validated</i> (a control failed) or <i>unchecked</i> (no control ran it).</p>"
    )
    parts.append("<h2>Controls</h2>" + cbox)
    for plan in outcome.plans:
        for path in plan.paths:
            parts.append(f"<h2>{html.escape(plan.model.name)} — {path} path ({plan.role})</h2>")
            parts.append(_verdict_table(vs, preds, plan.model.name, path, cbox, val))
    parts.append(
        "<h2>Prediction from the architecture vs measurement</h2><p>Predicted score and survival "
        "from <code>steerlab arch</code> (strides, kernels, Nyquist, aliasing, main lobe against "
        "partial spacing) against the measurement: units where predicted survival and verdict agree "
        "(with the two kinds of disagreement), and Spearman rank correlations of the predicted score "
        "with the pass share and with the median gain adding (graded: defined even when no unit passes), "
        "and of predicted survival with the verdict (– when undefined, e.g. one side constant). "
        "The prediction says where a partial can survive, not that a given direction isolates it; the "
        "null's rows are the control, expected to disagree wherever the partial survives.</p>"
        "<div class=scroll><table><tr><th>model</th><th>family</th><th>method</th><th>path</th>"
        "<th>units</th><th>predicted survive</th><th>measured steerable</th><th>agree</th>"
        "<th>survives, not steerable</th><th>steerable, not predicted</th><th>ρ(score, share)</th>"
        "<th>ρ(survives, steerable)</th><th>ρ(score, gain)</th></tr>"
    )
    for a in agree:
        parts.append(
            f"<tr><td>{a['model']}</td><td>{a['family']}</td><td>{a['method']}</td><td>{a['path']}</td>"
            f"<td>{a['n']}</td><td>{a['predicted_survive']}</td><td>{a['measured_steerable']}</td>"
            f"<td>{a['agree']}/{a['compared']}</td><td>{a['survives_not_steerable']}</td>"
            f"<td>{a['steerable_not_predicted']}</td>"
            f"<td>{_fmt(a['rho_score_share'])}</td><td>{_fmt(a['rho_survives_steerable'])}</td>"
            f"<td>{_fmt(a['rho_score_gain'])}</td></tr>"
        )
    parts.append("</table></div><h2>Figures</h2>")
    for fig in figures:
        if (
            fig.name.endswith("_gain.png")
            and fig.with_name(fig.name.replace("_gain.png", "_gain_verdict.png")) in figures
        ):
            twin = fig.with_name(fig.name.replace("_gain.png", "_gain_verdict.png"))
            parts.append(
                "<div class=pair>"
                + reporting.img(fig.read_bytes(), fig.name, "max-width:49%")
                + reporting.img(twin.read_bytes(), twin.name, "max-width:49%")
                + "</div>"
            )
        elif not fig.name.endswith("_gain_verdict.png"):
            parts.append(f"<p>{reporting.img(fig.read_bytes(), fig.name)}</p>")
    parts.append(
        "<h2>Listen: baseline vs patched decodes</h2><div class=scroll><table><tr><th>model</th><th>layer</th>"
        "<th>target</th><th>method</th><th>intervention</th><th>baseline</th><th>patched</th></tr>"
    )
    for ex in outcome.examples:
        b = folder / "examples" / f"{ex['key']}_baseline.wav"
        p = folder / "examples" / f"{ex['key']}_patched.wav"
        if not (b.is_file() and p.is_file()):
            continue
        op = "ablate" if ex["op"] == "ablate" else f"add {ex['strength']:g}"
        parts.append(
            f"<tr><td>{ex['model']}</td><td>{ex['layer']}</td><td>{ex['target_hz']:g} Hz d={ex['density']}"
            f"</td><td>{ex['method']}</td><td>{op} ({ex['path']})</td>"
            f"<td>{reporting.audio_file_player(b)}</td><td>{reporting.audio_file_player(p)}</td></tr>"
        )
    parts.append("</table></div>")
    out = folder / REPORT
    with atomic_path(out) as tmp:
        tmp.write_text(reporting.page("steerlab partials", "".join(parts), CSS))
    return ctrl


def write_outputs(outcome: Any, cfg: PartialsConfig) -> dict[str, Any]:
    """summary.csv, figures and report.html for a finished run; returns the controls and agreement."""
    from steerlab import schema
    from steerlab.partials.runner import FORMAT, RUN_SCHEMA
    from steerlab.partials.verdicts import verdicts

    folder = outcome.folder

    run_doc = schema.read_json(folder / "run.json", RUN_SCHEMA, format=FORMAT, what="steerlab partials run")
    vs = verdicts(outcome.rows, cfg.thresholds, cfg.run.bootstrap, cfg.run.seed)
    preds = predictions(outcome.plans, cfg)
    agree = agreement(vs, preds)
    write_summary(folder / SUMMARY, vs, preds, cfg, outcome.config_hash, run_doc["weights_sha256"])
    figdir = folder / "figures"
    figdir.mkdir(exist_ok=True)
    figures: list[Path] = []
    for plan in outcome.plans:
        names = [layer.name for layer in plan.layers]
        for path in plan.paths:
            figures += heatmaps(vs, figdir, plan.model.name, path, names)
            d = dose_response(outcome.rows, figdir, plan.model.name, path, names, cfg.thresholds)
            if d is not None:
                figures.append(d)
    ctrl = write_report(folder, outcome, cfg, vs, preds, agree, figures, run_doc)
    from steerlab.artifacts import atomic_write_json

    atomic_write_json(
        {"format": "steerlab-partials-oracle", "config_hash": outcome.config_hash, "units": ctrl["oracle_units"]},
        folder / ORACLE_FILE,
    )
    return {"verdicts": vs, "controls": ctrl, "agreement": agree}


ORACLE_FILE = "oracle.json"  # the oracle per (model, family, target, density), beside summary.csv


def side_by_side(folders: list, method: str = "diffmeans") -> str:
    """A markdown table putting finished ``steerlab partials`` runs side by side (issue 12:
    the codec against CREPE): per model, layer, family, target and density, the architecture's
    prediction (score, survives), the oracle's pass share, and the verdict of ``method`` by
    ablation and by subtraction with its control validation and the median gain adding / loss
    ablating, read from each folder's ``summary.csv`` and ``oracle.json``. Only the measured
    models' rows (not the controls'). Raises ``OutputError`` for a folder without them."""
    import csv
    import json
    from pathlib import Path

    from steerlab.errors import OutputError

    lines = [
        "| model | layer (main lobe) | family | target Hz | density | predicted (score) | oracle | "
        "ablate | subtract | validation | gain add dB | loss ablate dB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for folder in folders:
        f = Path(folder)
        if not (f / SUMMARY).is_file() or not (f / ORACLE_FILE).is_file():
            raise OutputError(f"{f} holds no finished steerlab partials run ({SUMMARY}, {ORACLE_FILE})")
        rows = [r for r in csv.DictReader(open(f / SUMMARY)) if r["model_role"] == "main" and r["method"] == method]
        orc = {
            (o["model"], o["family"], round(float(o["target_hz"]), 4), int(o["density"])): o
            for o in json.loads((f / ORACLE_FILE).read_text())["units"]
        }
        run = json.loads((f / "run.json").read_text())
        lobes = {}
        for m in run["models"]:
            for layer in m["layers"]:
                rf = layer.get("receptive_field_samples")
                lobes[(m["name"], layer["name"])] = f"{m['sample_rate'] / rf:.0f} Hz" if rf else "?"
        cells: dict[tuple, dict] = {}
        for r in rows:
            k = (r["model"], r["layer"], r["family"], round(float(r["target_hz"]), 4), int(r["density"]), r["path"])
            cells.setdefault(k, {})[r["removal"]] = r
        for (model, layer, fam, t, d, path), by in cells.items():
            a, sub = by.get("ablate", {}), by.get("subtract", {})
            o = orc.get((model, fam, t, d))
            surv = a.get("predicted_survives")
            score = a.get("predicted_score")
            pred = "–" if surv in (None, "") else f"{'survives' if surv == 'True' else 'no'} ({float(score):.2f})"
            name = model + ("" if path == "continuous" else f" ({path})")
            lines.append(
                f"| {name} | {layer} ({lobes.get((model, layer), '?')}) | {fam} | {t:g} | {d} | {pred} | "
                f"{'–' if o is None else format(o['pass_share'], '.2f')} | {_said(a)} | {_said(sub)} | "
                f"{a.get('control_validation', '–')} | {_num(a.get('gain_db_median'))} | {_num(a.get('loss_db_median'))} |"
            )
    return "\n".join(lines)


def _said(r: dict) -> str:
    """A summary row's verdict, with its pass share only where the controls let it be read."""
    word = r.get("verdict", "–")
    return word if word in ("not validated", "unchecked", "–") else f"{word} ({r.get('pass_share', '–')})"


def _num(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    return "–" if not math.isfinite(v) else f"{v:.1f}"
