"""The shared checkpoint/curve helper of the training recipes: resume restores model,
optimizer and extra state, repairs the curve after a kill between its two writes, and
refuses a folder started with another identity."""

from __future__ import annotations

import json

import pytest
import torch

from steerlab import resumable
from steerlab.errors import RunFolderError, SteerlabError

ID = {"architecture": {"width": 3}}


def _net(seed: int):
    torch.manual_seed(seed)
    net = torch.nn.Linear(3, 2)
    return net, torch.optim.Adam(net.parameters(), lr=0.1)


def _step(net, opt):
    opt.zero_grad()
    net(torch.ones(4, 3)).pow(2).sum().backward()
    opt.step()


def _curve(folder):
    return [json.loads(line)["step"] for line in (folder / resumable.CURVE).read_text().splitlines()]


def test_fresh_folder_starts_at_zero_and_writes_nothing(tmp_path):
    net, opt = _net(0)
    assert resumable.resume(tmp_path, net, opt, ID, log=lambda m: None) == {"step": 0}
    assert list(tmp_path.iterdir()) == []


def test_resume_restores_model_optimizer_and_extra_state(tmp_path):
    net, opt = _net(0)
    for step in (1, 2):
        _step(net, opt)
        resumable.save(tmp_path, net, opt, step, {"step": step, "loss": 1.0 / step}, ID, {"best": 0.5})
    other, other_opt = _net(1)
    logs: list[str] = []
    state = resumable.resume(tmp_path, other, other_opt, ID, log=logs.append)
    assert state == {"step": 2, "best": 0.5} and logs == ["resumed from step 2"]
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values()))
    # the optimizer's moments came back too: one more step matches on both
    _step(net, opt)
    _step(other, other_opt)
    assert torch.equal(net.weight, other.weight)
    assert _curve(tmp_path) == [1, 2]


def test_curve_is_repaired_to_the_checkpoint(tmp_path):
    net, opt = _net(0)
    for step in (1, 2):
        resumable.save(tmp_path, net, opt, step, {"step": step}, ID)
    curve = tmp_path / resumable.CURVE
    lines = curve.read_text().splitlines()
    curve.write_text(lines[0] + "\n")  # killed after the checkpoint of step 2, before its row
    resumable.resume(tmp_path, *_net(1), ID, log=lambda m: None)
    assert _curve(tmp_path) == [1, 2]
    curve.write_text("\n".join([*lines, json.dumps({"step": 3})]) + "\n")  # a row past the checkpoint
    resumable.resume(tmp_path, *_net(1), ID, log=lambda m: None)
    assert _curve(tmp_path) == [1, 2]


def test_a_folder_of_another_identity_is_refused(tmp_path):
    net, opt = _net(0)
    resumable.save(tmp_path, net, opt, 1, {"step": 1}, ID)
    with pytest.raises(SteerlabError, match="started with another architecture .*new -o folder"):
        resumable.resume(tmp_path, *_net(0), {"architecture": {"width": 4}}, log=lambda m: None)
    with pytest.raises(SteerlabError, match="another codec weights"):
        resumable.resume(tmp_path, *_net(0), {**ID, "codec weights": "abc"}, log=lambda m: None)


def test_resume_removes_a_killed_checkpoint_write(tmp_path):
    """A kill during the checkpoint's atomic write leaves its temporary; resume removes it (and
    only it: a user's dotfile stays)."""
    from steerlab.artifacts import TEMP_MARK, is_stale_temporary

    net, opt = _net(0)
    resumable.save(tmp_path, net, opt, 1, {"step": 1, "loss": 1.0}, ID, {})
    stale = tmp_path / f".{resumable.CHECKPOINT}.{TEMP_MARK}k1ll3d_x.pt"
    stale.write_bytes(b"")
    user = tmp_path / ".mine"
    user.write_text("x")
    assert is_stale_temporary(stale.name) and not is_stale_temporary(user.name)
    assert resumable.resume(tmp_path, *_net(1), ID, log=lambda m: None)["step"] == 1
    assert not stale.exists() and user.read_text() == "x"


def test_a_checkpoint_from_before_the_helper_resumes_when_its_tensors_fit(tmp_path):
    """The shipped codec run's checkpoint holds only model, optimizer and step (written before
    identities and rows were kept): it resumes, with the log saying what could not be checked; a
    model of other shapes is refused in one line."""
    net, opt = _net(0)
    _step(net, opt)
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": 7}, tmp_path / resumable.CHECKPOINT)
    other, other_opt = _net(1)
    logs: list[str] = []
    assert resumable.resume(tmp_path, other, other_opt, ID, log=logs.append) == {"step": 7}
    assert "records no identity" in logs[0] and logs[-1] == "resumed from step 7"
    assert torch.equal(net.weight, other.weight)
    wide = torch.nn.Linear(4, 2)
    with pytest.raises(RunFolderError, match="key 'model' does not fit this run"):
        resumable.resume(tmp_path, wide, torch.optim.Adam(wide.parameters()), ID, log=lambda m: None)
    assert resumable.read_checkpoint(tmp_path / resumable.CHECKPOINT)["legacy"] is True


def test_the_shipped_codec_run_resumes():
    """docs/embedded-model.md: the run behind the shipped weights can be resumed (its checkpoint
    reads back and fits the embedded architecture)."""
    from pathlib import Path

    from steerlab.builtins.encodec.codec import CodecConfig, build_codec

    folder = Path(__file__).resolve().parents[1] / "training" / "tiny_encodec_24khz"
    cfg = CodecConfig.from_json(json.loads((folder / "config.json").read_text())["codec"])
    model = build_codec(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.8, 0.99))
    state = resumable.read_checkpoint(folder / resumable.CHECKPOINT)
    assert state["legacy"] and state["step"] == 28000
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
