"""Loading EnCodec weights: --checkpoint, the torch hub cache, offline errors,
bad checkpoints, the embedded model, and the layer table's architectural facts."""

from __future__ import annotations

import json
import os

import pytest
import torch
from click.testing import CliRunner

from steerlab import api
from steerlab.errors import ModelLoadError

FILENAME = "encodec_24khz-d7cc33bc.th"
PROBE = "decoder.model.15.conv.conv.bias"  # the last conv's bias: [1]


@pytest.fixture(scope="module")
def official_state(tmp_path_factory):
    """An official-format 24 kHz checkpoint with one parameter set to a known value."""
    from steerlab.builtins.encodec.codec import OFFICIAL_24KHZ, build_codec

    torch.manual_seed(7)
    state = build_codec(OFFICIAL_24KHZ).state_dict()
    state[PROBE] = torch.tensor([0.123456])
    state["encoder.model.0.conv.conv.bias"] = torch.linspace(-1.0, 1.0, 32)
    path = tmp_path_factory.mktemp("ckpt") / FILENAME
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def fresh_hash():
    from steerlab.builtins.encodec.codec import OFFICIAL_24KHZ
    from steerlab.builtins.encodec.loaders import random_codec

    return random_codec("encodec_24khz", OFFICIAL_24KHZ, seed=0).weights_hash()


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and an empty torch hub cache."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("STEERLAB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _assert_same_weights(model, state):
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def test_checkpoint_option_loads_exactly_those_weights(official_state, fresh_hash, offline):
    path, state = official_state
    model = api.load_model("encodec_24khz", checkpoint=path)
    assert model.name == "encodec_24khz" and model.sample_rate == 24_000
    _assert_same_weights(model, state)
    assert float(model.decoder.model[15].conv.conv.bias) == pytest.approx(0.123456)
    assert model.weights_hash() != fresh_hash
    assert api.layers(model).get("latent").channels == 128


def test_torch_hub_cache_is_used_without_checkpoint(official_state, fresh_hash, offline):
    path, state = official_state
    cache = offline / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    os.link(path, cache / FILENAME)
    model = api.load_model("encodec_24khz")
    _assert_same_weights(model, state)
    assert model.weights_hash() != fresh_hash
    assert model.weights_hash() == api.load_model("encodec_24khz", checkpoint=path).weights_hash()


def test_offline_without_weights_is_one_actionable_line(offline):
    with pytest.raises(ModelLoadError) as info:
        api.load_model("encodec_24khz")
    msg = str(info.value)
    assert "\n" not in msg
    assert FILENAME in msg
    assert str(offline / "hub" / "checkpoints") in msg
    assert "or pass checkpoint, a local copy (random_init needs no weights" in msg  # the Python parameters
    assert info.value.parameters == ("checkpoint", "random_init")
    assert not (offline / "hub" / "checkpoints" / FILENAME).exists()


