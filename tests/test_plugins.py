"""The plugin contract: loud duplicates, failures reported while the rest keep
working, blocking, a faked entry point that adds a whole new model through every
hook, and a meta-test that keeps the hookspecs documented and exercised."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from steerlab import hookspecs, plugins
from steerlab.hookspecs import hookimpl

TESTS = Path(__file__).parent
BUILTIN_INTERVENTIONS = {"add", "ablate", "scale", "clamp", "feature-clamp", "archetype", "patch", "mean-ablate"}


@pytest.fixture
def fresh():
    """A plugin manager built from scratch for this test, and forgotten afterwards."""
    plugins.reset()
    yield
    plugins.reset()


def _cli():
    from steerlab import cli

    return cli.get_cli()


def _invoke(args: list[str]):
    result = CliRunner().invoke(_cli(), args, catch_exceptions=False)
    return result


@dataclass(frozen=True)
class _Flip:
    """A minimal intervention type, as a plugin would write it."""

    name: str = "twin"
    formula: str = "a_t <- a_t - 2 w_t c_t d"
    description: str = "reflect the component along the direction"
    value_scale: str = "none"

    def apply(self, act, direction, value, weight, state=None):
        return act - 2 * direction[:, None] * (weight * (direction @ act))[None, :]


class _Registers:
    """An inline plugin registering one intervention under ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name

    @hookimpl
    def steerlab_register_interventions(self, registry):
        registry.add(_Flip(name=self.name))


def _register_inline(*pairs):
    for name, obj in pairs:
        plugins.register(obj, name=name)


# -- the built-ins --------------------------------------------------------------------------------


def test_builtins_load_without_failures_and_add_their_commands(fresh, monkeypatch):
    monkeypatch.setattr(plugins, "entry_points", lambda group: [])
    cli = _cli()
    assert plugins.failures() == []
    rows = plugins.summary()
    assert [r["name"] for r in rows] == list(plugins.DEFAULT_PLUGINS)
    assert all(r["builtin"] and r["error"] is None and not r["blocked"] for r in rows)
    # steerlab.builtins.encodec adds its recipes to the core's ``train`` and ``eval`` groups
    assert sorted(cli.commands["train"].commands) == ["codec", "samplecnn", "tokenlm"]
    assert sorted(cli.commands["eval"].commands) == ["codec", "samplecnn"]
    result = CliRunner().invoke(cli, ["train", "codec", "--help"])
    assert result.exit_code == 0 and "--steps" in result.output
    result = CliRunner().invoke(cli, ["eval", "codec", "--help"])
    assert result.exit_code == 0 and "--clips" in result.output


# -- duplicates ---------------------------------------------------------------------------------


def test_registry_add_names_both_plugins_on_duplicate():
    from steerlab.registry import DuplicateNameError, InterventionRegistry

    reg = InterventionRegistry()
    reg.current_plugin = "first_plugin"
    reg.add(_Flip())
    reg.current_plugin = "second_plugin"
    with pytest.raises(DuplicateNameError) as info:
        reg.add(_Flip())
    msg = str(info.value)
    assert "'first_plugin'" in msg and "'second_plugin'" in msg and "'twin'" in msg
    assert "STEERLAB_BLOCK_PLUGINS" in msg
    assert reg.owners == {"twin": "first_plugin"}


def test_duplicate_between_two_plugins_is_recorded_naming_both(fresh):
    a, b = _Registers("twin"), _Registers("twin")
    _register_inline(("dup_plugin_a", a), ("dup_plugin_b", b))
    try:
        reg = plugins.interventions()
        failures = [f for f in plugins.failures() if f.stage == "steerlab_register_interventions"]
        assert len(failures) == 1, plugins.failures()
        (failure,) = failures
        assert failure.error.startswith("DuplicateNameError: intervention 'twin' registered twice")
        assert "'dup_plugin_a'" in failure.error and "'dup_plugin_b'" in failure.error
        assert "\n" not in failure.error
        # plugins are asked in registration order: the first keeps the name, the second is blamed
        assert reg.owners["twin"] == "dup_plugin_a"
        assert failure.plugin == "dup_plugin_b"
        assert BUILTIN_INTERVENTIONS <= set(reg.names())
    finally:
        plugins.unregister(a)
        plugins.unregister(b)
        plugins.reset()


