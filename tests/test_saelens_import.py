"""Importing SAELens folders written by other tools: the config is read exactly as SAELens 5 and 6
define it (steerlab's encode equals SAELens' forward, computed here with numpy) or refused in one
line naming the key; ``import-saelens`` checks the model, layer and width before writing; an imported
dictionary records that its weights are unknown, and ``intervene``/``analyze`` use it with
``--allow-weights-mismatch``; ``export-saelens`` takes shipped names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from steerlab import dictionary
from steerlab.errors import DictionaryError
from tests.conftest import chord

MODEL, LAYER, D_IN, D_SAE, K = "tiny_encodec_24khz", "latent", 64, 96, 8


def _cli():
    from steerlab import cli

    return cli.get_cli()


def weights(arch: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Random SAELens tensors; decoder rows of unequal norms (0.5-2), so the import's one scale
    cannot make them unit and the codes must still match."""
    rng = np.random.default_rng(seed)
    w = {
        "W_enc": rng.normal(size=(D_IN, D_SAE)) / np.sqrt(D_IN),
        "b_enc": rng.normal(size=D_SAE) * 0.1,
        "W_dec": rng.normal(size=(D_SAE, D_IN)) / np.sqrt(D_IN) * rng.uniform(0.5, 2.0, size=(D_SAE, 1)),
        "b_dec": rng.normal(size=D_IN) * 0.3,
    }
    if arch == "jumprelu":
        w["threshold"] = rng.uniform(0.05, 0.4, size=D_SAE)
    return {name: a.astype(np.float32) for name, a in w.items()}


def config(version: int, arch: str, apply_b_dec: bool = True) -> dict:
    """A cfg.json as SAELens ``version`` (5: flat keys, TopK as ``standard`` + ``activation_fn_str``;
    6: ``metadata`` block, ``topk`` architecture with top-level ``k``) writes it."""
    if version == 5:
        cfg = {
            "architecture": "standard" if arch in ("relu", "topk") else "jumprelu",
            "d_in": D_IN,
            "d_sae": D_SAE,
            "activation_fn_str": "topk" if arch == "topk" else "relu",
            "activation_fn_kwargs": {"k": K} if arch == "topk" else {},
            "apply_b_dec_to_input": apply_b_dec,
            "finetuning_scaling_factor": False,
            "context_size": 128,
            "model_name": MODEL,
            "hook_name": LAYER,
            "hook_layer": 0,
            "hook_head_index": None,
            "prepend_bos": True,
            "dataset_path": "local",
            "dataset_trust_remote_code": False,
            "normalize_activations": "none",
            "dtype": "float32",
            "device": "cpu",
            "sae_lens_training_version": "5.3.0",
        }
    else:
        cfg = {
            "architecture": {"relu": "standard"}.get(arch, arch),
            "d_in": D_IN,
            "d_sae": D_SAE,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": apply_b_dec,
            "normalize_activations": "none",
            "reshape_activations": "none",
            "metadata": {"model_name": MODEL, "hook_name": LAYER, "sae_lens_version": "6.5.0"},
        }
        if arch == "topk":
            cfg["k"] = K
    return cfg


def write(folder: Path, cfg: dict, w: dict[str, np.ndarray]) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(w, str(folder / "sae_weights.safetensors"))
    return folder


def saelens_codes(cfg: dict, w: dict[str, np.ndarray], x: np.ndarray, arch: str) -> np.ndarray:
    """SAELens' encode in float64 numpy: pre = (x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc;
    TopK keeps the k largest then ReLUs them, standard ReLUs, JumpReLU keeps pre where pre > threshold."""
    W = {name: a.astype(np.float64) for name, a in w.items()}
    pre = (x - W["b_dec"] * cfg["apply_b_dec_to_input"]) @ W["W_enc"] + W["b_enc"]
    if arch == "topk":
        keep = np.argsort(-pre, axis=1)[:, :K]
        codes = np.zeros_like(pre)
        np.put_along_axis(codes, keep, np.maximum(np.take_along_axis(pre, keep, axis=1), 0), axis=1)
        return codes
    if arch == "relu":
        return np.maximum(pre, 0)
    return np.maximum(pre, 0) * (pre > W["threshold"])


