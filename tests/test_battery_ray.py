"""The steerability battery on the Ray executor (a local 2-CPU cluster): the same rows, verdicts,
summary and example audio as the in-process run (every field, bitwise, at the same torch thread
count), the unpatched decodes computed by the workers, a resume from a cut store with a torn
last line, and one-line refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import battery_toml, import_or_skip

ray = import_or_skip("ray")  # the one reason to skip: the ray extra is not installed

# the tiny codec's latent on both decode paths (codes changed on the quantized one), and a
# positive control (logspec_24khz, loudness's control): three plans' baselines and batches go through the executor
TINY = battery_toml('["logspec_24khz"]', test_seeds=2, max_batch=3)
MODEL, CONCEPT, LAYER = "tiny_encodec_24khz", "loudness", "latent"


def _battery(folder: Path, cfg: Path, executor) -> dict:
    from steerlab.battery.run import run_battery

    return run_battery([CONCEPT], MODEL, folder, True, [LAYER], config_file=cfg, device="cpu", executor=executor)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The reference: in process, with one torch thread (the Ray workers' default)."""
    import torch

    from steerlab.executors import LocalExecutor

    d = tmp_path_factory.mktemp("battery_ray")
    (d / "tiny.toml").write_text(TINY)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        doc = _battery(d / "local", d / "tiny.toml", LocalExecutor())
    finally:
        torch.set_num_threads(before)
    return d, doc


def _rows(folder: Path) -> dict[str, dict]:
    lines = (folder / CONCEPT / "results.jsonl").read_text().splitlines()
    rows = {r["key"]: r for r in map(json.loads, lines)}
    assert len(rows) == len(lines)
    return rows


def _files(folder: Path) -> dict[str, bytes]:
    """Every file a run writes, byte for byte, less those that hold a wall time or a host
    (provenance.json, run.json, the report) or whose order is not the content: results.jsonl
    (rows in the order batches completed: see :func:`_rows`) and directions.safetensors
    (safetensors writes its metadata in hash-map order: see :func:`_directions`)."""
    skip = {"provenance.json", "run.json", "report.html", "results.jsonl", "directions.safetensors"}
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def _directions(folder: Path) -> tuple[dict, dict]:
    from safetensors.numpy import load_file, safe_open

    path = folder / CONCEPT / "directions.safetensors"
    with safe_open(str(path), "np") as f:
        meta = f.metadata()
    return {k: v.tobytes() for k, v in load_file(str(path)).items()}, meta


def test_ray_battery_equals_local_bitwise_and_its_workers_decode_the_baselines(
    ray_cluster, local_run, tmp_path, monkeypatch
):
    import torch

    from steerlab.battery import runner
    from steerlab.executors import RayExecutor

    def no_baselines_here(*args, **kwargs):
        raise AssertionError("the calling process computed unpatched decodes")

    assert ray_cluster["CPU"] == 2
    d, local_doc = local_run
    monkeypatch.setattr(runner, "_baselines", no_baselines_here)  # this process only; workers import their own
    threads = torch.get_num_threads()
    ex = RayExecutor()  # Ray is initialized: the test's cluster is used and left running
    doc = _battery(tmp_path / "ray", d / "tiny.toml", ex)
    assert torch.get_num_threads() == threads  # the run's one-thread section is undone
    want, got = _rows(d / "local"), _rows(tmp_path / "ray")
    # (main: 1 layer x 2 paths + control: 1 layer x 1 path) x 2 methods x 2 held-out x (add, subtract, reverse,
    # ablate, and the calibrated raise and lower at 0.5, 1, 2)
    assert len(want) == 3 * 2 * 2 * (4 + 6)
    assert {r["model"] for r in want.values()} == {MODEL, "logspec_24khz"}
    assert any(r["codes_changed_share"] for r in want.values())  # the quantized path's codes were read
    assert got.keys() == want.keys()
    for key, row in want.items():
        assert got[key] == row, key  # every field, floats compared exactly
    assert doc == local_doc  # the verdicts, with their bootstrap intervals
    files = _files(d / "local")
    assert {"loudness/verdicts.json", "summary.csv", "steerability.json"} <= set(files)
    assert any(k.endswith(".wav") for k in files)
    assert _files(tmp_path / "ray") == files  # byte for byte: verdicts, summary, example audio
    assert _directions(tmp_path / "ray") == _directions(d / "local")
    prov = json.loads((tmp_path / "ray" / CONCEPT / "provenance.json").read_text())
    assert prov["executor"]["executor"] == "ray" and prov["executor"]["cluster_cpus"] == 2
    assert prov["rows_written"] == len(want) and prov["rows_resumed"] == 0
    ex.close()
    assert ray.is_initialized()  # not the executor's cluster to stop


