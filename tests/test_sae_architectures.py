"""Issue 16 §4: the BatchTopK, JumpReLU and Matryoshka SAEs beside TopK and ReLU/L1: each on the
planted-truth test, its defining mechanism checked by hand, saved and loaded back, exported to
SAELens' layout, and offered by ``steerlab learn --architecture``."""

from __future__ import annotations

import json

import pytest
import torch
from test_sae import ACTIVE, TRAIN, WIDTH, _dictionary, best_cosines, planted, planted_square, recovered

from steerlab import dictionary
from steerlab.errors import DictionaryError
from steerlab.sae import ARCHITECTURES, SAEConfig, _JumpReLU, _Step, train_codes, train_sae

torch.set_num_threads(1)

NEW = ("batchtopk", "jumprelu", "matryoshka")


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def trained(data):
    """Each new architecture on the planted test of tests/test_sae.py, at its settings (TRAIN)."""
    return {arch: train_sae(data[0], SAEConfig(architecture=arch, **TRAIN)) for arch in NEW}


@pytest.mark.parametrize("arch", NEW)
def test_recovers_planted_directions(arch, trained, data):
    sae, metrics = trained[arch]
    share = recovered(sae, data[1])
    print(
        f"{arch}: {share:.3f} of 48 planted directions recovered (cos > 0.95), min best cosine "
        f"{float(best_cosines(sae, data[1]).min()):.3f}, EV {metrics['explained_variance']:.3f}, "
        f"L0 {metrics['l0']:.2f}, dead {metrics['dead_fraction']:.3f}"
    )
    # measured: batchtopk 1.000 (EV 0.960, L0 2.97), jumprelu 1.000 (EV 0.921, L0 2.40),
    # matryoshka 1.000 (EV 0.958, L0 3.00; 0.917 with the earlier prefixes size/8..size)
    assert share >= 0.9 and metrics["explained_variance"] > 0.9
    if arch == "jumprelu":  # no k: its L0 coefficient sets the sparsity; planted weights of 0.5 fall
        assert 2.0 < metrics["l0"] < ACTIVE  # below its thresholds, so a little under the planted 3
    else:
        assert metrics["l0"] == pytest.approx(ACTIVE, abs=0.1)  # inference sparsity at the planted k


@pytest.mark.parametrize("arch", NEW)
def test_the_64_of_64_bar_at_default_settings(arch):
    """The bar of issue 11 §6 (tests/test_sae.py: 95% of 64 planted directions at cosine 0.95 by an SAE
    of 64 latents), same seeds and default settings as TopK's test; every architecture must pass it.
    The jumprelu and matryoshka defaults (DEFAULT_LR, PREFIX_DIVISORS) were chosen on development
    seeds 0-5 of the same generator, never on these (docs/sae.md). Measured: batchtopk 1.000, 0.969,
    1.000; jumprelu 1.000, 1.000, 0.984; matryoshka 1.000, 1.000, 1.000 (docs/sae.md)."""
    shares = []
    for seed in (6, 7, 8):
        x, truth = planted_square(seed)
        sae, _ = train_sae(x, SAEConfig(width=WIDTH, size=64, k=ACTIVE, epochs=30, architecture=arch))
        shares.append(recovered(sae, truth))
    print(f"{arch}, 64 planted / 64 latents: recovered {shares}")
    assert min(shares) >= 0.95


def test_batchtopk_keeps_k_per_vector_on_average_and_infers_with_its_threshold(trained, data):
    sae, _ = trained["batchtopk"]
    x = data[0][:256]
    with torch.no_grad():
        pre = sae.pre_activations(sae.normalise(x))
        theta = sae.threshold.clone()
        codes = train_codes(sae, pre)  # (updates the running threshold: restored below)
        sae.threshold.copy_(theta)
        per_row = (codes > 0).sum(1)
        assert int(per_row.sum()) == ACTIVE * len(x)  # k x batch over the whole batch ...
        assert int(per_row.min()) < ACTIVE < int(per_row.max())  # ... not k per vector
        kept_min = float(codes[codes > 0].min())
        assert torch.equal(sae.encode(x), torch.relu(pre) * (pre > theta))
    # the threshold is the running mean of the smallest kept activation: near this batch's
    assert 0 < float(theta) and float(theta) == pytest.approx(kept_min, rel=0.5)
    assert torch.equal(sae.thresholds, theta.expand(sae.config.size))