@pytest.mark.parametrize("version", [5, 6])
@pytest.mark.parametrize("arch", ["topk", "relu", "jumprelu"])
@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_import_encodes_as_saelens(version, arch, apply_b_dec, tmp_path):
    cfg, w = config(version, arch, apply_b_dec), weights(arch)
    d = dictionary.import_saelens(write(tmp_path / "sl", cfg, w))
    assert d.config.architecture == arch and (d.model, d.layer) == (MODEL, LAYER)
    assert d.weights_hash is None and d.weights_note == dictionary.SAELENS_WEIGHTS_NOTE
    x = np.random.default_rng(1).normal(size=(512, D_IN)) * 2.0
    expected = saelens_codes(cfg, w, x, arch)
    with torch.no_grad():
        codes = d.sae.encode(torch.from_numpy(x).float()).double().numpy()
        recon = d.sae.decode(torch.from_numpy(codes).float()).double().numpy()
    code_err = np.abs(codes - expected).max() / np.abs(expected).max()
    theirs = expected @ w["W_dec"].astype(np.float64) + w["b_dec"]
    recon_err = np.abs(recon - theirs).max() / np.abs(theirs).max()
    l0 = float((codes > 0).sum(1).mean())
    print(f"SAELens {version} {arch} apply_b_dec={apply_b_dec}: codes {code_err:.1e}, recon {recon_err:.1e}, L0 {l0}")
    assert code_err < 1e-5 and recon_err < 1e-5
    assert np.array_equal(codes > 0, expected > 0)
    if arch == "topk":
        assert l0 == K  # the trial's SAELens 5 TopK imported as ReLU had L0 46


def _with(cfg: dict, **changes) -> dict:
    out = json.loads(json.dumps(cfg))
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


REFUSED = [
    (5, "topk", {"activation_fn_str": "tanh-relu"}, "key 'activation_fn_str' \\('tanh-relu'\\)"),
    (5, "topk", {"activation_fn_kwargs": {}}, "'activation_fn_kwargs.k' or 'k' is missing"),
    (5, "topk", {"k": 4}, "'activation_fn_kwargs.k' \\(8\\) disagrees with 'k' \\(4\\)"),
    (5, "topk", {"activation_fn_kwargs": {"k": 0}}, "key 'activation_fn_kwargs.k' \\(0\\) must be a whole number"),
    (5, "relu", {"activation_fn_kwargs": {"k": 8}}, "key 'activation_fn_kwargs'.*is set but the activation is 'relu'"),
    (5, "jumprelu", {"activation_fn_str": "topk"}, "key 'activation_fn_str' \\('topk'\\).*architecture 'jumprelu'"),
    (6, "topk", {"k": None}, "'activation_fn_kwargs.k' or 'k' is missing"),
    (6, "topk", {"k": 2.5}, "key 'k' \\(2.5\\) must be a whole number"),
    (6, "topk", {"rescale_acts_by_decoder_norm": True}, "key 'rescale_acts_by_decoder_norm'"),
    (6, "relu", {"architecture": "gated"}, "key 'architecture' \\('gated'\\).*readable: standard, topk, jumprelu"),
    (6, "relu", {"normalize_activations": "layer_norm"}, "key 'normalize_activations' \\('layer_norm'\\)"),
    (6, "relu", {"reshape_activations": "hook_z"}, "key 'reshape_activations'"),
    (5, "relu", {"finetuning_scaling_factor": True}, "key 'finetuning_scaling_factor'"),
    (5, "relu", {"hook_head_index": 3}, "key 'hook_head_index'"),
    (5, "relu", {"d_in": None}, "key 'd_in' \\(None\\) must be a whole number"),
]


@pytest.mark.parametrize(("version", "arch", "changes", "match"), REFUSED)
def test_import_refuses_what_it_cannot_read_exactly(version, arch, changes, match, tmp_path):
    folder = write(tmp_path / "sl", _with(config(version, arch), **changes), weights(arch))
    with pytest.raises(DictionaryError, match=match) as info:
        dictionary.import_saelens(folder)
    assert "\n" not in str(info.value)


