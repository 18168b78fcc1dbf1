"""The command line as a whole: ``get_cli()`` holds every command, plugin commands included, and
the options repeated across commands (``-m/--model``, ``--checkpoint``, ``--json``,
``-o/--output``) come from the shared factories in ``steerlab.cli.options`` everywhere, with
one spelling, type and parameter name."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from steerlab.cli import get_cli
from steerlab.cli.options import (
    SharedOption,
    checkpoint_option,
    device_option,
    json_option,
    model_option,
    models_option,
    output_option,
    threads_option,
)

# every command of a plain install: the core's, then the built-in plugins' (train/eval recipes)
EXPECTED = {
    "analyze",
    "arch",
    "capture",
    "concepts",
    "corpus",
    "corpus clips",
    "corpus render",
    "dictionaries",
    "dictionary",
    "dictionary export-saelens",
    "dictionary import-saelens",
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
    "steerability",
    "survey",
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
    "--device": "device",
    "--threads": "threads",
}
#: every command that runs a model or trains: each must take --device and --threads (docs/devices.md)
MODEL_RUNNING = {
    "capture",
    "learn sweep",
    "steerability",
    "survey",
    "intervene",
    "learn features",
    "learn archetypes",
    "analyze",
    "partials",
    "eval codec",
    "eval samplecnn",
    "train codec",
    "train samplecnn",
    "train tokenlm",
}
#: commands that load a model without running it (its layer table, its shipped dictionaries)
LOAD_ONLY = {"layers", "arch", "dictionaries", "dictionary import-saelens"}  # read names or configs, run nothing
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
        None if shared in ("model", "models", "threads") else option.default,  # an older --threads default stays
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
    "models": _interface(_made_by(models_option()), "models"),
    "device": _interface(_made_by(device_option()), "device"),
    "threads": _interface(_made_by(threads_option()), "threads"),
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
            kind = {"models": "model"}.get(getattr(param, "shared", ""), getattr(param, "shared", None))
            if not isinstance(param, SharedOption) or {kind} != kinds:  # models: the repeatable -m
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
        "capture",
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
    assert seen["model"] == loaders | {"dictionaries", "dictionary import-saelens", "partials", "steerability"}
    assert seen["models"] == {"survey"}  # the repeatable -m of a command comparing models
    assert seen["checkpoint"] == loaders
    assert seen["output"] == {
        "capture",
        "intervene",
        "dictionary export-saelens",
        "dictionary import-saelens",
        "learn features",
        "learn archetypes",
        "learn sweep",
        "analyze",
        "partials",
        "partials-compare",
        "steerability",
        "survey",
        "train codec",
        "train samplecnn",
        "train tokenlm",
        "corpus clips",
        "corpus render",
        "stimuli",
    }
    assert len(seen["json"]) == 24 and "synth" not in seen["json"]
    assert seen["device"] == MODEL_RUNNING
    assert seen["threads"] == MODEL_RUNNING


def test_every_command_that_runs_a_model_takes_device_and_threads():
    """Read from the commands themselves: a command with --model that is not a known load-only
    one, and every train/eval recipe, must take both (a new model-running command without them fails)."""
    root = get_cli()
    flags = {" ".join(path): {o for p in command.params for o in p.opts} for path, command in _walk(root) if path}
    runs = {c for c, opts in flags.items() if "--model" in opts and c not in LOAD_ONLY}
    runs |= {c for c in flags if c.split()[0] in ("train", "eval") and " " in c}
    assert runs <= MODEL_RUNNING and MODEL_RUNNING <= set(flags)
    missing = sorted(c for c in MODEL_RUNNING if not {"--device", "--threads"} <= flags[c])
    assert missing == []
    device, threads = _made_by(device_option()), _made_by(threads_option())
    assert (device.opts, device.name, device.default) == (["--device"], "device", "auto")
    assert (threads.opts, threads.name, threads.default) == (["--threads"], "threads", None)


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
