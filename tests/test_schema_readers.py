"""Issue 10, item 4: every artifact steerlab reads goes through one schema check.

Training run folders (checkpoint.pt, curve.jsonl), corpus manifests, the stimuli manifest,
a partials run's results rows and learned directions, and the shipped weights folders of
the plugins: a damaged, truncated or edited file gives ONE line naming the file and the
key (or line and column), never a traceback and never a silent default. Also the kind of
item 5 that a first fix missed: a constant file at another sample rate than the model's
is still constant (resampling ripple is not data).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from steerlab import resumable, schema
from steerlab.errors import ModelLoadError, SteerlabError

ID = {"architecture": {"width": 3}}


def _one_line(exc: pytest.ExceptionInfo, *parts: str) -> str:
    text = str(exc.value)
    assert isinstance(exc.value, SteerlabError) and "\n" not in text.strip(), repr(text)
    for part in parts:
        assert part in text, (part, text)
    return text


# -- training run folders ---------------------------------------------------------------------------


def _net(seed: int = 0, width: int = 3):
    torch.manual_seed(seed)
    net = torch.nn.Linear(width, 2)
    return net, torch.optim.Adam(net.parameters(), lr=0.1)


@pytest.fixture
def run_folder(tmp_path):
    net, opt = _net()
    for step in (1, 2):
        resumable.save(tmp_path, net, opt, step, {"step": step, "loss": 1.0 / step}, ID, {"best": 0.5})
    return tmp_path


def _rewrite_checkpoint(folder: Path, **changes) -> None:
    path = folder / resumable.CHECKPOINT
    state = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is KeyError:
            del state[key]
        else:
            state[key] = value
    torch.save(state, path)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"step": KeyError}, "key 'step' is missing"),
        ({"row": KeyError}, "key 'row' is missing"),
        ({"identity": KeyError}, "key 'identity' is missing"),
        ({"extra": KeyError}, "key 'extra' is missing"),
        ({"optimizer": KeyError}, "key 'optimizer' is missing"),
        ({"step": "2"}, "key 'step' must be an integer >= 0"),
        ({"step": -1}, "key 'step' must be an integer >= 0"),
        ({"model": [1, 2]}, "key 'model' must be an object"),
        ({"identity": "{not json"}, "key 'identity' is not valid JSON"),
        ({"identity": "[1]"}, "key 'identity': its top level must be an object"),
        ({"row": json.dumps({"loss": 1.0})}, "key 'row.step' is missing"),
        ({"row": json.dumps({"step": 7})}, "key 'row.step' must be the checkpoint's step 2, got 7"),
        ({"row": '{"step": NaN}'}, "key 'row' is not valid JSON"),
        ({"extra": "[]"}, "key 'extra': its top level must be an object"),
    ],
)
def test_a_damaged_checkpoint_is_one_line_naming_the_key(run_folder, changes, words):
    _rewrite_checkpoint(run_folder, **changes)
    with pytest.raises(resumable.RunFolderError) as exc:
        resumable.resume(run_folder, *_net(1), ID, log=lambda m: None)
    _one_line(exc, str(run_folder / resumable.CHECKPOINT), words)


@pytest.mark.parametrize("keep", [0, 10, 400])
def test_a_torn_or_foreign_checkpoint_is_one_line(run_folder, keep):
    path = run_folder / resumable.CHECKPOINT
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(resumable.RunFolderError) as exc:
        resumable.resume(run_folder, *_net(1), ID, log=lambda m: None)
    _one_line(exc, f"cannot read checkpoint {path}")


def test_a_checkpoint_that_does_not_fit_the_model_is_one_line(run_folder):
    with pytest.raises(resumable.RunFolderError) as exc:  # same identity, other shapes (a hand-edited folder)
        resumable.resume(run_folder, *_net(0, width=4), ID, log=lambda m: None)
    _one_line(exc, "key 'model' does not fit this run", "size mismatch")


@pytest.mark.parametrize(
    "line, words",
    [
        ("not json", "line 2 is not valid JSON"),
        ('{"loss": 1.0}', "line 2: key 'step' is missing"),
        ('{"step": "1"}', "line 2: key 'step' must be an integer >= 0"),
        ("[1, 2]", "line 2: its top level must be an object"),
        ('{"step": 1, "loss": Infinity}', "line 2 is not valid JSON: non-finite number Infinity"),
    ],
)
def test_a_damaged_curve_line_is_one_line_naming_the_file_and_line(run_folder, line, words):
    curve = run_folder / resumable.CURVE
    first, second = curve.read_text().splitlines()
    curve.write_text(f"{first}\n{line}\n{second}\n")
    before = curve.read_bytes()
    with pytest.raises(resumable.RunFolderError) as exc:
        resumable.resume(run_folder, *_net(1), ID, log=lambda m: None)
    _one_line(exc, str(curve), words)
    assert curve.read_bytes() == before  # nothing rewritten


def test_a_torn_last_curve_line_is_restored_from_the_checkpoint(run_folder):
    curve = run_folder / resumable.CURVE
    whole = curve.read_text()
    first, second = whole.splitlines()
    curve.write_text(f"{first}\n{second[:9]}")  # the append of step 2 killed half way
    state = resumable.resume(run_folder, *_net(1), ID, log=lambda m: None)
    assert state == {"step": 2, "best": 0.5}
    assert curve.read_text() == whole


def test_non_finite_numbers_in_a_row_are_written_as_null_and_read_back(tmp_path):
    net, opt = _net()
    resumable.save(tmp_path, net, opt, 1, {"step": 1, "loss": math.nan, "v": [math.inf, 1.0]}, ID, {"best": math.inf})
    line = (tmp_path / resumable.CURVE).read_text()
    assert json.loads(line) == {"step": 1, "loss": None, "v": [None, 1.0]} and "NaN" not in line
    assert resumable.resume(tmp_path, *_net(1), ID, log=lambda m: None) == {"step": 1, "best": math.inf}
    assert (tmp_path / resumable.CURVE).read_text() == line


# -- corpus manifests -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_folder(tmp_path_factory):
    from steerlab.corpus import clip_corpus

    root = tmp_path_factory.mktemp("corpus")
    t = np.arange(2 * 16_000) / 16_000
    sf.write(root / "long.wav", (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16_000)
    clip_corpus([root / "long.wav"], root / "clips", count=2, seed=0, seconds=0.5)
    return root / "clips"


def _mutate(doc: dict, path: tuple, value=KeyError) -> dict:
    doc = json.loads(json.dumps(doc))
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    "path, value, words",
    [
        (("clips", 0, "sha256"), KeyError, "key 'clips[0].sha256' is missing"),
        (("clips", 1, "offset_s"), -1.0, "key 'clips[1].offset_s' must be a finite number >= 0"),
        (("clips", 0, "file"), "../x.wav", "key 'clips[0].file' must be a plain file name"),
        (("sample_rate",), "24000", "key 'sample_rate' must be an integer >= 1"),
        (("files",), KeyError, "key 'files' is missing"),
        (("source",), "rendered", "key 'source' must be one of 'render', 'clips'"),
        (("version",), 2, "format version 2"),
        (("format",), "steerlab-dictionary", "is not a steerlab corpus manifest file"),
        (("count",), 3, "key 'clips' holds 2 clips but key 'count' says 3"),
    ],
)
def test_corpus_manifest_is_checked_against_its_schema(corpus_folder, tmp_path, path, value, words):
    from steerlab.corpus import read_manifest
    from steerlab.errors import CorpusBuildError

    original = read_manifest(corpus_folder)
    assert original["count"] == 2 and len(original["clips"]) == 2
    folder = tmp_path / "copy"
    shutil.copytree(corpus_folder, folder)
    (folder / "manifest.json").write_text(json.dumps(_mutate(original, path, value)))
    with pytest.raises(CorpusBuildError) as exc:
        read_manifest(folder)
    _one_line(exc, str(folder / "manifest.json"), words)


@pytest.mark.parametrize(
    "raw, words",
    [
        (b"", "is not valid JSON"),
        (b'{"format": "steerlab-corpus", "version": 1,', "is not valid JSON"),
        (b"\xff\xfe", "is not UTF-8 text"),
        (None, "not found"),
    ],
)
def test_corpus_manifest_unreadable_is_one_line(tmp_path, raw, words):
    from steerlab.corpus import read_manifest
    from steerlab.errors import CorpusBuildError

    if raw is not None:
        (tmp_path / "manifest.json").write_bytes(raw)
    with pytest.raises(CorpusBuildError) as exc:
        read_manifest(tmp_path)
    _one_line(exc, str(tmp_path / "manifest.json"), words)


# -- the stimuli manifest ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stimuli_manifest(tmp_path_factory):
    from steerlab import stimuli as st

    specs = [
        st.StimulusSpec("tone", 440.0, 0, seed=1, duration_s=0.1),
        st.StimulusSpec("inharmonic", 600.0, 2, seed=2, duration_s=0.1),
    ]
    return st.write_set(specs, tmp_path_factory.mktemp("stim")), specs


@pytest.mark.parametrize(
    "column, cell, words",
    [
        ("density", "two", "line 3: column 'density' must be an integer, got 'two'"),
        ("target_hz", "nan", "line 3: column 'target_hz' must be a finite number"),
        ("amplitude", "loud", "line 3: column 'amplitude' must be a number, got 'loud'"),
        ("target_hz", "13000", "line 3: bad row: target_hz 13000 is not below the Nyquist"),
        ("family", "chord", "line 3: bad row: family 'chord' needs f0"),
    ],
)
def test_stimuli_manifest_names_line_and_column(stimuli_manifest, tmp_path, column, cell, words):
    from steerlab import stimuli as st

    manifest, _ = stimuli_manifest
    lines = manifest.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[2].split(",")
    cells[header.index(column)] = cell
    bad = tmp_path / "manifest.csv"
    bad.write_text("\n".join([*lines[:2], ",".join(cells)]) + "\n")
    with pytest.raises(st.StimulusError) as exc:
        st.read_manifest(bad)
    _one_line(exc, str(bad), words)


@pytest.mark.parametrize(
    "mangle, words",
    [
        (lambda text: text.encode()[:-1] + b"\xff\n", "is not UTF-8 text"),
        (lambda text: (text + '"' + "x" * 200_000 + '"\n').encode(), "is not a readable CSV manifest"),
        (
            lambda text: "\n".join(text.splitlines()[:2] + [text.splitlines()[2][:30]]).encode() + b"\n",
            "line 3: the row has",
        ),
        (
            lambda text: "\n".join(
                [text.splitlines()[0], text.splitlines()[1] + ",extra", *text.splitlines()[2:]]
            ).encode(),
            "line 2: the row has",
        ),
    ],
)
def test_stimuli_manifest_damaged_file_is_one_line(stimuli_manifest, tmp_path, mangle, words):
    from steerlab import stimuli as st

    manifest, specs = stimuli_manifest
    assert st.read_manifest(manifest) == specs
    bad = tmp_path / "manifest.csv"
    bad.write_bytes(mangle(manifest.read_text()))
    with pytest.raises(st.StimulusError) as exc:
        st.read_manifest(bad)
    _one_line(exc, str(bad), words)


# -- a partials run's learned directions ------------------------------------------------------------


def _directions(tmp_path: Path, meta_changes=None, drop=None, vector=None) -> Path:
    from safetensors.numpy import save_file

    from steerlab.partials.directions import vector_hash

    v = np.arange(4, dtype=np.float32) + 1
    tensors = {"d1": v, "d1/template": np.zeros(3, np.float32), "d1/level": np.ones(3, np.float32)}
    prov = {
        "d1": {
            "unit": {"layer": "latent"},
            "method": "diffmeans",
            "capture_path": "continuous",
            "sha256_16": vector_hash(v),
        }
    }
    meta = {"format": "steerlab-partials", "config_hash": "h", "provenance": json.dumps(prov), "skipped": "{}"}
    meta.update(meta_changes or {})
    if drop:
        del tensors[drop]
    if vector is not None:
        tensors["d1"] = vector
    path = tmp_path / "directions.safetensors"
    save_file(tensors, str(path), metadata={k: v for k, v in meta.items() if v is not None})
    return path


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"meta_changes": {"provenance": None}}, "metadata key 'provenance' is missing"),
        ({"meta_changes": {"skipped": "[1"}}, "metadata key 'skipped' is not valid JSON"),
        (
            {"meta_changes": {"provenance": json.dumps({"d1": {"method": "diffmeans"}})}},
            "key 'provenance.d1.unit' is missing",
        ),
        ({"drop": "d1/level"}, "tensor 'd1/level' of direction d1 is missing"),
        ({"vector": np.ones(4, np.float32)}, "does not match key 'provenance.d1.sha256_16'"),
    ],
)
def test_partials_directions_are_checked(tmp_path, kwargs, words):
    from steerlab.errors import PlanError
    from steerlab.partials.store import read_directions

    path = _directions(tmp_path, **kwargs)
    with pytest.raises(PlanError) as exc:
        read_directions(path, "h", ("/template", "/level"))
    _one_line(exc, str(path), words)


def test_partials_directions_good_other_config_and_torn(tmp_path):
    from steerlab.errors import PlanError
    from steerlab.partials.store import read_directions

    path = _directions(tmp_path)
    vectors, prov, skipped = read_directions(path, "h", ("/template", "/level"))
    assert sorted(vectors) == ["d1", "d1/level", "d1/template"] and prov["d1"]["method"] == "diffmeans"
    assert skipped == {} and read_directions(path, "other", ()) is None
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(PlanError) as exc:
        read_directions(path, "h", ())
    _one_line(exc, f"cannot read {path}", "delete directions.safetensors")


# -- shipped weights folders of the plugins ---------------------------------------------------------


def _shipped(plugin: str, name: str, tmp_path: Path) -> Path:
    import importlib

    src = Path(importlib.import_module(plugin).__file__).parent / "weights" / name
    return Path(shutil.copytree(src, tmp_path / name))


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("top_k", KeyError, "key 'sampling.top_k' is missing"),
        ("temperature", "hot", "key 'sampling.temperature' must be a finite number >= 0"),
        (None, KeyError, "key 'sampling' is missing"),
    ],
)
def test_tokenlm_sampling_record_is_required(tmp_path, key, value, words):
    from steerlab.builtins.tokenlm.loaders import read_config

    folder = _shipped("steerlab.builtins.tokenlm", "tokenlm_24khz", tmp_path)
    doc = json.loads((folder / "config.json").read_text())
    assert read_config(folder)["sampling"] == doc["sampling"]
    (folder / "config.json").write_text(json.dumps(_mutate(doc, ("sampling",) + ((key,) if key else ()), value)))
    with pytest.raises(ModelLoadError) as exc:
        read_config(folder)
    _one_line(exc, str(folder / "config.json"), words)


@pytest.mark.parametrize(
    "plugin, name, loader",
    [
        ("steerlab.builtins.samplecnn", "samplecnn_24khz", "steerlab.builtins.samplecnn.loaders:load_artifact"),
        ("steerlab.builtins.encodec", "tiny_encodec_24khz", "steerlab.builtins.encodec.loaders:load_artifact"),
    ],
)
def test_torn_shipped_weights_are_one_line(tmp_path, plugin, name, loader):
    import importlib

    module, func = loader.split(":")
    load = getattr(importlib.import_module(module), func)
    folder = _shipped(plugin, name, tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelLoadError) as exc:
        load(folder)
    _one_line(exc, f"cannot read tensors from {weights}")


def test_read_tensors_refuses_non_finite_weights(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.tensor([1.0, float("nan")])}, str(tmp_path / "m.safetensors"))
    with pytest.raises(ModelLoadError) as exc:
        schema.read_tensors(tmp_path / "m.safetensors", ModelLoadError)
    _one_line(exc, "tensor 'w' holds NaN or infinite values")


# -- a constant file at another sample rate is still constant (item 5) -------------------------------


@pytest.mark.parametrize("rate, channels_in", [(44_100, 1), (8_000, 2), (48_000, 1)])
def test_a_constant_file_at_another_rate_gives_constant_clips(tmp_path, rate, channels_in):
    from steerlab.capture import Corpus

    levels = [0.3, -0.1][:channels_in]
    x = np.tile(np.array(levels, np.float32), (rate // 2, 1))
    sf.write(tmp_path / "dc.wav", x, rate, subtype="FLOAT")
    t = np.arange(rate // 2) / rate
    sf.write(
        tmp_path / "tone.wav",
        np.repeat((0.3 * np.sin(2 * np.pi * 440 * t))[:, None], channels_in, 1).astype(np.float32),
        rate,
        subtype="FLOAT",
    )
    clips = dict(Corpus([str(tmp_path)], 24_000, 1, seed=0))
    dc, tone = clips["dc.wav"], clips["tone.wav"]
    # resampled without the fix, the DC file's clip ripples by up to 0.2 at its edges
    assert dc.shape == (1, 12_000) and np.all(dc == dc[0, 0]) and abs(dc[0, 0] - np.mean(levels)) < 1e-6
    from steerlab import audio

    np.testing.assert_array_equal(tone, audio.load(tmp_path / "tone.wav", 24_000, 1)[0])  # content: untouched


def test_learn_refuses_a_constant_folder_at_another_rate(tmp_path):
    from click.testing import CliRunner

    from steerlab import cli as cli_module

    data = tmp_path / "dc44"
    data.mkdir()
    for i in range(2):
        sf.write(data / f"c{i}.wav", np.full(44_100 // 2, 0.3, np.float32), 44_100, subtype="FLOAT")
    result = CliRunner().invoke(
        cli_module.get_cli(),
        ["learn", "features", "--layer", "first_conv", "--data", str(data), "-o", str(tmp_path / "dict")],
    )
    assert result.exit_code == 1, result.output
    assert "the data has no variance" in result.output and "equals 0.3" in result.output
    assert not (tmp_path / "dict").exists()


# -- the batch test on degenerate configurations (item 5, downstream) --------------------------------

DEGENERATE_GRIDS = {  # name: (TOML, what the one line says)
    "one-target-above-nyquist": (
        '[grid]\nlayers = ["latent"]\ntargets_hz = [600.0, 13000.0]\n',
        "13000 Hz is at or above the Nyquist frequency",
    ),
    "all-densities-infeasible": (
        '[grid]\nlayers = ["latent"]\ntargets_hz = [600.0]\ndensities = [400]\n[controls]\npositive_models = []\n',
        "no feasible stimuli",
    ),
    "no-methods": ("[grid]\nmethods = []\n", "grid.methods must not be empty"),
    "zero-strength": ("[grid]\nstrengths = [0.0]\n", "grid.strengths must be a finite number > 0, got 0.0"),
    "clip-too-short-to-score": (
        "[stimuli]\nduration_s = 0.01\nfade_ms = 1\n",
        "stimuli.duration_s must be a finite number >= 0.05, got 0.01",
    ),
}


@pytest.mark.parametrize("name", sorted(DEGENERATE_GRIDS))
def test_partials_on_degenerate_configs_is_one_line_and_writes_nothing(tmp_path, name):
    from click.testing import CliRunner

    from steerlab import cli as cli_module

    text, words = DEGENERATE_GRIDS[name]
    (tmp_path / "c.toml").write_text(text)
    res = CliRunner().invoke(
        cli_module.get_cli(), ["partials", "-c", str(tmp_path / "c.toml"), "-o", str(tmp_path / "out")]
    )
    lines = [line for line in res.output.strip().splitlines() if line]
    assert res.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], res.output
    assert not (tmp_path / "out").exists()
