"""Steering along learned directions: ``--feature DICT:ID`` / ``--archetype DICT:ID``, the
dictionary checks (model, weights, layer, kind, latent range), feature-clamp and archetype
end to end through the embedded model against manual forward hooks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from steerlab import api, dictionary
from steerlab.artifacts import file_sha256
from steerlab.capture import Corpus
from steerlab.errors import SteerlabError
from steerlab.interventions import Span, Strength
from steerlab.learning import learn_dictionary
from steerlab.sae import SAEConfig
from tests.conftest import chord

SR = 24_000


@pytest.fixture(scope="module")
def dicts(tmp_path_factory, embedded):
    """A feature and an archetype dictionary of the embedded model's first conv (a few thousand vectors)."""
    root = tmp_path_factory.mktemp("dicts")
    corpus = Corpus.for_model(embedded, ["synth:1"], clip_seconds=0.2)
    out = {}
    for target in ("feature", "archetype"):
        config = SAEConfig(width=api.layers(embedded).get("first_conv").channels, size=16, k=4, epochs=2)
        d = learn_dictionary(embedded, "first_conv", target, corpus, config, stream="recompute")
        out[target] = dictionary.save(d, root / target)
    return out


def _cli():
    from steerlab import cli

    return cli.get_cli()


def _module(model, path):
    node = model
    for part in path.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def _hooked(model, wave, layer, fn):
    handle = _module(model, layer.module_path).register_forward_hook(lambda m, i, o: fn(o))
    try:
        with torch.no_grad():
            x = torch.from_numpy(wave)[None]
            x = torch.nn.functional.pad(x, (0, model.padded_length(x.shape[-1]) - x.shape[-1]))
            return model(x, path="continuous")[0, :, : wave.shape[-1]].numpy()
    finally:
        handle.remove()


def test_resolve_dictionary_and_learned_direction(embedded, dicts):
    ref = api.resolve_dictionary(str(dicts["feature"]), embedded)
    assert ref.path == dicts["feature"].resolve()
    assert ref.config_sha256 == file_sha256(dicts["feature"] / "config.json")
    assert ref.dictionary.weights_hash == embedded.weights_hash()
    _, j, direction = api.learned_direction(f"{dicts['feature']}:5", embedded, "first_conv", "feature")
    expected = ref.dictionary.sae.W_dec[5].detach().double().numpy()
    assert j == 5 and np.allclose(direction.vector, expected / np.linalg.norm(expected))
    assert direction.provenance["source"] == "feature" and direction.provenance["id"] == 5
    assert direction.provenance["dictionary"]["config_sha256"] == ref.config_sha256


def test_feature_flag_adds_the_decoder_direction(embedded, dicts, tmp_path):
    wav = tmp_path / "in.wav"
    wave = chord(0.3, seed=1)
    sf.write(wav, wave[0], SR, subtype="FLOAT")
    result = CliRunner().invoke(
        _cli(),
        [
            "intervene",
            str(wav),
            "-l",
            "first_conv",
            "--feature",
            f"{dicts['feature']}:3",
            "-a",
            "0.4",
            "--fade-in",
            "0",
            "--fade-out",
            "0",
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "in" / "scores.json").read_text())
    assert doc["intervention"] == "add" and doc["direction"]["source"] == "feature" and doc["direction"]["id"] == 3
    d = dictionary.load(dicts["feature"]).directions[3].double().numpy()
    layer = api.layers(embedded).get("first_conv")
    # the expected strength from a plain forward hook's own RMS norm of the layer (sqrt(mean_t |a_t|^2)
    # over the input's frames), never from the value the code recorded
    act = _hooked_act(embedded, wave, layer)
    v = 0.4 * float(act.pow(2).sum(0).mean().sqrt())
    assert doc["effective_value"] == pytest.approx(v, rel=1e-5)

    def add(out):
        out = out.clone()
        out[0, :, : layer.frames_for(wave.shape[-1])] += v * torch.from_numpy(d).float()[:, None]
        return out

    patched, _ = sf.read(tmp_path / "out" / "in" / "patched.wav", dtype="float32")
    assert np.abs(patched - _hooked(embedded, wave, layer, add)[0]).max() < 1e-5


