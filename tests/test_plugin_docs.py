"""Meta-test: docs/plugins.md documents every hook of steerlab/hookspecs.py with its exact
signature, and every hook is implemented by some test.

"Has a test" means a test module other than this one implements the hook (a line
``def <hook>(``): a bare mention would not do, since test_plugins.py lists every hook
name in its own checks.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from steerlab import hookspecs

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "plugins.md"
TESTS = Path(__file__).resolve().parent

# a signature block of the guide: a python code block opening with "@hookspec" and a def
SIGNATURE_BLOCK = re.compile(r"```python\n@hookspec\n(def (\w+)\(.*?\)\s*->[^\n]*:)\s*\n", re.DOTALL)


def hookspec_functions() -> dict[str, object]:
    return {name: fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "steerlab_spec")}


def source_def(fn) -> str:
    """The ``def ...:`` header of ``fn`` exactly as written in its module."""
    lines = inspect.getsource(fn).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("def "))
    end = next(i for i in range(start, len(lines)) if lines[i].rstrip().endswith(":"))
    return "\n".join(lines[start : end + 1])


def signature_of(def_text: str) -> inspect.Signature:
    """The signature of a documented ``def`` header, compiled as hookspecs.py is
    (postponed annotations), so annotations compare as the same strings."""
    namespace: dict = {}
    exec(compile(f"from __future__ import annotations\n{def_text}\n    pass\n", str(GUIDE), "exec"), namespace)
    name = re.match(r"def (\w+)\(", def_text).group(1)
    return inspect.signature(namespace[name])


def problems(guide: str, specs: dict[str, object], test_texts: dict[str, str]) -> list[str]:
    """Everything wrong with ``guide`` and the tests for the hooks ``specs`` (empty: all good)."""
    found: list[str] = []
    documented: dict[str, str] = {}
    for match in SIGNATURE_BLOCK.finditer(guide):
        def_text, name = match.group(1), match.group(2)
        if name in documented:
            found.append(f"{name} has two signature blocks in the guide")
        documented[name] = def_text
    for name in sorted(set(documented) - set(specs)):
        found.append(f"the guide documents {name}, which is not a hook in hookspecs.py")
    for name, fn in sorted(specs.items()):
        if name not in documented:
            found.append(f"hook {name} is missing from docs/plugins.md (add a ```python @hookspec block)")
            continue
        doc_def = documented[name]
        try:
            doc_sig = signature_of(doc_def)
        except SyntaxError as exc:
            found.append(f"documented signature of {name} does not compile: {exc.msg}")
            continue
        if doc_sig != inspect.signature(fn):
            found.append(f"documented signature of {name} is {doc_sig}, hookspecs.py has {inspect.signature(fn)}")
        elif doc_def != source_def(fn):
            found.append(f"documented signature of {name} is not the source text {source_def(fn)!r}")
        if not any(f"def {name}(" in text for text in test_texts.values()):
            found.append(f"hook {name} has no test: no tests/test_*.py implements it")
    return found


def _test_texts() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(TESTS.glob("test_*.py")) if p.name != Path(__file__).name}


def test_every_hook_is_in_the_guide_with_its_exact_signature_and_has_a_test():
    specs = hookspec_functions()
    assert len(specs) >= 5  # the contract was found at all
    assert problems(GUIDE.read_text(), specs, _test_texts()) == []


def test_the_guide_code_blocks_compile():
    guide = GUIDE.read_text()
    blocks = re.findall(r"```python\n(.*?)```", guide, re.DOTALL)
    assert len(blocks) >= 2 * len(hookspec_functions())  # a signature and an example per hook
    for block in blocks:
        body = block if not block.startswith("@hookspec") else block + "    pass\n"
        compile("hookspec = None\n" + body, str(GUIDE), "exec")


# -- the checker itself: each kind of drift is caught ----------------------------------------------


@pytest.fixture
def real():
    return GUIDE.read_text(), hookspec_functions(), _test_texts()


def test_a_hook_missing_from_the_guide_is_reported(real):
    guide, specs, tests = real
    block = SIGNATURE_BLOCK.search(guide.split("### `steerlab_register_scorers`")[1]).group(0)
    assert problems(guide.replace(block, ""), specs, tests) == [
        "hook steerlab_register_scorers is missing from docs/plugins.md (add a ```python @hookspec block)"
    ]


def test_a_changed_signature_is_reported(real):
    guide, specs, tests = real
    renamed = guide.replace('def steerlab_register_commands(cli: "click.Group")', 'def steerlab_register_commands(group: "click.Group")')
    assert renamed != guide
    [problem] = problems(renamed, specs, tests)
    assert problem.startswith("documented signature of steerlab_register_commands is (group:")
    untyped = guide.replace('def steerlab_register_models(registry: "ModelRegistry") -> None:',
                            "def steerlab_register_models(registry) -> None:")
    assert untyped != guide
    assert problems(untyped, specs, tests)[0].startswith("documented signature of steerlab_register_models")
    # same signature object, different text (quotes): still not a copy of the source
    requoted = guide.replace('(registry: "ScorerRegistry")', "(registry: 'ScorerRegistry')")
    assert problems(requoted, specs, tests) == [
        "documented signature of steerlab_register_scorers is not the source text "
        + repr(source_def(specs["steerlab_register_scorers"]))
    ]


def test_a_hook_without_a_test_and_a_stale_entry_are_reported(real):
    guide, specs, tests = real
    without = {name: text.replace("def steerlab_register_layers(", "def other_function(") for name, text in tests.items()}
    assert problems(guide, specs, without) == [
        "hook steerlab_register_layers has no test: no tests/test_*.py implements it"
    ]
    fewer = {k: v for k, v in specs.items() if k != "steerlab_register_commands"}
    assert problems(guide, fewer, tests) == [
        "the guide documents steerlab_register_commands, which is not a hook in hookspecs.py"
    ]