def test_jumprelu_straight_through_gradients_match_the_paper():
    """pre = (1.0, 2.0, 2.03), theta = 2, eps = 0.1: (pre - theta) / eps = (-10, 0, 0.3), so the
    rectangle kernel is (0, 1, 1). JumpReLU: d/dpre = H(pre - theta) = (0, 0, 1) and
    d/dtheta = -(theta / eps) * 2 = -40; the L0 step: d/dtheta = -(1 / eps) * 2 = -20."""
    pre = torch.tensor([[1.0, 2.0, 2.03]], requires_grad=True)
    theta = torch.tensor([2.0, 2.0, 2.0], requires_grad=True)
    out = _JumpReLU.apply(pre, theta, 0.1)
    assert torch.equal(out.detach(), torch.tensor([[0.0, 0.0, 2.03]]))
    out.sum().backward()
    assert torch.equal(pre.grad, torch.tensor([[0.0, 0.0, 1.0]]))
    assert theta.grad.tolist() == pytest.approx([0.0, -20.0, -20.0])  # per latent: -(2/0.1) * K
    theta.grad = None
    step = _Step.apply(pre, theta, 0.1)
    assert step.tolist() == [[0.0, 0.0, 1.0]]
    step.sum().backward()
    assert theta.grad.tolist() == pytest.approx([0.0, -10.0, -10.0])


def test_jumprelu_learns_per_latent_thresholds(trained, data):
    sae, _ = trained["jumprelu"]
    theta = sae.thresholds
    init = SAEConfig(width=WIDTH, size=64).effective_threshold_init
    print(f"jumprelu thresholds: init {init:.4f}, trained {float(theta.min()):.3f}..{float(theta.max()):.3f}")
    assert init == 0.001  # the paper's, in its unit-mean-squared-norm input space
    assert float(sae.scale) ** 2 == pytest.approx(float(((data[0] - data[0].mean(0)) ** 2).sum(1).mean()), rel=1e-4)
    assert float(theta.median()) > 100 * init and float(theta.std()) > 0  # learned, and per latent


def test_matryoshka_prefixes_reconstruct_on_their_own(trained, data):
    """Matryoshka's inner prefix (by default its first 32 of 64 latents) alone reconstructs the data
    better than a TopK SAE's first 32 (whose order means nothing): the nested loss did its work.
    Measured: 0.692 against 0.486."""
    topk, _ = train_sae(data[0], SAEConfig(architecture="topk", **{**TRAIN, "epochs": 20}))
    sae, metrics = trained["matryoshka"]
    assert sae.config.effective_prefixes == (32, 64)  # size/2, size (PREFIX_DIVISORS)
    m = sae.config.effective_prefixes[0]

    def prefix_ev(model):
        x = data[0]
        with torch.no_grad():
            codes = model.encode(x)
            codes[:, m:] = 0
            err = ((model.decode(codes) - x) ** 2).sum()
        return 1 - float(err / ((x - x.mean(0)) ** 2).sum())

    ours, plain = prefix_ev(sae), prefix_ev(topk)
    print(f"explained variance of the first {m} latents: matryoshka {ours:.3f}, topk {plain:.3f}")
    assert ours > plain + 0.05
    assert metrics["final_loss"] > metrics["final_recon_loss"]  # the prefix term is in the loss


@pytest.mark.parametrize("arch", NEW)
def test_round_trip_and_config_keys(arch, trained, data, tmp_path):
    d = _dictionary(trained[arch])
    folder = dictionary.save(d, tmp_path / "dict")
    doc = json.loads((folder / "config.json").read_text())
    assert doc["architecture"] == doc["sae"]["kind_of_sae"] == arch
    own = {"jumprelu": {"l0", "bandwidth", "threshold_init"}, "matryoshka": {"prefixes"}}.get(arch, set())
    assert {"l0", "bandwidth", "threshold_init", "prefixes"} & set(doc["sae"]) == own
    back = dictionary.load(folder)
    assert back.config == d.config
    for name, tensor in d.sae.state_dict().items():
        assert torch.equal(tensor, back.sae.state_dict()[name]), name
    assert torch.equal(back.sae.encode(data[0][:256]), d.sae.encode(data[0][:256]))
    if own:  # a key of its architecture missing is refused, never defaulted
        cfg = folder / "config.json"
        sae_block = {key: value for key, value in doc["sae"].items() if key != sorted(own)[0]}
        cfg.write_text(json.dumps({**doc, "sae": sae_block}))
        with pytest.raises(DictionaryError, match=f"must record {sorted(own)[0]}"):
            dictionary.load(folder)