@pytest.mark.parametrize("mode,alpha", [("set", 0.3), ("scale", 0.0)])
def test_feature_clamp_end_to_end_equals_a_manual_hook(embedded, dicts, mode, alpha):
    layer = api.layers(embedded).get("first_conv")
    wave = chord(0.3, seed=2)
    sae = api.resolve_dictionary(dicts["feature"], embedded).dictionary.sae
    with torch.no_grad():  # the most used feature on this input, so clamping it changes something
        j = int(sae.encode(_hooked_act(embedded, wave, layer).T).gt(0).sum(0).argmax())
    spec = api.InterventionSpec(
        layer=layer.name,
        direction=None,
        intervention="feature-clamp",
        strength=Strength(alpha, "absolute"),
        span=Span(0.05, 0.2),
        options={"dictionary": str(dicts["feature"]), "feature": j, "mode": mode},
    )
    res = api.intervene(embedded, [wave], spec)[0]
    first, last = int(np.floor(0.05 * layer.frame_rate)), int(np.ceil(0.2 * layer.frame_rate))

    def clamp(out):
        out = out.clone()
        x = out[0, :, first:last].T
        z = ((x - sae.center) / sae.scale - sae.b_dec) @ sae.W_enc + sae.b_enc
        top = torch.topk(z, sae.config.k, dim=-1)
        code = torch.zeros_like(z).scatter(-1, top.indices, torch.relu(top.values))[:, j]
        atom = sae.scale * sae.W_dec[j]
        new = code * alpha if mode == "scale" else torch.full_like(code, alpha / float(atom.norm()))
        out[0, :, first:last] += torch.outer(atom, new - code)
        return out

    ref_out = _hooked(embedded, wave, layer, clamp)
    assert np.abs(res.patched - ref_out).max() < 1e-5
    assert np.abs(res.patched - res.baseline).max() > 1e-4
    prepared = res.record["prepared"]
    assert prepared["feature"] == j and prepared["mode"] == mode
    assert prepared["dictionary"]["config_sha256"] == file_sha256(dicts["feature"] / "config.json")
    assert res.record["value_kind"] == ("factor" if mode == "scale" else "strength")


def _hooked_act(model, wave, layer):
    seen = {}

    def grab(out):
        seen["a"] = out[0, :, : layer.frames_for(wave.shape[-1])].clone()
        return out

    _hooked(model, wave, layer, grab)
    return seen["a"]


def test_archetype_flag_defaults_to_the_motion_intervention(embedded, dicts, tmp_path):
    wav = tmp_path / "in.wav"
    wave = chord(0.3, seed=3)
    sf.write(wav, wave[0], SR, subtype="FLOAT")
    result = CliRunner().invoke(
        _cli(),
        [
            "intervene",
            str(wav),
            "-l",
            "encoder.0.conv",
            "--archetype",
            f"{dicts['archetype']}:2",
            "-a",
            "0.05",
            "--start",
            "0.1",
            "--end",
            "0.15",
            "--fade-in",
            "0",
            "--fade-out",
            "0",
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "in" / "scores.json").read_text())
    assert doc["intervention"] == "archetype" and doc["value_kind"] == "motion"
    assert doc["direction"]["source"] == "archetype" and doc["direction"]["dictionary"]["kind"] == "archetype"
    layer = api.layers(embedded).get("first_conv")
    act = _hooked_act(embedded, wave, layer)
    steps = act[:, 1:] - act[:, :-1]
    hook_step_rms = float(steps.pow(2).sum(0).mean().sqrt())  # measured by the plain hook, not recorded
    assert doc["layer_rms_step_norm"] == pytest.approx(hook_step_rms, rel=1e-4)
    v = 0.05 * hook_step_rms
    assert doc["effective_value"] == pytest.approx(v, rel=1e-4)
    d = torch.from_numpy(dictionary.load(dicts["archetype"]).directions[2].double().numpy()).float()
    # the span from its definition: floor(start * rate) to ceil(end * rate)
    first, last = int(np.floor(0.1 * layer.frame_rate)), int(np.ceil(0.15 * layer.frame_rate))
    assert doc["span_frames"] == [first, last]

    def motion(out):
        out = out.clone()
        n = out.shape[-1]
        count = torch.clamp(torch.arange(n) - first, 0, last - first).float()  # selected steps before t
        out[0] += v * d[:, None] * count[None, :]
        return out

    patched, _ = sf.read(tmp_path / "out" / "in" / "patched.wav", dtype="float32")
    assert np.abs(patched - _hooked(embedded, wave, layer, motion)[0]).max() < 1e-5


