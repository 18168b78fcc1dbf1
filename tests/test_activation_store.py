"""The activation store (steerlab.activations): written once, read bounded, reused by learn and analyze."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from steerlab import api, tracing
from steerlab.activations import PROGRESS, ActivationStore, StoreError, build_store, train_many
from steerlab.capture import Corpus
from steerlab.sae import SAEConfig, train_sae

torch.set_num_threads(1)
LAYER = "encoder.6.conv"  # 48 channels at 3000 frames/s: small stores, fast tests


@pytest.fixture(scope="module")
def model():
    return api.load_model()


def _corpus(model, n=4, seconds=0.25):
    return Corpus.for_model(model, [f"synth:{n}"], seed=3, clip_seconds=seconds)


@pytest.fixture(scope="module")
def store(model, tmp_path_factory):
    return build_store(model, LAYER, _corpus(model), tmp_path_factory.mktemp("s") / "store", frames_per_shard=500)


def test_store_holds_every_frame_of_every_clip_as_the_model_gives_it(model, store):
    info = api.layers(model).get(LAYER)
    waves = [torch.as_tensor(w).float() for _, w in _corpus(model).clips()]
    acts = [a[info.name].T.numpy() for a in tracing.capture(model, waves, [info], 16)]
    stored = {c: rows for c, rows in store.clip_rows(("vectors", "frame"))}
    assert sorted(stored) == list(range(len(waves)))
    for ci, act in enumerate(acts):
        np.testing.assert_array_equal(stored[ci]["vectors"], act)
        np.testing.assert_array_equal(stored[ci]["frame"], np.arange(len(act)))
    doc = json.loads((store.folder / "manifest.json").read_text())
    assert doc["n_vectors"] == sum(len(a) for a in acts) == store.n_vectors
    assert (doc["model"], doc["layer"], doc["kind"], doc["width"]) == (model.name, info.name, "features", 48)
    assert doc["weights_hash"] == model.weights_hash() and doc["frames_per_shard"] == 500
    assert len(doc["shards"]) >= 3 and all(s["n_vectors"] >= 500 for s in doc["shards"][:-1])
    assert doc["inputs"] == [{"generated": "synth:4"}] and len(doc["config_hash"]) == 64
    store.verify()
    assert not (store.folder / PROGRESS).exists()


def test_archetype_store_holds_generators_within_clips_and_their_starts(model, tmp_path):
    s = build_store(model, LAYER, _corpus(model, 2), tmp_path / "g", "archetypes", frames_per_shard=300)
    info = api.layers(model).get(LAYER)
    waves = [torch.as_tensor(w).float() for _, w in _corpus(model, 2).clips()]
    acts = [a[info.name].T.numpy() for a in tracing.capture(model, waves, [info], 16)]
    for ci, rows in s.clip_rows(("vectors", "starts", "frame")):
        np.testing.assert_allclose(rows["vectors"], acts[ci][1:] - acts[ci][:-1], rtol=0, atol=0)
        np.testing.assert_array_equal(rows["starts"], acts[ci][:-1])
    assert s.n_vectors == sum(len(a) - 1 for a in acts)


def test_minibatches_are_seeded_complete_and_bounded(store):
    def epoch(seed, e):
        return [b.clone() for b in store.minibatches(64, seed=seed, epoch=e, window=2)]

    a, b, c = epoch(1, 0), epoch(1, 0), epoch(1, 1)
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)
    assert not torch.equal(a[0], c[0])
    assert all(len(x) == 64 for x in a[:-1]) and sum(len(x) for x in a) == store.n_vectors
    everything = torch.cat([store.read_shard(i)["vectors"] for i in range(len(store.shards))])
    got = torch.cat(a)
    order = lambda t: t[np.lexsort(t.numpy().T[::-1])]  # noqa: E731 - rows sorted, to compare as sets
    assert torch.equal(order(got), order(everything))


def test_memory_stays_bounded_whatever_the_corpus_length(model, tmp_path):
    """The most shards ever held at once is the readers' window, for a corpus 4 times longer."""
    peaks = []
    for n in (2, 8):
        s = build_store(model, LAYER, _corpus(model, n), tmp_path / f"s{n}", frames_per_shard=200)
        for _ in s.minibatches(32, window=2):
            pass
        for _block in s.factory()():
            pass
        list(s.clip_rows())
        peaks.append((len(s.shards), s.max_resident))
    (short_shards, short_peak), (long_shards, long_peak) = peaks
    assert long_shards >= 3 * short_shards
    assert short_peak == long_peak == 2