def test_offline_without_weights_cli_error(offline):
    from steerlab import cli

    result = CliRunner().invoke(cli.get_cli(), ["layers", "--model", "encodec_24khz"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: pretrained weights for encodec_24khz")
    assert FILENAME in lines[0] and "or pass --checkpoint, a local copy (--random-init needs no weights" in lines[0]


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """An empty torch hub cache, no offline variable set, and every connection refused (counted)."""
    import urllib.error
    import urllib.request

    import torch.hub

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args[0])
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    for var in ("STEERLAB_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "urlopen", refuse)  # torch.hub imports the name
    return tmp_path / "torch_home", calls


def test_unreachable_weights_give_only_the_error_line(no_network, official_state):
    """Offline without STEERLAB_OFFLINE, torch.hub printed ``Downloading: "https://..."`` (on
    stdout) before the error; now the server is asked quietly first, and weights already in the
    hub cache are loaded without asking it at all."""
    from steerlab import cli

    home, calls = no_network
    result = CliRunner().invoke(cli.get_cli(), ["layers", "--model", "encodec_24khz"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: pretrained weights for encodec_24khz"), result.output
    assert len(calls) == 1 and not (home / "hub" / "checkpoints" / FILENAME).exists()
    path, state = official_state
    (home / "hub" / "checkpoints").mkdir(parents=True, exist_ok=True)
    os.link(path, home / "hub" / "checkpoints" / FILENAME)
    _assert_same_weights(api.load_model("encodec_24khz"), state)
    assert len(calls) == 1  # the cache was looked in first


def _one_line_load_error(path, match):
    with pytest.raises(ModelLoadError, match=match) as info:
        api.load_model("encodec_24khz", checkpoint=path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)
    return str(info.value)


def test_wrong_architecture_checkpoint(tmp_path, offline, embedded):
    path = tmp_path / "tiny.th"
    torch.save(embedded.state_dict(), path)
    msg = _one_line_load_error(path, "do not fit this architecture: ")
    # the reason torch gives, not just its header line
    assert "size mismatch for " in msg or "Missing key(s)" in msg or "Unexpected key(s)" in msg, msg
    assert len(msg) < 400


class _Payload:
    """Arbitrary pickled objects must never be unpickled from a checkpoint."""

    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize(
    "write, match",
    [
        (lambda p: p.write_bytes(os.urandom(4096)), "cannot read checkpoint"),
        (lambda p: p.write_bytes(b""), "cannot read checkpoint"),
        (lambda p: torch.save([torch.zeros(3)], p), "is not a state dict"),
        (lambda p: torch.save({"weights": _Payload()}, p), "cannot read checkpoint"),
    ],
    ids=["random-bytes", "empty", "not-a-dict", "pickled-object"],
)
def test_bad_checkpoint_files(tmp_path, offline, write, match):
    path = tmp_path / FILENAME
    write(path)
    _one_line_load_error(path, match)


def test_missing_checkpoint_path(tmp_path, offline):
    _one_line_load_error(tmp_path / "nope.th", "checkpoint not found")


def test_embedded_model_loads_offline_with_a_stable_hash(offline):
    from steerlab.builtins.encodec.codec import EMBEDDED
    from steerlab.builtins.encodec.loaders import random_codec

    first, second = api.load_model(), api.load_model("tiny_encodec_24khz")
    assert first is not second and first.name == second.name == "tiny_encodec_24khz"
    h = first.weights_hash()
    assert len(h) == 64 and int(h, 16) >= 0
    assert h == second.weights_hash()
    assert h != random_codec("x", EMBEDDED, seed=0).weights_hash()
    assert first.describe()["weights_sha256"] == h
    assert not offline.exists()  # nothing was fetched or cached


@pytest.fixture(scope="module")
def layer_table():
    from steerlab import cli

    result = CliRunner().invoke(cli.get_cli(), ["layers", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    return doc, {r["name"]: r for r in doc["layers"]}


def test_layer_table_first_conv(layer_table):
    doc, rows = layer_table
    assert doc["model"] == "tiny_encodec_24khz"
    assert doc["aliases"]["first_conv"] == "encoder.0.conv"
    first = rows["encoder.0.conv"]
    assert doc["layers"][0]["name"] == "encoder.0.conv"
    assert (first["kernel_size"], first["stride"], first["hop_samples"]) == (7, 1, 1)
    assert first["frame_rate_hz"] == 24_000.0 and first["nyquist_hz"] == 12_000.0
    assert first["receptive_field_samples"] == 7


def test_layer_table_latent_and_strides(layer_table):
    doc, rows = layer_table
    latent = rows["latent"]
    assert latent["hop_samples"] == 320 and latent["frame_rate_hz"] == 75.0 and latent["nyquist_hz"] == 37.5
    enc_strided = [r["stride"] for r in doc["layers"] if r["side"] == "encoder" and r["stride"] > 1]
    dec_strided = [r["stride"] for r in doc["layers"] if r["side"] == "decoder" and r["stride"] > 1]
    assert enc_strided == [2, 4, 5, 8]
    assert dec_strided == [8, 5, 4, 2]
    hops = [r["hop_samples"] for r in doc["layers"] if r["side"] == "encoder" and r["kind"] == "conv"]
    assert hops == [1, 2, 8, 40, 320, 320]
    assert [r["hop_samples"] for r in doc["layers"] if r["side"] == "decoder"][-1] == 1


def test_layer_table_matches_the_official_architecture(embedded, random_24k):
    """The embedded codec is the 24 kHz architecture at reduced width: same time geometry."""
    geometry = ("name", "kind", "stride", "kernel_size", "hop_samples", "receptive_field_samples", "recurrent")
    tiny = [{k: r.to_json()[k] for k in geometry} for r in api.layers(embedded)]
    official = [{k: r.to_json()[k] for k in geometry} for r in api.layers(random_24k)]
    assert tiny == official
    assert api.layers(random_24k).get("first_conv").channels == 32
    assert api.layers(embedded).get("first_conv").channels == 12


@pytest.mark.parametrize(
    "name", ["encoder.0.conv", "encoder.3.conv", "encoder.6.conv", "encoder.9.conv", "encoder.12.conv"]
)
def test_receptive_field_matches_the_gradient_support(embedded, name):
    """Input samples one middle frame depends on, measured by autograd, equal the table's RF."""
    layer = api.layers(embedded).get(name)
    n = 4 * layer.receptive_field + 8 * layer.hop
    module = embedded.encoder.model[int(name.split(".")[1])]
    captured = {}
    handle = module.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    try:
        x = torch.zeros(1, 1, n, requires_grad=True)
        embedded.encoder(x + 0.01 * torch.sin(torch.arange(n) * 0.37))
        out = captured["out"]
        frame = out.shape[-1] // 2
        out[0, :, frame].sum().backward()
    finally:
        handle.remove()
    support = torch.nonzero(x.grad[0, 0]).flatten()
    assert int(support[-1] - support[0] + 1) == layer.receptive_field
    assert len(support) == layer.receptive_field  # no holes in the span
    assert int(support[-1]) == (frame + 1) * layer.hop - 1  # causal: nothing past the frame's own hop


def test_layers_of_official_models_offline_with_random_init(monkeypatch, tmp_path):
    import json

    from click.testing import CliRunner

    from steerlab.cli import get_cli

    monkeypatch.setenv("STEERLAB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    res = CliRunner().invoke(get_cli(), ["layers", "--model", "encodec_48khz", "--random-init", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    latent = [r for r in doc["layers"] if r["name"] == "latent"][0]
    assert latent["hop_samples"] == 320 and latent["frame_rate_hz"] == 150.0 and latent["channels"] == 128
    first = doc["layers"][0]
    assert first["channels"] == 32 and first["kernel_size"] == 7 and first["nyquist_hz"] == 24_000.0
