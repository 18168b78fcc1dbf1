"""Issue 10, item 4: a dictionary's config.json is checked key by key against one schema;
every missing key, wrong type or inconsistent value is one line naming the file and the key,
never a silent default (a config without sae.k loaded with k = 16) or a KeyError."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from steerlab import dictionary, schema
from steerlab.dictionary import CONFIG_SCHEMA
from steerlab.errors import DictionaryError


@pytest.fixture(scope="module")
def shipped() -> Path:
    import steerlab.builtins.encodec

    return Path(steerlab.builtins.encodec.__file__).parent / "dictionaries" / "first_conv-features"


@pytest.fixture
def folder(shipped, tmp_path) -> Path:
    return Path(shutil.copytree(shipped, tmp_path / "dict"))


def _required_paths(sch, prefix=""):
    for key, f in sch.items():
        if f.required:
            yield prefix + key
        if f.schema is not None:
            yield from _required_paths(f.schema, prefix + key + ".")


REQUIRED = [p for p in _required_paths(CONFIG_SCHEMA) if not p.startswith("normalization.stats.")] + [
    "normalization.stats.gamma",
    "normalization.stats.n_vectors",
]


def _edit(folder: Path, path: str, value=None, delete=False) -> None:
    cfg = folder / "config.json"
    doc = json.loads(cfg.read_text())
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[p]
    if delete:
        del node[last]
    else:
        node[last] = value
    cfg.write_text(json.dumps(doc))


def _fails(folder: Path, *fragments: str) -> str:
    with pytest.raises(DictionaryError) as info:
        dictionary.load(folder)
    message = str(info.value)
    assert "\n" not in message and str(folder / "config.json") in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_the_shipped_dictionaries_pass_the_schema(shipped):
    for d in sorted(shipped.parent.iterdir()):
        loaded = dictionary.load(d)
        doc = json.loads((d / "config.json").read_text())
        assert loaded.config.k == doc["sae"]["k"] == doc["k"]  # read from the file, not defaulted


@pytest.mark.parametrize("path", REQUIRED)
def test_every_missing_key_is_named(folder, path):
    _edit(folder, path, delete=True)
    _fails(folder, f"key {path!r} is missing")


WRONG_TYPES = [
    ("sae.k", "4"),
    ("sae.k", 4.5),
    ("sae.k", True),
    ("sae.k", 0),
    ("sae.lr", -1.0),
    ("sae.center", 1),
    ("sae.aux_k", "x"),
    ("width", None),
    ("size", [64]),
    ("kind", "motion"),
    ("model", ""),
    ("normalization.scale", 0),
    ("normalization.stats.gamma", "big"),
    ("normalization.stats", 3),
    ("weights.file", "../../etc/passwd"),
    ("weights.sha256", "abc"),
    ("data.sha256", 12),
    ("metrics", []),
    ("sae", "topk"),
]


@pytest.mark.parametrize("path, value", WRONG_TYPES, ids=[f"{p}={v!r}" for p, v in WRONG_TYPES])
def test_a_wrong_type_or_range_is_named(folder, path, value):
    _edit(folder, path, value)
    _fails(folder, f"key {path!r} must be")


@pytest.mark.parametrize(
    "path, value, other",
    [
        ("k", 5, "sae.k"),
        ("width", 13, "sae.width"),
        ("architecture", "relu", "sae.kind_of_sae"),
        ("normalization.center", False, "sae.center"),
    ],
)
def test_the_summary_must_agree_with_the_sae_block(folder, path, value, other):
    _edit(folder, path, value)
    _fails(folder, f"key {path!r}", f"disagrees with {other!r}")


def test_values_the_sae_refuses_and_unknown_keys(folder):
    _edit(folder, "sae.k", 65)  # k > size: a range only the whole config can check
    _edit(folder, "k", 65)
    _fails(folder, "key 'sae' is invalid", "k (65) must be <= size (64)")
    _edit(folder, "sae.k", 4)
    _edit(folder, "k", 4)
    _edit(folder, "sae.typo", 1)
    _fails(folder, "unknown SAE config keys: typo")


def test_scale_and_non_finite_json(folder):
    _edit(folder, "normalization.scale", 2.5)
    _fails(folder, "key 'normalization.scale' (2.5) differs from the weights' scale")
    cfg = folder / "config.json"
    cfg.write_text(cfg.read_text().replace('"gamma": ', '"gamma": NaN, "x": ', 1))
    _fails(folder, "is not valid JSON", "NaN")


def test_schema_vocabulary_words_its_errors(tmp_path):
    sch = {"a": schema.integer(1), "b": schema.optional(schema.obj({"c": schema.nullable(schema.number(0))}))}
    assert schema.check({"a": 1, "b": {"c": None}}, sch, "f.json") == {"a": 1, "b": {"c": None}}
    for doc, message in [
        ({}, "f.json: key 'a' is missing"),
        ({"a": 0}, "key 'a' must be an integer >= 1, got 0"),
        ({"a": 1, "b": {"c": -1}}, "key 'b.c' must be a finite number >= 0 or null, got -1"),
        ({"a": 1, "b": {}}, "key 'b.c' is missing"),
    ]:
        with pytest.raises(schema.ArtifactError, match=message.replace(".", r"\.")):
            schema.check(doc, sch, "f.json")
    path = tmp_path / "x.json"
    for text, message in [
        (b"\xff\xfe", "not UTF-8"),
        (b"[1]", "top level must be an object"),
        (b'{"format": "y"}', "is not a x file"),
        (b'{"format": "x", "version": 2}', "version 2"),
    ]:
        path.write_bytes(text)
        with pytest.raises(schema.ArtifactError, match=message):
            schema.read_json(path, sch, format="x", versions=(1,))
