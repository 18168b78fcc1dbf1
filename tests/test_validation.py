"""The one validation vocabulary (steerlab.validation) and the one error hierarchy (steerlab.errors):
every check raises a ConfigError naming the parameter; choices suggest the nearest match; the CLI
names a parameter by its flag; no library module defines its own exception or raises a bare
ValueError."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path
from types import ModuleType

import click
import numpy as np
import pytest

import steerlab
from steerlab import errors
from steerlab import validation as check
from steerlab.cli.errors import render
from steerlab.errors import ConfigError, SteerlabError, StimulusError

# (check, value, keyword arguments, the whole message for parameter "p")
FAILURES = [
    (check.number, "3", {}, "p must be a finite number, got '3'"),
    (check.number, float("nan"), {}, "p must be a finite number, got nan"),
    (check.number, True, {}, "p must be a finite number, got True"),
    (check.number, 2.5, {"low": -1, "high": 1}, "p must be a number in [-1, 1], got 2.5"),
    (check.number, 1.0, {"low": 0, "high": 1, "high_open": True}, "p must be a number in [0, 1), got 1.0"),
    (check.number_or_none, -3, {"low": 0, "unit": "dB"}, "p must be None or a finite number >= 0 (dB), got -3"),
    (check.number, 5, {"high": 4}, "p must be a finite number <= 4, got 5"),
    (check.positive, 0, {}, "p must be a finite number > 0, got 0"),
    (check.positive, float("inf"), {"unit": "Hz"}, "p must be a finite number > 0 (Hz), got inf"),
    (check.non_negative, -0.5, {}, "p must be a finite number >= 0, got -0.5"),
    (check.fraction, 0.0, {}, "p must be a number in (0, 1], got 0.0"),
    (check.fraction, 1.5, {}, "p must be a number in (0, 1], got 1.5"),
    (check.integer, 2.0, {}, "p must be an integer, got 2.0"),
    (check.integer, 0, {"low": 1}, "p must be an integer >= 1, got 0"),
    (check.integer, 9, {"low": 1, "high": 8}, "p must be an integer in [1, 8], got 9"),
    (check.integer_or_none, "x", {"low": 1}, "p must be None or an integer >= 1, got 'x'"),
    (check.boolean, 1, {}, "p must be True or False, got 1"),
    (check.sequence, "ab", {}, "p must be a list, got 'ab'"),
    (check.sequence, [], {"nonempty": True}, "p must not be empty"),
    (check.distinct, [1, 2, 1], {}, "p lists a value twice: [1, 2, 1]"),
    (check.mapping, [1], {}, "p must be a mapping, got [1]"),
]


@pytest.mark.parametrize("fn,value,kw,message", FAILURES)
def test_each_check_raises_a_config_error_naming_the_parameter(fn, value, kw, message):
    with pytest.raises(ConfigError) as info:
        fn("p", value, **kw)
    assert str(info.value) == message
    assert info.value.parameters == ("p",) and info.value.parameter == "p"
    assert isinstance(info.value, ValueError) and isinstance(info.value, SteerlabError)


def test_checks_return_plain_values_and_accept_numpy_numbers():
    assert check.number("p", np.float32(0.5), low=0) == 0.5 and type(check.number("p", 3)) is float
    assert check.integer("p", np.int64(7), low=1) == 7 and type(check.integer("p", np.int64(7))) is int
    assert check.integer_or_none("p", None) is None and check.number_or_none("p", None, low=0) is None
    assert check.integer_or_none("p", 3, low=1) == 3 and check.number_or_none("p", 2, high=3) == 2.0
    assert check.positive("p", 2) == 2.0 and check.non_negative("p", 0) == 0.0 and check.fraction("p", 1) == 1.0
    assert check.sequence("p", [1, 2]) == (1, 2) and check.distinct("p", iter([3, 1])) == (3, 1)
    assert check.boolean("p", False) is False and check.choice("p", "b", ("a", "b")) == "b"


def test_choices_name_the_nearest_match_and_every_valid_value():
    with pytest.raises(ConfigError) as info:
        check.choice("family", "harmonc", ("tone", "harmonic", "chord"))
    assert str(info.value) == "unknown family 'harmonc'. Did you mean 'harmonic'? Valid values: tone, harmonic, chord"
    assert info.value.parameters == ("family",)
    with pytest.raises(ConfigError, match=r"^unknown stream 'zzz'\. Valid values: auto, shards$"):
        check.choice("stream", "zzz", ("auto", "shards"))  # nothing close: no suggestion
    with pytest.raises(ConfigError, match="^unknown mixture family 'x'"):
        check.choice("family", "x", ("tone",), what="mixture family")
    with pytest.raises(ConfigError, match="Did you mean 'diffmeans'") as info:
        check.choices("grid.methods", ["sae", "diffmean"], ("diffmeans", "sae"))
    assert info.value.parameters == ("grid.methods",)
    with pytest.raises(ConfigError, match="lists a value twice"):
        check.choices("m", ["sae", "sae"], ("sae",))
    assert check.nearest("fist_conv", ["first_conv", "latent"]) == "first_conv"
    assert check.nearest("zzz", ["first_conv"]) is None and check.did_you_mean("zzz", ["a"]) == ""


def test_a_subclass_of_the_hierarchy_can_be_raised_instead():
    with pytest.raises(StimulusError) as info:
        check.positive("target_hz", -1, error=StimulusError)
    assert info.value.parameters == ("target_hz",) and isinstance(info.value, ConfigError)
    with pytest.raises(StimulusError, match="Did you mean 'zero'"):
        check.choice("phase", "zeros", ("random", "zero"), error=StimulusError)


def test_library_configs_raise_the_hierarchy_naming_their_parameter():
    from steerlab.analysis.options import AnalysisOptions
    from steerlab.partials.config import PartialsConfig
    from steerlab.sae import SAEConfig
    from steerlab.stimuli import StimulusSpec

    cases = [
        (lambda: SAEConfig(width=4, size=8, k=2, lr=0), ("lr",), "lr must be a finite number > 0, got 0"),
        (lambda: SAEConfig(width=4, size=8, k=9), ("k", "size"), "k (9) must be <= size (8)"),
        (lambda: AnalysisOptions(top_n=0), ("top_n",), "top_n must be an integer >= 1, got 0"),
        (
            lambda: StimulusSpec("tone", 440.0, amplitude=-1.0),
            ("amplitude",),
            "amplitude must be a finite number > 0, got -1.0",
        ),
        (
            lambda: PartialsConfig().merged({"run": {"seed": -1}}),
            ("run.seed",),
            "run.seed must be an integer >= 0, got -1",
        ),
    ]
    for make, parameters, message in cases:
        with pytest.raises(ConfigError) as info:
            make()
        assert (info.value.parameters, str(info.value)) == (parameters, message)


def _command(*options: click.Option) -> click.Command:
    return click.Command("c", params=list(options))


def test_the_cli_names_the_flag_of_each_parameter_the_command_has():
    cmd = _command(
        click.Option(["--chunk-s", "chunk_s"], type=float),
        click.Option(["-s", "--start", "start_s"], type=float),
        click.Option(["--end", "end_s"]),
        click.Option(["--k"]),
        click.Option(["--architecture", "--variant", "architecture"]),
        click.Option(["--data"]),
    )
    exc = ConfigError("chunk_s 0.5 is too small, so chunk_s must be at least 2 s", parameter="chunk_s")
    assert render(exc, cmd) == "--chunk-s 0.5 is too small, so --chunk-s must be at least 2 s"
    exc = ConfigError("end_s (0.1 s) must be after start_s (0.2 s)", parameter=("end_s", "start_s"))
    assert render(exc, cmd) == "--end (0.1 s) must be after --start (0.2 s)"
    # whole words only; an alias maps the library's name to the command's; no flag: left alone
    assert (
        render(ConfigError("k (9) must be <= size (8); kind k", parameter=("k", "size")), cmd)
        == "--k (9) must be <= size (8); kind --k"
    )
    assert (
        render(ConfigError("unknown architecture 'l2'", parameter="architecture"), cmd) == "unknown --architecture 'l2'"
    )
    assert render(ConfigError("specs x: no such file", parameter="specs"), cmd) == "--data x: no such file"
    assert render(ConfigError("grid.chunk_s must be > 0", parameter="grid.chunk_s"), cmd) == "grid.chunk_s must be > 0"
    two_lines = ConfigError("chunk_s.x and chunk_s\nsecond line", parameter="chunk_s")
    assert render(two_lines, cmd) == "chunk_s.x and --chunk-s"
    assert render(ConfigError("chunk_s must be > 0", parameter="chunk_s"), None) == "chunk_s must be > 0"
    assert render(SteerlabError("no parameters here"), cmd) == "no parameters here"


def test_the_cli_spells_a_chosen_value_as_the_flag_that_chooses_it():
    cmd = _command(click.Option(["--feature"]), click.Option(["--archetype"]), click.Option(["--checkpoint"]))
    exc = ConfigError("d holds archetypes, not features; use it with target='archetype'", parameter="target")
    assert render(exc, cmd) == "d holds archetypes, not features; use it with --archetype"
    exc = ConfigError("load the weights (checkpoint), or pass allow_weights_mismatch", parameter=("checkpoint",))
    assert render(exc, cmd) == "load the weights (--checkpoint), or pass allow_weights_mismatch"
    no_flags = _command(click.Option(["--data"]))  # no option chooses it: the library's words stay
    assert render(ConfigError("use target='feature'", parameter="target"), no_flags) == "use target='feature'"
    assert render(ConfigError("target='feature' is fine", parameter=()), cmd) == "target='feature' is fine"
    assert render(ConfigError("folder x: 2 bad", parameter="folder"), no_flags) == "--data x: 2 bad"


def test_the_cli_prints_a_library_error_with_the_commands_flags(tmp_path):
    from click.testing import CliRunner

    from steerlab import cli as cli_module

    result = CliRunner().invoke(
        cli_module.get_cli(),
        [
            "learn",
            "features",
            "-l",
            "first_conv",
            "--data",
            "synth:1",
            "-o",
            str(tmp_path / "d"),
            "--size",
            "8",
            "--k",
            "9",
        ],
    )
    assert result.exit_code == 1 and result.output == "Error: --k (9) must be <= --size (8)\n"


# -- meta-tests: one hierarchy, in one module ------------------------------------------------------

ROOT = Path(steerlab.__file__).parent


def _library_modules() -> list[str]:
    names = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _exception_classes(module: ModuleType) -> list[str]:
    """Exception subclasses ``module`` defines itself (not those it imports)."""
    return [
        f"{module.__name__}.{obj.__name__}"
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == module.__name__
    ]


def _bare_value_errors(path: Path) -> list[str]:
    """``raise ValueError(...)`` (or ``raise ValueError``) statements in the file at ``path``."""
    found: list[int] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name) and target.id == "ValueError":
                found.append(node.lineno)
    return [f"{path.name}:{line}" for line in sorted(found)]


def test_every_exception_class_of_the_library_is_defined_in_errors():
    modules = _library_modules()
    assert {"steerlab.errors", "steerlab.validation", "steerlab.cli.errors"} <= set(modules)
    assert sum(name.startswith("steerlab.builtins.") for name in modules) >= 20  # the built-ins are scanned too
    outside = [
        c for name in modules if name != "steerlab.errors" for c in _exception_classes(importlib.import_module(name))
    ]
    assert outside == []
    own = _exception_classes(errors)
    kinds = (SteerlabError, errors.SteerlabWarning)  # errors, and the warnings the CLI prints as one line
    assert len(own) >= 20 and all(issubclass(getattr(errors, c.split(".")[-1]), kinds) for c in own)


def test_no_library_module_raises_a_bare_value_error():
    assert [hit for path in sorted(ROOT.rglob("*.py")) for hit in _bare_value_errors(path)] == []


def test_the_meta_checks_find_what_they_forbid(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f(x):\n    if x:\n        raise ValueError('x')\n    raise ValueError\n"
        "def g():\n    raise ConfigError('fine')\n"
    )
    assert _bare_value_errors(bad) == ["bad.py:3", "bad.py:4"]
    module = ModuleType("fake")
    exec(
        "from steerlab.errors import ConfigError\nclass Oops(ConfigError):\n    pass\nclass Fine:\n    pass\n",
        module.__dict__,
    )
    assert _exception_classes(module) == ["fake.Oops"]


def test_no_module_suggests_names_with_its_own_difflib():
    users = [
        str(p.relative_to(ROOT.parent))
        for p in sorted(ROOT.rglob("*.py"))
        if "get_close_matches" in p.read_text() and p.name != "validation.py"
    ]
    assert users == []


FLAG = re.compile(r"--[a-z]")


def _flag_messages(path: Path) -> list[str]:
    """Lines of the file at ``path`` whose string literal (f-strings included) goes into a
    ``raise`` and names a CLI flag (``--data``): in the raise itself, or assigned in the same
    function to a name the raise reads (``missing = "..."; raise E(missing)``)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[int] = set()
    for scope in ast.walk(tree):
        if not isinstance(scope, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        nodes = list(ast.walk(scope))
        raised = [n.exc for n in nodes if isinstance(n, ast.Raise) and n.exc is not None]
        names = {n.id for exc in raised for n in ast.walk(exc) if isinstance(n, ast.Name)}
        for node in nodes:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and node.value is not None:
                if any(isinstance(t, ast.Name) and t.id in names for t in targets):
                    raised.append(node.value)
        for part in raised:
            for n in ast.walk(part):
                if isinstance(n, ast.Constant) and isinstance(n.value, str) and FLAG.search(n.value):
                    found.add(n.lineno)
    return [f"{path.name}:{line}" for line in sorted(found)]


def _is_cli_code(path: Path) -> bool:
    """steerlab/cli/ and the built-ins' ``commands.py``: the code that owns the flags."""
    rel = path.relative_to(ROOT)
    return rel.parts[0] == "cli" or (rel.parts[0] == "builtins" and path.name == "commands.py")


def test_library_error_messages_name_parameters_not_flags():
    """A Python caller never typed ``--checkpoint``: library errors name the parameter (and carry
    it in ``.parameters``, which the CLI spells as its flag); only CLI code names flags."""
    library = [p for p in sorted(ROOT.rglob("*.py")) if not _is_cli_code(p)]
    assert len(library) > 80 and not any(p.name == "commands.py" for p in library)
    assert [hit for path in library for hit in _flag_messages(path)] == []


def test_the_flag_scan_finds_flags_in_raised_messages(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f(x, flag):\n"
        "    if x:\n"
        "        raise E(f'{x} is bad; pass --checkpoint')\n"
        "    missing = (\n"
        "        'no weights; '\n"
        "        'or pass --random-init'\n"
        "    )\n"
        "    if flag:\n"
        "        raise E(missing)\n"
        "    note = 'pass --data'  # not raised: fine\n"
        "    raise E('checkpoint must be a file -- or None', parameter='checkpoint')\n"
        "raise E('top level --quick')\n"
    )
    assert _flag_messages(bad) == ["bad.py:3", "bad.py:5", "bad.py:12"]
    assert _is_cli_code(ROOT / "cli" / "learn.py") and _is_cli_code(ROOT / "builtins" / "encodec" / "commands.py")
    assert not _is_cli_code(ROOT / "builtins" / "encodec" / "loaders.py")
