"""tracing.run(share_inputs=True): items edited at one layer whose inputs are equal run those
inputs once up to the layer (rows repeated there), with the results of the unshared pass up to a
float's last bits; and it does not share where it may not."""

from __future__ import annotations

import pytest
import torch

from steerlab import api, tracing
from tests.conftest import chord


def _edit(strength: float, channel: int):
    def edit(act, n):
        out = act.clone()
        out[:, channel, :n] += strength
        return out

    return edit


def _rows_seen(model, module_path: str):
    """The batch sizes the module at ``module_path`` sees, per forward (a plain torch hook)."""
    node = model
    for part in module_path.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    seen: list[int] = []
    handle = node.register_forward_hook(lambda m, i, o: seen.append(int(i[0].shape[0])))
    return seen, handle


def _items(model, layer_name: str, waves, n_each: int = 4):
    layer = api.layers(model).get(layer_name)
    return [
        tracing.TraceItem(torch.from_numpy(w.copy()), layer, _edit(0.3 * (k + 1), k), save_activation=True)
        for w in waves
        for k in range(n_each)
    ]


@pytest.mark.parametrize(("layer_name", "path"), [("encoder.5.elu", "continuous"), ("latent", "quantized")])
def test_shared_inputs_run_once_up_to_the_layer_with_the_unshared_results(embedded, layer_name, path):
    waves = [chord(0.5, seed=1), chord(0.5, seed=2)]
    items = _items(embedded, layer_name, waves)  # 8 items, 2 distinct waves (copies: equal by value)
    tracing._SHARING_CHECKED.clear()
    seen, handle = _rows_seen(embedded, "encoder.model.0")
    try:
        plain = tracing.run(embedded, items, path=path, save_traced=True, order=api.layers(embedded).names())
        shared = tracing.run(
            embedded, items, path=path, save_traced=True, order=api.layers(embedded).names(), share_inputs=True
        )
    finally:
        handle.remove()
    # the first layer ran on every item; then, sharing for the first time at this place, on every
    # item again (the check against the unshared pass), and once per distinct wave
    assert seen == [8, 8, 2]
    scale = max(float(r.output.abs().max()) for r in plain)
    for a, b in zip(plain, shared):
        assert a.output.shape == b.output.shape
        assert float((a.output - b.output).abs().max()) < 1e-5 * scale
        assert float((a.activation - b.activation).abs().max()) < 1e-5 * float(a.activation.abs().max())
        assert float((a.patched_activation - b.patched_activation).abs().max()) < 1e-4
        for name in a.traced:
            if a.traced[name].dtype.is_floating_point:
                assert float((a.traced[name] - b.traced[name]).abs().max()) < 1e-4
    # the edits differ per item, so items of one wave must not share their outputs
    assert float((shared[0].output - shared[1].output).abs().max()) > 1e-3 * scale
    # and each item kept its own edit: item k's patched activation moved channel k only
    d = (shared[2].patched_activation - shared[2].activation).abs().amax(dim=1)
    assert int(d.argmax()) == 2 and float(d[2]) == pytest.approx(0.9, rel=1e-5)


def test_no_sharing_where_the_model_has_not_declared_its_rows_independent(embedded, monkeypatch):
    waves = [chord(0.5, seed=1)]
    items = _items(embedded, "encoder.5.elu", waves)
    monkeypatch.setattr(embedded, "rows_independent", False)
    seen, handle = _rows_seen(embedded, "encoder.model.0")
    try:
        plain = tracing.run(embedded, items)
        shared = tracing.run(embedded, items, share_inputs=True)
    finally:
        handle.remove()
    assert seen == [4, 4]
    assert all(torch.equal(a.output, b.output) for a, b in zip(plain, shared))


def test_no_sharing_across_layers_or_distinct_inputs(embedded):
    waves = [chord(0.5, seed=1)]
    two_layers = _items(embedded, "encoder.5.elu", waves, 2) + _items(embedded, "latent", waves, 2)
    distinct = _items(embedded, "latent", [chord(0.5, seed=s) for s in (1, 2, 3)], 1)
    seen, handle = _rows_seen(embedded, "encoder.model.0")
    try:
        for items in (two_layers, distinct):
            plain = tracing.run(embedded, items, order=api.layers(embedded).names())
            shared = tracing.run(embedded, items, order=api.layers(embedded).names(), share_inputs=True)
            assert all(torch.equal(a.output, b.output) for a, b in zip(plain, shared))
    finally:
        handle.remove()
    assert seen == [4, 4, 3, 3]


def test_the_battery_shares_equal_inputs_and_its_rows_stay_within_a_floats_last_bits(tmp_path, monkeypatch):
    """A tiny battery run (loudness, one layer, the tiny grid): its patched passes run with
    share_inputs and feed the model fewer rows than without, and every row's target and damage
    equal those of the same run with sharing off to 1e-4 dB. (partials does not share: its rows
    are pinned bit for bit by tests/test_redesign_identity.py.)"""
    from conftest import battery_toml

    from steerlab.battery.registry import concepts
    from steerlab.battery.runner import run_concept
    from steerlab.partials import build

    cfg = tmp_path / "s.toml"
    cfg.write_text(battery_toml())
    real_run, real_batch = tracing.run, tracing._batch

    def run(out, share: bool) -> tuple[dict, list[int], list[bool]]:
        rows_in: list[int] = []  # the rows of every pass's input batch
        flags: list[bool] = []

        def forced(model, items, *a, **k):
            flags.append(bool(k.get("share_inputs")))
            return real_run(model, items, *a, **{**k, "share_inputs": share and k.get("share_inputs", False)})

        def batch(model, waves, device):
            rows_in.append(len(waves))
            return real_batch(model, waves, device)

        monkeypatch.setattr(tracing, "run", forced)
        monkeypatch.setattr(tracing, "_batch", batch)
        concept = concepts().get("loudness")
        outcome = run_concept(concept, build(cfg, True), out, "tiny_encodec_24khz", True, ["latent"])
        return {r["key"]: r for r in outcome.rows}, rows_in, flags

    shared, rows_shared, flags = run(tmp_path / "a", True)
    assert any(flags)  # the battery asks for sharing
    plain, rows_plain, _ = run(tmp_path / "b", False)
    assert sum(rows_shared) < sum(rows_plain)  # fewer rows into the model: equal inputs were shared
    assert shared.keys() == plain.keys() and len(shared) > 0
    for k, r in shared.items():
        for f in ("target", "damage"):
            assert (r[f] is None) == (plain[k][f] is None)
            if r[f] is not None:
                assert abs(r[f] - plain[k][f]) < 1e-4, (k, f, r[f], plain[k][f])


