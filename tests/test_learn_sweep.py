"""`steerlab learn sweep` in process: one dictionary per configuration, each the dictionary
`learn features` writes with the same settings; resumable; bad configurations fail before any
training. (The same sweep on Ray: tests/test_ray_executor.py.)"""

from __future__ import annotations

import json

from click.testing import CliRunner

ARGS = ["-l", "encoder.5.elu", "--data", "synth:2", "--clip-seconds", "0.3", "--epochs", "1", "--batch-size", "64"]


def _invoke(*args: str):
    from steerlab import cli

    return CliRunner().invoke(cli.get_cli(), list(args))


def test_sweep_equals_learn_features_and_resumes(tmp_path):
    from safetensors.numpy import load_file

    out = tmp_path / "sweep"
    res = _invoke("learn", "sweep", *ARGS, "--size", "16", "--k", "2,4", "-o", str(out))
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()]
    assert [r["name"] for r in rows] == ["encoder.5.elu__topk-s16-k2-seed0", "encoder.5.elu__topk-s16-k4-seed0"]
    assert all(r["metrics"]["l0"] == r["k"] for r in rows)
    single = tmp_path / "single"
    res = _invoke("learn", "features", *ARGS, "--size", "16", "--k", "4", "-o", str(single))
    assert res.exit_code == 0, res.output
    a = load_file(str(next(single.glob("*.safetensors"))))
    b = load_file(str(next((out / rows[1]["name"]).glob("*.safetensors"))))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    res = _invoke("learn", "sweep", *ARGS, "--size", "16", "--k", "2,4", "-o", str(out))
    assert res.exit_code == 0 and "2 of 2 configurations finished before; training 0" in res.output
    res = _invoke("learn", "sweep", *ARGS, "--size", "16", "--k", "2", "-o", str(out))
    assert res.exit_code != 0 and "another sweep" in res.output


def test_bad_configuration_fails_before_training(tmp_path):
    res = _invoke("learn", "sweep", *ARGS, "--size", "16", "--k", "4,32", "-o", str(tmp_path / "s"))
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "s").exists()


def test_executor_ray_without_ray_is_one_line(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the ray extra were not installed
    res = _invoke("learn", "sweep", *ARGS, "--executor", "ray", "-o", str(tmp_path / "s"))
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert 'pip install "steerlab[ray]"' in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()
