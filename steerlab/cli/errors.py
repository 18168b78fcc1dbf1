"""A library error as the CLI prints it: its first line, with the Python parameters it names
spelled as the flags of the command that ran.

The library's messages name the parameter a Python caller passed (``chunk_s must be ...``);
the error carries those names in ``.parameters`` (see :mod:`steerlab.errors`). On the command
line the user typed a flag, so the message names the flag (``--chunk-s must be ...``). A
parameter becomes a flag only when the command has an option that sets it: the option whose
click name is the parameter (``--chunk-s`` is ``chunk_s``, ``--threshold`` is
``coverage_threshold``), or the one :data:`ALIASES` names where the library and the command
call the same value differently; a value the command chooses with an option of its own
(``target='archetype'`` is ``--archetype``) is spelled by :data:`CHOICES`. Anything else (a key of a TOML config, a field of a file)
is left as the library wrote it. Every occurrence of the name is replaced, so a library
message uses a parameter's name only to mean the parameter (``seeds must hold three distinct
values``, not ``... three distinct seeds``).
"""

from __future__ import annotations

import re

import click

from steerlab.errors import SteerlabError, first_line

#: library parameter -> the click parameter name(s) of the option that sets it, where they differ
#: (the first the command has wins)
ALIASES: dict[str, str | tuple[str, ...]] = {
    "specs": ("data", "reference"),  # steerlab.capture.Corpus(specs) is --data; mean-ablate's is --reference
    "folder": "data",  # eval codec passes each --data to folder_windows(folder)
    "model": "model_name",  # -m/--model sets model_name (steerlab.cli.options.model_option)
    "k": "ks",  # learn sweep's --k (repeatable) sets each SAEConfig(k)
    "size": "sizes",  # learn sweep's --size (repeatable) sets each SAEConfig(size)
}

#: library parameter -> the clause by which a message offers it as a remedy; a command with no flag
#: for it drops the clause (survey reads --data without --skip-bad-files: "fix or remove them" stands)
REMEDIES: dict[str, str] = {
    "skip_bad_files": ", or pass skip_bad_files to skip them",
}

#: (library parameter, value) -> the click parameter name of the option that chooses that value,
#: where a command spells a choice as an option of its own: a message's ``target='archetype'``
#: becomes ``--archetype`` (learned_direction(target=...) is intervene's --feature/--archetype)
CHOICES: dict[tuple[str, str], str] = {
    ("target", "feature"): "feature",
    ("target", "archetype"): "archetype",
}


def flag_for(parameter: str, command: click.Command | None) -> str | None:
    """The long flag (``--chunk-s``) of ``command``'s option that sets ``parameter``, or None."""
    if command is None:
        return None
    alias = ALIASES.get(parameter, ())
    for name in (parameter, *((alias,) if isinstance(alias, str) else alias)):
        for param in command.params:
            if isinstance(param, click.Option) and param.name == name:
                longs = [o for o in param.opts if o.startswith("--")]
                return max(longs, key=len) if longs else max(param.opts, key=len)
    return None


def render(exc: SteerlabError, command: click.Command | None) -> str:
    """The first line of ``exc`` with each parameter it carries that ``command`` has a flag for
    replaced by the flag (whole words only: ``k`` never touches ``kind``), and each
    ``parameter='value'`` of :data:`CHOICES` by the flag that chooses the value; a remedy of
    :data:`REMEDIES` the command has no flag for is left out."""
    line = first_line(exc)
    parameters = getattr(exc, "parameters", ())
    for (parameter, value), name in CHOICES.items():
        flag = flag_for(name, command) if parameter in parameters else None
        if flag is not None:
            line = line.replace(f"{parameter}={value!r}", flag)
    for parameter in parameters:
        flag = flag_for(parameter, command)
        if flag is None and parameter in REMEDIES:
            line = line.replace(REMEDIES[parameter], "")
        if flag is not None:
            line = re.sub(rf"(?<![\w.\-]){re.escape(parameter)}(?![\w\-]|\.\w)", flag, line)
    return line


def leaf_command(group: click.Group, ctx: click.Context) -> click.Command | None:
    """The subcommand of ``group`` that ``ctx`` was invoking, or None."""
    name = ctx.invoked_subcommand
    return group.get_command(ctx, name) if name else None


def positional_model_hint(exc: click.UsageError) -> str | None:
    """For ``steerlab layers logspec_24khz``: a command that names its model with ``-m/--model``,
    given no ``-m`` but a name as an extra argument; the one line saying how to write it
    (``steerlab layers -m logspec_24khz``), else None (click's own message stands). The name is
    not looked up: the registry loads every plugin (torch and the models' libraries, seconds to
    tens of seconds), and a usage error must be instant; ``-m`` then checks it (with the nearest
    registered name)."""
    ctx = exc.ctx
    found = re.fullmatch(r"Got unexpected extra arguments? \((.+)\)", exc.message or "")
    if ctx is None or found is None:
        return None
    flag = next(
        (p for p in ctx.command.params if isinstance(p, click.Option) and "--model" in p.opts),
        None,
    )
    given = flag is not None and ctx.get_parameter_source(flag.name or "") == click.core.ParameterSource.COMMANDLINE
    if flag is None or given:
        return None  # no -m/--model, or one given: the extra argument is something else
    names = found.group(1).split()
    if len(names) != 1 or not re.fullmatch(r"[A-Za-z0-9][\w.\-]*", names[0]):
        return None
    return (
        f"{ctx.command_path} names the model with -m/--model, not as an argument: "
        f"{ctx.command_path} {' '.join(f'-m {n}' for n in names)}"
    )
