"""Batched nnsight passes: batched equals unbatched, patches equal a plain torch
hook doing the same arithmetic, alpha = 0 is the baseline, causality holds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steerlab import api, tracing
from steerlab.errors import SteerlabError
from steerlab.interventions import Span, Strength, channel_direction
from steerlab.model import AudioModel, TracedOutput
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
    spec = api.InterventionSpec(
        layer=layer_name,
        direction=channel_direction(channel, layer),
        intervention=kind,
        strength=Strength(alpha, "absolute"),
        span=Span(0.1, 0.4),
    )
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
    spec = api.InterventionSpec(
        layer=layer.name, direction=channel_direction(0, layer), intervention="add", strength=Strength(0.0)
    )
    base, patched, _, _ = api.run_pairs(embedded, [wave], spec)
    assert np.array_equal(base[0], patched[0])


def test_quantized_path_depends_on_input(embedded):
    a, b = chord(0.5, seed=1), chord(0.5, seed=2)
    res = tracing.run(
        embedded, [tracing.TraceItem(torch.from_numpy(x)) for x in (a, b)], path="quantized", save_traced=True
    )
    assert not torch.equal(res[0].traced["codes"], res[1].traced["codes"])
    assert float((res[0].output - res[1].output).abs().max()) > 1e-3


@pytest.mark.parametrize("layer_name", ["first_conv", "latent"])
def test_causal_patch_leaves_earlier_samples_unchanged(random_24k, layer_name):
    wave = chord(1.0, seed=5)
    layer = api.layers(random_24k).get(layer_name)
    start = 0.5
    spec = api.InterventionSpec(
        layer=layer.name,
        direction=channel_direction(1, layer),
        intervention="add",
        strength=Strength(50.0),
        span=Span(start),
    )
    base, patched, _, _ = api.run_pairs(random_24k, [wave], spec)
    t0 = int(np.floor(start * layer.frame_rate)) * layer.hop  # first patched frame, in samples
    # the decoder emits whole latent frames: a latent frame that contains t0 may
    # change samples up to one hop earlier, and nothing before that may change
    unchanged = (t0 // random_24k.hop) * random_24k.hop
    diff = np.abs(patched[0] - base[0])[0]
    assert unchanged > 0.4 * random_24k.sample_rate
    assert diff[:unchanged].max() == 0.0
    assert diff[t0:].max() > 1e-4


def test_a_multi_call_layer_gets_passes_of_its_own():
    from types import SimpleNamespace

    multi, single = SimpleNamespace(name="step"), SimpleNamespace(name="conv")
    model = SimpleNamespace(layer_calls=lambda layer: 4 if layer.name == "step" else 1)
    items = [tracing.TraceItem(torch.zeros(1, 8), layer) for layer in (None, multi, single, multi, single, None)]
    assert tracing._layer_groups(model, items, list(range(6))) == [[0, 5], [1, 3], [2, 4]]
    assert tracing._layer_groups(model, items, [0, 1, 3]) == [[0, 1, 3]]  # one multi-call layer alone
    assert tracing._layer_groups(model, items, [0, 2, 4]) == [[0, 2, 4]]  # no multi-call layer


# --- a model-agnostic tracer ------------------------------------------------------------------


def test_the_tracer_names_no_model_module_and_imports_no_api():
    """tracing.py reads only what it is given (layers, the output, declared traced outputs): no
    submodule or path name of any model, no import of the API (no import cycle)."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    source = Path(tracing.__file__).read_text()
    tree = ast.parse(source)
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in imported if m and m.startswith("steerlab")} == {"steerlab.errors", "steerlab.model"}
    names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert not names & {"codes", "quantized", "latent", "encoder", "decoder", "quantizer", "tokens"}
    assert not [word for word in ("codes", "quantized", "encodec") if word in source.lower()]
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, steerlab.tracing; print(sorted(m for m in sys.modules if m.startswith('steerlab')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "steerlab.api" not in loaded and "steerlab.plugins" not in loaded


class _Tap(AudioModel):
    """a -> tap (declared traced output, continuous path only) -> b; records its input's device."""

    name = "tap_model"
    paths = ("continuous", "other")
    traced_outputs = (TracedOutput("tapped", "tap", paths=("continuous",), before="b"),)

    def __init__(self, device: str = "cpu") -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(1, device=device))
        self.a, self.tap, self.b = torch.nn.Identity(), torch.nn.Identity(), torch.nn.Identity()
        self.seen: list[torch.device] = []

    def forward(self, wave, path="continuous"):
        self.seen.append(wave.device)
        if wave.device.type == "meta":
            return torch.zeros(wave.shape)  # a CPU output: only where the input went is tested
        return self.b(self.tap(self.a(wave) * 2.0) + 1.0)


def _tap_layers():
    from steerlab.model import LayerInfo

    return [LayerInfo(name, "identity", name, 1, 1, 1, 24_000, 1) for name in ("a", "b")]


def test_a_declared_traced_output_is_read_in_the_order_the_caller_gives():
    model = _Tap()
    a, b = _tap_layers()
    x = torch.arange(6.0)[None]

    def plus(k):
        return lambda act, n: act + k

    items = [tracing.TraceItem(x, a, plus(1.0)), tracing.TraceItem(x, b, plus(10.0)), tracing.TraceItem(x)]
    with pytest.raises(SteerlabError, match="needs their forward order: pass order="):
        tracing.run(model, items, save_traced=True)
    res = tracing.run(model, items, save_traced=True, order=["a", "b"])
    # the tap sits between a and b: it sees a's edit, not b's
    assert torch.equal(res[0].traced["tapped"], (x + 1.0) * 2.0) and torch.equal(res[0].output, (x + 1.0) * 2.0 + 1.0)
    assert torch.equal(res[1].traced["tapped"], x * 2.0) and torch.equal(res[1].output, x * 2.0 + 1.0 + 10.0)
    assert torch.equal(res[2].traced["tapped"], x * 2.0)
    # read on its declared paths only, and only when asked
    assert tracing.run(model, items, path="other", save_traced=True, order=["a", "b"])[2].traced == {}
    assert tracing.run(model, [tracing.TraceItem(x)])[0].traced == {}


def test_run_moves_inputs_to_the_models_device():
    model = _Tap("meta")
    res = tracing.run(model, [tracing.TraceItem(torch.ones(1, 10))])
    assert model.seen == [torch.device("meta")] and res[0].output.device.type == "cpu"


def test_the_envoy_cache_does_not_keep_a_deleted_model_alive():
    import copy
    import gc
    import weakref

    model = _Tap()
    envoy = tracing.envoy_for(model)
    assert tracing.envoy_for(model) is envoy
    tracing.run(model, [tracing.TraceItem(torch.ones(1, 4))])
    twin = copy.deepcopy(model)
    assert tracing.envoy_for(twin) is not envoy and tracing.envoy_for(twin)._module is twin
    alive = weakref.ref(model)
    del model, envoy
    gc.collect()
    assert alive() is None
