"""The intervention catalogue beyond add/ablate/scale/clamp: each type's arithmetic against a
plain torch computation, patch and mean-ablate end to end through the embedded model against
manual forward hooks, their bad input, the listing, and models without a decoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from steerlab import api, plugins, runner
from steerlab.errors import InterventionError
from steerlab.hookspecs import hookimpl
from steerlab.interventions import Span, Strength, channel_direction
from steerlab.model import AudioModel, LayerInfo
from tests.conftest import chord

SR = 24_000


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _unit(n, seed=1):
    d = _rand(n, seed=seed)
    return d / d.norm()


WEIGHT = torch.tensor([0.0, 0.0, 0.25, 1.0, 1.0, 0.5, 1.0, 0.0, 0.0, 0.0])


# -- arithmetic against plain torch ------------------------------------------------------------


def _trained_sae():
    from steerlab.sae import SAEConfig, train_sae

    g = torch.Generator().manual_seed(3)
    atoms = torch.randn(12, 6, generator=g)
    codes = torch.rand(3000, 12, generator=g) * (torch.rand(3000, 12, generator=g) < 0.2)
    # far from zero mean and unit scale, so centring and scaling both matter
    data = 4.0 * codes @ atoms + torch.tensor([3.0, -2.0, 1.0, 0.5, 0.0, 5.0])
    sae, _ = train_sae(data, SAEConfig(width=6, size=12, k=3, epochs=2, seed=0))
    assert abs(float(sae.scale) - 1.0) > 0.1 and float(sae.center.norm()) > 1.0
    return sae, data


def _plain_encode(sae, x):
    """x [n, width] -> codes [n, size], written out from the SAE's parameters."""
    z = (x - sae.center) / sae.scale
    pre = (z - sae.b_dec) @ sae.W_enc + sae.b_enc
    top = torch.topk(pre, sae.config.k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))


def _plain_decode(sae, codes):
    return (codes @ sae.W_dec + sae.b_dec) * sae.scale + sae.center


@pytest.mark.parametrize("mode,value", [("set", 2.5), ("scale", 3.0), ("scale", 0.0)])
def test_feature_clamp_arithmetic_and_only_feature_j_changes(mode, value):
    from steerlab.builtins.interventions.learned import FeatureClampState

    sae, data = _trained_sae()
    act = data[:10].T.clone()  # [channels 6, frames 10]
    with torch.no_grad():
        codes = _plain_encode(sae, act.T)
        j = int(codes.sum(0).argmax())  # a feature that fires on these frames, so scaling does something
        atom = sae.scale * sae.W_dec[j]
        state = FeatureClampState(None, j, mode, atom, sae)
        out = plugins.interventions().get("feature-clamp").apply(act, None, value, WEIGHT, state)
        target = codes[:, j] * value if mode == "scale" else torch.full((10,), value / float(atom.norm()))
        expected = act + torch.outer(atom, WEIGHT * (target - codes[:, j]))
        assert torch.allclose(out, expected, atol=1e-5)
        # on full-weight frames: the new code differs from the old only at j, and the SAE's
        # reconstruction error a - D(z) is exactly what it was
        full = WEIGHT == 1.0
        new_codes = codes.clone()
        new_codes[:, j] = target
        err_before = act.T - _plain_decode(sae, codes)
        err_after = out.T - _plain_decode(sae, new_codes)
        assert torch.allclose(err_after[full], err_before[full], atol=1e-4)
        assert float((out - act)[:, WEIGHT == 0].abs().max()) == 0.0
        if mode == "set":  # the feature's decoded contribution has norm v
            assert float((target[0] * atom).norm()) == pytest.approx(value, rel=1e-5)
        changed = float((out - act).abs().max())
        assert changed > 1e-2


