"""Meta-test: docs/plugins.md documents every hook of steerlab/hookspecs.py with its exact
signature, and every hook is implemented by some test; it documents every member of
``AudioModel`` with its exact declaration, and the core reads no member of a model that
``AudioModel`` does not declare.

"Has a test" means a test module other than this one implements the hook (a line
``def <hook>(``): a bare mention would not do, since test_plugins.py lists every hook
name in its own checks.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from pathlib import Path

import pytest
import torch

from steerlab import hookspecs
from steerlab import model as model_module

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
    renamed = guide.replace(
        "def steerlab_register_commands(cli: click.Group)", "def steerlab_register_commands(group: click.Group)"
    )
    assert renamed != guide
    [problem] = problems(renamed, specs, tests)
    assert problem.startswith("documented signature of steerlab_register_commands is (group:")
    untyped = guide.replace(
        "def steerlab_register_models(registry: ModelRegistry) -> None:",
        "def steerlab_register_models(registry) -> None:",
    )
    assert untyped != guide
    assert problems(untyped, specs, tests)[0].startswith("documented signature of steerlab_register_models")
    # same signature object, different text (spacing): still not a copy of the source
    requoted = guide.replace("(registry: ScorerRegistry)", "(registry:  ScorerRegistry)")
    assert problems(requoted, specs, tests) == [
        "documented signature of steerlab_register_scorers is not the source text "
        + repr(source_def(specs["steerlab_register_scorers"]))
    ]


def test_a_hook_without_a_test_and_a_stale_entry_are_reported(real):
    guide, specs, tests = real
    without = {
        name: text.replace("def steerlab_register_layers(", "def other_function(") for name, text in tests.items()
    }
    assert problems(guide, specs, without) == [
        "hook steerlab_register_layers has no test: no tests/test_*.py implements it"
    ]
    fewer = {k: v for k, v in specs.items() if k != "steerlab_register_commands"}
    assert problems(guide, fewer, tests) == [
        "the guide documents steerlab_register_commands, which is not a hook in hookspecs.py"
    ]


# -- the AudioModel contract: documented member by member, and all the core reads ------------------
#
# Every public member declared in AudioModel's class body must appear in the guide's
# ``class AudioModel(torch.nn.Module):`` block with the same annotation and default (or the same
# decorators, parameters and return annotation), under a comment saying what it is. And every
# attribute the core (steerlab/ minus steerlab/builtins/) reads or sets on a model object,
# directly or through getattr/hasattr/setattr with a literal name, must be declared there (or be
# one of torch.nn.Module's own members). A "model object" is a name ``model`` or ``*_model``, an
# attribute ``.model`` (``self.model``, ``plan.model``), or a parameter annotated ``AudioModel``;
# a parameter named ``model`` annotated with another type (``torch.nn.Module``) is not one.

CORE = ROOT / "steerlab"
CONTRACT_BLOCK = re.compile(r"```python\n(class AudioModel\(torch\.nn\.Module\):\n.*?)```", re.DOTALL)
NN_MODULE_MEMBERS = frozenset(dir(torch.nn.Module))


def _member_text(node: ast.stmt) -> tuple[str, str] | None:
    """(name, normalised declaration) of a class-body statement, or None for anything else."""
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id, ast.unparse(node)
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, ast.unparse(node)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        decorators = "".join(f"@{ast.unparse(d)} " for d in node.decorator_list)
        returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
        return node.name, f"{decorators}def {node.name}({ast.unparse(node.args)}){returns}"
    return None


def contract_members(class_source: str) -> dict[str, tuple[str, int]]:
    """Public members of the first class in ``class_source``: name -> (declaration, line)."""
    cls = next(n for n in ast.parse(class_source).body if isinstance(n, ast.ClassDef))
    members: dict[str, tuple[str, int]] = {}
    for node in cls.body:
        found = _member_text(node)
        if found and not found[0].startswith("_"):
            first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
            members[found[0]] = (found[1], first)
    return members


class _ModelReads(ast.NodeVisitor):
    """Collects (line, object, attribute) for every attribute read or set on a model object."""

    ACCESSORS = ("getattr", "hasattr", "setattr", "delattr")

    def __init__(self) -> None:
        self.scopes: list[frozenset[str]] = [frozenset({"model"})]
        self.reads: list[tuple[int, str, str]] = []

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        names = set(self.scopes[-1])
        a = node.args
        for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
            annotation = ast.unparse(arg.annotation) if arg.annotation is not None else ""
            if "AudioModel" in annotation:
                names.add(arg.arg)
            elif annotation:
                names.discard(arg.arg)
        self.scopes.append(frozenset(names))
        self.generic_visit(node)
        self.scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _is_model(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.scopes[-1] or node.id.endswith("_model")
        return isinstance(node, ast.Attribute) and node.attr == "model"

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if self._is_model(node.value):
            self.reads.append((node.lineno, ast.unparse(node.value), node.attr))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if (
            isinstance(node.func, ast.Name)
            and node.func.id in self.ACCESSORS
            and len(node.args) >= 2
            and self._is_model(node.args[0])
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            self.reads.append((node.lineno, ast.unparse(node.args[0]), node.args[1].value))
        self.generic_visit(node)


def core_model_reads(sources: dict[str, str]) -> list[tuple[str, int, str, str]]:
    """(file, line, object, attribute) of every model member the sources touch."""
    out = []
    for path, text in sorted(sources.items()):
        visitor = _ModelReads()
        visitor.visit(ast.parse(text))
        out += [(path, line, obj, attr) for line, obj, attr in visitor.reads]
    return out


def contract_problems(guide: str, class_source: str, core_sources: dict[str, str]) -> list[str]:
    """Everything wrong with the guide's AudioModel block and the core's reads (empty: all good)."""
    blocks = CONTRACT_BLOCK.findall(guide)
    if len(blocks) != 1:
        return [
            f"docs/plugins.md needs exactly one ```python class AudioModel(torch.nn.Module): block, has {len(blocks)}"
        ]
    block = blocks[0]
    declared = contract_members(class_source)
    documented = contract_members(block)
    lines = block.splitlines()
    found: list[str] = []
    for name, (text, _) in declared.items():
        if name not in documented:
            found.append(f"AudioModel.{name} is missing from docs/plugins.md (declared as `{text}`)")
        elif documented[name][0] != text:
            found.append(f"documented AudioModel.{name} is `{documented[name][0]}`, steerlab/model.py has `{text}`")
    for name, (_, line) in documented.items():
        if name not in declared:
            found.append(f"docs/plugins.md documents AudioModel.{name}, which steerlab/model.py does not declare")
        elif not lines[line - 2].strip().startswith("#"):
            found.append(f"AudioModel.{name} has no comment above it in docs/plugins.md saying what it is")
    for path, line, obj, attr in core_model_reads(core_sources):
        if attr not in declared and attr not in NN_MODULE_MEMBERS:
            found.append(f"{path}:{line} reads {obj}.{attr}, which AudioModel does not declare")
    return found


def _core_sources() -> dict[str, str]:
    return {
        p.relative_to(ROOT).as_posix(): p.read_text()
        for p in sorted(CORE.rglob("*.py"))
        if "builtins" not in p.relative_to(CORE).parts
    }


def _audiomodel_source() -> str:
    return inspect.getsource(model_module.AudioModel)


def test_the_audiomodel_contract_is_documented_and_covers_every_read_of_the_core():
    sources = _core_sources()
    assert "steerlab/api.py" in sources and not any(p.startswith("steerlab/builtins/") for p in sources)
    declared = contract_members(_audiomodel_source())
    # the contract was found at all, and so were the core's reads (the scan is not blind)
    assert {
        "output_length",
        "class_names",
        "dictionaries_dir",
        "layer_registry",
        "output_kind",
        "traced_outputs",
        "n_q",
        "sample_rate",
        "weights_hash",
    } <= set(declared)
    read = {attr for _, _, _, attr in core_model_reads(sources)}
    assert {
        "output_length",
        "class_names",
        "layer_registry",
        "output_kind",
        "traced_outputs",
        "n_q",
        "hop",
        "has_decoder",
        "output_bins_hz",
        "centres_hz",
        "control_layer",
    } <= read
    assert contract_problems(GUIDE.read_text(), _audiomodel_source(), sources) == []


# -- the contract checker itself: each kind of drift is caught -------------------------------------


@pytest.fixture
def contract():
    return GUIDE.read_text(), _audiomodel_source(), _core_sources()


def test_an_undocumented_member_is_reported(contract):
    guide, source, core = contract
    line = "    def output_length(self, n_samples: int) -> int: ...\n"
    assert guide.count(line) == 1
    assert contract_problems(guide.replace(line, ""), source, core) == [
        (
            "AudioModel.output_length is missing from docs/plugins.md (declared as "
            "`def output_length(self, n_samples: int) -> int`)"
        )
    ]
    # a member added to the class and not to the guide
    added = source.replace(
        "    def describe(self)",
        "    def frames_per_second(self) -> float:\n        return 1.0\n\n    def describe(self)",
    )
    assert contract_problems(guide, added, core) == [
        (
            "AudioModel.frames_per_second is missing from docs/plugins.md (declared as "
            "`def frames_per_second(self) -> float`)"
        )
    ]


def test_a_changed_or_uncommented_or_stale_member_is_reported(contract):
    guide, source, core = contract
    retyped = guide.replace(
        "    class_names: Sequence[str] | None = None\n", "    class_names: list[str] | None = None\n"
    )
    assert retyped != guide
    assert contract_problems(retyped, source, core) == [
        (
            "documented AudioModel.class_names is `class_names: list[str] | None = None`, "
            "steerlab/model.py has `class_names: Sequence[str] | None = None`"
        )
    ]
    renamed = guide.replace(
        "def layer_calls(self, layer: LayerInfo) -> int: ...", "def layer_calls(self, info: LayerInfo) -> int: ..."
    )
    assert renamed != guide
    assert contract_problems(renamed, source, core) == [
        (
            "documented AudioModel.layer_calls is `def layer_calls(self, info: LayerInfo) -> int`, "
            "steerlab/model.py has `def layer_calls(self, layer: LayerInfo) -> int`"
        )
    ]
    uncommented = guide.replace("    # the path used when a run names none\n", "")
    assert contract_problems(uncommented, source, core) == [
        "AudioModel.default_path has no comment above it in docs/plugins.md saying what it is"
    ]
    stale = guide.replace(
        "    # codebooks of the model's quantizer",
        "    # gone\n    sample_width: int = 2\n    # codebooks of the model's quantizer",
    )
    assert contract_problems(stale, source, core) == [
        "docs/plugins.md documents AudioModel.sample_width, which steerlab/model.py does not declare"
    ]


def test_a_core_read_of_an_undeclared_member_is_reported(contract):
    guide, source, core = contract
    extra = textwrap.dedent("""
        def f(model, plan, m: "AudioModel", net: torch.nn.Module):
            shipped_model = plan.model
            a = model.latent_dim + getattr(model, "codebook_size", 0) + plan.model.frame_rate
            b = m.sample_rate + m.bins + shipped_model.vocab + net.anything + hasattr(model, "hop")
            model.eval()

        def g(model: torch.nn.Module):
            return model.not_an_audio_model
    """)
    assert contract_problems(guide, source, {**core, "steerlab/extra.py": extra}) == [
        "steerlab/extra.py:4 reads model.latent_dim, which AudioModel does not declare",
        "steerlab/extra.py:4 reads model.codebook_size, which AudioModel does not declare",
        "steerlab/extra.py:4 reads plan.model.frame_rate, which AudioModel does not declare",
        "steerlab/extra.py:5 reads m.bins, which AudioModel does not declare",
        "steerlab/extra.py:5 reads shipped_model.vocab, which AudioModel does not declare",
    ]
