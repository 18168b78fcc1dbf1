"""One schema check for every JSON artifact steerlab reads.

Dictionaries (``config.json``), shard folders (``manifest.json``), partials run folders
(``run.json``), training and weights folders (``config.json`` beside
``model.safetensors``) are all read through :func:`read_json`, which checks every
required key and its type against a declared schema and raises ONE line naming the file
and the dotted key (``.../config.json: key 'sae.k' is missing``). Nothing is filled in
with a default: a key the schema requires and the file lacks is an error, never a
silent fallback. Keys the schema does not name are allowed (records carry provenance
that readers ignore); a reader that must refuse unknown keys checks them itself.

The vocabulary is small on purpose: :func:`integer`, :func:`number`, :func:`string`,
:func:`boolean`, :func:`one_of`, :func:`sha256`, :func:`filename`, :func:`mapping`,
:func:`array` and :func:`obj` (a nested schema), each wrapped by :func:`optional`
(the key may be absent) or :func:`nullable` (``null`` allowed). JSON's non-standard
``NaN``/``Infinity`` constants are refused when reading.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from steerlab.errors import ArtifactError, SteerlabError
from steerlab.validation import is_integer as _is_int
from steerlab.validation import is_number as _is_num


@dataclass(frozen=True)
class Field:
    """What one key must hold: ``expect`` words it for the error, ``test`` decides."""

    expect: str
    test: Callable[[Any], bool]
    required: bool = True
    nullable: bool = False
    schema: Mapping[str, Field] | None = None  # nested object: its keys are checked too
    item: Field | None = None  # array: every element is checked


Schema = Mapping[str, Field]


def integer(low: int | None = None, high: int | None = None) -> Field:
    """An integer in ``[low, high]`` (JSON ``true``/``false`` are not integers)."""
    words = "an integer" + (f" >= {low}" if low is not None else "") + (f" <= {high}" if high is not None else "")
    return Field(words, lambda v: _is_int(v) and (low is None or v >= low) and (high is None or v <= high))


def number(low: float | None = None, above: float | None = None) -> Field:
    """A finite number ``>= low`` or ``> above``."""
    words = (
        "a finite number" + (f" >= {low:g}" if low is not None else "") + (f" > {above:g}" if above is not None else "")
    )
    return Field(words, lambda v: _is_num(v) and (low is None or v >= low) and (above is None or v > above))


def string(nonempty: bool = False) -> Field:
    return Field(
        "a non-empty string" if nonempty else "a string", lambda v: isinstance(v, str) and (bool(v) or not nonempty)
    )


def boolean() -> Field:
    return Field("true or false", lambda v: isinstance(v, bool))


def one_of(*values: Any) -> Field:
    return Field(f"one of {', '.join(map(repr, values))}", lambda v: any(v == x and type(v) is type(x) for x in values))


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sha256() -> Field:
    return Field(
        "a sha256 hex digest (64 lowercase hex digits)", lambda v: isinstance(v, str) and bool(_HEX64.match(v))
    )


def filename() -> Field:
    """A plain file name inside the artifact's folder (no path separators, not '.' or '..')."""
    return Field(
        "a plain file name in the same folder",
        lambda v: isinstance(v, str) and v not in ("", ".", "..") and "/" not in v and "\\" not in v and "\0" not in v,
    )


def mapping() -> Field:
    """Any JSON object (its contents are not checked)."""
    return Field("an object", lambda v: isinstance(v, dict))


def obj(schema: Schema) -> Field:
    """A JSON object whose keys are checked against ``schema``."""
    return Field("an object", lambda v: isinstance(v, dict), schema=schema)


def array(item: Field | None = None, nonempty: bool = False) -> Field:
    return Field(
        "a non-empty list" if nonempty else "a list",
        lambda v: isinstance(v, list) and (bool(v) or not nonempty),
        item=item,
    )


def optional(f: Field) -> Field:
    return replace(f, required=False)


def nullable(f: Field) -> Field:
    return replace(f, nullable=True, expect=f"{f.expect} or null")


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check(
    doc: Any, schema: Schema, source: str | Path, error: type[SteerlabError] = ArtifactError, prefix: str = ""
) -> Any:
    """Check ``doc`` (a parsed JSON object) against ``schema``; return ``doc`` unchanged.

    Raises ``error`` with one line ``"{source}: key 'a.b' is missing"`` or
    ``"{source}: key 'a.b' must be EXPECT, got VALUE"`` for the first fault found (keys in
    the schema's order, depth first).
    """
    if not isinstance(doc, dict):
        where = f"key {prefix[:-1]!r}" if prefix else "its top level"
        raise error(f"{source}: {where} must be an object, got {_show(doc)}")
    for key, f in schema.items():
        name = prefix + key
        if key not in doc:
            if f.required:
                raise error(f"{source}: key {name!r} is missing")
            continue
        _check_value(doc[key], f, name, source, error)
    return doc


def _check_value(value: Any, f: Field, name: str, source: str | Path, error: type[SteerlabError]) -> None:
    if value is None and f.nullable:
        return
    if not f.test(value):
        raise error(f"{source}: key {name!r} must be {f.expect}, got {_show(value)}")
    if f.schema is not None:
        check(value, f.schema, source, error, prefix=name + ".")
    if f.item is not None:
        for i, element in enumerate(value):
            _check_value(element, f.item, f"{name}[{i}]", source, error)