def test_archetype_adds_alpha_d_w_to_generators():
    act = _rand(5, 10, seed=2)
    d = _unit(5)
    out = plugins.interventions().get("archetype").apply(act, d, 0.8, WEIGHT)
    g, g2 = act[:, 1:] - act[:, :-1], out[:, 1:] - out[:, :-1]
    # step t (frame t -> t+1) moves by 0.8 * d * w_t; the first frame never moves
    assert torch.allclose(g2 - g, 0.8 * torch.outer(d, WEIGHT[:-1]), atol=1e-6)
    assert torch.equal(out[:, 0], act[:, 0])
    steps = torch.tensor([sum(WEIGHT[:t].tolist()) for t in range(10)])
    assert torch.allclose(out, act + 0.8 * torch.outer(d, steps), atol=1e-6)
    # after the span the offset persists: the last frames are shifted by 0.8 * d * sum(w)
    assert torch.allclose(out[:, -1] - act[:, -1], 0.8 * d * float(WEIGHT.sum()), atol=1e-6)
    zero = torch.zeros(10)
    zero[3] = 1.0  # one selected step: only that generator changes
    g3 = plugins.interventions().get("archetype").apply(act, d, 2.0, zero)
    dg = (g3[:, 1:] - g3[:, :-1]) - g
    assert torch.allclose(dg[:, 3], 2.0 * d, atol=1e-6)
    assert float(dg[:, [0, 1, 2, 4, 5, 6, 7, 8]].abs().max()) < 1e-6


@pytest.mark.parametrize("with_direction", [False, True])
def test_patch_and_mean_ablate_arithmetic(with_direction):
    from steerlab.builtins.interventions.replace import MeanState, PatchState

    act, src, m = _rand(4, 10, seed=4), _rand(4, 12, seed=5), _rand(4, seed=6)
    d = _unit(4, seed=7) if with_direction else None
    patched = plugins.interventions().get("patch").apply(act, d, 0.0, WEIGHT, PatchState(src, {}))
    ablated = plugins.interventions().get("mean-ablate").apply(act, d, 0.0, WEIGHT, MeanState(m, {}))
    for out, target in ((patched, src[:, :10]), (ablated, m[:, None].expand(4, 10))):
        diff = target - act
        if d is None:
            expected = act + diff * WEIGHT
        else:
            expected = act + torch.outer(d, WEIGHT * (d @ diff))
            # the orthogonal complement is untouched
            rest = lambda x: x - torch.outer(d, d @ x)  # noqa: E731
            assert torch.allclose(rest(out), rest(act), atol=1e-5)
        assert torch.allclose(out, expected, atol=1e-6)
        assert torch.allclose(out[:, 3], target[:, 3] if d is None else expected[:, 3], atol=1e-6)


def test_patch_refuses_a_span_past_the_source_and_allows_one_inside():
    from steerlab.builtins.interventions.replace import PatchState

    kind = plugins.interventions().get("patch")
    state = PatchState(torch.zeros(4, 6), {"source": "src.wav", "duration_s": 0.02})
    kind.check(state, 10, (0, 6))  # the input is longer, but the span stays inside the source
    kind.check(state, 10, (8, 8))  # empty span
    with pytest.raises(InterventionError, match="reaches frame 7 but the patch source .src.wav. has only 6 frames"):
        kind.check(state, 10, (2, 7))


# -- end to end through the embedded model, against manual forward hooks -------------------------


def _module(model, path):
    node = model
    for part in path.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def _forward(model, wave, layer, fn=None):
    """Decode of ``wave`` with a plain torch hook on ``layer`` (no nnsight); returns (decode, layer output)."""
    seen = {}

    def hook(module, inputs, output):
        seen["act"] = output[0, :, : layer.frames_for(wave.shape[-1])].clone()
        return fn(output) if fn is not None else None

    handle = _module(model, layer.module_path).register_forward_hook(hook)
    try:
        with torch.no_grad():
            x = torch.from_numpy(wave)[None]
            x = torch.nn.functional.pad(x, (0, model.padded_length(x.shape[-1]) - x.shape[-1]))
            return model(x, path="continuous")[0, :, : wave.shape[-1]].numpy(), seen["act"]
    finally:
        handle.remove()