def _variant(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(changes)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.fixture
def bad_dicts(dicts, tmp_path):
    return {
        "model": _variant(dicts["feature"], tmp_path / "other_model", model="encodec_24khz"),
        "weights": _variant(dicts["feature"], tmp_path / "other_weights", weights_hash="ab" * 32),
        "layer": _variant(dicts["feature"], tmp_path / "other_layer", layer="encoder.3.conv"),
    }


MISMATCHES = {
    "model": (
        ["--feature", "{model}:0"],
        "was learned on 'encodec_24khz', not 'tiny_encodec_24khz'; use --model encodec_24khz",
    ),
    "weights": (["--feature", "{weights}:0"], "has weights abababababab but tiny_encodec_24khz has weights"),
    "layer": (
        ["--feature", "{layer}:0"],
        "describes 'encoder.3.conv', not 'encoder.0.conv'; use --layer encoder.3.conv",
    ),
    "kind-feature": (["--feature", "{archetype}:0"], "holds archetypes, not features; use it with --archetype"),
    "kind-archetype": (["--archetype", "{feature}:0"], "holds features, not archetypes; use it with --feature"),
    "range": (["--feature", "{feature}:16"], "feature 16 is out of range: dictionary"),
    "missing": (["--feature", "{missing}:1"], "not found: give a dictionary folder written by `steerlab learn`"),
    "not-dict-id": (["--feature", "{feature}"], "is not DICT:ID"),
    "feature-and-channel": (
        ["--feature", "{feature}:1", "-c", "0"],
        "give exactly one of --direction FILE or --channel K",
    ),
    "clamp-with-channel": (
        ["-i", "feature-clamp", "-c", "0"],
        "-i feature-clamp needs the feature to clamp: give --feature",
    ),
    "clamp-with-archetype": (["-i", "feature-clamp", "--archetype", "{archetype}:1"], "needs the feature to clamp"),
    "clamp-bad-mode": (
        ["-i", "feature-clamp", "--feature", "{feature}:1", "--opt", "mode", "squash"],
        "feature-clamp mode must be one of set, scale",
    ),
}


@pytest.mark.parametrize("case", list(MISMATCHES))
def test_dictionary_mismatch_is_one_line_and_writes_nothing(dicts, bad_dicts, tmp_path, case):
    args, fragment = MISMATCHES[case]
    names = {
        **{k: str(v) for k, v in dicts.items()},
        **{k: str(v) for k, v in bad_dicts.items()},
        "missing": str(tmp_path / "missing"),
    }
    wav = tmp_path / "in.wav"
    sf.write(wav, chord(0.2, seed=4)[0], SR, subtype="FLOAT")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        _cli(), ["intervene", str(wav), "-l", "first_conv", *[a.format(**names) for a in args], "-o", str(out)]
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and fragment in lines[0], result.output
    assert not out.exists()


def test_a_dictionary_without_weights_hash_is_refused(embedded, dicts, tmp_path):
    folder = _variant(dicts["feature"], tmp_path / "nohash", weights_hash=None)
    with pytest.raises(SteerlabError, match="has no weights hash but tiny_encodec_24khz has weights .*re-learn it"):
        api.resolve_dictionary(folder, embedded)


# --- dictionaries shipped with the embedded model -------------------------------------------

SHIPPED = {
    "first_conv-features": ("encoder.0.conv", "feature"),
    "first_conv-archetypes": ("encoder.0.conv", "archetype"),
    "latent-features": ("latent", "feature"),
    "latent-archetypes": ("latent", "archetype"),
}


def test_shipped_dictionaries_were_learned_on_the_shipped_weights(embedded):
    shipped = embedded.shipped_dictionaries()
    assert set(shipped) == set(SHIPPED)
    for name, (layer, target) in SHIPPED.items():
        d = dictionary.load(shipped[name])
        assert (d.model, d.weights_hash) == (embedded.name, embedded.weights_hash()), name
        assert (d.layer, d.target) == (layer, target)
        assert d.metrics["explained_variance"] > 0.9


def test_a_shipped_dictionary_resolves_by_name_and_gives_its_decoder_direction(embedded):
    ref, j, direction = api.learned_direction("latent-features:5", embedded, "latent", "feature")
    assert ref.path == embedded.shipped_dictionaries()["latent-features"].resolve() and j == 5
    column = ref.dictionary.sae.directions[5].double().numpy()
    np.testing.assert_allclose(direction.vector / direction.norm, column / np.linalg.norm(column), atol=1e-6)
    with pytest.raises(SteerlabError, match="one shipped with tiny_encodec_24khz: first_conv-archetypes"):
        api.resolve_dictionary("latent-feature", embedded)


def test_dictionaries_command_lists_the_shipped_set():
    result = CliRunner().invoke(_cli(), ["dictionaries", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert {n: (r["layer"], r["kind"]) for n, r in rows.items()} == SHIPPED
    assert rows["latent-archetypes"]["size"] == 128 and rows["first_conv-features"]["width"] == 12


def test_one_fit_check_serves_intervene_and_analyze(embedded, dicts, tmp_path):
    """``analyze`` uses the same check as ``intervene`` (steerlab.learned.check_dictionary_fits),
    with its policy: a dictionary that records no weights hash is refused there too (it was
    accepted silently before), unless the caller allows a weights mismatch, and says how."""
    from steerlab.analysis.pipeline import analyze
    from steerlab.learned import check_dictionary_fits

    nohash = dictionary.load(_variant(dicts["feature"], tmp_path / "nohash", weights_hash=None))
    with pytest.raises(
        SteerlabError, match="has no weights hash but tiny_encodec_24khz has weights .*or pass allow_weights_mismatch$"
    ) as refused:
        analyze(nohash, embedded, corpus=None, dictionary_path=tmp_path / "nohash")
    assert refused.value.parameters == ("checkpoint", "allow_weights_mismatch")  # the CLI names their flags
    assert check_dictionary_fits(nohash, embedded, allow_weights_mismatch=True).name == nohash.layer
    wide = dictionary.load(_variant(dicts["feature"], tmp_path / "wide", layer="latent"))
    for call in (
        lambda: check_dictionary_fits(wide, embedded),
        lambda: analyze(wide, embedded, corpus=None, allow_weights_mismatch=True),
    ):
        with pytest.raises(SteerlabError, match=r"has width \d+ but layer 'latent' has \d+ channels"):
            call()