def parse_json(text: str, source: str | Path, error: type[SteerlabError] = ArtifactError) -> Any:
    """``json.loads`` that refuses ``NaN``/``Infinity`` and reports one line naming ``source``."""

    def refuse_constant(name: str) -> Any:
        raise error(f"{source} is not valid JSON: non-finite number {name} (JSON has none)")

    try:
        return json.loads(text, parse_constant=refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        if isinstance(exc, SteerlabError):  # refuse_constant's own line (an error that is a ValueError)
            raise
        reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise error(f"{source} is not valid JSON: {reason}") from None


def read_json(
    path: str | Path,
    schema: Schema,
    error: type[SteerlabError] = ArtifactError,
    format: str | None = None,
    versions: tuple[int, ...] = (),
    what: str | None = None,
) -> dict[str, Any]:
    """Read the JSON object in ``path`` and check it against ``schema``.

    With ``format``, the object's ``"format"`` must equal it; with ``versions``, its
    ``"version"`` must be one of them (an unknown version is refused, never guessed at).
    ``what`` names the artifact in those messages (default: the format name). Every fault is
    ``error`` with one line naming ``path`` (and the key, when one is at fault).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path} not found") from None
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not UTF-8 text (byte {exc.start})") from None
    doc = parse_json(text, path, error)
    if not isinstance(doc, dict):
        raise error(f"{path}: its top level must be an object, got {_show(doc)}")
    if format is not None and doc.get("format") != format:
        raise error(f"{path} is not a {what or format} file (format {_show(doc.get('format'))}, expected {format!r})")
    if versions and (not _is_int(doc.get("version")) or doc["version"] not in versions):
        raise error(
            f"{path} has {what or format or 'format'} format version {_show(doc.get('version'))}; this steerlab reads "
            f"version {', '.join(map(str, versions))} (upgrade steerlab or write it again)"
        )
    return check(doc, schema, path, error)


def build(
    cls: type,
    doc: Any,
    source: str | Path,
    key: str,
    error: type[SteerlabError] = ArtifactError,
    convert: Callable[[dict], Any] | None = None,
) -> Any:
    """A frozen-dataclass config (``cls``) from the object at ``key`` of ``source``.

    Every field must be present (the dataclass's defaults are for new runs, never for filling
    a record in) and no unknown key may appear; ``convert`` (default ``cls(**doc)``, e.g.
    ``cls.from_json``) builds it, and the dataclass's own validation (``TypeError``,
    ``ValueError``) becomes ``error`` with one line naming the file and the key.
    """
    import dataclasses

    if not isinstance(doc, dict):
        raise error(f"{source}: key {key!r} must be an object, got {_show(doc)}")
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in doc]
    if missing:
        raise error(f"{source}: key '{key}.{missing[0]}' is missing")
    unknown = sorted(set(doc) - set(names))
    if unknown:
        raise error(f"{source}: key '{key}.{unknown[0]}' is unknown (known: {', '.join(names)})")
    try:
        return convert(doc) if convert is not None else cls(**doc)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        text = str(exc).strip().splitlines()
        raise error(f"{source}: key {key!r} is invalid: {text[0] if text else type(exc).__name__}") from None


def read_tensors(path: str | Path, error: type[SteerlabError] = ArtifactError, framework: str = "pt") -> dict[str, Any]:
    """Every tensor of the safetensors file ``path`` (``framework`` ``"pt"``: torch, ``"np"``:
    NumPy), each required finite when floating point. A missing, torn or foreign file, or
    NaN/Inf weights, raise ``error`` with one line naming ``path`` (safetensors' own error
    type never escapes)."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path} not found")
    try:
        load_file: Callable[[str], dict[str, Any]]  # safetensors' numpy or torch reader
        if framework == "np":
            from safetensors.numpy import load_file
        else:
            from safetensors.torch import load_file
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, ...: one line naming the file
        text = str(exc).strip().splitlines()
        raise error(f"cannot read tensors from {path}: {text[0][:160] if text else type(exc).__name__}") from None
    import numpy as np

    for name, t in tensors.items():
        arr = t.detach().float().numpy() if hasattr(t, "detach") and t.is_floating_point() else t
        if isinstance(arr, np.ndarray) and arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise error(f"{path}: tensor {name!r} holds NaN or infinite values")
    return tensors


# Keys that hold an explanation: a null under ``K`` is explained by a non-empty string under
# ``K_reason`` or under one of these in the same object (and a null in one of them explains nothing).
EXPLANATION_KEYS = ("reason", "unresolved", "note", "message")


def unexplained_nulls(doc: Any, path: str = "") -> list[str]:
    """Dotted paths of the nulls in a record (``scores.json``, ``report.json``, ...) that carry no
    reason. The convention every writer follows: a number the input cannot resolve is ``null`` with
    its reason beside it (``K_reason``, or the object's ``reason``/``unresolved``/``note``/``message``);
    an explanation slot may itself be null. Every other null, and every null inside a list, is listed."""
    out: list[str] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            here = f"{path}.{k}" if path else str(k)
            if v is None:
                why = [doc.get(f"{k}_reason")] + [doc.get(e) for e in EXPLANATION_KEYS]
                slot = str(k).endswith("_reason") or k in EXPLANATION_KEYS
                if not slot and not any(isinstance(w, str) and w for w in why):
                    out.append(here)
            else:
                out += unexplained_nulls(v, here)
    elif isinstance(doc, (list, tuple)):
        for i, v in enumerate(doc):
            out += [f"{path}[{i}]"] if v is None else unexplained_nulls(v, f"{path}[{i}]")
    return out