def _compare(model, items, path=None, save_traced=False):
    """(rows the first encoder module saw per pass: unshared then shared; largest output
    difference relative to the outputs' scale)."""
    order = api.layers(model).names()
    # (the first shared pass's check is tested on its own, below)
    where = path or model.default_path
    tracing._SHARING_CHECKED.update(
        tracing._sharing_place(model, layer.name, where, None) for layer in api.layers(model)
    )
    seen, handle = _rows_seen(model, "encoder.model.0")
    try:
        a = tracing.run(model, items, path=path, save_traced=save_traced, order=order)
        b = tracing.run(model, items, path=path, save_traced=save_traced, order=order, share_inputs=True)
    finally:
        handle.remove()
    scale = max(float(r.output.abs().max()) for r in a)
    diff = max(float((x.output - y.output).abs().max()) for x, y in zip(a, b))
    for x, y in zip(a, b):
        assert x.output.shape == y.output.shape and set(x.traced) == set(y.traced)
        for k in x.traced:
            assert torch.equal(x.traced[k], y.traced[k]) or float((x.traced[k] - y.traced[k]).abs().max()) < 1e-4
    return seen, diff / scale


def test_inputs_of_different_lengths_in_one_pass_share_by_length_and_value(embedded):
    long, short = chord(0.5, seed=1), chord(0.25, seed=1)
    seen, rel = _compare(embedded, _items(embedded, "encoder.5.elu", [long, short, long, short], 2))
    assert seen == [8, 2] and rel < 1e-5  # two distinct waves: equal values of one length each


def test_no_sharing_when_a_traced_output_is_read_before_the_edited_layer(embedded):
    """On the quantized path the codes are read before ``quantized``: the pass is not shared
    (its codes would have one row per distinct input); at ``latent`` they are read after it."""
    wave = chord(0.5, seed=1)
    seen, rel = _compare(embedded, _items(embedded, "quantized", [wave, wave], 2), "quantized", True)
    assert seen == [4, 4] and rel == 0.0
    seen, rel = _compare(embedded, _items(embedded, "latent", [wave, wave], 2), "quantized", True)
    assert seen == [4, 1] and rel < 1e-5


def test_a_non_causal_stereo_codec_with_time_group_norm_shares_with_the_unshared_results():
    """The other encodec configuration the flag covers (48 kHz-like: non-causal, per-sample
    group norm over time, two channels, normalised input), at random weights."""
    from steerlab import plugins
    from steerlab.builtins.encodec.codec import CodecConfig
    from steerlab.builtins.encodec.model import EncodecAudioModel

    torch.manual_seed(0)
    cfg = CodecConfig(
        sample_rate=48000, channels=2, causal=False, norm="time_group_norm", n_filters=8, dimension=32, lstm=1,
        bins=256, target_bandwidths=(3.0,), normalize=True,
    )  # fmt: skip
    model = EncodecAudioModel("nc", cfg)
    model.layer_registry = plugins.layers_for(model)
    assert model.rows_independent and not model.ragged_batching
    gen = torch.Generator().manual_seed(1)
    waves = [(torch.randn(2, 9600, generator=gen) * a).numpy() for a in (0.1, 0.3)]
    names = api.layers(model).names()
    for layer, path in ((names[len(names) // 3], "continuous"), ("latent", "quantized")):
        seen, rel = _compare(model, _items(model, layer, waves, 3), path, path == "quantized")
        assert seen == [6, 2] and rel < 1e-5, (layer, path, seen, rel)


def test_a_model_that_declares_rows_independent_wrongly_is_stopped_on_its_first_shared_pass(embedded):
    """A prefix that mixes rows (here the batch mean subtracted after the first conv): sharing
    changes the output, the first shared pass at a place is checked against the unshared pass,
    and the run stops with a one-line error naming the model and the fix."""
    from steerlab.errors import SteerlabError

    items = _items(embedded, "encoder.5.elu", [chord(0.5, seed=1)] * 3 + [chord(0.5, seed=2)], 1)
    tracing._SHARING_CHECKED.clear()
    first = embedded.encoder.model[0]
    handle = first.register_forward_hook(lambda m, i, o: o - 0.5 * o.mean(0, keepdim=True))
    try:
        plain = tracing.run(embedded, items)
        with pytest.raises(SteerlabError, match="declares rows_independent.*set rows_independent = False"):
            tracing.run(embedded, items, share_inputs=True)
    finally:
        handle.remove()
        tracing._SHARING_CHECKED.clear()
    assert all(torch.isfinite(r.output).all() for r in plain)