def test_import_refuses_non_finite_and_unknown_tensors(tmp_path):
    w = weights("relu")
    w["W_enc"][3, 5] = np.nan
    with pytest.raises(DictionaryError, match="NaN or infinite values in W_enc"):
        dictionary.import_saelens(write(tmp_path / "nan", config(5, "relu"), w))
    w = {**weights("relu"), "scaling_factor": np.full(D_SAE, 2.0, np.float32)}
    with pytest.raises(DictionaryError, match="holds tensor 'scaling_factor', which steerlab does not read"):
        dictionary.import_saelens(write(tmp_path / "sf", config(5, "relu"), w))
    w["scaling_factor"][:] = 1.0  # SAELens drops a scaling factor of ones on load: so does steerlab
    assert dictionary.import_saelens(write(tmp_path / "ones", config(5, "relu"), w)).config.architecture == "relu"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["-m", "nosuchmodel"], "nosuchmodel"),
        (["--layer", "nosuchlayer"], "'nosuchlayer', which tiny_encodec_24khz does not have"),
        (["--layer", "first_conv"], "has width 64 but layer 'encoder.0.conv' has 12 channels"),
        ([], "NaN or infinite values in W_enc"),
    ],
)
def test_cli_import_checks_before_writing(args, match, tmp_path):
    w = weights("topk")
    if not args:
        w["W_enc"][0, 0] = np.inf
    folder = write(tmp_path / "sl", config(5, "topk"), w)
    out = CliRunner().invoke(_cli(), ["dictionary", "import-saelens", str(folder), "-o", str(tmp_path / "d"), *args])
    lines = out.output.strip().splitlines()
    assert out.exit_code == 1 and len(lines) == 1 and "Traceback" not in out.output, out.output
    assert __import__("re").search(match, lines[0]), lines[0]
    assert not (tmp_path / "d").exists() and [p.name for p in tmp_path.iterdir()] == ["sl"]


def test_cli_messages_spell_overwrite_as_the_flag(tmp_path):
    folder = write(tmp_path / "sl", config(6, "topk"), weights("topk"))
    runner, cli = CliRunner(), _cli()
    args = ["dictionary", "import-saelens", str(folder), "-o", str(tmp_path / "d")]
    assert runner.invoke(cli, args).exit_code == 0
    again = runner.invoke(cli, args)
    assert again.exit_code == 1 and "already exists; pass --overwrite to replace it" in again.output, again.output
    assert "overwrite=True" not in again.output
    assert runner.invoke(cli, [*args, "--overwrite"]).exit_code == 0


def test_imported_dictionary_steers_with_allow_weights_mismatch(tmp_path):
    folder = write(tmp_path / "sl", config(5, "topk"), weights("topk"))
    runner, cli = CliRunner(), _cli()
    out = runner.invoke(cli, ["dictionary", "import-saelens", str(folder), "-o", str(tmp_path / "d")])
    assert out.exit_code == 0, out.output
    doc = json.loads((tmp_path / "d" / "config.json").read_text())
    assert doc["weights_hash"] is None and doc["weights_hash_note"] == "imported from SAELens: weights unknown"
    assert dictionary.load(tmp_path / "d").weights_note == doc["weights_hash_note"]
    wav = tmp_path / "in.wav"
    sf.write(wav, chord(0.3, seed=1)[0], 24_000, subtype="FLOAT")
    args = ["intervene", str(wav), "-l", LAYER, "--feature", f"{tmp_path / 'd'}:3", "-a", "0.5"]
    refused = runner.invoke(cli, [*args, "-o", str(tmp_path / "no")])
    lines = refused.output.strip().splitlines()
    assert refused.exit_code == 1 and len(lines) == 1, refused.output
    assert "was imported from SAELens: weights unknown" in lines[0]
    assert "pass --allow-weights-mismatch if you know it was trained on these weights" in lines[0]
    assert not (tmp_path / "no").exists()
    ran = runner.invoke(cli, [*args, "--allow-weights-mismatch", "--json", "-o", str(tmp_path / "yes")])
    assert ran.exit_code == 0, ran.output
    scores = json.loads((tmp_path / "yes" / "in" / "scores.json").read_text())
    assert scores["direction"]["source"] == "feature" and scores["direction"]["id"] == 3
    assert scores["direction"]["dictionary"]["weights_mismatch_allowed"] is True
    base, _ = sf.read(tmp_path / "yes" / "in" / "baseline.wav")
    patched, _ = sf.read(tmp_path / "yes" / "in" / "patched.wav")
    change = float(np.sqrt(np.mean((patched - base) ** 2)))
    print(f"imported feature 3 at alpha 0.5: output RMS change {change:.3e}")
    assert change > 1e-4


def test_export_saelens_takes_a_shipped_name(tmp_path):
    out = CliRunner().invoke(_cli(), ["dictionary", "export-saelens", "latent-features", "-o", str(tmp_path / "x")])
    assert out.exit_code == 0, out.output
    cfg = json.loads((tmp_path / "x" / "cfg.json").read_text())
    assert (cfg["model_name"], cfg["hook_name"]) == (MODEL, "latent")
    bad = CliRunner().invoke(_cli(), ["dictionary", "export-saelens", "latent-feature", "-o", str(tmp_path / "y")])
    assert bad.exit_code == 1 and "one shipped with tiny_encodec_24khz" in bad.output and not (tmp_path / "y").exists()
