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
    seen, handle = _rows_seen(embedded, "encoder.model.0")
    try:
        plain = tracing.run(embedded, items, path=path, save_traced=True, order=api.layers(embedded).names())
        shared = tracing.run(
            embedded, items, path=path, save_traced=True, order=api.layers(embedded).names(), share_inputs=True
        )
    finally:
        handle.remove()
    assert seen == [8, 2]  # the first layer ran on every item, then once per distinct wave
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


def test_the_battery_shares_and_partials_do_not(embedded):
    """The battery's batches pass share_inputs; partials' rows (pinned bit for bit by the
    redesign goldens) are made without it."""
    import inspect

    from steerlab.battery import runner
    from steerlab.partials import sweep

    assert "share_inputs=True" in inspect.getsource(runner.batch_rows)
    assert "share_inputs" not in inspect.getsource(sweep)
