"""``steerlab partials`` is the battery's ``partial`` concept: ``steerlab steerability -C partial
--quick`` writes, in its ``partial/`` folder, every row ``steerlab partials --quick`` writes, equal to
the golden rows test_redesign_identity.py pins (bitwise on the golden files' machine fingerprint,
floats to 1e-5 elsewhere, with the same comparison)."""

from __future__ import annotations

import gzip
import json

from test_redesign_identity import BITWISE, GOLDEN, _same, _steerlab


def test_steerability_partial_rows_are_the_partials_quick_rows(tmp_path):
    _steerlab("steerability", "-C", "partial", "--quick", "-o", "run", cwd=tmp_path)
    text = (tmp_path / "run" / "partial" / "results.jsonl").read_text()
    rows = {r["key"]: r for r in map(json.loads, text.splitlines())}
    with gzip.open(GOLDEN / "partials-quick-results.jsonl.gz", "rt") as fh:
        golden = {r["key"]: r for r in map(json.loads, fh.read().splitlines())}
    assert rows.keys() == golden.keys(), f"{len(rows.keys() ^ golden.keys())} row keys differ"
    for row in (*rows.values(), *golden.values()):
        row.pop("versions")
    differences = [d for key in golden for d in _same(rows[key], golden[key], key)]
    assert differences == [], f"{len(differences)} differences ({'bitwise' if BITWISE else 'float 1e-5'})"
    summary = json.loads((tmp_path / "run" / "steerability.json").read_text())
    partial = summary["concepts"][0]
    assert partial["concept"] == "partial" and partial["verdicts"]
    assert all(v["label"] and "validation" in v for v in partial["verdicts"])
    assert (tmp_path / "run" / "partial" / "report.html").is_file()
