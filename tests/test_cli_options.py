"""The command line as a whole: ``get_cli()`` holds every command, plugin commands included, and
the options repeated across commands (``-m/--model``, ``--checkpoint``, ``--json``,
``-o/--output``) come from the shared factories in ``steerlab.cli.options`` everywhere, with
one spelling, type and parameter name."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from steerlab.cli import get_cli
from steerlab.cli.options import SharedOption, checkpoint_option, json_option, model_option, output_option

# every command of a plain install: the core's, then the built-in plugins' (train/eval recipes)
EXPECTED = {
    "analyze",
    "arch",
    "corpus",
    "corpus clips",
    "corpus render",
    "dictionaries",
    "eval",
    "eval codec",
    "eval samplecnn",
    "intervene",
    "interventions",
    "layers",
    "learn",
    "learn archetypes",
    "learn features",
    "learn sweep",
    "models",
    "partials",
    "partials-compare",
    "plugins",
    "stimuli",
    "synth",
    "train",
    "train codec",
    "train samplecnn",
    "train tokenlm",
}
SHARED_FLAGS = {
    "-m": "model",
    "--model": "model",
    "--checkpoint": "checkpoint",
    "--json": "json",
    "-o": "output",
    "--output": "output",
    "--output-dir": "output",
}
OUTPUT_NAMES = {"output", "out_dir", "output_dir"}  # the parameter names commands read -o into


def _walk(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _walk(sub, (*path, name))


def _path_type(t: click.ParamType) -> tuple:
    return (type(t).__name__, getattr(t, "exists", None), getattr(t, "file_okay", None), getattr(t, "dir_okay", None))


def _interface(option: click.Option, shared: str) -> tuple:
    """What must be the same in every command for a shared option (help may differ; the model's
    default may differ, as eval samplecnn's; the output folder's parameter name and aliases may)."""
    common = (option.is_flag, option.multiple, option.nargs, option.required, option.count)
    if shared == "output":
        return (tuple(option.opts[:2]), option.name in OUTPUT_NAMES, type(option.type).__name__, *common)
    return (
        tuple(option.opts),
        tuple(option.secondary_opts),
        option.name,
        _path_type(option.type),
        *common,
        None if shared == "model" else option.default,
    )


def _made_by(factory) -> click.Option:
    def fn(**kwargs):
        pass

    factory(fn)
    return fn.__click_params__[0]


REFERENCE = {
    "model": _interface(_made_by(model_option()), "model"),
    "checkpoint": _interface(_made_by(checkpoint_option()), "checkpoint"),
    "json": _interface(_made_by(json_option()), "json"),
    "output": _interface(_made_by(output_option("a folder")), "output"),
}


def test_the_shared_options_are_spelled_as_documented():
    model, checkpoint, as_json, output = (
        _made_by(f)
        for f in (
            model_option(),
            checkpoint_option(),
            json_option(),
            output_option("a folder", aliases=("--output-dir",)),
        )
    )
    assert (model.opts, model.name, model.default) == (["-m", "--model"], "model_name", None)
    assert (checkpoint.opts, checkpoint.name, checkpoint.default) == (["--checkpoint"], "checkpoint", None)
    assert (as_json.opts, as_json.name, as_json.is_flag) == (["--json"], "as_json", True)
    assert (output.opts, output.name, output.required) == (["-o", "--output", "--output-dir"], "output", True)
    assert _path_type(checkpoint.type) == ("Path", False, True, True)  # a file or a folder, as loaders take
    assert _path_type(output.type) == ("Path", False, False, True)  # a folder


def shared_option_problems(root: click.Group) -> list[str]:
    """Every option of every command that spells a shared flag but is not the shared option."""
    problems = []
    for path, command in _walk(root):
        for param in command.params:
            flags = {*param.opts, *param.secondary_opts} & set(SHARED_FLAGS)
            if not flags:
                continue
            where = f"{' '.join(path)} {'/'.join(param.opts)}"
            kinds = {SHARED_FLAGS[f] for f in flags}
            if not isinstance(param, SharedOption) or {param.shared} != kinds:
                problems.append(f"{where}: not made by steerlab.cli.options ({', '.join(sorted(kinds))}_option)")
            elif _interface(param, param.shared) != REFERENCE[param.shared]:
                problems.append(f"{where}: {_interface(param, param.shared)} != {REFERENCE[param.shared]}")
    return problems


def test_get_cli_lists_every_command_including_plugin_commands():
    root = get_cli()
    paths = {" ".join(path) for path, _ in _walk(root) if path}
    assert paths == EXPECTED
    assert get_cli() is not root  # a new group per call: a caller's changes stay its own
    help_text = CliRunner().invoke(root, ["train", "--help"]).output
    assert all(name in help_text for name in ("codec", "samplecnn", "tokenlm"))


def test_get_cli_holds_the_commands_of_a_plugin_registered_now():
    from steerlab import plugins
    from steerlab.hookspecs import hookimpl

    @click.command(name="probe-hello")
    def hello() -> None:
        click.echo("hello")

    class Probe:
        @hookimpl
        def steerlab_register_commands(self, cli):
            cli.add_command(hello)
            cli.commands["eval"].add_command(hello, name="probe")

    probe = Probe()
    plugins.register(probe, name="probe_commands")
    try:
        root = get_cli()
        assert CliRunner().invoke(root, ["probe-hello"]).output == "hello\n"
        assert CliRunner().invoke(root, ["eval", "probe"]).output == "hello\n"
    finally:
        plugins.unregister(probe)
    assert "probe-hello" not in get_cli().commands and "probe" not in get_cli().commands["eval"].commands


def test_every_command_takes_its_shared_options_from_the_shared_factories():
    root = get_cli()
    assert shared_option_problems(root) == []
    seen = {}
    for path, command in _walk(root):
        for param in command.params:
            if isinstance(param, SharedOption):
                seen.setdefault(param.shared, set()).add(" ".join(path))
    loaders = {
        "intervene",
        "learn features",
        "learn archetypes",
        "learn sweep",
        "layers",
        "analyze",
        "arch",
        "eval codec",
        "eval samplecnn",
    }
    assert seen["model"] == loaders | {"dictionaries", "partials"}
    assert seen["checkpoint"] == loaders
    assert seen["output"] == {
        "intervene",
        "learn features",
        "learn archetypes",
        "learn sweep",
        "analyze",
        "partials",
        "partials-compare",
        "train codec",
        "train samplecnn",
        "train tokenlm",
        "corpus clips",
        "corpus render",
        "stimuli",
    }
    assert len(seen["json"]) == 18 and "synth" not in seen["json"]


def test_the_check_catches_a_hand_written_shared_flag():
    """The checker itself: a command spelling --json or -o by hand, or with another meaning, is reported."""

    @click.group()
    def root() -> None:
        pass

    @root.command()
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    def bare(as_json: bool) -> None:
        pass

    @root.command()
    @json_option()
    @click.option("-o", "--out", "out", default=None)
    def other(as_json: bool, out: str | None) -> None:
        pass

    @root.command()
    @click.option("-m", "--model", "model", cls=SharedOption, shared="model")
    def renamed(model: str | None) -> None:
        pass

    problems = shared_option_problems(root)
    assert len(problems) == 3, problems
    assert problems[0].startswith("bare --json: not made by") and problems[1].startswith("other -o/--out: not made")
    assert problems[2].startswith("renamed -m/--model: ") and "'model'" in problems[2]


@pytest.mark.parametrize("command", [("stimuli",), ("corpus", "render"), ("corpus", "clips")])
@pytest.mark.parametrize("flag", ["-o", "--output", "--output-dir"])
def test_output_folder_takes_o_output_and_the_older_output_dir(command, flag):
    root = get_cli()
    cmd = root
    for name in command:
        cmd = cmd.commands[name]
    extra = ["src.wav"] if command[-1] == "clips" else []
    ctx = cmd.make_context(command[-1], [*extra, flag, "folder"])
    assert ctx.params["output_dir"] == "folder"
