"""Sparse autoencoders and dictionaries: planted ground truth, determinism, statistics,
dead latents, the on-disk format and the SAELens export."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from steerlab import dictionary
from steerlab.dictionary import Dictionary
from steerlab.errors import DictionaryError, OutputError, SAEDataError, SteerlabError
from steerlab.sae import SAEConfig, SparseAutoencoder, data_stats, evaluate, train_sae

torch.set_num_threads(1)

WIDTH, PLANTED, ACTIVE = 32, 48, 3
# Shared by both variants. 60 epochs (1920 steps): at 20 epochs the explained variance was still
# rising and some other data seeds fell below 90% recovered (TopK 0.875 on data seed 1); at 60,
# data seeds 1, 4-7 gave TopK 0.958-1.0 and ReLU 1.0. The test uses data seed 0 as first written.
TRAIN = dict(width=WIDTH, size=64, k=ACTIVE, epochs=60, lr=3e-3, batch_size=256, seed=0)


def planted(n: int = 8192, offset: float = 0.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` vectors, each a non-negative combination (weights in [0.5, 2]) of ACTIVE of PLANTED
    random unit directions in WIDTH dims, plus noise of std 0.01 per dimension and an
    optional fixed offset of norm ``offset``. Returns (data [n, WIDTH], directions [PLANTED, WIDTH])."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(PLANTED, WIDTH, generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    idx = torch.stack([torch.randperm(PLANTED, generator=g)[:ACTIVE] for _ in range(n)])
    weights = torch.rand(n, ACTIVE, generator=g) * 1.5 + 0.5
    x = torch.zeros(n, PLANTED).scatter(1, idx, weights) @ d + 0.01 * torch.randn(n, WIDTH, generator=g)
    if offset:
        u = torch.randn(WIDTH, generator=g)
        x = x + offset * u / u.norm()
    return x, d


def best_cosines(sae: SparseAutoencoder, truth: torch.Tensor) -> torch.Tensor:
    """For each planted direction, the cosine of its best-matching decoder direction."""
    return (truth @ sae.directions.T).max(dim=1).values


def recovered(sae: SparseAutoencoder, truth: torch.Tensor, threshold: float = 0.95) -> float:
    """Share of planted directions whose best-matching decoder direction has cosine > threshold."""
    return float((best_cosines(sae, truth) > threshold).float().mean())


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def topk(data):
    return train_sae(data[0], SAEConfig(architecture="topk", **TRAIN))


@pytest.fixture(scope="module")
def relu(data):
    return train_sae(data[0], SAEConfig(architecture="relu", **TRAIN))  # default l1


def test_config_validates_with_allowed_values():
    with pytest.raises(ValueError, match="unknown SAE architecture 'gated'. Valid values: topk, relu"):
        SAEConfig(width=4, size=8, architecture="gated")
    with pytest.raises(ValueError, match=r"k \(9\) must be <= size \(8\)"):
        SAEConfig(width=4, size=8, k=9)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        SAEConfig(width=4, size=8, k=2, lr=0.0)
    with pytest.raises(ValueError, match="center must be True or False"):
        SAEConfig(width=4, size=8, k=2, center=1)
    with pytest.raises(ValueError, match="unknown SAE config keys: bogus"):
        SAEConfig.from_dict({"width": 4, "size": 8, "bogus": 1})
    cfg = SAEConfig(width=4, size=8, k=2)
    assert SAEConfig.from_dict(cfg.to_dict()) == cfg and cfg.effective_aux_k == 2


def test_topk_recovers_planted_directions(topk, data):
    sae, metrics = topk
    share = recovered(sae, data[1])
    print(
        f"topk: {share:.3f} of planted directions recovered (cos > 0.95), min best cosine"
        f" {float(best_cosines(sae, data[1]).min()):.3f}; metrics {metrics}"
    )
    # measured: 1.000 (min best cosine 0.999), explained variance 0.971, L0 3.0, dead fraction 0.25
    assert share >= 0.9
    assert metrics["l0"] == pytest.approx(ACTIVE) and metrics["explained_variance"] > 0.9


def test_relu_recovers_planted_directions(relu, data):
    sae, metrics = relu
    share = recovered(sae, data[1])
    print(
        f"relu: {share:.3f} of planted directions recovered (cos > 0.95), min best cosine"
        f" {float(best_cosines(sae, data[1]).min()):.3f}; metrics {metrics}"
    )
    # measured: 1.000 (min best cosine 0.991), explained variance 0.934, L0 4.95 (L1 shrinks codes,
    # so it is less sparse and reconstructs worse than TopK at the true k)
    assert share >= 0.9
    assert metrics["explained_variance"] > 0.8


def planted_square(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The planted test of issue 11: 64 directions in 32 dims, 3 active per vector, learned by an
    SAE of exactly 64 latents (no spare capacity: every latent must find its own direction)."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(64, WIDTH, generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    idx = torch.stack([torch.randperm(64, generator=g)[:ACTIVE] for _ in range(8192)])
    weights = torch.rand(8192, ACTIVE, generator=g) * 1.5 + 0.5
    x = torch.zeros(8192, 64).scatter(1, idx, weights) @ d + 0.01 * torch.randn(8192, WIDTH, generator=g)
    return x, d


def test_default_recipe_recovers_95_percent_of_64_planted_directions():
    """Every training setting at its default (lr 1e-3, batch 256, AuxK, rare-latent splitting
    every 50 steps) but the problem's own size, k and a number of epochs giving ~1000 steps.
    Data seeds 6-8 were not used while the recipe was chosen (seeds 0-5 were); docs/analyze.md
    has the table. Without splitting the same training recovers about 0.82 (0.73-1.00 over
    seeds 0-9), with it 0.997 (0.969-1.0)."""
    shares = []
    for seed in (6, 7, 8):
        x, truth = planted_square(seed)
        sae, metrics = train_sae(x, SAEConfig(width=WIDTH, size=64, k=ACTIVE, epochs=30))
        shares.append(recovered(sae, truth))
        assert metrics["split"] > 0  # the recipe did its work
    print(f"default recipe, 64 planted / 64 latents: recovered {shares} (cos > 0.95)")
    # measured: 1.000, 1.000, 0.969
    assert min(shares) >= 0.95
    # the bar can fail: the same training without splitting falls short of it on seed 6 (measured 0.83)
    x, truth = planted_square(6)
    sae, metrics = train_sae(x, SAEConfig(width=WIDTH, size=64, k=ACTIVE, epochs=30, split_every=0))
    assert metrics["split"] == 0 and recovered(sae, truth) < 0.9


def test_config_without_split_every_loads_as_trained_without_splitting():
    """Dictionaries saved before rare-latent splitting existed lack the key; they were trained
    without it, so that is what their config says (not the new default)."""
    cfg = SAEConfig(width=4, size=8, k=2)
    assert cfg.split_every == 50
    old = {key: value for key, value in cfg.to_dict().items() if key != "split_every"}
    assert SAEConfig.from_dict(old).split_every == 0
    assert SAEConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="split_every must be an integer >= 0"):
        SAEConfig(width=4, size=8, k=2, split_every=-1)


def test_large_offset_is_removed_and_directions_are_in_original_space(topk):
    x, truth = planted(offset=50.0)  # the `topk` fixture's data, shifted by a vector of norm 50
    sae, metrics = train_sae(x, SAEConfig(architecture="topk", **TRAIN))
    assert metrics["gamma"] > 10  # the offset dominates the spread
    share = recovered(sae, truth)
    same = (sae.directions * topk[0].directions).sum(1)
    print(
        f"offset 50: gamma {metrics['gamma']:.2f}, {share:.3f} recovered, EV {metrics['explained_variance']:.3f},"
        f" min cosine to the no-offset run's latents {float(same.min()):.7f}"
    )
    # measured: gamma 22.24, 1.000 recovered, every latent within cosine 0.9999999 of the no-offset run
    assert share >= 0.9 and metrics["explained_variance"] > 0.9
    assert float(same.min()) > 0.999  # centring removes the offset: training sees the same data
    # the mapping is exactly the documented one
    with torch.no_grad():
        codes = sae.encode(x[:50])
        z = (x[:50] - sae.center) / sae.scale
        expected = sae.activate((z - sae.b_dec) @ sae.W_enc + sae.b_enc)
        assert torch.equal(codes, expected)
        assert torch.allclose(sae.decode(codes), sae.center + sae.scale * (codes @ sae.W_dec + sae.b_dec))
        direct = sae.scale * sae.W_dec
        assert torch.allclose(sae.directions, direct / direct.norm(dim=1, keepdim=True), atol=1e-6)
        assert torch.allclose(sae.directions.norm(dim=1), torch.ones(sae.config.size), atol=1e-6)
    # the SAE input has mean squared norm `width` (normalize=True) and mean ~0 (center=True)
    z = (x - sae.center) / sae.scale
    assert float((z**2).sum(1).mean()) == pytest.approx(WIDTH, rel=1e-4)
    assert float(z.mean(0).norm()) < 1e-3


def test_training_is_deterministic_for_a_seed():
    x, _ = planted(n=2048, seed=2)
    cfg = SAEConfig(architecture="topk", **{**TRAIN, "epochs": 3, "dead_steps": 5})
    a, b = train_sae(x, cfg)[0], train_sae(x, cfg)[0]
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name
    c = train_sae(x, SAEConfig(architecture="topk", **{**TRAIN, "epochs": 3, "seed": 1}))[0]
    assert not torch.equal(a.W_dec, c.W_dec)
    relu_cfg = SAEConfig(architecture="relu", **{**TRAIN, "epochs": 2})
    assert torch.equal(train_sae(x, relu_cfg)[0].W_enc, train_sae(x, relu_cfg)[0].W_enc)


def test_streamed_blocks_train_and_match_array_statistics():
    x, _ = planted(n=3000, seed=3)
    blocks = lambda: (x[i : i + 700].numpy() for i in range(0, len(x), 700))  # noqa: E731
    s_arr, s_stream = data_stats(x, WIDTH), data_stats(blocks, WIDTH)
    assert s_arr.sha256 == s_stream.sha256 and s_arr.n == s_stream.n == 3000
    assert torch.allclose(s_arr.mean, s_stream.mean, atol=1e-12)
    cfg = SAEConfig(architecture="topk", **{**TRAIN, "epochs": 2})
    seen = []
    sae1, m1 = train_sae(blocks, cfg, progress=lambda e, n, loss: seen.append((e, n)))
    sae2, _ = train_sae(blocks, cfg)
    assert seen == [(1, 2), (2, 2)] and torch.equal(sae1.W_dec, sae2.W_dec)
    assert m1["steps"] == 2 * 12 and m1["n_vectors"] == 3000  # 3000 vectors in batches of 256 (last one 184)
    with pytest.raises(SAEDataError, match=r"batch 0 must have shape \[n, 32\]; got \[5, 3\]"):
        train_sae(lambda: iter([np.zeros((5, 3))]), cfg)
    with pytest.raises(SAEDataError, match="NaN"):
        train_sae(torch.full((10, WIDTH), float("nan")), cfg)


def test_gamma_on_data_with_known_mean_and_spread():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(4096, 16, generator=g, dtype=torch.float64)
    z = (z - z.mean(0)) / z.std(0, unbiased=False)  # each column: mean 0, population variance 1
    mean = torch.zeros(16, dtype=torch.float64)
    mean[:2] = torch.tensor([6.0, 8.0])  # norm 10
    x = (mean + 0.5 * z).float()  # std_norm = 0.5 * sqrt(16) = 2, so gamma = 10 / 2 = 5
    stats = data_stats(x, 16)
    assert stats.mean_norm == pytest.approx(10.0, rel=1e-5)
    assert stats.std_norm == pytest.approx(2.0, rel=1e-5)
    assert stats.gamma == pytest.approx(5.0, rel=1e-5)
    _, metrics = train_sae(x, SAEConfig(width=16, size=16, k=2, epochs=1))
    assert metrics["gamma"] == stats.gamma
    # no spread: gamma is undefined and there is nothing to learn (issue 10: a dictionary of
    # dead latents was written); the refusal carries the measured statistics
    from steerlab.errors import NoVarianceError

    with pytest.raises(NoVarianceError, match="64 vectors are all equal") as info:
        train_sae(torch.ones(64, 16), SAEConfig(width=16, size=8, k=2, epochs=1))
    assert info.value.stats.gamma is None and info.value.stats.std_norm == 0.0


def test_dead_fraction_counts_latents_that_never_fire(topk, data):
    sae, metrics = topk
    x = data[0]

    def brute(model):
        with torch.no_grad():
            return 1.0 - float((model.encode(x) > 0).any(0).float().mean())

    assert metrics["dead_fraction"] == brute(sae)
    forced = copy.deepcopy(sae)
    with torch.no_grad():
        forced.b_enc[:10] = -1e4  # these can never be among the top k
    m = evaluate(forced, x)
    assert m["dead_fraction"] == brute(forced) >= 10 / 64
    with torch.no_grad():
        assert not (forced.encode(x)[:, :10] > 0).any()
    print(f"dead fraction: trained {metrics['dead_fraction']:.3f}, with 10 forced dead {m['dead_fraction']:.3f}")


def test_k_is_checked_only_for_architectures_that_use_it():
    # learn --architecture jumprelu --size 8 failed on the unused default k: relu and jumprelu record k, never use it
    for arch in ("relu", "jumprelu"):
        assert SAEConfig(width=4, size=8, architecture=arch, k=16).k == 16
    for arch in ("topk", "batchtopk", "matryoshka"):
        with pytest.raises(ValueError, match=r"k \(9\) must be <= size \(8\)"):
            SAEConfig(width=4, size=8, architecture=arch, k=9)


def test_evaluation_on_a_sample_estimates_the_whole_data(topk, data):
    sae, metrics = topk
    x = data[0]  # 8192 vectors: train_sae measured every one of them
    assert metrics["evaluated_vectors"] == metrics["n_vectors"] == len(x) and metrics["explained_variance_se"] == 0.0
    stats = data_stats(x, WIDTH)
    full = evaluate(sae, x, stats=stats)
    assert full == evaluate(sae, x, stats=stats, max_vectors=len(x))  # no more than the cap: every vector
    assert {k: metrics[k] for k in full} == full  # what train_sae measured
    assert abs(evaluate(sae, x)["explained_variance"] - full["explained_variance"]) < 1e-9  # SST summed instead
    one = evaluate(sae, x, max_vectors=1024, seed=3, stats=stats)
    assert one == evaluate(sae, x, max_vectors=1024, seed=3)  # seeded; stats measured when not given
    assert one["evaluated_vectors"] == 1024 and one["n_vectors"] == len(x)
    # a streamed source gives the same sample (the same rows, another batching: float64 sums agree)
    streamed = evaluate(sae, lambda: (x[i : i + 1000] for i in range(0, len(x), 1000)), max_vectors=1024, seed=3)
    assert streamed["l0"] == one["l0"] and streamed["dead_fraction"] == one["dead_fraction"]
    assert abs(streamed["explained_variance"] - one["explained_variance"]) < 1e-9
    # the standard error is honest: over 40 seeds the estimates scatter by about it around the exact value
    draws = [evaluate(sae, x, max_vectors=1024, seed=s, stats=stats) for s in range(40)]
    ev = np.array([d["explained_variance"] for d in draws])
    se = float(np.mean([d["explained_variance_se"] for d in draws]))
    assert 0 < se < 0.01
    assert 0.6 < float(ev.std(ddof=1)) / se < 1.5
    assert abs(float(ev.mean()) - full["explained_variance"]) < 3 * se / np.sqrt(len(ev)) + 1e-12
    assert all(d["dead_fraction"] >= full["dead_fraction"] for d in draws)  # fewer vectors: no latent fires more
    print(f"explained variance {full['explained_variance']:.5f}; 1024-vector samples {ev.mean():.5f} +- "
          f"{ev.std(ddof=1):.5f} (stated se {se:.5f})")  # fmt: skip


def test_dead_latent_handling_engages():
    # 4 directions in 8 dims, 32 ReLU latents: many latents die without resampling.
    g = torch.Generator().manual_seed(0)
    d = torch.randn(4, 8, generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    x = d[torch.randint(0, 4, (2048,), generator=g)] * (1 + torch.rand(2048, 1, generator=g))
    base = dict(width=8, size=32, architecture="relu", l1=1.0, epochs=30, lr=3e-3)
    _, off = train_sae(x, SAEConfig(**base, dead_steps=0))
    _, on = train_sae(x, SAEConfig(**base, dead_steps=20))
    print(
        f"relu dead fraction: no resampling {off['dead_fraction']:.3f}, resampling {on['dead_fraction']:.3f}"
        f" ({on['resampled']} resampled)"
    )
    # measured: 0.281 -> 0.094 (7 resampled)
    assert off["resampled"] == 0 and on["resampled"] > 0
    assert on["dead_fraction"] < off["dead_fraction"]
    # TopK: with dead latents present, the AuxK term is part of the loss; without handling it is not
    topk_base = dict(width=8, size=32, k=2, epochs=10, lr=3e-3)
    _, aux = train_sae(x, SAEConfig(**topk_base, dead_steps=20))
    _, plain = train_sae(x, SAEConfig(**topk_base, dead_steps=0))
    assert aux["dead_fraction"] > 0 and aux["final_loss"] > aux["final_recon_loss"]
    assert plain["final_loss"] == plain["final_recon_loss"]


def _dictionary(result, target="feature") -> Dictionary:
    sae, metrics = result
    return Dictionary(
        sae=sae,
        model="encodec_24khz",
        layer="encoder.layers.3",
        target=target,
        weights_hash="abc123",
        data_description="planted sparse directions",
        metrics=metrics,
    )


def test_round_trip_is_bit_exact(topk, data, tmp_path):
    d = _dictionary(topk, target="archetype")
    folder = dictionary.save(d, tmp_path / "dict")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "weights.safetensors"]
    doc = json.loads((folder / "config.json").read_text())
    assert doc["format"] == "steerlab-dictionary" and doc["version"] == 1
    assert {
        "model",
        "weights_hash",
        "layer",
        "kind",
        "width",
        "size",
        "k",
        "normalization",
        "data",
        "metrics",
        "sae",
        "seed",
        "versions",
        "weights",
    } <= set(doc)
    assert doc["normalization"]["stats"]["gamma"] == d.stats.gamma and doc["data"]["sha256"] == d.stats.sha256
    back = dictionary.load(folder)
    for name, tensor in d.sae.state_dict().items():
        assert torch.equal(tensor, back.sae.state_dict()[name]), name
    for attr in (
        "model",
        "layer",
        "target",
        "weights_hash",
        "data_description",
        "data_hash",
        "metrics",
        "versions",
        "stats",
    ):
        assert getattr(back, attr) == getattr(d, attr), attr
    assert back.config == d.config and back.sae.stats == d.stats
    x = data[0][:256]
    assert torch.equal(back.sae(x)[0], d.sae(x)[0])
    with pytest.raises(OutputError, match="already exists"):
        dictionary.save(d, folder)
    dictionary.save(d, folder, overwrite=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not replacing"):
        dictionary.save(d, tmp_path / "other", overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left
    with pytest.raises(ValueError, match="unknown dictionary target 'motion'. Valid values: feature, archetype"):
        Dictionary(sae=d.sae, model="m", layer="l", target="motion")


def test_unknown_version_and_damage_are_refused(topk, tmp_path):
    folder = dictionary.save(_dictionary(topk), tmp_path / "dict")
    cfg = folder / "config.json"
    doc = json.loads(cfg.read_text())
    cfg.write_text(json.dumps({**doc, "version": 2}))
    with pytest.raises(DictionaryError) as info:
        dictionary.load(folder)
    message = str(info.value)
    assert "version 2" in message and "reads version 1" in message and "\n" not in message
    assert isinstance(info.value, SteerlabError)
    cfg.write_text(json.dumps({**doc, "format": "something-else"}))
    with pytest.raises(DictionaryError, match="not a steerlab dictionary"):
        dictionary.load(folder)
    cfg.write_text(json.dumps(doc))
    weights = folder / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(DictionaryError, match="does not match the sha256"):
        dictionary.load(folder)
    with pytest.raises(DictionaryError, match="no config.json"):
        dictionary.load(tmp_path)


def saelens_forward(cfg: dict, w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """SAELens' standard / topk forward, written from its documented formulas."""
    sae_in = x - w["b_dec"] if cfg["apply_b_dec_to_input"] else x
    pre = sae_in @ w["W_enc"] + w["b_enc"]
    if cfg["architecture"] == "topk":
        top = torch.topk(pre, cfg["activation_fn_kwargs"]["k"], dim=-1)
        acts = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
    else:
        acts = torch.relu(pre)
    return acts @ w["W_dec"] + w["b_dec"]