def test_clash_with_a_builtin_blames_the_newcomer_and_keeps_every_builtin(fresh):
    """A plugin reusing a built-in name must not knock out the built-in's other entries."""
    clash = _Registers("scale")
    _register_inline(("clashing_plugin", clash))
    try:
        reg = plugins.interventions()
        assert {n: reg.owners[n] for n in BUILTIN_INTERVENTIONS} == dict.fromkeys(
            BUILTIN_INTERVENTIONS, "steerlab.builtins.interventions"
        )
        assert type(reg.get("scale")).__name__ == "Scale"
        (failure,) = [f for f in plugins.failures() if f.stage == "steerlab_register_interventions"]
        assert failure.plugin == "clashing_plugin"
        assert "'steerlab.builtins.interventions'" in failure.error and "'clashing_plugin'" in failure.error
    finally:
        plugins.unregister(clash)
        plugins.reset()


class _AliasesEncodec:
    """Adds an alias to the built-in EnCodec layer table (needs the built-in to run first)."""

    @hookimpl
    def steerlab_register_layers(self, model, registry):
        if getattr(model, "family", "") == "encodec":
            registry.alias("bottleneck", "latent")


def test_a_plugin_can_extend_a_builtin_layer_table(fresh, embedded):
    from steerlab import api

    extra = _AliasesEncodec()
    _register_inline(("alias_plugin", extra))
    try:
        reg = plugins.layers_for(embedded)
        assert reg.get("bottleneck") is reg.get("latent")
        assert reg.get("bottleneck").hop == 320
        assert api.layers(embedded).get("first_conv").name == "encoder.0.conv"
    finally:
        plugins.unregister(extra)
        plugins.reset()


def test_misspelled_hook_is_reported_at_startup_and_the_rest_works(fresh, monkeypatch):
    class Typo:
        @hookimpl
        def steerlab_register_modles(self, registry):  # deliberately misspelled
            pass

    monkeypatch.setattr(plugins, "entry_points", lambda group: [_FakeEntryPoint("typo_plugin", lambda: Typo())])
    pm = plugins.get_plugin_manager()
    assert not pm.has_plugin("typo_plugin")
    [failure] = [f for f in plugins.failures() if f.plugin == "typo_plugin"]
    assert failure.stage == "check_pending"
    assert "steerlab_register_modles" in failure.error and "\n" not in failure.error
    assert "tiny_encodec_24khz" in plugins.models()


# -- failures are reported, the rest keeps working ----------------------------------------------


@dataclass
class _FakeEntryPoint:
    name: str
    loader: object
    group: str = "steerlab"

    def load(self):
        return self.loader()


def _broken_import():
    raise ImportError("No module named 'steerlab_missing_dependency'")


class _RaisingScorers:
    @hookimpl
    def steerlab_register_scorers(self, registry):
        raise RuntimeError("scorer table exploded\nsecond line must not be shown")


