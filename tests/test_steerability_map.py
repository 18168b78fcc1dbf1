"""The steerability map reads finished runs back without recomputing: each cell's word follows the
labels the runs wrote (a validated verdict is a finding; the rest are not), layers are ordered by
their hop, and the survey's decodability sits beside the verdicts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from steerlab.battery import map as smap
from steerlab.errors import ConfigError

LAYERS = {
    "name": "m",
    "sample_rate": 24000,
    "layers": [
        {"name": "latent", "kind": "latent", "hop_samples": 320},
        {"name": "enc.0", "kind": "conv", "hop_samples": 1},
    ],
}


def _row(concept_layer: str, method: str, label: str, role: str = "main", share: float = 0.0) -> dict:
    return {
        "model": "m",
        "model_role": role,
        "layer": concept_layer,
        "variant": "synthetic",
        "method": method,
        "path": "continuous",
        "removal": "ablate",
        "label": label,
        "pass_share": share,
    }


def _battery(tmp: Path) -> Path:
    f = tmp / "bat"
    (f / "note").mkdir(parents=True)
    (f / "note" / "run.json").write_text(json.dumps({"models": [LAYERS]}))
    doc = {
        "model": "m",
        "concepts": [
            {
                "concept": "note",
                "controls": {"stft_24khz": "why"},
                "verdicts": [
                    _row("latent", "diffmeans", "not steerable", share=0.25),
                    _row("latent", "diffmeans", "steerable", share=1.0),
                    _row("latent", "probe", "not validated"),
                    _row("latent", "random", "null: not steerable"),
                    _row("enc.0", "diffmeans", "not steerable"),
                    _row("enc.0", "diffmeans", "stft", role="positive_control"),
                ],
            },
            {"concept": "onset", "controls": "no control", "verdicts": [_row("enc.0", "diffmeans", "not validated")]},
        ],
    }
    (f / "steerability.json").write_text(json.dumps(doc))
    return f


def _partials(tmp: Path) -> Path:
    f = tmp / "par"
    f.mkdir()
    (f / "run.json").write_text(json.dumps({"models": [{**LAYERS, "name": "crepe"}]}))
    keys = ["model", "model_role", "layer", "family", "target_hz", "density", "method", "path", "removal"]
    keys += ["steerable", "control_validation", "verdict", "pass_share"]
    rows = [
        ["inharmonic", "diffmeans", "False", "validated", "not steerable", "0.25"],
        ["instrument", "diffmeans", "False", "not validated", "not validated", "0"],
        ["inharmonic", "random", "False", "control", "null: not steerable", "0"],
    ]
    with open(f / "summary.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for fam, meth, st, val, word, share in rows:
            w.writerow(
                dict(
                    zip(
                        keys,
                        ["crepe", "main", "enc.0", fam, "300.0", "1", meth, "output", "ablate", st, val, word, share],
                    )
                )
            )
    units = [
        {"model": "crepe", "family": fam, "target_hz": 300, "density": 1, "pass_share": p, "steerable": False}
        for fam, p in (("inharmonic", 0.5), ("instrument", 0.0))
    ]
    (f / "oracle.json").write_text(json.dumps({"units": units}))
    return f


def _survey(tmp: Path) -> Path:
    f = tmp / "sur"
    f.mkdir()
    dec = {"note": {"value": 0.9, "chance": {"ci95": [0.3, 0.7]}, "status": "beyond chance"}}
    rows = [
        {
            "model": "m",
            "layer": "enc.0",
            "layer_info": {"kind": "conv", "hop_samples": 1},
            "sample_rate": 24000,
            "decodability": dec,
        }
    ]
    (f / "report.json").write_text(json.dumps({"rows": rows}))
    return f


def test_cells_words_counts_order_and_decodability(tmp_path: Path) -> None:
    doc = smap.build([_battery(tmp_path)], [_partials(tmp_path)], _survey(tmp_path))
    assert doc["columns"] == [["m", "enc.0"], ["m", "latent"], ["crepe", "enc.0"]]  # by hop, not by name
    assert doc["concepts"] == ["partial", "partial (instrument)", "note", "onset"]
    by = {(c["concept"], c["model"], c["layer"]): c for c in doc["cells"]}
    latent = by[("note", "m", "latent")]
    assert latent["word"] == "steerable"  # one steerable verdict makes the word; the null is left out
    assert latent["methods"]["diffmeans"]["labels"] == {"not steerable": 1, "steerable": 1}
    assert latent["methods"]["diffmeans"]["best_pass_share"] == 1.0
    assert latent["methods"]["probe"]["word"] == "not validated"
    enc = by[("note", "m", "enc.0")]
    assert enc["methods"]["diffmeans"]["n_verdicts"] == 1  # the control's row is not the model's
    assert enc["decodability"] == {
        "accuracy": 0.9,
        "chance_hi": 0.7,
        "status": "beyond chance",
        "random_weights_accuracy": None,
    }
    assert by[("onset", "m", "enc.0")]["word"] == "no control"
    crepe = by[("partial", "crepe", "enc.0")]["methods"]["diffmeans"]
    assert crepe["word"] == "not steerable" and crepe["labels"] == {"not steerable": 1}
    assert crepe["oracle_pass_share_range"] == [0.5, 0.5]
    rendered = by[("partial (instrument)", "crepe", "enc.0")]["methods"]["diffmeans"]
    assert rendered["word"] == "not validated" and rendered["oracle_pass_share_range"] == [
        0.0,
        0.0,
    ]  # the ideal edit, per unit of the run's oracle.json
    assert by[("partial", "m", "enc.0")]["word"] == "not run"
    md = smap.markdown(doc)
    assert "DM: steerable 1/2; probe: not validated 1/1" in md and "0.90 (chance <= 0.70)" in md
    assert "ideal edit 0.50 (fails)" in md and crepe["oracle_fails_everywhere"] is True
    assert len(doc["inputs"]) == 6 and all(len(i["sha256"]) == 64 for i in doc["inputs"])


def test_cli_writes_png_svg_md_json_and_refuses_a_wrong_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "map" / "m.png"
    assert smap.main(["--battery", str(_battery(tmp_path)), "-o", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG" and out.with_suffix(".svg").stat().st_size > 0
    assert json.loads(out.with_suffix(".json").read_text())["command_line"].startswith("python -m steerlab.battery.map")
    assert smap.main(["--battery", str(tmp_path), "-o", str(out)]) == 2
    assert "no steerability.json" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        smap.build()


def test_a_concept_without_control_reads_the_same_in_both_shapes(tmp_path: Path) -> None:
    """steerability.json's uniform shape (``controls`` empty, ``no_control_reason`` beside it) and
    the older one (``controls: "no control"``) give the same rows."""
    from steerlab.battery.map import read_battery

    old = _battery(tmp_path)
    new = tmp_path / "new"
    new.mkdir()
    doc = json.loads((old / "steerability.json").read_text())
    onset = doc["concepts"][-1]
    onset.update(controls={}, no_control_reason="no control resolves an attack")
    doc["concepts"][0]["no_control_reason"] = None
    (new / "steerability.json").write_text(json.dumps(doc))
    rows_old, rows_new = read_battery(old)[0], read_battery(new)[0]
    assert [r["no_control"] for r in rows_old] == [r["no_control"] for r in rows_new] == [False] * 4 + [True]


def _many(doc: dict, n: int) -> dict:
    """``doc`` with its first concept's cells repeated as ``n`` concepts with longer names."""
    first = doc["concepts"][0]
    names = [first] + [f"{first} variant {i} (a long concept name)" for i in range(1, n)]
    cells = [{**c, "concept": name} for name in names for c in doc["cells"] if c["concept"] == first]
    return {**doc, "concepts": names, "cells": cells}


