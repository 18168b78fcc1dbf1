"""The verdict counts docs/partials.md reports for its reduced run are what that run measures.

docs/partials.md holds the reduced configuration (the TOML block after the marker
``<!-- partials-reduced-config -->``) and, after ``<!-- partials-reduced-counts -->``, a table of
steerable cells per model, path, method and removal method with the validation each method got
from the positive controls. This test runs that configuration (the embedded codec and both
registered positive controls; about 15 s of CPU) and compares every row, so a change to the code
that moves a verdict, or to the docs that misreports one, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "partials.md"


def _doc_parts() -> tuple[str, dict[tuple[str, str, str, str], tuple[str, str]]]:
    text = DOC.read_text()
    cfg = re.search(r"<!-- partials-reduced-config -->\s*```toml\n(.*?)```", text, re.S)
    table = re.search(r"<!-- partials-reduced-counts -->\s*\n((?:\|.*\n)+)", text)
    assert cfg and table, "docs/partials.md lost its reduced-run markers"
    rows = {}
    for line in table.group(1).splitlines()[2:]:  # header and rule
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        model, path, method, removal, steerable, validation = cells
        rows[(model, path, method, removal)] = (steerable, validation)
    return cfg.group(1), rows


def test_docs_reduced_run_counts_are_measured(tmp_path):
    from steerlab import partials, plugins

    toml, documented = _doc_parts()
    if "stft_24khz" not in plugins.models().names():
        pytest.fail("the documented reduced run uses the stft_24khz positive control, which is not registered")
    (tmp_path / "reduced.toml").write_text(toml)
    cfg = partials.build(tmp_path / "reduced.toml")
    _, out = partials.run(cfg, tmp_path / "run")
    val = out["controls"]["validation"]
    measured = {}
    for v in out["verdicts"]:
        key = (v.model, v.path, v.method, v.removal)
        a, b = measured.get(key, (0, 0))
        measured[key] = (a + v.steerable, b + 1)
    got = {}
    for (model, path, method, removal), (a, b) in measured.items():
        role = next(v.model_role for v in out["verdicts"] if v.model == model)
        st = (
            "control"
            if role == "positive_control"
            else "null"
            if method == "random"
            else val[f"{method}/{removal}"]["status"]
        )
        got[(model, path, method, removal)] = (f"{a}/{b}", st)
    assert got == documented
    # and the run says which control failed a method that is not validated
    for v in val.values():
        if v["status"] == "not validated":
            assert any(p["status"] == "not validated" for p in v["by_control"].values())