def test_ray_battery_resumes_a_cut_store_with_a_torn_line(ray_cluster, local_run, tmp_path):
    from steerlab.executors import RayExecutor

    d, local_doc = local_run
    folder = tmp_path / "resumed"
    shutil.copytree(d / "local", folder)
    results = folder / CONCEPT / "results.jsonl"
    lines = results.read_bytes().split(b"\n")[:-1]
    kept = 7  # two whole batches of 3 and one row of the third: as if killed, then a row torn
    results.write_bytes(b"\n".join(lines[:kept]) + b"\n" + lines[kept][:40])
    for name in ("verdicts.json", "examples.json"):
        (folder / CONCEPT / name).unlink()
    shutil.rmtree(folder / CONCEPT / "examples")
    doc = _battery(folder, d / "tiny.toml", RayExecutor())
    prov = json.loads((folder / CONCEPT / "provenance.json").read_text())
    assert (prov["rows_resumed"], prov["rows_written"]) == (kept, len(lines) - kept)
    assert _rows(folder) == _rows(d / "local")
    assert doc == local_doc and _files(folder) == _files(d / "local")


def test_cli_steerability_executor_errors_are_one_line(tmp_path):
    from click.testing import CliRunner

    from steerlab import cli

    (tmp_path / "t.toml").write_text(TINY)
    base = ["steerability", "-m", MODEL, "-C", CONCEPT, "--quick", "-c", str(tmp_path / "t.toml")]
    res = CliRunner().invoke(cli.get_cli(), [*base, "-o", str(tmp_path / "out"), "--address", "auto"])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "executor ray" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_distributed_executor_needs_the_cpu(monkeypatch, tmp_path):
    import torch

    from steerlab import devices
    from steerlab.battery.run import run_battery
    from steerlab.errors import ConfigError
    from steerlab.executors import LocalExecutor

    class Far:  # the check reads only the name: no cluster is started
        name = "ray"

    monkeypatch.setattr(devices, "resolve", lambda device: torch.device(device))  # as on a machine with a GPU
    with pytest.raises(ConfigError, match="device must be the CPU"):
        run_battery([CONCEPT], MODEL, tmp_path / "out", True, device="cuda", executor=Far())
    assert not (tmp_path / "out").exists()
    from steerlab.battery.runner import check_executor_device

    check_executor_device(Far(), "cpu")
    check_executor_device(LocalExecutor(), "cuda")  # in process: any device


def test_a_delegating_concept_gets_the_executor_when_its_delegate_takes_one(tmp_path):
    """``partial``'s kind of concept (a pipeline of its own): the executor is passed to a
    delegate whose signature takes it; one that does not runs in this process, and the run says so."""
    from steerlab import plugins
    from steerlab.battery.run import run_battery
    from steerlab.builtins.concepts.loudness import Loudness
    from steerlab.executors import LocalExecutor
    from steerlab.hookspecs import hookimpl

    seen: list[dict] = []

    def takes(model, out_dir, quick, **kwargs):
        seen.append(kwargs)
        Path(out_dir).mkdir(parents=True)
        return object(), {}

    def refuses(model, out_dir, quick, bar=None, notify=None, config_file=None, dictionaries=(), device="auto"):
        seen.append({"device": device})
        Path(out_dir).mkdir(parents=True)
        return object(), {}

    class Takes(Loudness):
        name, delegate = "delegating-takes", staticmethod(takes)

    class Refuses(Loudness):
        name, delegate = "delegating-refuses", staticmethod(refuses)

    class Plugin:
        @hookimpl
        def steerlab_register_concepts(self, registry):
            registry.add(Takes())
            registry.add(Refuses())

    class Far(LocalExecutor):  # a distributed executor as far as the battery can tell
        name = "ray"

    plugin, notes, far = Plugin(), [], Far()
    plugins.register(plugin, name="delegating_plugin")
    try:
        run_battery(
            ["delegating-takes", "delegating-refuses"], None, tmp_path / "out", executor=far, notify=notes.append
        )
    finally:
        plugins.unregister(plugin)
    assert seen[0]["executor"] is far and "executor" not in seen[1]
    assert "concept delegating-refuses runs in this process (its delegate takes no executor)" in notes
    assert not any("delegating-takes runs" in n for n in notes)