def test_failed_plugins_are_listed_with_their_error(fresh, monkeypatch):
    monkeypatch.setattr(
        plugins,
        "entry_points",
        lambda group: [
            _FakeEntryPoint("broken_import", _broken_import),
            _FakeEntryPoint("raising_hook", lambda: _RaisingScorers()),
        ],
    )
    result = _invoke(["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    errors = {r["name"]: r["error"] for r in rows if r["error"]}
    assert errors["broken_import"] == "import: ImportError: No module named 'steerlab_missing_dependency'"
    assert errors["raising_hook"] == "steerlab_register_scorers: RuntimeError: scorer table exploded"
    ok = {r["name"]: r for r in rows if not r["error"]}
    assert "tiny_encodec_24khz" in ok["steerlab.builtins.encodec"]["models"]
    assert ok["steerlab.builtins.scorers"]["scorers"] == ["spectral"]
    assert set(ok["steerlab.builtins.interventions"]["interventions"]) == BUILTIN_INTERVENTIONS

    text = _invoke(["plugins"])
    assert "broken_import: FAILED import: ImportError" in text.output
    assert "raising_hook: FAILED steerlab_register_scorers: RuntimeError: scorer table exploded" in text.output
    models = _invoke(["models", "--json"])
    assert models.exit_code == 0
    assert [m["name"] for m in json.loads(models.stdout) if m["default"]] == ["tiny_encodec_24khz"]


def test_block_env_keeps_a_plugin_out(fresh, monkeypatch):
    monkeypatch.setenv("STEERLAB_BLOCK_PLUGINS", " steerlab.builtins.crepe , raising_hook")
    monkeypatch.setattr(
        plugins, "entry_points", lambda group: [_FakeEntryPoint("raising_hook", lambda: _RaisingScorers())]
    )
    assert plugins.blocked() == {"steerlab.builtins.crepe", "raising_hook"}
    assert "pitch_salience" not in plugins.scorers()
    assert plugins.scorers().names() == ["spectral"]  # the one other built-in scorer (steerlab.builtins.scorers)
    assert "crepe_tiny_16khz" not in plugins.models() and "tiny_encodec_24khz" in plugins.models()
    assert set(plugins.interventions().names()) == BUILTIN_INTERVENTIONS
    assert plugins.failures() == []  # the raising entry point was never loaded
    rows = {r["name"]: r for r in json.loads(_invoke(["plugins", "--json"]).stdout)}
    assert rows["steerlab.builtins.crepe"]["blocked"] is True
    assert rows["steerlab.builtins.crepe"]["scorers"] == [] and rows["steerlab.builtins.crepe"]["hooks"] == []
    assert rows["steerlab.builtins.encodec"]["blocked"] is False
    assert "steerlab.builtins.crepe: blocked" in _invoke(["plugins"]).output
    monkeypatch.delenv("STEERLAB_BLOCK_PLUGINS")
    plugins.reset()
    assert "pitch_salience" in plugins.scorers()


def test_an_unknown_blocked_name_is_refused_with_the_nearest_match(fresh, monkeypatch):
    """``steerlab.builtins.crep`` blocked nothing and CREPE stayed loaded, silently."""
    from steerlab.errors import PluginError

    monkeypatch.setattr(
        plugins, "entry_points", lambda group: [_FakeEntryPoint("raising_hook", lambda: _RaisingScorers())]
    )
    monkeypatch.setenv("STEERLAB_BLOCK_PLUGINS", "steerlab.builtins.crep")
    with pytest.raises(PluginError) as info:
        plugins.models()
    msg = str(info.value)
    assert msg.startswith(
        "unknown plugin 'steerlab.builtins.crep' in STEERLAB_BLOCK_PLUGINS. Did you mean 'steerlab.builtins.crepe'? "
        "Plugins that can be blocked: steerlab.builtins.filterbank, "
    )
    assert msg.endswith("steerlab.builtins.concepts, raising_hook") and "\n" not in msg
    with pytest.raises(PluginError, match=r"^unknown plugins 'bar', 'foo' in STEERLAB_BLOCK_PLUGINS\. Plugins"):
        plugins.PluginHost(blocked=["foo", "steerlab.builtins.tokenlm", "bar"]).models()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STEERLAB_BLOCK_PLUGINS": "steerlab.builtins.crep"}
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "steerlab", "models"], check=False, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1 and result.stdout == "", result.stdout
    assert result.stderr.startswith("Error: unknown plugin 'steerlab.builtins.crep'") and result.stderr.count("\n") == 1


ESSENTIAL_REFUSAL = (
    "cannot block 'steerlab.builtins.scorers' (STEERLAB_BLOCK_PLUGINS): an essential built-in plugin that "
    "steerlab's defaults need (the default model, the 'add' intervention, the 'spectral' scorer); built-ins "
    "that can be blocked: steerlab.builtins.filterbank, steerlab.builtins.stft, steerlab.builtins.logspec, "
    "steerlab.builtins.samplecnn, steerlab.builtins.tokenlm, steerlab.builtins.crepe, steerlab.builtins.concepts"
)


def test_blocking_an_essential_plugin_is_refused_with_one_line(fresh, monkeypatch):
    from steerlab.errors import PluginError

    assert plugins.ESSENTIAL_PLUGINS == (
        "steerlab.builtins.encodec",
        "steerlab.builtins.interventions",
        "steerlab.builtins.scorers",
    )
    assert set(plugins.ESSENTIAL_PLUGINS) <= set(plugins.DEFAULT_PLUGINS)
    monkeypatch.setenv("STEERLAB_BLOCK_PLUGINS", "steerlab.builtins.tokenlm,steerlab.builtins.scorers")
    for _ in range(2):  # refused every time, never half-loaded
        with pytest.raises(PluginError) as info:
            plugins.scorers()
        assert str(info.value) == ESSENTIAL_REFUSAL
    with pytest.raises(
        PluginError, match=r"^cannot block 'steerlab.builtins.encodec', 'steerlab.builtins.interventions' "
    ):
        plugins.PluginHost(blocked=["steerlab.builtins.interventions", "steerlab.builtins.encodec"]).models()
    # the real command: one line on stderr, exit status 1, no traceback
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STEERLAB_BLOCK_PLUGINS": "steerlab.builtins.scorers"}
    steerlab = Path(sys.executable).parent / "steerlab"
    result = subprocess.run(
        [str(steerlab), "plugins"], check=False, env=env, capture_output=True, text=True, timeout=120
    )
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"Error: {ESSENTIAL_REFUSAL}\n")