def test_patch_with_the_input_itself_is_the_identity(embedded):
    wave = chord(0.4, seed=8)
    spec = api.InterventionSpec(layer="encoder.3.conv", direction=None, intervention="patch", options={"source": wave})
    base, patched, _, _ = api.run_pairs(embedded, [wave], spec)
    assert np.abs(patched[0] - base[0]).max() < 1e-6
    other = api.InterventionSpec(
        layer="encoder.3.conv", direction=None, intervention="patch", options={"source": chord(0.4, seed=9)}
    )
    _, changed, _, _ = api.run_pairs(embedded, [wave], other)
    assert np.abs(changed[0] - base[0]).max() > 1e-3  # so the identity above is not vacuous


@pytest.mark.parametrize("channel", [None, 1])
def test_patch_equals_a_manual_hook(embedded, tmp_path, channel):
    layer = api.layers(embedded).get("encoder.3.conv")
    wave, source = chord(0.5, seed=10), chord(0.6, seed=11)
    path = tmp_path / "source.wav"
    sf.write(path, source[0], SR, subtype="FLOAT")
    direction = channel_direction(channel, layer) if channel is not None else None
    spec = api.InterventionSpec(
        layer=layer.name, direction=direction, intervention="patch", span=Span(0.1, 0.3), options={"source": str(path)}
    )
    res = api.intervene(embedded, [wave], spec)[0]
    _, src_act = _forward(embedded, source, layer)
    first, last = int(np.floor(0.1 * layer.frame_rate)), int(np.ceil(0.3 * layer.frame_rate))

    def replace(out):
        out = out.clone()
        if channel is None:
            out[0, :, first:last] = src_act[:, first:last]
        else:
            out[0, channel, first:last] = src_act[channel, first:last]
        return out

    ref, _ = _forward(embedded, wave, layer, replace)
    assert np.abs(res.patched - ref).max() < 1e-5
    assert np.abs(res.patched - res.baseline).max() > 1e-3
    prepared = res.record["prepared"]
    from steerlab.artifacts import file_sha256

    assert prepared["sha256"] == file_sha256(path) and prepared["source"] == str(path.resolve())
    assert prepared["source_frames"] == layer.frames_for(source.shape[-1])
    assert res.record["options"] == {"source": str(path)} and res.record["direction"] == (
        None if channel is None else {"source": "channel", "channel": 1, "norm": 1.0}
    )


def test_mean_ablate_of_a_constant_reference_equals_a_manual_hook(embedded, tmp_path):
    layer = api.layers(embedded).get("first_conv")
    level, n = 0.3, 9_600
    ref_dir = tmp_path / "reference"
    ref_dir.mkdir()
    sf.write(ref_dir / "flat.wav", np.full(n, level, np.float32), SR, subtype="FLOAT")
    wave = chord(0.4, seed=12)
    spec = api.InterventionSpec(
        layer=layer.name,
        direction=None,
        intervention="mean-ablate",
        span=Span(0.1, 0.25),
        options={"reference": str(ref_dir)},
    )
    res = api.intervene(embedded, [wave], spec)[0]
    _, flat_act = _forward(embedded, np.full((1, n), level, np.float32), layer)
    mean = flat_act.double().mean(-1).float()
    first, last = int(np.floor(0.1 * layer.frame_rate)), int(np.ceil(0.25 * layer.frame_rate))

    def replace(out):
        out = out.clone()
        out[0, :, first:last] = mean[:, None]
        return out

    ref, _ = _forward(embedded, wave, layer, replace)
    assert np.abs(res.patched - ref).max() < 1e-5
    assert np.abs(res.patched - res.baseline).max() > 1e-3
    prepared = res.record["prepared"]
    assert prepared["n_frames"] == layer.frames_for(n) == n
    assert prepared["reference"] == [str(ref_dir)] and prepared["manifest"]["files_used"] == 1
    assert prepared["mean_norm"] == pytest.approx(float(mean.norm()), rel=1e-5)


