"""``steerlab partials-compare``: finished partials runs side by side (issue 12, the codec against
CREPE). Two small real runs (the codec on rendered instruments, CREPE tiny on sinusoids, one unit
each, the filterbank as positive control); the numbers in report.json are recounted from each run's
own summary.csv and oracle.json, and the validation marks must be those the runs gave. About 40 s.
"""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from conftest import import_or_skip

import_or_skip("steerlab.builtins.crepe")

TOML = """
[grid]
layers = ["first_conv"]
targets_hz = [300.0]
densities = [1]
families = ["{family}"]
strengths = [0.3, 1.0]
subtract_strengths = [1.0]
methods = ["diffmeans", "random"]
[stimuli]
duration_s = 0.25
band_high_hz = 7200.0
train_seeds = 2
test_seeds = 3
[controls]
positive_models = ["filterbank_24khz"]
[run]
model = "{model}"
max_batch = 16
probe_frames = 64
examples = 0
bootstrap = 100
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from steerlab import partials

    d = tmp_path_factory.mktemp("compare")
    out = []
    for model, family in (("tiny_encodec_24khz", "instrument"), ("crepe_tiny_16khz", "inharmonic")):
        (d / f"{model}.toml").write_text(TOML.format(model=model, family=family))
        partials.run(partials.build(d / f"{model}.toml"), d / model)
        out.append(d / model)
    return out


def _summary(folder):
    with open(folder / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def _recount(folder):
    """(model, path, layer, family, column) -> (steerable, units, status), from the run's own files."""
    cells = {}
    for r in _summary(folder):
        if r["model_role"] != "main":
            continue
        k = (r["model"], r["path"], r["layer"], r["family"], f"{r['method']}/{r['removal']}")
        a, n, st = cells.get(k, (0, 0, set()))
        cells[k] = (a + (r["steerable"] == "True"), n + 1, st | {r["control_validation"]})
        units = {
            (float(x["target_hz"]), int(x["density"])): x
            for x in _summary(folder)
            if x["model"] == r["model"]
            and x["layer"] == r["layer"]
            and x["path"] == r["path"]
            and x["family"] == r["family"]
            and x["method"] == r["method"]
            and x["removal"] == r["removal"]
        }
        kp = (*k[:4], "predicted")
        cells[kp] = (sum(x["predicted_survives"] == "True" for x in units.values()), len(units), {"architecture"})
    oracle = json.loads((folder / "oracle.json").read_text())["units"]
    for k in [k for k in cells if k[4] == "predicted"]:
        mine = [o for o in oracle if o["model"] == k[0] and o["family"] == k[3]]
        cells[(*k[:4], "oracle")] = (sum(o["steerable"] for o in mine), len(mine), {"ideal edit"})
    return cells


def test_report_numbers_equal_those_recounted_from_each_run(runs, tmp_path):
    from steerlab.partials.compare import compare

    doc = compare(runs, tmp_path / "cmp", argv=["steerlab", "partials-compare", *map(str, runs), "-o", "cmp"])
    on_disk = json.loads((tmp_path / "cmp" / "report.json").read_text())
    assert on_disk["cells"] == json.loads(json.dumps(doc["cells"]))
    expected = {}
    for folder in runs:
        expected.update(_recount(folder))
    got = {(c["model"], c["path"], c["layer"], c["family"], c["column"]): c for c in on_disk["cells"]}
    assert set(got) == set(expected)
    for k, (steerable, units, status) in expected.items():
        c = got[k]
        assert (c["steerable"], c["units"]) == (steerable, units), k
        assert c["share"] == pytest.approx(steerable / units), k
        assert {c["status"]} == status, k  # the run's own mark, carried over unchanged
        assert c["finding"] == (c["status"] in ("validated", "control", "ideal edit", "architecture")), k
    # both models are there, beside the prediction: CREPE's conv1 lobe is 31 Hz, the codec's 3429 Hz
    lobes = {c["model"]: c["main_lobe_hz"] for c in on_disk["cells"]}
    assert lobes["crepe_tiny_16khz"] == pytest.approx(16000 / 516)
    assert lobes["tiny_encodec_24khz"] == pytest.approx(24000 / 7)
    # provenance: the command line and every input file's hash
    prov = on_disk["provenance"]
    assert prov["command_line"].startswith("steerlab partials-compare")
    hashed = {e["role"] for r in on_disk["runs"] for e in r["files"]}
    assert hashed == {"run.json", "summary.csv", "oracle.json", "results.jsonl"}
    assert all(len(e["sha256"]) == 64 for r in on_disk["runs"] for e in r["files"])
    # the figure in both formats, written through a temporary file and renamed (none left behind)
    names = sorted(p.name for p in (tmp_path / "cmp").iterdir())
    assert names == ["report.json", "report.md", "side_by_side.png", "side_by_side.svg"]
    assert (tmp_path / "cmp" / "side_by_side.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (tmp_path / "cmp" / "side_by_side.svg").read_text()[:1000]


def test_a_method_the_controls_did_not_validate_is_no_finding(runs, tmp_path):
    """Whatever a run marks a method, the report says the same; a not-validated verdict keeps its
    counts in report.json but is flagged as no finding and shown by its mark alone."""
    from steerlab.partials.compare import compare

    run = tmp_path / "run"
    shutil.copytree(runs[1], run)
    rows = _summary(run)
    for r in rows:
        if r["method"] == "diffmeans" and r["removal"] == "subtract":
            r["control_validation"], r["control_validation_reason"] = "not validated", "control failed: test"
    with open(run / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    doc = compare([run], tmp_path / "cmp")
    c = next(c for c in doc["cells"] if c["column"] == "diffmeans/subtract")
    assert c["status"] == "not validated" and not c["finding"]
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert "*not validated*" in md and "control failed: test" in md


def test_cli_writes_the_report_and_refuses_a_folder_without_a_run(runs, tmp_path):
    from click.testing import CliRunner

    from steerlab.cli import get_cli

    cli = get_cli()
    res = CliRunner().invoke(cli, ["partials-compare", *map(str, runs), "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "[architecture]" in res.output and (tmp_path / "out" / "report.json").is_file()
    res = CliRunner().invoke(cli, ["partials-compare", str(tmp_path), "-o", str(tmp_path / "x")])
    assert res.exit_code == 1 and "holds no finished steerlab partials run" in res.output