def test_several_configurations_in_one_pass_equal_each_trained_alone(store):
    configs = [
        SAEConfig(width=48, size=16, k=2, epochs=2, batch_size=128, seed=5),
        SAEConfig(width=48, size=32, k=4, epochs=2, batch_size=64, seed=5),
        SAEConfig(width=48, size=16, architecture="relu", epochs=2, batch_size=128, seed=7),
    ]
    reads = []
    real = store.read_shard

    def counting(i, columns=("vectors",)):
        reads.append(i)
        return real(i, columns)

    store.read_shard = counting  # type: ignore[method-assign]
    try:
        together = train_many(store, configs, seed=5)
        shared_reads = len(reads)
        alone = [train_many(store, [c], seed=5)[0] for c in configs]
    finally:
        del store.read_shard
    assert shared_reads == (2 + 2) * len(store.shards)  # statistics, 2 epochs, evaluation: each shard once
    for (sae_a, m_a), (sae_b, m_b) in zip(together, alone):
        for name, t in sae_a.state_dict().items():
            assert torch.equal(t, sae_b.state_dict()[name]), name
        assert {k: v for k, v in m_a.items() if k != "seconds"} == {k: v for k, v in m_b.items() if k != "seconds"}
    # and "alone" is plain train_sae over the store's factory
    sae, metrics = train_sae(store.factory(5), configs[1])
    assert torch.equal(sae.W_dec, alone[1][0].W_dec)
    assert sae.stats is not None and sae.stats.n == store.n_vectors


def test_an_error_in_one_configuration_stops_them_all(store):
    def broken():
        yield from store.factory()()
        raise OSError("disk went away")

    configs = [SAEConfig(width=48, size=16, k=2, epochs=1, seed=s) for s in (1, 2)]
    with pytest.raises(OSError, match="disk went away"):
        train_many(broken, configs)


def test_interrupted_capture_resumes_and_other_settings_are_refused(model, tmp_path, monkeypatch):
    folder = tmp_path / "s"
    whole = build_store(model, LAYER, _corpus(model, 6), tmp_path / "whole", frames_per_shard=200)
    from steerlab import artifacts

    calls = {"n": 0}
    original = artifacts.atomic_write_json

    def dying(obj, path):
        original(obj, path)
        if path.name == PROGRESS:
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(artifacts, "atomic_write_json", dying)
    with pytest.raises(KeyboardInterrupt):
        build_store(model, LAYER, _corpus(model, 6), folder, frames_per_shard=200)
    monkeypatch.setattr(artifacts, "atomic_write_json", original)
    with pytest.raises(StoreError, match="not a complete activation store.*resume"):
        ActivationStore(folder)
    with pytest.raises(StoreError, match="other settings"):
        build_store(model, LAYER, _corpus(model, 6), folder, frames_per_shard=300)
    said = []
    resumed = build_store(model, LAYER, _corpus(model, 6), folder, frames_per_shard=200, progress=said.append)
    assert any("resuming" in s and "2 shards already written" in s for s in said)
    assert resumed.doc["config_hash"] == whole.doc["config_hash"]
    assert [s["sha256"] for s in resumed.shards] == [s["sha256"] for s in whole.shards]
    assert resumed.doc["corpus"]["manifest"] == whole.doc["corpus"]["manifest"]
    with pytest.raises(StoreError, match="complete store"):
        build_store(model, LAYER, _corpus(model, 6), folder, frames_per_shard=200)