def test_topk_and_relu_configs_keep_their_keys():
    for arch in ("topk", "relu"):
        keys = set(SAEConfig(width=4, size=8, k=2, architecture=arch).to_dict())
        assert not keys & {"l0", "bandwidth", "threshold_init", "prefixes"}
    with pytest.raises(ValueError, match="prefixes must increase strictly and end at size"):
        SAEConfig(width=4, size=8, k=2, architecture="matryoshka", prefixes=(4, 2, 8))


def test_learning_rate_defaults_per_architecture():
    """lr None resolves to the architecture's default on construction (DEFAULT_LR: jumprelu 3e-3,
    the others 1e-3) and is stored as that number; a given lr is kept. ``learn --lr`` defaults to
    None, so the CLI trains each architecture at its default too."""
    from steerlab.cli.learn import learn

    lrs = {arch: SAEConfig(width=4, size=8, k=2, architecture=arch).lr for arch in ARCHITECTURES}
    assert lrs == {"topk": 1e-3, "relu": 1e-3, "batchtopk": 1e-3, "jumprelu": 3e-3, "matryoshka": 1e-3}
    config = SAEConfig(width=4, size=8, k=2, architecture="jumprelu", lr=1e-3)
    assert config.lr == config.learning_rate == 1e-3 and config.to_dict()["lr"] == 1e-3
    assert SAEConfig.from_dict(SAEConfig(width=4, size=8, k=2, architecture="jumprelu").to_dict()).lr == 3e-3
    for command in learn.commands.values():
        (option,) = [p for p in command.params if p.name == "lr"]
        assert option.default is None


