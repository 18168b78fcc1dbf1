"""The ``steerlab`` command line: a click group, one module per command group.

:func:`get_cli` builds the complete group (core commands, then what plugins register);
:func:`main` is the console script. Options shared by several commands come from
:mod:`steerlab.cli.options`. Heavy libraries (torch, nnsight, encodec) are imported inside
command bodies so ``steerlab --help`` stays fast. Library errors (:class:`SteerlabError`)
and usage errors become a one-line ``Error: ...`` message and exit status 1, never a
traceback; SIGTERM and SIGHUP clean up as Ctrl-C does.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from steerlab import __version__, memory
from steerlab.cli.errors import leaf_command
from steerlab.cli.errors import render as render_error
from steerlab.cli.options import CONTEXT
from steerlab.errors import SteerlabError, SteerlabWarning, first_line


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) turned into what SIGINT raises, so every clean-up that runs on Ctrl-C
    (temporary result folders removed, atomic writes abandoned) runs on ``kill`` too; the CLI then
    prints one line and exits with 128 + the signal number (143 for SIGTERM)."""

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


def _raise_terminated(signum: int, frame) -> None:
    import signal

    signal.signal(signum, signal.SIG_IGN)  # a second signal must not interrupt the clean-up
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP raise :class:`Terminated` in the main thread (SIGINT already raises
    KeyboardInterrupt). A signal the parent ignored (``nohup``) stays ignored."""
    import signal

    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _raise_terminated)


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """While a command runs, each :class:`SteerlabWarning` is printed as one ``warning: ...`` line
    on stderr (once per message and place, as Python's ``default`` action does), whatever filters
    the caller set; other warnings go where they went before."""
    import warnings

    with warnings.catch_warnings():
        shown = warnings.showwarning
        warnings.simplefilter("default", SteerlabWarning)

        def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
            if issubclass(category, SteerlabWarning):
                click.echo(f"warning: {message}", err=True)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def _one_line(exc: click.UsageError) -> click.ClickException:
    """A usage error (bad option value, unknown option, missing argument, a folder where a
    file is wanted) as the same one-line ``Error: ...`` and exit status 1 as any other bad
    input, instead of click's usage block and exit status 2."""
    from steerlab.cli.errors import positional_model_hint

    hint = positional_model_hint(exc)
    if hint is not None:  # `steerlab layers logspec_24khz`: say how to name the model
        return click.ClickException(hint)
    where = f" (see '{exc.ctx.command_path} -h')" if exc.ctx is not None else ""
    return click.ClickException(first_line(click.ClickException(exc.format_message())) + where)


def _shows_help(exc: click.UsageError) -> bool:
    """click >= 8.2 raises ``NoArgsIsHelpError`` to print a group's help when called bare."""
    return type(exc).__name__ == "NoArgsIsHelpError"


class SteerlabGroup(click.Group):
    """A group that turns steerlab's domain errors and click's usage errors into one-line
    CLI errors with exit status 1."""

    def make_context(self, info_name, args, parent=None, **extra):  # the root's own options
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            if _shows_help(exc):
                raise
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context):
        try:
            with warnings_as_lines():
                return super().invoke(ctx)
        except SteerlabError as exc:  # named by the flags of the command that ran (steerlab.cli.errors)
            raise click.ClickException(render_error(exc, leaf_command(self, ctx))) from None
        except click.UsageError as exc:  # a subcommand's arguments (parsed inside this invoke)
            if _shows_help(exc):
                raise
            raise _one_line(exc) from None
        except Terminated as exc:  # before KeyboardInterrupt: it is one
            click.echo(f"Terminated ({exc.name}).", err=True)
            sys.exit(128 + exc.signum)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


def _root() -> SteerlabGroup:
    """The ``steerlab`` group with its own ``train`` and ``eval`` groups, no commands yet."""

    @click.group(cls=SteerlabGroup, context_settings=CONTEXT)
    @click.version_option(__version__, "-V", "--version")
    def cli() -> None:
        """steerlab: steer the internal variables of neural audio models and measure what changes."""

    @cli.group(cls=SteerlabGroup, context_settings=CONTEXT)
    def train() -> None:
        """Train the models steerlab ships (plugins add their recipes here)."""

    @cli.group(name="eval", cls=SteerlabGroup, context_settings=CONTEXT)
    def eval_() -> None:
        """Evaluate trained models (plugins add their evaluations here)."""

    return cli


def get_cli() -> click.Group:
    """The complete ``steerlab`` command group: every core command, and every command the
    loaded plugins add through ``steerlab_register_commands`` (``train codec``, ``eval codec``,
    ...). Each call builds a new group, so it reflects the plugins loaded at the time and a
    caller's changes to it stay its own. Run it with ``group(args)`` or click's ``CliRunner``."""
    from steerlab import plugins
    from steerlab.cli import (
        analyze,
        arch,
        capture,
        corpus,
        info,
        intervene,
        learn,
        partials,
        steerability,
        stimuli,
        survey,
        synth,
    )
    from steerlab.cli import dictionary as dictionary_cli

    cli = _root()
    modules = (analyze, arch, capture, corpus, info, intervene, learn, partials, steerability, stimuli, survey, synth)
    for module in (*modules, dictionary_cli):
        for command in module.COMMANDS:
            cli.add_command(command)
    plugins.call_each("steerlab_register_commands", cli=cli)
    return cli


def main() -> None:
    import warnings

    # encodec builds its layers with torch's deprecated weight_norm; not the user's concern
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.nn\.utils\.weight_norm")
    install_signal_handlers()
    memory.keep_freed_memory()  # a command's sweep reuses its pages instead of faulting in fresh ones
    try:
        group = get_cli()
    except SteerlabError as exc:  # the plugins cannot load (an essential one blocked): one line, as for a command
        click.echo(f"Error: {first_line(exc)}", err=True)
        sys.exit(1)
    group(prog_name="steerlab")