def test_a_store_of_other_weights_is_refused(model, store):
    class Other:
        name = model.name

        def weights_hash(self):
            return "0" * 64

    with pytest.raises(StoreError, match="holds weights hash .* not 0000"):
        store.check_matches(Other())
    store.check_matches(model, LAYER, "features")


def test_analysis_capture_from_the_store_equals_the_capture(model, store):
    from steerlab.analysis.data import capture, capture_from_store

    info = api.layers(model).get(LAYER)
    for max_vectors in (100, 10_000):
        a = capture(model, info, _corpus(model), "feature", max_vectors, seed=2)
        b = capture_from_store(store, "feature", max_vectors, seed=2)
        for x, y in ((a.vectors, b.vectors), (a.starts, b.starts), (a.clip, b.clip), (a.frame, b.frame)):
            np.testing.assert_array_equal(x, y)
        assert a.seen == b.seen and a.sha256 == b.sha256


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def cli():
    from steerlab import cli as cli_module

    return cli_module.get_cli()


def _run(cli, args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_cli_capture_then_learn_several_configurations_and_refusals(cli, tmp_path):
    s = tmp_path / "store"
    r = _run(cli, ["capture", "-l", "first_conv", "--data", "synth:2", "--clip-seconds", "0.1", "-o", str(s)])
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and "encoder.0.conv" in r.output
    fast = ["--epochs", "1", "--batch-size", "512"]
    r = _run(cli, ["learn", "features", "-l", "first_conv", "--store", str(s), "-o", str(tmp_path / "D"),
                   "--size", "16", "--size", "32", "--k", "2", *fast])  # fmt: skip
    assert r.exit_code == 0, r.output
    made = sorted(p.name for p in (tmp_path / "D").iterdir())
    assert made == ["topk-size16-k2-seed0", "topk-size32-k2-seed0"]
    cfg = json.loads((tmp_path / "D" / made[1] / "config.json").read_text())
    assert cfg["sae"]["size"] == 32 and cfg["layer"] == "encoder.0.conv"
    assert "store" in json.dumps(cfg)
    cases = [
        (
            ["learn", "features", "-l", "last_conv", "--store", str(s)],
            "holds layer encoder.0.conv, not encoder.15.conv",
        ),
        (["learn", "archetypes", "-l", "first_conv", "--store", str(s)], "holds kind features, not archetypes"),
        (["learn", "features", "-l", "first_conv", "--data", "synth:2", "--store", str(s)], "not both"),
        (["learn", "features", "-l", "first_conv", "--store", str(tmp_path)], "not a complete activation store"),
        # --device holds for the store path too (it was ignored there): no CUDA here, so one line
        (["learn", "features", "-l", "first_conv", "--store", str(s), "--device", "cuda"], "'cuda' is not available"),
    ]
    for args, message in cases:
        r = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "X"), *fast])
        assert r.exit_code == 1, r.output
        lines = [line for line in r.output.splitlines() if line.startswith("Error")]
        assert len(lines) == 1 and message in lines[0], r.output
        assert "Traceback" not in r.output


def test_cli_analyze_reads_the_store(cli, tmp_path, model):
    s = tmp_path / "store"
    assert (
        _run(cli, ["capture", "-l", LAYER, "--data", "synth:3", "--clip-seconds", "0.5", "-o", str(s)]).exit_code == 0
    )
    d = tmp_path / "D"
    r = _run(cli, ["learn", "features", "-l", LAYER, "--store", str(s), "-o", str(d), "--size", "16", "--k", "2",
                   "--epochs", "1"])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = _run(cli, ["analyze", str(d), "--store", str(s), "-o", str(tmp_path / "R"), "--quick",
                   "--only", "coverage,usage", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "R" / "report.json").read_text())
    assert report["data"]["store"] == str(s)
    assert report["data"]["n_vectors"] > 0 and re.match(r"[0-9a-f]{16}", report["data"]["store_config_hash"])