# -- the plugin system is an object -----------------------------------------------------------------


def _commands_group():
    import click

    group = click.Group("steerlab")
    group.add_command(click.Group("train"))
    group.add_command(click.Group("eval"))
    return group


def test_hookcall_monitoring_sees_every_call_of_every_plugin(monkeypatch, embedded):
    """Every hook implementation is called through pluggy, one plugin per call."""
    monkeypatch.setattr(plugins, "entry_points", lambda group: [])
    host = plugins.PluginHost(blocked=())
    extra = _Registers("twin")
    host.register(extra, name="inline_plugin")
    calls: list[tuple[str, list[str]]] = []
    outcomes: list[str] = []
    host.pm.add_hookcall_monitoring(
        lambda name, impls, kwargs: calls.append((name, [impl.plugin_name for impl in impls])),
        lambda outcome, name, impls, kwargs: outcomes.append(name),
    )
    host.models(), host.interventions(), host.scorers(), host.concepts()
    host.layers_for(embedded)
    host.call_each("steerlab_register_commands", cli=_commands_group())
    assert all(len(names) == 1 for _, names in calls)  # one plugin per call: isolated
    seen: dict[str, list[str]] = {}
    for name, [plugin] in calls:
        seen.setdefault(name, []).append(plugin)
    implementers = {
        name: [impl.plugin_name for impl in getattr(host.pm.hook, name).get_hookimpls()] for name in _hookspec_names()
    }
    assert seen == implementers  # every implementation, in registration order, once
    assert seen["steerlab_register_interventions"][-1] == "inline_plugin"
    assert seen["steerlab_register_models"] == [
        "steerlab.builtins.encodec",
        "steerlab.builtins.filterbank",
        "steerlab.builtins.stft",
        "steerlab.builtins.logspec",
        "steerlab.builtins.samplecnn",
        "steerlab.builtins.tokenlm",
        "steerlab.builtins.crepe",
    ]
    assert len(outcomes) == len(calls) == sum(map(len, implementers.values()))
    assert host.failures == [] and "twin" in host.interventions()


