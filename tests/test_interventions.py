"""Directions, spans, strengths and the built-in intervention arithmetic."""

from __future__ import annotations

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
    with pytest.raises(InterventionError, match="after --start"):
        Span(0.3, 0.2)


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