@pytest.mark.parametrize("variant", ["topk", "relu", "offset"])
def test_saelens_export_reproduces_reconstruction(variant, topk, relu, data, tmp_path):
    if variant == "offset":  # centre and scale far from 0 and 1, so folding them matters
        x, _ = planted(n=2048, offset=50.0, seed=5)
        result = train_sae(x, SAEConfig(architecture="topk", **{**TRAIN, "epochs": 2}))
    else:
        x, result = data[0], {"topk": topk, "relu": relu}[variant]
    from safetensors.torch import load_file

    d = _dictionary(result)
    folder = dictionary.export_saelens(d, tmp_path / "saelens")
    cfg = json.loads((folder / "cfg.json").read_text())
    w = load_file(str(folder / "sae_weights.safetensors"))
    cfgs = d.config
    assert (cfg["d_in"], cfg["d_sae"]) == (cfgs.width, cfgs.size)
    assert cfg["architecture"] == ("topk" if cfgs.architecture == "topk" else "standard")
    assert cfg["normalize_activations"] == "none" and cfg["model_name"] == d.model and cfg["hook_name"] == d.layer
    shapes = {k: tuple(v.shape) for k, v in w.items()}
    assert shapes == {
        "W_enc": (cfgs.width, cfgs.size),
        "W_dec": (cfgs.size, cfgs.width),
        "b_enc": (cfgs.size,),
        "b_dec": (cfgs.width,),
    }
    x = x[:1024]
    with torch.no_grad():
        ours = d.sae(x)[0]
    theirs = saelens_forward(cfg, w, x)
    err = float((ours - theirs).abs().max() / x.abs().max())
    print(f"saelens export ({variant}): max |difference| / max |x| = {err:.2e}")
    assert err < 1e-5