def test_two_hosts_share_no_state(fresh, monkeypatch):
    monkeypatch.setattr(plugins, "entry_points", lambda group: [])
    a = plugins.PluginHost(blocked=["steerlab.builtins.tokenlm"])
    b = plugins.PluginHost(blocked=())
    a.register(_Registers("twin"), name="dup_plugin_a")
    a.register(_Registers("twin"), name="dup_plugin_b")
    assert a.pm is not b.pm
    assert "twin" in a.interventions() and "twin" not in b.interventions()
    assert [(f.plugin, f.stage) for f in a.failures] == [("dup_plugin_b", "steerlab_register_interventions")]
    assert b.failures == []
    assert "tokenlm_24khz" not in a.models() and "tokenlm_24khz" in b.models()
    assert a.interventions() is not b.interventions() and a.models() is not b.models()
    # the default host is a third, independent one; resetting it leaves the others alone
    assert "twin" not in plugins.interventions() and plugins.failures() == []
    before = a.interventions()
    plugins.reset()
    assert a.interventions() is before and "twin" in before


def test_every_hook_has_an_explicit_failure_policy(fresh, embedded, monkeypatch):
    from steerlab.errors import PluginError

    assert set(plugins.FAILURE_POLICY) == set(_hookspec_names())
    assert plugins.FAILURE_POLICY["steerlab_register_layers"] == "raise"

    class RaisingLayers:
        @hookimpl
        def steerlab_register_layers(self, model, registry):
            raise RuntimeError("layer table exploded\nsecond line")

    monkeypatch.setattr(plugins, "entry_points", lambda group: [])
    host = plugins.PluginHost(blocked=())
    host.register(RaisingLayers(), name="raising_layers")
    host.register(_RaisingScorers(), name="raising_scorers")
    with pytest.raises(PluginError) as info:
        host.layers_for(embedded)
    assert str(info.value) == (
        "plugin 'raising_layers' failed listing the layers of 'tiny_encodec_24khz': RuntimeError: layer table exploded"
    )
    # "record": the failure is kept, the other plugins' scorers are there
    assert set(host.scorers().names()) == {"spectral", "pitch_salience"}
    assert [f.line() for f in host.failures] == [
        "raising_scorers (steerlab_register_scorers): RuntimeError: scorer table exploded"
    ]


# -- an out-of-tree plugin through a faked entry point -------------------------------------------

TOY_PLUGIN = '''
"""An out-of-tree steerlab plugin: a tiny conv codec, its layers, an intervention,
a scorer and a command, registered only through the public hooks."""

import click
import numpy as np
import torch

from steerlab.hookspecs import hookimpl
from steerlab.model import AudioModel, LayerInfo

CALLS = []


class ToyCodec(AudioModel):
    name = "toy_codec"
    family = "toy"
    sample_rate = 16_000
    hop = 4

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Conv1d(1, 8, kernel_size=4, stride=4)
        self.act = torch.nn.Tanh()
        self.decoder = torch.nn.ConvTranspose1d(8, 1, kernel_size=4, stride=4)
        g = torch.Generator().manual_seed(1234)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, wave, path="continuous", n_q=None):
        self.check_path(path)
        return self.decoder(self.act(self.encoder(wave)))[..., : wave.shape[-1]]


def load(options):
    return ToyCodec()


@hookimpl
def steerlab_register_models(registry):
    from steerlab.registry import ModelSpec

    CALLS.append("steerlab_register_models")
    registry.add(ModelSpec("toy_codec", load, "a two-layer conv codec from an out-of-tree plugin"))


@hookimpl
def steerlab_register_layers(model, registry):
    CALLS.append("steerlab_register_layers")
    if isinstance(model, ToyCodec):
        registry.add(LayerInfo("toy.enc", "conv", "encoder", 8, 4, 4, model.sample_rate, 4, kernel_size=4))
        registry.alias("bottleneck", "toy.enc")


class Negate:
    name = "toy_negate"
    formula = "a_t <- a_t - 2 w_t c_t d"
    description = "reflect the component along d"
    value_scale = "none"

    def apply(self, act, direction, value, weight, state=None):
        return act - 2 * direction[:, None] * (weight * (direction @ act))[None, :]


@hookimpl
def steerlab_register_interventions(registry):
    CALLS.append("steerlab_register_interventions")
    registry.add(Negate())


def change_rms(baseline, patched, sample_rate, target_hz):
    return {"change_rms": float(np.sqrt(np.mean((patched - baseline) ** 2))), "sample_rate": sample_rate}


@hookimpl
def steerlab_register_scorers(registry):
    from steerlab.registry import ScorerSpec

    CALLS.append("steerlab_register_scorers")
    registry.add(ScorerSpec("toy_rms", change_rms, "RMS of the change"))


class Quieter:
    """A concept from an out-of-tree plugin: the built-in loudness concept under another name."""

    def __new__(cls):
        from steerlab.builtins.concepts.loudness import Loudness

        concept = Loudness()
        concept.name = "toy_quieter"
        return concept


@hookimpl
def steerlab_register_concepts(registry):
    CALLS.append("steerlab_register_concepts")
    registry.add(Quieter())


@click.command(name="toy-hello")
def hello():
    """Say hello."""
    click.echo("hello from the toy plugin")


@hookimpl
def steerlab_register_commands(cli):
    CALLS.append("steerlab_register_commands")
    cli.add_command(hello)
'''


