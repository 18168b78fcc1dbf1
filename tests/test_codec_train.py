"""The codec training recipe is a real, resumable job: curve, checkpoint, export, resume."""

from __future__ import annotations

import dataclasses
import json

import torch
from safetensors.torch import load_file

from steerlab.builtins.encodec.codec import EMBEDDED
from steerlab.builtins.encodec.train import TrainConfig, train_codec

TINY = dataclasses.replace(EMBEDDED, n_filters=2, dimension=8, bins=16, lstm=0)


def _config(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=2, clip_seconds=0.1, pool_clips=4, val_clips=2, val_every=2, seed=3)


def test_training_writes_curve_checkpoint_and_export(tmp_path):
    logs: list[str] = []
    train_codec(TINY, _config(4), tmp_path, log=logs.append)
    rows = [json.loads(line) for line in (tmp_path / "curve.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert all(torch.isfinite(torch.tensor(r["si_sdr_cont_median"])) for r in rows)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4
    exported = load_file(str(tmp_path / "model.safetensors"))
    for key, value in state["model"].items():
        assert torch.equal(exported[key], value), key
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["training"]["step"] == 4 and config["codec"]["n_filters"] == 2


def test_rerun_resumes_from_the_checkpoint(tmp_path):
    train_codec(TINY, _config(2), tmp_path, log=lambda m: None)
    before = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    logs: list[str] = []
    train_codec(TINY, _config(4), tmp_path, log=logs.append)
    assert logs[0] == "resumed from step 2"
    steps = [json.loads(line)["step"] for line in (tmp_path / "curve.jsonl").read_text().splitlines()]
    assert steps == [2, 4]
    after = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_finished_run_does_not_train_again(tmp_path):
    train_codec(TINY, _config(2), tmp_path, log=lambda m: None)
    first = (tmp_path / "model.safetensors").read_bytes()
    logs: list[str] = []
    train_codec(TINY, _config(2), tmp_path, log=logs.append)
    assert logs == ["resumed from step 2"]
    assert (tmp_path / "model.safetensors").read_bytes() == first


def test_a_resume_with_other_settings_is_refused_and_only_steps_may_grow(tmp_path):
    """Rerunning with --steps 5 --batch-size 4 after --steps 3 --batch-size 2 resumed silently and
    config.json then said batch_size 4 for steps trained with 2: now one error names the settings."""
    import pytest

    from steerlab.errors import ConfigError

    train_codec(TINY, _config(2), tmp_path, log=lambda m: None)
    checkpoint = (tmp_path / "checkpoint.pt").read_bytes()
    changed = dataclasses.replace(_config(4), batch_size=4, lr=5e-4)
    with pytest.raises(ConfigError, match=r"batch_size 2 -> 4; lr 0.001 -> 0.0005") as err:
        train_codec(TINY, changed, tmp_path, log=lambda m: None)
    assert err.value.parameters == ("batch_size", "lr") and "\n" not in str(err.value)
    assert (tmp_path / "checkpoint.pt").read_bytes() == checkpoint  # nothing written by the refusals
    logs: list[str] = []
    train_codec(TINY, _config(4), tmp_path, log=logs.append)  # steps may grow, as documented
    assert logs[0] == "resumed from step 2"
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["training"]["batch_size"] == 2 and config["training"]["step"] == 4
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 4
    with pytest.raises(ConfigError, match=r"steps 4 -> 3 \(on resume steps may only grow\)"):
        train_codec(TINY, _config(3), tmp_path, log=lambda m: None)