def saelens_forward(cfg: dict, w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """SAELens' topk / jumprelu forward, from its documented formulas (apply_b_dec_to_input)."""
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    if cfg["architecture"] == "topk":
        top = torch.topk(pre, cfg["activation_fn_kwargs"]["k"], dim=-1)
        acts = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
    else:
        assert cfg["architecture"] == "jumprelu"
        acts = torch.relu(pre) * (pre > w["threshold"])
    return acts @ w["W_dec"] + w["b_dec"]


@pytest.mark.parametrize("arch", NEW)
def test_saelens_export_reproduces_reconstruction(arch, trained, data, tmp_path):
    from safetensors.torch import load_file

    d = _dictionary(trained[arch])
    folder = dictionary.export_saelens(d, tmp_path / "saelens")
    cfg = json.loads((folder / "cfg.json").read_text())
    w = load_file(str(folder / "sae_weights.safetensors"))
    assert cfg["architecture"] == dictionary.SAELENS_ARCHITECTURE[arch]
    assert ("threshold" in w) == (arch != "matryoshka")
    x = data[0][:1024]
    with torch.no_grad():
        ours = d.sae(x)[0]
    err = float((ours - saelens_forward(cfg, w, x)).abs().max() / x.abs().max())
    print(f"saelens export ({arch}): max |difference| / max |x| = {err:.2e}")
    assert err < 1e-5


def test_learn_offers_every_architecture():
    from steerlab.cli.learn import learn

    for name, command in learn.commands.items():
        if name == "sweep":  # a comma-separated list, each value checked by SAEConfig before training
            from steerlab.learn_sweep import SweepItem, SweepSpec, config_for

            (option,) = [p for p in command.params if p.name == "architectures"]
            assert all(a in option.help for a in ARCHITECTURES)
            spec = SweepSpec("m", None, "0" * 64, "feature", ())
            for arch in ARCHITECTURES:
                assert config_for(spec, SweepItem("l", arch, 16, 4, 0), 8).architecture == arch
            continue
        (option,) = [p for p in command.params if p.name == "architecture"]
        assert tuple(option.type.choices) == ARCHITECTURES


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_saelens_export_then_import_round_trips(arch, trained, data, tmp_path):
    """export -> import gives the same codes and reconstructions (within 1e-6 relative), saves as a
    steerlab dictionary and loads back; batchtopk comes back as the jumprelu it is at inference."""
    if arch in trained:
        result = trained[arch]
    else:  # topk and relu: short trainings, far from identity centre and scale
        x, _ = planted(n=2048, offset=50.0, seed=5)
        result = train_sae(x, SAEConfig(architecture=arch, **{**TRAIN, "epochs": 2}))
    d = _dictionary(result, target="archetype")
    back = dictionary.import_saelens(dictionary.export_saelens(d, tmp_path / "saelens"))
    expected = {"batchtopk": "jumprelu", "matryoshka": "topk"}.get(arch, arch)
    assert back.config.architecture == expected and (back.model, back.layer, back.target) == (
        d.model,
        d.layer,
        "archetype",
    )
    x = data[0][:1024] + (d.sae.center if arch in ("topk", "relu") else 0)
    with torch.no_grad():
        codes, ours = d.sae.encode(x), back.sae.encode(x)
        assert torch.equal(codes > 0, ours > 0)  # the same latents fire
        code_err = float((codes - ours).abs().max() / codes.abs().max())
        recon_err = float((d.sae.decode(codes) - back.sae.decode(ours)).abs().max() / x.abs().max())
    print(f"saelens round trip ({arch}): codes {code_err:.1e}, reconstruction {recon_err:.1e}")
    assert code_err < 1e-6 and recon_err < 1e-6
    assert torch.allclose(back.directions, d.directions, atol=1e-6)  # equal-norm rows come back unit
    reloaded = dictionary.load(dictionary.save(back, tmp_path / "steerlab"))
    assert torch.equal(reloaded.sae.encode(x), back.sae.encode(x))


def test_saelens_import_refuses_what_it_cannot_read(trained, tmp_path):
    folder = dictionary.export_saelens(_dictionary(trained["jumprelu"]), tmp_path / "saelens")
    cfg = folder / "cfg.json"
    doc = json.loads(cfg.read_text())
    cfg.write_text(json.dumps({**doc, "architecture": "gated"}))
    with pytest.raises(DictionaryError, match="'gated'.*readable: standard, topk, jumprelu"):
        dictionary.import_saelens(folder)
    cfg.write_text(json.dumps({**doc, "normalize_activations": "expected_average_only_in"}))
    with pytest.raises(DictionaryError, match="normalize_activations"):
        dictionary.import_saelens(folder)
    cfg.write_text(json.dumps({**doc, "d_sae": 63}))
    with pytest.raises(DictionaryError, match=r"W_enc must have shape \[32, 63\]"):
        dictionary.import_saelens(folder)


@pytest.mark.parametrize("target", ["feature", "archetype"])
def test_cli_export_then_import_saelens_round_trips(target, trained, data, tmp_path):
    """``steerlab dictionary export-saelens`` then ``import-saelens``: cfg.json's metadata says what
    the SAE reads (``r_{t+1} - r_t`` for archetypes), the import reads it back, the codes match."""
    from click.testing import CliRunner

    from steerlab.cli import get_cli

    folder = dictionary.save(_dictionary(trained["jumprelu"], target=target), tmp_path / "ours")
    runner, cli = CliRunner(), get_cli()
    layer = ["--layer", "first_conv"]  # _dictionary's layer is not encodec_24khz's; its first conv has the width, 32
    out = runner.invoke(cli, ["dictionary", "export-saelens", str(folder), "-o", str(tmp_path / "sl")])
    assert out.exit_code == 0, out.output
    cfg = json.loads((tmp_path / "sl" / "cfg.json").read_text())
    assert cfg["metadata"]["steerlab_input"] == {"feature": "r_t", "archetype": "r_{t+1} - r_t"}[target]
    del cfg["steerlab"]  # a foreign writer: only the metadata says what the SAE reads
    (tmp_path / "sl" / "cfg.json").write_text(json.dumps(cfg))
    out = runner.invoke(
        cli, ["dictionary", "import-saelens", str(tmp_path / "sl"), "-o", str(tmp_path / "back"), *layer, "--json"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["target"] == target
    back, ours = dictionary.load(tmp_path / "back"), dictionary.load(folder)
    assert back.target == target and back.config.architecture == "jumprelu" and back.layer == "encoder.0.conv"
    x = data[0][:512]
    with torch.no_grad():
        assert torch.equal(back.sae.encode(x) > 0, ours.sae.encode(x) > 0)
        assert torch.allclose(back.sae(x)[0], ours.sae(x)[0], atol=1e-5 * float(x.abs().max()))
    again = runner.invoke(
        cli, ["dictionary", "import-saelens", str(tmp_path / "sl"), "-o", str(tmp_path / "back"), *layer]
    )
    assert again.exit_code == 1 and "already exists" in again.output and "Traceback" not in again.output
    cfg["metadata"]["steerlab_input"] = "r_t + 1"
    (tmp_path / "sl" / "cfg.json").write_text(json.dumps(cfg))
    bad = runner.invoke(cli, ["dictionary", "import-saelens", str(tmp_path / "sl"), "-o", str(tmp_path / "b2"), *layer])
    assert bad.exit_code == 1 and "metadata.steerlab_input" in bad.output and not (tmp_path / "b2").exists()