def test_mean_ablate_accepts_generated_reference_sets(embedded):
    layer = api.layers(embedded).get("latent")
    spec = api.InterventionSpec(
        layer=layer.name,
        direction=None,
        intervention="mean-ablate",
        options={"reference": ["flat:2", "noise:1"], "clip_seconds": 0.2},
    )
    prepared = api.prepare(embedded, spec)
    frames = 3 * layer.frames_for(int(0.2 * SR))
    assert prepared.summary["n_frames"] == frames and prepared.summary["manifest"]["clips"] == 3
    assert prepared.state.mean.shape == (layer.channels,)


# -- the contract: old-style types, options, records ---------------------------------------------


def test_listing_shows_every_type_with_formula_and_options():
    from steerlab import cli

    result = CliRunner().invoke(cli.get_cli(), ["interventions", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    catalogue = {"add", "ablate", "scale", "clamp", "feature-clamp", "archetype", "patch", "mean-ablate"}
    assert catalogue <= set(rows)
    assert all(rows[n]["formula"] and rows[n]["description"] for n in catalogue)
    assert rows["patch"]["options"].keys() == {"source"} and rows["patch"]["needs_direction"] is False
    assert set(rows["mean-ablate"]["options"]) == {"reference", "seed", "clip_seconds"}
    assert rows["archetype"]["value"] == "motion" and rows["archetype"]["chunkable"] is False
    assert rows["feature-clamp"]["prepare"] is True and rows["add"]["prepare"] is False
    text = CliRunner().invoke(cli.get_cli(), ["interventions"]).output
    assert "r_t <- r_t + v * d * C_t" in text and "option source:" in text


def test_unknown_option_and_missing_direction_are_refused(embedded):
    layer = api.layers(embedded).get("first_conv")
    with pytest.raises(InterventionError, match="takes no option 'sorce'. Did you mean 'source'"):
        api.prepare(
            embedded,
            api.InterventionSpec(layer=layer.name, direction=None, intervention="patch", options={"sorce": "x.wav"}),
        )
    with pytest.raises(InterventionError, match="takes no option 'source'.*Its options: none"):
        api.prepare(
            embedded,
            api.InterventionSpec(
                layer=layer.name, direction=channel_direction(0, layer), intervention="add", options={"source": "x.wav"}
            ),
        )
    from steerlab.errors import DirectionError

    with pytest.raises(DirectionError, match="'add' needs a direction"):
        api.prepare(embedded, api.InterventionSpec(layer=layer.name, direction=None, intervention="add"))
    with pytest.raises(InterventionError, match="^patch needs the option source: an audio file") as caught:
        api.prepare(embedded, api.InterventionSpec(layer=layer.name, direction=None, intervention="patch"))
    assert caught.value.parameters == ("source",)  # the CLI names its --source
    with pytest.raises(InterventionError, match="options must be a mapping"):
        api.InterventionSpec(layer=layer.name, direction=None, intervention="patch", options=["source"])


# -- bad input on the command line: one line, nothing written ------------------------------------


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    sf.write(d / "tone.wav", chord(0.5, seed=1)[0], SR, subtype="FLOAT")
    sf.write(d / "short.wav", chord(0.1, seed=2)[0], SR, subtype="FLOAT")
    sf.write(d / "long.wav", chord(2.0, seed=3)[0], SR, subtype="FLOAT")
    return d


CLI_CASES = {
    "patch-without-source": (
        ["tone.wav", "-l", "first_conv", "-i", "patch"],
        "patch needs the option --source: an audio file",
    ),
    "source-without-patch": (
        ["tone.wav", "-l", "first_conv", "-c", "0", "--source", "short.wav"],
        "--source is the source audio of -i patch, not of -i add",
    ),
    "source-shorter-than-span": (
        ["tone.wav", "-l", "first_conv", "-i", "patch", "--source", "short.wav"],
        "tone.wav: the span reaches frame 12000 but the patch source",
    ),
    "source-missing": (["tone.wav", "-l", "first_conv", "-i", "patch", "--source", "nope.wav"], "nope.wav"),
    "mean-ablate-without-reference": (
        ["tone.wav", "-l", "first_conv", "-i", "mean-ablate"],
        "mean-ablate needs the option --reference: a folder",
    ),
    "bad-reference": (
        ["tone.wav", "-l", "first_conv", "-i", "mean-ablate", "--reference", "nosie:3"],
        "Did you mean noise:3?",
    ),
    "reference-without-mean-ablate": (
        ["tone.wav", "-l", "first_conv", "-c", "0", "--reference", "flat:2"],
        "--reference is the reference set of -i mean-ablate",
    ),
    "unknown-opt": (
        ["tone.wav", "-l", "first_conv", "-i", "mean-ablate", "--reference", "flat:1", "--opt", "sed", "3"],
        "takes no option 'sed'. Did you mean 'seed'?",
    ),
    "archetype-long-input-in-chunks": (
        ["long.wav", "-l", "first_conv", "-c", "0", "-i", "archetype", "--chunk-s", "1"],
        "raise --chunk-s to at least 2",
    ),
    "add-needs-direction": (["tone.wav", "-l", "first_conv"], "give exactly one of --direction FILE or --channel K"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_bad_input_is_one_line_and_writes_nothing(files, monkeypatch, case):
    from steerlab import cli

    args, fragment = CLI_CASES[case]
    monkeypatch.chdir(files)
    before = sorted(p.name for p in files.iterdir())
    result = CliRunner().invoke(cli.get_cli(), ["intervene", *args, "-o", "out"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and fragment in lines[0], result.output
    assert sorted(p.name for p in files.iterdir()) == before  # no output folder, nothing else


def test_patch_and_mean_ablate_through_the_cli(files, monkeypatch):
    from steerlab import cli

    monkeypatch.chdir(files)
    result = CliRunner().invoke(
        cli.get_cli(),
        ["intervene", "tone.wav", "-l", "latent", "-i", "patch", "--source", "long.wav", "-o", "out", "--json"],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout[result.stdout.index("[") :])[0]
    assert doc["intervention"] == "patch" and doc["direction"] is None
    assert doc["prepared"]["source_frames"] == api.layers(api.load_model()).get("latent").frames_for(2 * SR)
    result = CliRunner().invoke(
        cli.get_cli(),
        [
            "intervene",
            "tone.wav",
            "-l",
            "latent",
            "-i",
            "mean-ablate",
            "--reference",
            "flat:2",
            "--opt",
            "clip_seconds",
            "0.3",
            "-o",
            "out2",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((files / "out2" / "tone" / "scores.json").read_text())
    assert doc["options"] == {"reference": ["flat:2"], "clip_seconds": 0.3}
    assert doc["prepared"]["n_frames"] == 2 * api.layers(api.load_model()).get("latent").frames_for(int(0.3 * SR))


# -- a model without a decoder -------------------------------------------------------------------


class TinyClassifier(AudioModel):
    """A strided conv, ReLU, mean pooling over time and a linear head: logits [batch, 3]."""

    name = "tiny_classifier"
    family = "test_classifier"
    sample_rate = SR
    hop = 4
    has_decoder = False
    ragged_batching = False
    class_names = ["low", "mid", "high"]

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 8, kernel_size=8, stride=4, padding=2)
        self.head = torch.nn.Linear(8, 3)
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, wave):
        return self.head(torch.relu(self.conv(wave)).mean(-1))


class _ClassifierPlugin:
    @hookimpl
    def steerlab_register_models(self, registry):
        from steerlab.registry import ModelSpec

        registry.add(ModelSpec("tiny_classifier", lambda options: TinyClassifier(), "a decoder-less test model"))

    @hookimpl
    def steerlab_register_layers(self, model, registry):
        if isinstance(model, TinyClassifier):
            registry.add(LayerInfo("conv", "conv", "conv", 8, 4, 4, model.sample_rate, 8, kernel_size=8))


@pytest.fixture
def classifier():
    plugins.reset()
    plugin = _ClassifierPlugin()
    plugins.register(plugin, name="classifier_plugin")
    try:
        yield api.load_model("tiny_classifier")
    finally:
        plugins.unregister(plugin)
        plugins.reset()


def test_decoder_less_model_scores_class_probabilities(classifier):
    wave = chord(0.25, seed=13)
    layer = api.layers(classifier).get("conv")
    spec = api.InterventionSpec(
        layer="conv",
        direction=channel_direction(2, layer),
        intervention="add",
        strength=Strength(1.5, "absolute"),
        span=Span(0.05),
    )
    res = api.intervene(classifier, [wave], spec)[0]
    with torch.no_grad():
        x = torch.from_numpy(wave)[None]
        a = classifier.conv(torch.nn.functional.pad(x, (0, classifier.padded_length(x.shape[-1]) - x.shape[-1])))
        base = classifier.head(torch.relu(a).mean(-1))[0].double()
        first = int(np.floor(0.05 * layer.frame_rate))
        a[0, 2, first:] += 1.5
        patched = classifier.head(torch.relu(a).mean(-1))[0].double()
    assert np.allclose(res.baseline, base.numpy(), atol=1e-5) and np.allclose(res.patched, patched.numpy(), atol=1e-5)
    c = res.scores["classification"]
    pb, pp = torch.softmax(base, 0), torch.softmax(patched, 0)
    assert [r["class"] for r in c["classes"]] == ["low", "mid", "high"]
    assert np.allclose([r["baseline_prob"] for r in c["classes"]], pb.numpy(), atol=1e-5)
    assert np.allclose([r["delta_prob"] for r in c["classes"]], (pp - pb).numpy(), atol=1e-5)
    assert np.allclose([r["delta_logit"] for r in c["classes"]], (patched - base).numpy(), atol=1e-5)
    kl = float((pb * (pb.log() - pp.log())).sum())
    assert c["kl_divergence"] == pytest.approx(kl, rel=1e-4, abs=1e-7) and kl > 1e-4
    assert c["top_before"]["index"] == int(base.argmax()) and c["top_after"]["index"] == int(patched.argmax())
    assert "spectral" not in res.scores and "do not apply" in res.record["spectral_scores"]
    with pytest.raises(Exception, match="^target_hz does not apply to tiny_classifier"):
        api.intervene(classifier, [wave], spec, target_hz=[440.0])


def test_decoder_less_model_writes_scores_and_a_bar_chart_not_wavs(classifier, tmp_path):
    from steerlab import cli

    wav = tmp_path / "tone.wav"
    sf.write(wav, chord(0.25, seed=14)[0], SR, subtype="FLOAT")
    result = CliRunner().invoke(
        cli.get_cli(),
        [
            "intervene",
            str(wav),
            "-m",
            "tiny_classifier",
            "-l",
            "conv",
            "-c",
            "1",
            "-a",
            "2",
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "spectral scores do not apply (no decoder)" in result.output and "top class" in result.output
    folder = tmp_path / "out" / "tone"
    assert sorted(p.name for p in folder.iterdir()) == ["probabilities.png", "scores.json"]
    assert (folder / "probabilities.png").read_bytes()[:4] == b"\x89PNG"
    doc = json.loads((folder / "scores.json").read_text())
    assert doc["output"] == "class logits" and set(doc["scores"]) == {"classification"}
    assert len(doc["scores"]["classification"]["classes"]) == 3
    docs = runner.intervene_files(
        classifier,
        [wav],
        api.InterventionSpec(
            layer="conv", intervention="mean-ablate", options={"reference": "flat:1", "clip_seconds": 0.1}
        ),
        tmp_path / "out2",
    )
    assert docs[0]["prepared"]["n_frames"] == api.layers(classifier).get("conv").frames_for(int(0.1 * SR))
    assert docs[0]["scores"]["classification"]["total_variation"] > 0
