"""Activation capture and corpora: one batched pass equals single-layer passes and a plain
torch hook; generators stay inside their clip; subsampling is seeded; bad files are
skipped and counted; streaming is lazy; ``steerlab learn`` writes dictionaries."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from steerlab import api, dictionary, tracing
from steerlab.capture import Corpus, Manifest, ShardReader, stream_vectors, write_shards
from steerlab.errors import BadFilesError, CorpusError
from tests.conftest import chord

torch.set_num_threads(1)
SR = 24_000


def _wave(seconds: float, seed: int) -> torch.Tensor:
    return torch.from_numpy(chord(seconds, seed=seed))


def _hooked(model, wave: torch.Tensor, layer) -> torch.Tensor:
    """The layer's output from a plain forward hook (no nnsight), trimmed to the wave's frames."""
    node = model
    for part in layer.module_path.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    out = {}
    handle = node.register_forward_hook(lambda m, i, o: out.setdefault("act", o.detach().clone()))
    try:
        with torch.no_grad():
            x = torch.nn.functional.pad(wave[None], (0, model.padded_length(wave.shape[-1]) - wave.shape[-1]))
            model(x)
    finally:
        handle.remove()
    return out["act"][0, :, : layer.frames_for(wave.shape[-1])]


def test_capture_of_two_layers_equals_single_layers_and_a_torch_hook(embedded):
    reg = api.layers(embedded)
    layers = [reg.get("encoder.6.conv"), reg.get("first_conv")]  # out of forward order on purpose
    waves = [_wave(s, seed=i) for i, s in enumerate((0.3, 0.17, 0.25))]
    both = tracing.capture(embedded, waves, layers, order=reg.names())
    for layer in layers:
        alone = tracing.capture(embedded, waves, [layer])
        for i, w in enumerate(waves):
            got = both[i][layer.name]
            assert got.shape == (layer.channels, layer.frames_for(w.shape[-1])) and got.dtype == torch.float32
            assert float((got - alone[i][layer.name]).abs().max()) <= 1e-6
            assert float((got - _hooked(embedded, w, layer)).abs().max()) <= 1e-5


def test_generators_never_cross_clips(embedded):
    layer = api.layers(embedded).get("encoder.6.conv")  # hop 8
    clips = [("a", _wave(0.1, 1)), ("b", _wave(0.07, 2))]
    frames = [layer.frames_for(w.shape[-1]) for _, w in clips]
    manifest = Manifest()
    g = torch.cat(list(stream_vectors(embedded, clips, layer, "archetypes", manifest=manifest)))
    assert len(g) == sum(f - 1 for f in frames) == manifest.vectors
    acts = tracing.capture(embedded, [w for _, w in clips], [layer])
    expected = torch.cat([(a[layer.name][:, 1:] - a[layer.name][:, :-1]).T for a in acts])
    assert torch.allclose(g, expected, atol=1e-6, rtol=0)
    r = torch.cat(list(stream_vectors(embedded, clips, layer, "features", batch_clips=1)))
    assert len(r) == sum(frames)
    # the one pair that would cross clips (first frame of b minus last frame of a) is absent
    cross = acts[1][layer.name][:, 0] - acts[0][layer.name][:, -1]
    assert float((g - cross).abs().sum(1).min()) > 1e-3


def test_subsampling_keeps_the_fraction_and_is_seeded(embedded):
    clips = [("a", _wave(0.5, 3))]
    full = sum(len(b) for b in stream_vectors(embedded, clips, "first_conv"))

    def sample(seed: int) -> torch.Tensor:
        return torch.cat(list(stream_vectors(embedded, clips, "first_conv", subsample=0.25, seed=seed)))

    a, b, c = sample(7), sample(7), sample(8)
    assert full == 12_000 and abs(len(a) / full - 0.25) < 0.02  # sd of the share: 0.004
    assert torch.equal(a, b) and not torch.equal(a[: len(c)], c[: len(a)])


def _folder(tmp_path):
    d = tmp_path / "audio"
    (d / "sub").mkdir(parents=True)
    t = np.arange(int(0.2 * 44_100)) / 44_100
    stereo = np.stack([np.sin(2 * np.pi * 330 * t), np.sin(2 * np.pi * 550 * t)], 1) * 0.3
    sf.write(d / "sub" / "stereo.flac", stereo.astype(np.float32), 44_100)
    sf.write(d / "long.wav", chord(0.5)[0], SR, subtype="FLOAT")
    (d / "corrupt.wav").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    sf.write(d / "empty.wav", np.zeros((0, 1), np.float32), SR)
    (d / "notes.txt").write_text("not audio")
    return d


def test_unreadable_files_fail_first_or_are_skipped_and_counted_and_long_files_chunked(embedded, tmp_path):
    d = _folder(tmp_path)
    layer = api.layers(embedded).get("encoder.6.conv")
    with pytest.raises(
        BadFilesError,
        match=r"^specs .*audio: 2 of 4 audio files cannot be used \(first: .*corrupt"
        r".*pass skip_bad_files to skip",
    ):
        next(iter(Corpus.for_model(embedded, [str(d)], chunk_seconds=0.2)))  # before any clip is yielded
    corpus = Corpus.for_model(embedded, [str(d)], chunk_seconds=0.2, skip_bad_files=True)
    ids = [cid for cid, _ in corpus]
    assert ids == ["long.wav@0", "long.wav@4800", "long.wav@9600", "sub/stereo.flac"]
    m = corpus.manifest
    assert (m.files_seen, m.files_used, len(m.skipped)) == (4, 2, 2)
    assert sorted(s["path"].rsplit("/", 1)[1] for s in m.skipped) == ["corrupt.wav", "empty.wav"]
    manifest = corpus.new_manifest()
    n = sum(len(b) for b in stream_vectors(embedded, corpus, layer, "archetypes", manifest=manifest))
    # three chunks of the long file (0.2 + 0.2 + 0.1 s) and the resampled flac, each its own clip
    lengths = [4800, 4800, 2400, 4800]
    assert n == manifest.vectors == sum(layer.frames_for(k) - 1 for k in lengths)
    assert manifest.clips == 4 and manifest.seconds == pytest.approx(16_800 / SR)
    assert manifest.to_json()["files_skipped"] == 2


def test_empty_corpus_is_one_error(embedded, tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "corrupt.wav").write_bytes(b"RIFF garbage")
    with pytest.raises(CorpusError, match=r"no usable audio in .*1 audio files seen, 1 skipped"):
        list(stream_vectors(embedded, Corpus.for_model(embedded, [str(d)], skip_bad_files=True), "first_conv"))
    with pytest.raises(BadFilesError, match=r"1 of 1 audio files cannot be used"):
        list(stream_vectors(embedded, Corpus.for_model(embedded, [str(d)]), "first_conv"))
    with pytest.raises(CorpusError, match="no such file or folder.*Did you mean synth:3"):
        Corpus.for_model(embedded, ["synht:3"])
    with pytest.raises(CorpusError, match="N must be"):
        Corpus.for_model(embedded, ["noise:0"])


def test_streaming_is_lazy(embedded):
    def clips():
        for i in range(3):
            yield f"c{i}", _wave(0.05, i)
        raise RuntimeError("corpus broke after the third clip")

    got = []
    with pytest.raises(RuntimeError, match="third clip"):
        for block in stream_vectors(embedded, clips(), "encoder.6.conv", batch_clips=1, block_vectors=1):
            got.append(block)
    assert len(got) == 3 and all(len(b) == 150 for b in got)


def test_reference_sets_and_shards_round_trip(embedded, tmp_path):
    corpus = Corpus.for_model(embedded, ["noise:2", "flat:2", "sines:3", "synth:2"], seed=1, clip_seconds=0.05)
    waves = dict(corpus)
    assert len(waves) == 9 and all(w.shape == (1, 1200) for w in waves.values())
    flats = [w for cid, w in waves.items() if cid.startswith("flat")]
    assert all(np.ptp(w) == 0 for w in flats) and flats[0][0, 0] != flats[1][0, 0]
    assert [cid.split(":")[2] for cid in waves if cid.startswith("sines")] == ["50.0Hz", "632.5Hz", "8000.0Hz"]
    assert all(np.array_equal(w, dict(corpus)[cid]) for cid, w in waves.items())  # every pass is the same
    stream = list(stream_vectors(embedded, corpus, "encoder.12.conv", block_vectors=5))
    reader = write_shards(iter(stream), tmp_path / "shards", shard_vectors=7)
    again = ShardReader(tmp_path / "shards")
    assert again.n_vectors == 36 and again.width == 192
    assert [len(b) for b in again()] == [7] * 5 + [1]
    assert torch.equal(torch.cat(list(reader())), torch.cat(stream))


def test_shards_and_recompute_train_on_the_same_data(embedded, tmp_path):
    from steerlab.learning import learn_dictionary
    from steerlab.sae import SAEConfig

    corpus = Corpus.for_model(embedded, ["synth:3"], clip_seconds=0.5)
    config = SAEConfig(width=192, size=16, k=2, epochs=1, batch_size=64)
    a = learn_dictionary(embedded, "encoder.12.conv", "archetype", corpus, config, stream="shards", cache_dir=tmp_path)
    b = learn_dictionary(
        embedded, "encoder.12.conv", "archetype", corpus, config, stream="recompute", cache_dir=tmp_path
    )
    assert a.data_hash == b.data_hash and a.stats.n == 3 * (38 - 1)
    assert torch.equal(a.sae.W_dec, b.sae.W_dec)
    assert a.data_manifest["capture"]["stream"] == "shards" and b.data_manifest["vectors"] == a.stats.n
    assert not list(tmp_path.iterdir())  # temporary shards removed


@pytest.fixture(scope="module")
def cli():
    from steerlab import cli as cli_module

    return cli_module.get_cli()


FAST = ["--size", "32", "--k", "4", "--epochs", "2", "--subsample", "0.05", "--batch-size", "512"]


def test_learn_features_and_archetypes(cli, tmp_path):
    out = tmp_path / "D"
    res = CliRunner().invoke(
        cli,
        [
            "learn",
            "features",
            "--layer",
            "first_conv",
            "--data",
            "synth:6",
            *FAST,
            "-o",
            str(out),
            "--export",
            "saelens",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "config.json").read_text())
    assert (doc["model"], doc["layer"], doc["kind"], doc["width"], doc["size"]) == (
        "tiny_encodec_24khz",
        "encoder.0.conv",
        "feature",
        12,
        32,
    )
    assert doc["weights_hash"] and {"explained_variance", "l0", "dead_fraction", "n_vectors"} <= set(doc["metrics"])
    assert doc["data"]["manifest"]["clips"] == 6 and doc["data"]["manifest"]["capture"]["subsample"] == 0.05
    assert "synth:6" in doc["data"]["description"]
    assert dictionary.load(out).data_manifest == doc["data"]["manifest"]
    assert json.loads((out / "saelens" / "cfg.json").read_text())["d_in"] == 12
    arch = tmp_path / "A"
    res = CliRunner().invoke(
        cli,
        [
            "learn",
            "archetypes",
            "-l",
            "first_conv",
            "--data",
            "synth:6",
            *FAST,
            "-o",
            str(arch),
            "--json",
            "--stream",
            "recompute",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads((arch / "config.json").read_text())["kind"] == "archetype"
    assert json.loads(res.stdout)["data"]["capture"]["mode"] == "archetypes"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layer", "fist_conv", "--data", "synth:2"], "unknown layer 'fist_conv'. Did you mean 'first_conv'?"),
        (["--layer", "first_conv", "--data", "{empty}"], "no usable audio in"),
        (["--layer", "first_conv", "--data", "synth:2", "-o", "{tmp}/missing/D"], "is not an existing folder"),
        (["--layer", "first_conv", "--data", "synth:2", "--k", "64"], "--k (64) must be <= --size (32)"),
    ],
)
def test_learn_errors_are_one_line(cli, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    args = [a.format(empty=tmp_path / "empty", tmp=tmp_path) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "D")]
    res = CliRunner().invoke(cli, ["learn", "features", *args, "--size", "32"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], res.output
    assert not (tmp_path / "D").exists()


def test_capture_activations_is_the_public_read_of_a_layer(embedded):
    """``steerlab.capture_activations``: arrays in, one float32 ``[channels, frames]`` array per
    wave out, equal to a plain torch hook on the layer; aliases and mono 1-D arrays accepted."""
    import steerlab
    from steerlab.errors import SteerlabError

    layer = api.layers(embedded).get("first_conv")
    waves = [_wave(0.2, seed=1).numpy(), _wave(0.13, seed=2).numpy()[0]]
    acts = steerlab.capture_activations(embedded, waves, "first_conv")
    for w, a in zip(waves, acts):
        n = w.shape[-1]
        assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == (layer.channels, layer.frames_for(n))
        ref = _hooked(embedded, torch.from_numpy(w.reshape(1, -1)), layer).numpy()
        assert np.abs(a - ref).max() <= 1e-5 and np.abs(a).max() > 1e-3
    with pytest.raises(SteerlabError, match="waves.0. has 2 channels but tiny_encodec_24khz takes 1"):
        steerlab.capture_activations(embedded, [np.zeros((2, 2400), np.float32)], "first_conv")


def test_capture_activations_refuses_a_bare_array_and_a_mono_wave_for_a_stereo_model(embedded):
    """``waves`` is a list: a single ``[channels, samples]`` array would be iterated row by row (each
    row a mono input), so it is refused; a 1-D wave is mono, so a multi-channel model refuses it."""
    from types import SimpleNamespace

    import steerlab
    from steerlab.errors import ConfigError

    layer = api.layers(embedded).get("first_conv")
    wave = _wave(0.2, seed=1).numpy()  # [1, samples]
    for bare in (wave, wave[0], torch.from_numpy(wave)):
        with pytest.raises(ConfigError, match=r"waves must be a list of waves, each \[1, samples\] \(or \[samples\]\)"):
            steerlab.capture_activations(embedded, bare, layer)
    stereo = SimpleNamespace(name="stereo_model", channels=2)  # refused before any model work
    with pytest.raises(
        ConfigError,
        match=r"waves\[0\] has a 1-D wave \(taken as mono\) but stereo_model takes 2: "
        r"expected shape \[2, samples\]",
    ) as e:
        steerlab.capture_activations(stereo, [wave[0]], layer)
    assert e.value.parameters == ("waves",)
    three_d = steerlab.capture_activations(embedded, np.stack([wave, wave]), layer)  # [inputs, channels, samples]
    assert len(three_d) == 2 and np.array_equal(three_d[0], three_d[1])
