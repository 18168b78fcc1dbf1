"""The one JSON cleaner and the one config hash (steerlab.artifacts): what they write, and that the
hashes already recorded in artifacts keep their values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from steerlab.artifacts import canonical_json, clean_json, config_hash


def test_clean_json_makes_plain_json():
    doc = {
        "a": np.float32(0.5),
        "b": [np.int64(3), (1.0, math.inf)],
        7: {"_work": 1, "x": np.array([[1, 2]])},
        "nan": float("nan"),
        "np_nan": np.float64("nan"),
        "flag": np.bool_(True),
    }
    out = clean_json(doc)
    assert out == {
        "a": 0.5,
        "b": [3, [1.0, None]],
        "7": {"_work": 1, "x": [[1, 2]]},
        "nan": None,
        "np_nan": None,
        "flag": True,
    }
    assert type(out["b"][0]) is int and type(out["flag"]) is bool
    json.dumps(out, allow_nan=False)  # standard JSON
    assert clean_json(doc, drop_private=True)["7"] == {"x": [[1, 2]]}


def test_config_hash_is_the_canonical_json_digest_in_both_recorded_forms():
    obj = {"b": [1, (2, 3)], "a": {"y": 0.1, "x": None}}
    assert canonical_json(obj) == '{"a":{"x":null,"y":0.1},"b":[1,[2,3]]}'
    assert canonical_json(obj, compact=False) == '{"a": {"x": null, "y": 0.1}, "b": [1, [2, 3]]}'
    assert config_hash(obj) == "5cdd81a2f3124afb" and len(config_hash(obj, None)) == 64
    assert config_hash(obj, 8) == config_hash(obj)[:8]


def test_recorded_model_config_hashes_keep_their_values():
    """Checkpoint folders record their config's hash (the spaced form): it must still match."""
    from steerlab.builtins.encodec.codec import CodecConfig
    from steerlab.builtins.samplecnn.model import SampleCNNConfig

    assert CodecConfig().config_hash() == "dd1aa67fd4c7580d"
    folder = Path(__file__).parents[1] / "steerlab" / "builtins" / "samplecnn" / "weights"
    for name in ("samplecnn_24khz", "samplecnn_instruments_24khz"):
        record = json.loads((folder / name / "config.json").read_text())
        assert SampleCNNConfig.from_json(record["samplecnn"]).config_hash() == record["config_hash"]


def test_stimulus_keys_keep_their_values():
    """A key written before the one hash (tests/data/golden, partials --quick) is found again."""
    import gzip

    from steerlab.stimuli import StimulusSpec

    golden = Path(__file__).parent / "data" / "golden" / "partials-quick-results.jsonl.gz"
    with gzip.open(golden, "rt") as fh:
        row = json.loads(fh.readline())
    assert StimulusSpec.from_dict(row["stimulus"]).key() == row["stimulus_key"]


def test_atomic_path_temporaries_are_recognised_and_only_they_are_removed(tmp_path):
    """Every temporary of atomic_path carries TEMP_MARK; remove_stale_temporaries deletes those
    (and the pre-mark form ``.<target>.<8 random>.<ext>``, as the issue found it) in a folder and
    its subfolders, never a user's dotfile."""
    from steerlab.artifacts import TEMP_MARK, atomic_path, is_stale_temporary, remove_stale_temporaries

    with atomic_path(tmp_path / "report.html") as tmp:
        assert tmp.name.startswith(f".report.html.{TEMP_MARK}") and tmp.name.endswith(".html")
        assert is_stale_temporary(tmp.name)
        tmp.write_text("ok")
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / ".report.html.hgw_l16c.html", tmp_path / "sub" / f".run.json.{TEMP_MARK}abcd_123.json"]
    users = [
        tmp_path / ".bashrc",
        tmp_path / ".report.html",
        tmp_path / ".notes.abcdefgh.txt",  # 8 letters, but not a temporary of a .txt target
        tmp_path / ".cache.json",
        tmp_path / "sub" / ".x.y.abcdefgh",
    ]
    for p in stale + users:
        p.write_text("")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in users) and not any(p.exists() for p in stale)
    assert (tmp_path / "report.html").read_text() == "ok" and remove_stale_temporaries(tmp_path / "none") == []


def test_a_dictionary_folder_killed_before_its_rename_is_removed_on_rerun(tmp_path, monkeypatch):
    """dictionary.save builds its folder under a TEMP_MARK name; a save killed before the rename
    leaves that folder (here: the rename raises SystemExit, as a kill would stop it, and the
    cleanup is skipped as kill -9 skips it); remove_stale_temporaries deletes it and nothing else."""
    import os

    import pytest

    from steerlab import dictionary as dictionary_io
    from steerlab.artifacts import TEMP_MARK, remove_stale_temporaries
    from steerlab.dictionary import _atomic_folder

    monkeypatch.setattr(dictionary_io.shutil, "rmtree", lambda *a, **k: None)  # kill -9 runs no cleanup

    def killed(src, dst):
        raise SystemExit(137)

    monkeypatch.setattr(dictionary_io.os, "replace", killed)
    with pytest.raises(SystemExit):
        with _atomic_folder(tmp_path / "latent", False, "config.json") as work:
            (work / "config.json").write_text("{}")
    monkeypatch.undo()
    left = [p for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].name.startswith(f".latent.{TEMP_MARK}") and left[0].is_dir()
    user = tmp_path / ".latent.notes"
    user.mkdir()
    (tmp_path / "kept").mkdir()
    assert remove_stale_temporaries(tmp_path) == left
    assert sorted(p.name for p in tmp_path.iterdir()) == [".latent.notes", "kept"] and os.path.isdir(user)