@pytest.mark.parametrize("n_concepts", [1, 2, 7])
def test_the_map_lays_out_every_label_inside_the_figure(tmp_path: Path, n_concepts: int) -> None:
    """One concept gave a 2-inch-high figure: constrained layout gave up (a UserWarning) and the
    title, the row label ("oudness") and the column labels were clipped. Every text must now lie
    inside the figure and the grid keep a real size, for one concept as for many."""
    import warnings

    doc = _many(smap.build([_battery(tmp_path)]), n_concepts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied" fails the test
        fig = smap.map_figure(doc)
        fig.draw_without_rendering()  # runs the layout as savefig does
    ax = fig.axes[0]
    box = fig.bbox
    assert [t.get_text()[:17] for t in fig.texts] == ["steerability map:"]
    texts = [*fig.texts, *ax.get_xticklabels(), *ax.get_yticklabels(), *fig.legends[0].get_texts()]
    assert len(ax.get_yticklabels()) == n_concepts
    for t in texts:
        e = t.get_window_extent()
        assert box.x0 <= e.x0 and e.x1 <= box.x1 and box.y0 <= e.y0 and e.y1 <= box.y1, t.get_text()
    grid = ax.get_window_extent()
    assert grid.height / n_concepts > 0.5 * fig.dpi and grid.width / len(doc["columns"]) > 1.0 * fig.dpi
    legend = fig.legends[0].get_window_extent()
    assert legend.y1 <= min(t.get_window_extent().y0 for t in ax.get_xticklabels())  # below the labels
    smap.figure(doc, tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