@pytest.fixture
def toy(fresh, tmp_path, monkeypatch):
    """The toy plugin module, importable from tmp_path and offered as the only entry point."""
    plugin_dir = tmp_path / "site"
    plugin_dir.mkdir()
    (plugin_dir / "steerlab_toy_plugin.py").write_text(textwrap.dedent(TOY_PLUGIN))
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.setattr(
        plugins,
        "entry_points",
        lambda group: (
            [_FakeEntryPoint("steerlab_toy", lambda: importlib.import_module("steerlab_toy_plugin"))]
            if group == plugins.ENTRY_POINT_GROUP
            else []
        ),
    )
    yield
    sys.modules.pop("steerlab_toy_plugin", None)


def _toy_expected_patch(module, wave: np.ndarray, channel: int, alpha: float) -> np.ndarray:
    """The patched decode computed by hand: add alpha * RMS-norm on one channel of the encoder output."""
    import torch

    model = module.ToyCodec().eval()
    with torch.no_grad():
        x = torch.from_numpy(wave)[None]
        a = model.encoder(x)
        value = alpha * float(a[0].pow(2).sum(0).mean().sqrt())
        a[:, channel, :] += value
        return model.decoder(model.act(a))[0, :, : wave.shape[-1]].numpy()


def test_out_of_tree_plugin_adds_a_model_end_to_end(toy, tmp_path):
    sr, n = 16_000, 4_000  # 0.25 s, a whole number of toy frames
    t = np.arange(n) / sr
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1300 * t)).astype(np.float32)[None]
    wav = tmp_path / "tone.wav"
    sf.write(wav, wave.T, sr, subtype="FLOAT")

    models = json.loads(_invoke(["models", "--json"]).stdout)
    assert {
        "name": "toy_codec",
        "default": False,
        "plugin": "steerlab_toy",
        "description": "a two-layer conv codec from an out-of-tree plugin",
    } in models
    layers = json.loads(_invoke(["layers", "--model", "toy_codec", "--json"]).stdout)
    assert [r["name"] for r in layers["layers"]] == ["toy.enc"]
    assert layers["layers"][0]["frame_rate_hz"] == 4000.0 and layers["aliases"] == {"bottleneck": "toy.enc"}

    out = tmp_path / "out"
    # no fades: the hand-computed patch adds the same amount to every frame
    result = _invoke(
        [
            "intervene",
            str(wav),
            "--model",
            "toy_codec",
            "-l",
            "bottleneck",
            "-c",
            "3",
            "-a",
            "0.5",
            "--fade-in",
            "0",
            "--fade-out",
            "0",
            "-o",
            str(out),
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    folder = out / "tone"
    assert sorted(p.name for p in out.iterdir()) == ["tone"]
    assert sorted(p.name for p in folder.iterdir()) == ["baseline.wav", "patched.wav", "scores.json", "spectrogram.png"]
    doc = json.loads((folder / "scores.json").read_text())
    assert doc == json.loads(result.stdout)[0]
    module = sys.modules["steerlab_toy_plugin"]
    assert doc["model"]["name"] == "toy_codec" and doc["model"]["family"] == "toy"
    assert doc["model"]["weights_sha256"] == module.ToyCodec().weights_hash()
    assert doc["layer"] == "toy.enc" and doc["direction"]["channel"] == 3

    baseline, sr_b = sf.read(folder / "baseline.wav", dtype="float32", always_2d=True)
    patched, _ = sf.read(folder / "patched.wav", dtype="float32", always_2d=True)
    assert sr_b == sr and baseline.shape == patched.shape == (n, 1)
    expected = _toy_expected_patch(module, wave, channel=3, alpha=0.5)
    np.testing.assert_allclose(patched.T, expected, atol=1e-5)
    change = float(np.sqrt(np.mean((patched - baseline) ** 2)))
    assert change > 1e-3
    assert doc["scores"]["toy_rms"]["change_rms"] == pytest.approx(change, rel=1e-4)
    assert doc["scores"]["toy_rms"]["sample_rate"] == sr
    assert doc["scores"]["spectral"]["change_rms"] == pytest.approx(change, rel=1e-4)

    zero = _invoke(
        [
            "intervene",
            str(wav),
            "--model",
            "toy_codec",
            "-l",
            "toy.enc",
            "-c",
            "3",
            "-a",
            "0",
            "-o",
            str(tmp_path / "zero"),
            "--json",
        ]
    )
    assert zero.exit_code == 0, zero.output
    assert json.loads(zero.stdout)[0]["scores"]["toy_rms"]["change_rms"] == 0.0

    negate = _invoke(
        [
            "intervene",
            str(wav),
            "--model",
            "toy_codec",
            "-l",
            "toy.enc",
            "-c",
            "0",
            "-i",
            "toy_negate",
            "-o",
            str(tmp_path / "neg"),
            "--json",
        ]
    )
    assert negate.exit_code == 0, negate.output
    assert json.loads(negate.stdout)[0]["intervention"] == "toy_negate"
    assert json.loads(negate.stdout)[0]["scores"]["toy_rms"]["change_rms"] > 1e-3

    hello = _invoke(["toy-hello"])
    assert hello.exit_code == 0 and hello.output == "hello from the toy plugin\n"

    listed = {c["name"]: c for c in json.loads(_invoke(["concepts", "--json"]).stdout)}
    assert listed["toy_quieter"]["plugin"] == "steerlab_toy" and "loudness" in listed

    rows = {r["name"]: r for r in json.loads(_invoke(["plugins", "--json"]).stdout)}
    toy_row = rows["steerlab_toy"]
    assert toy_row["builtin"] is False and toy_row["error"] is None
    assert (toy_row["models"], toy_row["interventions"], toy_row["scorers"]) == (
        ["toy_codec"],
        ["toy_negate"],
        ["toy_rms"],
    )
    assert set(module.CALLS) == set(_hookspec_names())


# -- the hookspec module is documentation, and every hook is exercised ----------------------------


def _hookspec_names() -> list[str]:
    return [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "steerlab_spec")]


def test_every_hook_is_documented_typed_and_tested():
    names = _hookspec_names()
    assert set(names) == {
        "steerlab_register_models",
        "steerlab_register_layers",
        "steerlab_register_interventions",
        "steerlab_register_scorers",
        "steerlab_register_concepts",
        "steerlab_register_commands",
    }
    test_text = "\n".join(p.read_text() for p in TESTS.glob("test_*.py") if p.name != Path(__file__).name)
    own_text = Path(__file__).read_text().split("# -- the hookspec module is documentation")[0]
    for name in names:
        fn = getattr(hookspecs, name)
        doc = inspect.getdoc(fn) or ""
        assert len(doc.splitlines()) >= 3, f"{name} needs a docstring saying when it is called and what to do"
        assert "Called" in doc, f"{name}'s docstring must say when it is called"
        sig = inspect.signature(fn)
        assert sig.return_annotation == "None", f"{name} must declare its return type"
        assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values()), name
        assert f"def {name}(" in own_text + test_text, f"no test implements hook {name}"
