"""Directions, spans, strengths and the built-in intervention arithmetic."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from steerlab import plugins
from steerlab.errors import DirectionError, InterventionError
from steerlab.interventions import Span, Strength, load_direction, rms_norm
from steerlab.model import LayerInfo

LAYER = LayerInfo("l", "conv", "l", 4, 1, 320, 24_000, 1)  # 75 Hz frames


def test_load_direction_npy_and_safetensors_key(tmp_path):
    v = np.array([3.0, 0.0, 4.0, 0.0])
    np.save(tmp_path / "d.npy", v)
    save_file({"a": v.astype(np.float32), "b": -v.astype(np.float32)}, str(tmp_path / "d.safetensors"))
    d = load_direction(tmp_path / "d.npy")
    assert d.norm == 5.0 and torch.allclose(d.unit(), torch.tensor([0.6, 0.0, 0.8, 0.0]))
    assert d.provenance["sha256"] and d.provenance["source"] == "file"
    assert np.array_equal(load_direction(tmp_path / "d.safetensors", "b").vector, -v)
    with pytest.raises(DirectionError, match="choose one with FILE:KEY"):
        load_direction(tmp_path / "d.safetensors")
    with pytest.raises(DirectionError, match="has no tensor 'c'"):
        load_direction(tmp_path / "d.safetensors", "c")


def test_span_frames_and_fades():
    span = Span(0.1, 0.2, fade_in=2, fade_out=3)
    first, last = span.frames(LAYER, 100)
    assert (first, last) == (7, 15)  # floor(0.1*75), ceil(0.2*75)
    w = span.weights(LAYER, 100, 120).numpy()
    assert w[:7].sum() == 0 and w[15:].sum() == 0
    assert np.allclose(w[7:9], [1 / 3, 2 / 3]) and np.allclose(w[12:15], [3 / 4, 2 / 4, 1 / 4])
    assert np.all(w[9:12] == 1)
    assert Span(0.5).weights(LAYER, 10, 20).sum() == 0  # starts past this item's frames
    with pytest.raises(InterventionError, match=r"^end_s \(0.2 s\) must be after start_s \(0.3 s\)$") as info:
        Span(0.3, 0.2)
    assert info.value.parameters == ("end_s", "start_s")


def test_relative_strength_uses_rms_activation_norm():
    act = torch.tensor([[3.0, 0.0], [4.0, 0.0]])  # frame norms 5 and 0
    assert rms_norm(act) == pytest.approx(np.sqrt(12.5))
    assert Strength(2.0).resolve(act) == pytest.approx(2 * np.sqrt(12.5))
    assert Strength(2.0, "absolute").resolve(act) == 2.0
    with pytest.raises(InterventionError):
        Strength(float("nan"))


@pytest.mark.parametrize("name", ["add", "ablate", "scale", "clamp"])
def test_builtin_arithmetic(name):
    g = torch.Generator().manual_seed(0)
    act = torch.randn(4, 6, generator=g)
    d = torch.randn(4, generator=g)
    d = d / d.norm()
    w = torch.tensor([0.0, 0.5, 1.0, 1.0, 0.25, 0.0])
    out = plugins.interventions().get(name).apply(act, d, 1.7, w)
    c = d @ act
    expected = {
        "add": act + 1.7 * d[:, None] * w,
        "ablate": act - d[:, None] * (w * c),
        "scale": act + d[:, None] * (w * 0.7 * c),
        "clamp": act + d[:, None] * (w * (1.7 - c)),
    }[name]
    assert torch.allclose(out, expected, atol=1e-6)
    new_c = d @ out
    target = {"add": c + 1.7 * w, "ablate": c * (1 - w), "scale": c * (1 + 0.7 * w), "clamp": c + w * (1.7 - c)}[name]
    assert torch.allclose(new_c, target, atol=1e-5)
    # orthogonal complement untouched
    assert torch.allclose(out - torch.outer(d, new_c), act - torch.outer(d, c), atol=1e-5)


# -- the contract: optional members, value kinds ---------------------------------------------------


class _Minimal:
    """A type with the required members only: no prepare, no optional members."""

    name = "minimal"
    formula = "a_t <- a_t + w_t * v * d"
    description = "minimal"
    value_scale = "strength"

    def apply(self, act, direction, value, weight, state=None):
        return act + value * direction[:, None] * weight[None, :]


class _WithPrepare:
    name = "with_prepare"
    formula = "a_t <- a_t + w_t * s"
    description = "adds a vector computed in prepare"
    value_scale = "none"
    needs_direction = False
    options_help = {"offset": "a number"}

    def prepare(self, model, layer, direction, options, context=None):
        self.seen_context = context
        return _Offset(float(options["offset"]))

    def apply(self, act, direction, value, weight, state):
        return act + state.offset * weight[None, :]


@dataclass(frozen=True)
class _Offset:
    offset: float

    def to_json(self):
        return {"offset": self.offset, "bad": float("nan"), "path": Path("/x")}


def test_a_minimal_type_works_and_optional_members_default():
    from steerlab import interventions as iv

    act, d, w = torch.ones(3, 4), torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.5, 0.0])
    prepared = iv.prepare(_Minimal(), None, LAYER, d, {})
    assert prepared.state is None and prepared.summary is None and prepared.value_scale == "strength"
    out = iv.apply(_Minimal(), act, d, 2.0, w, prepared.state)
    assert torch.equal(out[0], torch.tensor([1.0, 3.0, 2.0, 1.0])) and torch.equal(out[1:], act[1:])
    assert iv.needs_direction(_Minimal()) and iv.is_chunkable(_Minimal()) and iv.options_help(_Minimal()) == {}


def test_prepare_passes_context_and_records_a_json_safe_summary():
    from steerlab import interventions as iv

    kind = _WithPrepare()
    model = type("M", (), {"default_path": "continuous"})()
    prepared = iv.prepare(kind, model, LAYER, None, {"offset": 0.5}, iv.RunContext("quantized", 4))
    assert kind.seen_context == iv.RunContext("quantized", 4)
    assert prepared.summary == {"offset": 0.5, "bad": None, "path": "/x"}
    out = iv.apply(kind, torch.zeros(2, 3), None, 0.0, torch.tensor([0.0, 1.0, 0.5]), prepared.state)
    assert torch.equal(out, torch.tensor([[0.0, 0.5, 0.25]] * 2))
    with pytest.raises(InterventionError, match="takes no option 'ofset'. Did you mean 'offset'"):
        iv.prepare(kind, model, LAYER, None, {"ofset": 1})


def test_strength_resolves_per_value_scale():
    act = torch.tensor([[0.0, 3.0, 3.0], [0.0, 4.0, 0.0]])  # frame norms 0, 5, 3; step norms 5, 4
    s = Strength(2.0)
    assert s.resolve(act, "strength") == pytest.approx(2 * np.sqrt((0 + 25 + 9) / 3))
    assert s.resolve(act, "motion") == pytest.approx(2 * np.sqrt((25 + 16) / 2))
    assert s.resolve(act, "factor") == 2.0 and s.resolve(act, "none") == 0.0
    assert Strength(2.0, "absolute").resolve(act, "motion") == 2.0
    assert Strength(1.0).resolve(act[:, :1], "motion") == 0.0  # one frame: no steps


def test_intervention_spec_validates_and_freezes_options():
    from steerlab.api import InterventionSpec
    from steerlab.errors import DirectionError
    from steerlab.interventions import json_safe

    opts = {"source": Path("a.wav"), "n": 3}
    spec = InterventionSpec(layer="l", direction=None, intervention="patch", options=opts)
    opts["n"] = 4
    assert spec.options["n"] == 3  # a copy, not the caller's dict
    with pytest.raises(TypeError):
        spec.options["n"] = 5
    assert json_safe(dict(spec.options)) == {"source": "a.wav", "n": 3}
    arr = json_safe(np.zeros((2, 3), np.float32))
    assert arr["array_shape"] == [2, 3] and len(arr["sha256"]) == 64
    with pytest.raises(DirectionError, match="Direction or None"):
        InterventionSpec(layer="l", direction=np.ones(3), intervention="add")
    with pytest.raises(InterventionError, match="^n_q must be a whole number") as caught:
        InterventionSpec(layer="l", direction=None, intervention="add", n_q=0)
    assert caught.value.parameters == ("n_q",)  # the CLI names it --n-q (tests/test_run_contracts.py)
    with pytest.raises(InterventionError, match="strength must be a steerlab Strength"):
        InterventionSpec(layer="l", direction=None, intervention="add", strength=1.0)
