"""Batched nnsight passes: batched equals unbatched, patches equal a plain torch
hook doing the same arithmetic, alpha = 0 is the baseline, causality holds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steerlab import api, tracing
from steerlab.interventions import Span, Strength, channel_direction
from tests.conftest import chord


def _module(model, path):
    node = model
    for part in path.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def _hook_reference(model, wave, layer, fn, path="continuous"):
    """Plain torch forward hook applying ``fn`` to the layer output (no nnsight)."""
    handle = _module(model, layer.module_path).register_forward_hook(lambda m, i, o: fn(o))
    try:
        with torch.no_grad():
            x = torch.from_numpy(wave)[None]
            x = torch.nn.functional.pad(x, (0, model.padded_length(x.shape[-1]) - x.shape[-1]))
            return model(x, path=path)[0, :, : wave.shape[-1]].numpy()
    finally:
        handle.remove()


@pytest.mark.parametrize("model_fixture", ["embedded", "random_24k"])
def test_batched_equals_unbatched_with_different_lengths(model_fixture, request):
    model = request.getfixturevalue(model_fixture)
    layer = api.layers(model).get("encoder.6.conv")
    waves = [torch.from_numpy(chord(s, seed=i)) for i, s in enumerate((0.5, 0.37, 1.0))]

    def edit(act, n):
        out = act.clone()
        out[..., :n] += 3.0
        return out

    items = [tracing.TraceItem(w, layer, edit) for w in waves] + [tracing.TraceItem(w) for w in waves]
    batched = tracing.run(model, items)
    for item, res in zip(items, batched):
        alone = tracing.run(model, [item])[0]
        assert res.output.shape == item.wave.shape
        assert float((res.output - alone.output).abs().max()) < 1e-5
    # the edit did something, so the comparison above is not vacuous
    assert float((batched[0].output - batched[3].output).abs().max()) > 1e-4  # 10x the tolerance


@pytest.mark.parametrize("layer_name", ["first_conv", "encoder.6.conv", "latent"])
@pytest.mark.parametrize("kind", ["add", "ablate", "scale", "clamp"])
def test_patch_equals_plain_torch_hook(embedded, layer_name, kind):
    wave = chord(0.6, seed=3)
    layer = api.layers(embedded).get(layer_name)
    channel = 2
    alpha = 0.7
    spec = api.InterventionSpec(layer_name, channel_direction(channel, layer), kind, Strength(alpha, "absolute"),
                                Span(0.1, 0.4))
    _, patched, _, _ = api.run_pairs(embedded, [wave], spec)
    frames = layer.frames_for(wave.shape[-1])
    first, last = int(np.floor(0.1 * layer.frame_rate)), int(np.ceil(0.4 * layer.frame_rate))

    def fn(out):
        out = out.clone()
        c = out[0, channel, first:last]
        if kind == "add":
            out[0, channel, first:last] = c + alpha
        elif kind == "ablate":
            out[0, channel, first:last] = 0.0
        elif kind == "scale":
            out[0, channel, first:last] = c * alpha
        else:
            out[0, channel, first:last] = alpha
        return out

    assert last <= frames
    ref = _hook_reference(embedded, wave, layer, fn)
    base = _hook_reference(embedded, wave, layer, lambda o: o)
    assert np.abs(patched[0] - ref).max() < 1e-5
    assert np.abs(ref - base).max() > 1e-4  # the patch changed the decode


def test_alpha_zero_equals_baseline_exactly(embedded):
    wave = chord(0.5, seed=4)
    layer = api.layers(embedded).get("encoder.3.conv")
    spec = api.InterventionSpec(layer.name, channel_direction(0, layer), "add", Strength(0.0))
    base, patched, _, _ = api.run_pairs(embedded, [wave], spec)
    assert np.array_equal(base[0], patched[0])


def test_quantized_path_depends_on_input(embedded):
    a, b = chord(0.5, seed=1), chord(0.5, seed=2)
    res = tracing.run(embedded, [tracing.TraceItem(torch.from_numpy(x)) for x in (a, b)], path="quantized", save_codes=True)
    assert not torch.equal(res[0].codes, res[1].codes)
    assert float((res[0].output - res[1].output).abs().max()) > 1e-3


@pytest.mark.parametrize("layer_name", ["first_conv", "latent"])
def test_causal_patch_leaves_earlier_samples_unchanged(random_24k, layer_name):
    wave = chord(1.0, seed=5)
    layer = api.layers(random_24k).get(layer_name)
    start = 0.5
    spec = api.InterventionSpec(layer.name, channel_direction(1, layer), "add", Strength(50.0), Span(start))
    base, patched, _, _ = api.run_pairs(random_24k, [wave], spec)
    t0 = int(np.floor(start * layer.frame_rate)) * layer.hop  # first patched frame, in samples
    # the decoder emits whole latent frames: a latent frame that contains t0 may
    # change samples up to one hop earlier, and nothing before that may change
    unchanged = (t0 // random_24k.hop) * random_24k.hop
    diff = np.abs(patched[0] - base[0])[0]
    assert unchanged > 0.4 * random_24k.sample_rate
    assert diff[:unchanged].max() == 0.0
    assert diff[t0:].max() > 1e-4


def test_several_invokes_batch_like_one_pass(embedded):
    """AudioNNsight batches several ``tracer.invoke`` waveforms of different lengths (for callers
    who trace themselves); each invoke's output equals ``tracing.run`` on that waveform."""
    waves = [torch.from_numpy(chord(s, seed=i))[None] for i, s in enumerate((0.3, 0.5))]
    envoy = tracing.envoy_for(embedded)
    padded = [tracing._pad_to_frames(embedded, w) for w in waves]
    outs = []
    with torch.no_grad(), envoy.trace(path="continuous") as tracer:
        for x in padded:
            with tracer.invoke(x):
                outs.append(envoy.output.save())
    ref = tracing.run(embedded, [tracing.TraceItem(w[0]) for w in waves])
    for w, out, r in zip(waves, outs, ref):
        n = w.shape[-1]
        np.testing.assert_allclose(out[0, :, :n].numpy(), r.output.numpy(), atol=1e-6)


def test_a_multi_call_layer_gets_passes_of_its_own():
    from types import SimpleNamespace

    multi, single = SimpleNamespace(name="step"), SimpleNamespace(name="conv")
    model = SimpleNamespace(layer_calls=lambda layer: 4 if layer.name == "step" else 1)
    items = [tracing.TraceItem(torch.zeros(1, 8), layer) for layer in (None, multi, single, multi, single, None)]
    assert tracing._layer_groups(model, items, list(range(6))) == [[0, 5], [1, 3], [2, 4]]
    assert tracing._layer_groups(model, items, [0, 1, 3]) == [[0, 1, 3]]  # one multi-call layer alone
    assert tracing._layer_groups(model, items, [0, 2, 4]) == [[0, 2, 4]]  # no multi-call layer
