"""One name per concept (issue 14, docs in STYLE.md): ``kind`` names a layer's kind (and the kind
of a synthetic clip), nothing else. An SAE's *architecture*, an intervention *type*
(``InterventionSpec.intervention``, type objects as ``itype``/``intervention_type``), a
dictionary's *target* (features or archetypes) and an intervention's *value scale* each have
their own name. The artifact keys written before the rename (``kind``, ``kind_of_sae``,
``value_kind``) stay as keys: this scan reads code names only (parameters, dataclass fields,
function names, attributes), never strings.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "steerlab"

#: (module, class or function) that may still name a parameter or field ``kind``, and why
KIND_ALLOWED = {
    ("model.py", "LayerInfo"): "a layer's kind (conv, lstm, ...), the field's term",
    ("synth.py", "ClipSpec"): "the kind of a synthetic clip (tone, chord, ...)",
    ("corpus.py", "RenderSpec"): "the kind of a rendered clip (note, chord, ...)",
    ("corpus.py", "draw_spec"): "the kind of a rendered clip",
    ("capture.py", "SyntheticSource"): "the kind of a generated reference source (synth, noise, ...)",
    ("builtins/samplecnn/instruments.py", "draw"): "the kind of a rendered clip",
    ("builtins/samplecnn/instruments.py", "_shapes"): "the kind of a rendered clip",
    ("cli/synth.py", "synth"): "the --kind of `steerlab synth`: a clip kind",
}
#: names retired by the rename; they survive only as artifact keys (strings)
RETIRED = {"kind_of_sae", "value_kind", "value_kind_for", "VALUE_KINDS"}


def _is_dataclass(node: ast.ClassDef) -> bool:
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name == "dataclass":
            return True
    return False


def named_kinds(tree: ast.AST) -> list[tuple[str, int, str]]:
    """``(owner, line, what)`` for every function parameter and dataclass field named ``kind``,
    and every use of a retired name as a parameter, field, function, attribute or variable."""
    found: list[tuple[str, int, str]] = []

    def visit(node: ast.AST, owner: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                if arg is not None and arg.arg == "kind":
                    found.append((node.name, arg.lineno, "parameter kind"))
                if arg is not None and arg.arg in RETIRED:
                    found.append((node.name, arg.lineno, f"parameter {arg.arg}"))
            if node.name in RETIRED:
                found.append((node.name, node.lineno, f"function {node.name}"))
            owner = node.name
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    if stmt.target.id == "kind" and _is_dataclass(node):
                        found.append((node.name, stmt.lineno, "dataclass field kind"))
                    if stmt.target.id in RETIRED:
                        found.append((node.name, stmt.lineno, f"field {stmt.target.id}"))
            owner = node.name
        elif isinstance(node, ast.Attribute) and node.attr in RETIRED:
            found.append((owner, node.lineno, f"attribute .{node.attr}"))
        elif isinstance(node, ast.Name) and node.id in RETIRED:
            found.append((owner, node.lineno, f"name {node.id}"))
        for child in ast.iter_child_nodes(node):
            visit(child, owner)

    visit(tree, "<module>")
    return found


def violations(root: Path = PACKAGE) -> tuple[list[str], set[tuple[str, str]]]:
    """The offending names under ``root`` (one line each), and the allowed entries that were met."""
    bad, used = [], set()
    for path in sorted(root.rglob("*.py")):
        module = path.relative_to(root).as_posix()
        for owner, line, what in named_kinds(ast.parse(path.read_text(), str(path))):
            if what.endswith(" kind") and (module, owner) in KIND_ALLOWED:
                used.add((module, owner))
                continue
            bad.append(f"{module}:{line} {owner}: {what}")
    return bad, used


def test_kind_names_only_layer_and_clip_kinds():
    bad, used = violations()
    assert bad == [], "\n".join(bad)
    # the allow-list does not rot: every entry still names a real use
    assert used == set(KIND_ALLOWED), set(KIND_ALLOWED) - used


@pytest.mark.parametrize(
    "source, expected",
    [
        ("def f(kind): pass", "parameter kind"),
        ("def f(*, kind=None): pass", "parameter kind"),
        ("from dataclasses import dataclass\n@dataclass(frozen=True)\nclass C:\n    kind: str", "dataclass field kind"),
        ("def f(config):\n    return config.kind_of_sae", "attribute .kind_of_sae"),
        ("class T:\n    value_kind: str = 'none'", "field value_kind"),
        ("def value_kind(t): pass", "function value_kind"),
    ],
)
def test_the_scan_catches_each_kind_of_misnaming(tmp_path, source, expected):
    (tmp_path / "mod.py").write_text(source)
    bad, _ = violations(tmp_path)
    assert bad and all(line.startswith("mod.py:") for line in bad) and bad[0].endswith(expected), bad
    # an allowed owner is not reported, a string key never is
    (tmp_path / "mod.py").write_text(
        "X = {'kind': 1, 'kind_of_sae': 'topk', 'value_kind': 'none'}\nclass NotADataclass:\n    kind: str\n"
    )
    assert violations(tmp_path)[0] == []


def test_the_builtins_old_package_names_are_deprecated_aliases_of_the_same_modules():
    """Scripts written before the redesign import ``steerlab_encodec`` (and the seven others) and look
    for its files next to it: each old name is the built-in module itself, with a DeprecationWarning
    naming the new path, and registers no second plugin."""
    import subprocess
    import sys

    from steerlab.builtins._alias import ALIASES

    code = (
        "import importlib, warnings, json\n"
        f"names = {sorted(ALIASES)!r}\n"
        "out = {}\n"
        "for old in names:\n"
        "    with warnings.catch_warnings(record=True) as w:\n"
        "        warnings.simplefilter('always')\n"
        "        m = importlib.import_module(old)\n"
        "    new = importlib.import_module('steerlab.builtins.' + old.removeprefix('steerlab_'))\n"
        "    out[old] = [m is new, [str(x.message) for x in w if x.category is DeprecationWarning]]\n"
        "from steerlab import plugins\n"
        "out['plugins'] = sorted(plugins.plugin_names()) if hasattr(plugins, 'plugin_names') else None\n"
        "print(json.dumps(out))\n"
    )
    import json

    res = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    for old, new in ALIASES.items():
        same, said = res[old]
        assert same and said == [f"{old} is deprecated: import steerlab.builtins.{new}"], (old, said)
    if res["plugins"] is not None:
        assert not any(name.startswith("steerlab_") for name in res["plugins"])
