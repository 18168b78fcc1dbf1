"""``steerlab partials`` is the battery's ``partial`` concept: ``steerlab steerability -C partial``
writes, in its ``partial/`` folder, every row ``steerlab partials`` writes for the same
configuration, field for field. (That ``steerlab partials --quick`` still writes the golden rows is
tests/test_redesign_identity.py's claim; here the two commands are compared with each other on a
tiny grid, so the alias is checked in seconds, not by a second quick run.)"""

from __future__ import annotations

import json

from click.testing import CliRunner
from test_partials_run import TINY

from steerlab.cli import get_cli


def _rows(folder) -> dict[str, dict]:
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    return {r["key"]: r for r in rows}


def test_steerability_partial_rows_are_the_partials_rows(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    cfg = str(tmp_path / "tiny.toml")
    a = CliRunner().invoke(get_cli(), ["partials", "-c", cfg, "-o", str(tmp_path / "partials")])
    assert a.exit_code == 0, a.output
    b = CliRunner().invoke(get_cli(), ["steerability", "-C", "partial", "-c", cfg, "-o", str(tmp_path / "battery")])
    assert b.exit_code == 0, b.output
    direct, alias = _rows(tmp_path / "partials"), _rows(tmp_path / "battery" / "partial")
    assert len(direct) > 50 and direct.keys() == alias.keys()
    assert [k for k in direct if direct[k] != alias[k]] == []  # every field of every row, bitwise
    summary = json.loads((tmp_path / "battery" / "steerability.json").read_text())
    partial = summary["concepts"][0]
    assert partial["concept"] == "partial" and partial["verdicts"]
    assert all(v["label"] and "validation" in v for v in partial["verdicts"])
    # the shape every concept's table has: controls (model -> why), no_control_reason, validation
    ran = partial["control_summary"]["positive_models"]
    assert ran and set(partial["controls"]) == set(ran) and partial["no_control_reason"] is None
    assert partial["validation"] == partial["control_summary"]["validation"] and summary["stimuli"] == "synthetic"
    assert all(set(st) == {"status", "reason", "by_model", "by_control"} for st in partial["validation"].values())
    main = [v for v in partial["verdicts"] if v["model_role"] == "main" and v["method"] != "random"]
    assert all(set(v["control"]) == set(ran) and v["validation_reason"] for v in main)
    assert (tmp_path / "battery" / "partial" / "report.html").is_file()
