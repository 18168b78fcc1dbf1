"""The Ray executor (steerlab.executors) on a local 2-CPU cluster: a partials run gives the same
rows as the in-process executor (every field, bitwise, at the same torch thread count), resumes a
partial store (a torn last line included), and refuses what it cannot do in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import import_or_skip

ray = import_or_skip("ray")  # the one reason to skip: the ray extra is not installed

TINY = """
[grid]
layers = ["encoder.5.elu"]
targets_hz = [600.0]
densities = [2]
strengths = [0.3, 1.0]
subtract_strengths = [1.0]
methods = ["diffmeans", "random"]
paths = ["continuous"]
[stimuli]
duration_s = 0.2
train_seeds = 2
test_seeds = 3
[controls]
positive_models = []
[run]
max_batch = 3
probe_frames = 16
examples = 1
bootstrap = 100
"""


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The reference: in process, with one torch thread (the Ray workers' default)."""
    import torch

    from steerlab import partials
    from steerlab.executors import LocalExecutor
    from steerlab.partials.runner import run_partials

    d = tmp_path_factory.mktemp("ray")
    (d / "tiny.toml").write_text(TINY)
    cfg = partials.build(d / "tiny.toml")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outcome = run_partials(cfg, d / "local", executor=LocalExecutor())
    finally:
        torch.set_num_threads(before)
    return cfg, d, outcome


def _rows(folder: Path) -> dict[str, dict]:
    lines = (folder / "results.jsonl").read_text().splitlines()
    rows = {r["key"]: r for r in map(json.loads, lines)}
    assert len(rows) == len(lines)
    return rows


def _examples(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "examples").iterdir())}


def test_ray_rows_equal_local_rows_bitwise(ray_cluster, local_run, tmp_path):
    import torch

    from steerlab.executors import RayExecutor
    from steerlab.partials.runner import run_partials

    assert ray_cluster["CPU"] == 2
    cfg, d, local = local_run
    threads = torch.get_num_threads()
    ex = RayExecutor()  # Ray is initialized: the test's cluster is used and left running
    outcome = run_partials(cfg, tmp_path / "ray", executor=ex)
    assert torch.get_num_threads() == threads  # the run's one-thread section is undone
    want, got = _rows(local.folder), _rows(outcome.folder)
    assert len(want) == 1 * 2 * 1 * 3 * 4  # layer x methods x path x held-out x (2 add, subtract, ablate)
    assert got.keys() == want.keys()
    for key, row in want.items():
        assert got[key] == row, key  # every field, floats compared exactly
    assert outcome.rows == local.rows  # in plan order, whatever order the batches completed in
    assert _examples(outcome.folder) == _examples(local.folder) != {}
    prov = json.loads((outcome.folder / "provenance.json").read_text())["executor"]
    assert prov["executor"] == "ray" and prov["cluster_cpus"] == 2 and prov["torch_threads_per_worker"] == 1
    ex.close()
    assert ray.is_initialized()  # not the executor's cluster to stop


def test_ray_resumes_a_partial_store_with_a_torn_line(ray_cluster, local_run, tmp_path):
    from steerlab.executors import RayExecutor
    from steerlab.partials.runner import run_partials

    cfg, d, local = local_run
    folder = tmp_path / "resumed"
    shutil.copytree(local.folder, folder)
    lines = (folder / "results.jsonl").read_bytes().split(b"\n")[:-1]
    kept = 7  # two whole batches of 3 and one row of the third: as if killed, then a row torn
    (folder / "results.jsonl").write_bytes(b"\n".join(lines[:kept]) + b"\n" + lines[kept][:40])
    for p in (folder / "examples").iterdir():
        p.unlink()
    outcome = run_partials(cfg, folder, executor=RayExecutor())
    assert outcome.resumed_rows == kept
    assert outcome.written == len(lines) - kept
    assert _rows(folder) == _rows(local.folder)
    assert outcome.rows == local.rows


def test_worker_refuses_other_weights(ray_cluster, local_run):
    """A node whose installed weights differ from the run's gives one clear error, not rows."""
    from steerlab.errors import SteerlabError
    from steerlab.executors import RayExecutor
    from steerlab.partials.sweep import BatchContext, batch_rows

    ctx = BatchContext("tiny_encodec_24khz", "0" * 64, "main", {}, {}, {}, {"versions": {}}, 3, frozenset())
    with pytest.raises(SteerlabError, match="install the same weights on every node"):
        list(RayExecutor().map(batch_rows, ctx, [[]]))


def test_cli_executor_errors_are_one_line(tmp_path):
    from click.testing import CliRunner

    from steerlab import cli

    (tmp_path / "t.toml").write_text(TINY)
    args = ["partials", "-c", str(tmp_path / "t.toml"), "-o", str(tmp_path / "out"), "--address", "auto"]
    res = CliRunner().invoke(cli.get_cli(), args)
    assert res.exit_code != 0
    assert "--executor ray" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def _timeless(rows: list[dict]) -> list[dict]:
    """The rows without the training's wall time (metrics.seconds), the one field that may differ."""
    return [{**r, "metrics": {k: v for k, v in r["metrics"].items() if k != "seconds"}} for r in rows]


def _weights(folder: Path) -> dict:
    from safetensors.numpy import load_file

    return {p.parent.name: load_file(str(p)) for p in sorted(folder.glob("*/*.safetensors"))}


def test_sae_sweep_on_ray_equals_local_and_resumes(ray_cluster, tmp_path):
    """`learn sweep`'s configurations as Ray tasks: the same SAE weights as in process (one thread),
    and a sweep whose last configuration lost its row (killed before the append) trains only that one."""
    import torch

    from steerlab import api
    from steerlab.executors import LocalExecutor, RayExecutor
    from steerlab.learn_sweep import ROWS_FILE, SweepSpec, grid, run_sweep

    model = api.load_model("tiny_encodec_24khz")
    spec = SweepSpec(
        model.name,
        None,
        model.weights_hash(),
        "feature",
        ("synth:2",),
        {"epochs": 1, "batch_size": 64},
        {"clip_seconds": 0.3},
    )
    items = grid(["encoder.5.elu"], ["topk"], [16], [2, 4], [0])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = run_sweep(spec, items, tmp_path / "local", LocalExecutor())
    finally:
        torch.set_num_threads(before)
    on_ray = run_sweep(spec, items, tmp_path / "ray", RayExecutor())
    assert _timeless(on_ray) == _timeless(local) and len(local) == 2
    want, got = _weights(tmp_path / "local"), _weights(tmp_path / "ray")
    assert want.keys() == got.keys() == {it.name() for it in items}
    for name, tensors in want.items():
        assert tensors.keys() == got[name].keys()
        for key, value in tensors.items():
            assert (value == got[name][key]).all(), (name, key)
    rows = (tmp_path / "ray" / ROWS_FILE).read_bytes().split(b"\n")
    (tmp_path / "ray" / ROWS_FILE).write_bytes(rows[0] + b"\n" + rows[1][:10])  # a torn second row
    notes: list[str] = []
    again = run_sweep(spec, items, tmp_path / "ray", RayExecutor(), notify=notes.append)
    assert _timeless(again) == _timeless(local)
    assert notes[0] == "1 of 2 configurations finished before; training 1"
    assert _weights(tmp_path / "ray").keys() == want.keys()
