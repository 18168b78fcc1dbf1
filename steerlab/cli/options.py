"""What every ``steerlab`` command shares: context settings, the options repeated across
commands, JSON output and progress on stderr.

The repeated options (``-m/--model``, ``--checkpoint``, ``--json``, ``-o/--output``) are made
here, once, so a flag means the same thing, with the same spelling, type and parameter name,
in every command; a command may only reword the help where its meaning is narrower (the
model ``analyze`` defaults to, what ``--json`` prints). Each is a :class:`SharedOption`, which
tests/test_cli_options.py checks for every command, plugin commands included.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True}

F = TypeVar("F", bound=Callable[..., Any])

MODEL_HELP = "Model name (default: the embedded model)."
CHECKPOINT_HELP = "Local weights for the model."
JSON_HELP = "Machine-readable output."
DEVICE_HELP = "Where the model runs and trains: auto (CUDA when available, else the CPU), cpu, cuda, cuda:N or mps."
THREADS_HELP = "torch CPU threads [default: torch's own choice; the number used is recorded]."


class SharedOption(click.Option):
    """An option made by one of this module's factories; ``shared`` names which one
    (``"model"``, ``"checkpoint"``, ``"json"``, ``"output"``, ``"device"`` or ``"threads"``)."""

    def __init__(self, param_decls: Any = None, *, shared: str, **attrs: Any) -> None:
        super().__init__(param_decls, **attrs)
        self.shared = shared


def model_option(help: str = MODEL_HELP, default: str | None = None) -> Callable[[F], F]:
    """``-m/--model NAME`` into the parameter ``model_name``; None: the registry's default model."""
    return click.option("-m", "--model", "model_name", cls=SharedOption, shared="model", default=default, help=help)


def models_option(help: str = MODEL_HELP + " Repeatable: the models are compared row by row.") -> Callable[[F], F]:
    """``-m/--model NAME`` repeatable, into the tuple ``model_names``, for a command that compares
    models (``survey``); empty: the registry's default model. Spelled as :func:`model_option`."""
    return click.option(
        "-m", "--model", "model_names", cls=SharedOption, shared="models", multiple=True, default=(), help=help
    )


def checkpoint_option(help: str = CHECKPOINT_HELP) -> Callable[[F], F]:
    """``--checkpoint PATH`` (a file or a folder, as the model's loader takes it) into ``checkpoint``."""
    return click.option(
        "--checkpoint", cls=SharedOption, shared="checkpoint", type=click.Path(), default=None, help=help
    )


def json_option(help: str = JSON_HELP) -> Callable[[F], F]:
    """``--json`` into the flag ``as_json``: print JSON on stdout instead of text."""
    return click.option("--json", "as_json", cls=SharedOption, shared="json", is_flag=True, help=help)


def output_option(
    help: str, dest: str = "output", file_okay: bool = False, aliases: tuple[str, ...] = ()
) -> Callable[[F], F]:
    """The required ``-o/--output PATH`` into the parameter ``dest``: a folder the command writes
    (``file_okay=True`` lets the command give its own error for a file there). ``aliases``: older
    spellings that keep working (``--output-dir``)."""
    return click.option(
        "-o",
        "--output",
        *aliases,
        dest,
        cls=SharedOption,
        shared="output",
        required=True,
        type=click.Path(file_okay=file_okay),
        help=help,
    )


def device_option(help: str = DEVICE_HELP) -> Callable[[F], F]:
    """``--device NAME`` into ``device`` (default ``auto``), checked when the command runs by
    :func:`steerlab.devices.resolve` (an unavailable device is one line naming it)."""
    return click.option("--device", cls=SharedOption, shared="device", default="auto", metavar="DEVICE", help=help)


def threads_option(help: str = THREADS_HELP, default: int | None = None) -> Callable[[F], F]:
    """``--threads N`` into ``threads`` (N >= 1): ``torch.set_num_threads``; None leaves torch's
    own choice. A command may keep an older default of its own (train codec's 2)."""
    return click.option(
        "--threads",
        cls=SharedOption,
        shared="threads",
        type=click.IntRange(min=1),
        default=default,
        show_default=default is not None,
        help=help,
    )


def compute_options(fn: F) -> F:
    """Both ``--device`` and ``--threads`` with their shared help: for commands that run a model."""
    return device_option()(threads_option()(fn))


def setup_compute(device: str, threads: int | None) -> Any:
    """Apply ``--threads`` and resolve ``--device`` (:mod:`steerlab.devices`) before any work;
    returns the ``torch.device``. An unavailable device raises ConfigError naming it."""
    from steerlab import devices

    devices.set_threads(threads)
    return devices.use(devices.resolve(device))


def skip_bad_files_option(help: str) -> Callable[[F], F]:
    """``--skip-bad-files`` into the flag ``skip_bad_files``: skip unreadable, empty or NaN input files
    (``help`` says where they are listed) instead of failing before any work."""
    return click.option("--skip-bad-files", is_flag=True, help=help)


ALLOW_WEIGHTS_MISMATCH_HELP = (
    "Use the dictionary even if the model's weights differ from those it was learned on, or are not known "
    "(a dictionary imported from SAELens records none)."
)


def allow_weights_mismatch_option(help: str = ALLOW_WEIGHTS_MISMATCH_HELP) -> Callable[[F], F]:
    """``--allow-weights-mismatch`` into ``allow_weights_mismatch``: the one escape from the weights
    check of :func:`steerlab.learned.check_dictionary_fits` (``analyze``, ``intervene``)."""
    return click.option("--allow-weights-mismatch", is_flag=True, help=help)


def density_option() -> Callable[[F], F]:
    """``-d/--density N`` (repeatable) into ``densities``: mixture partials besides the target."""
    return click.option(
        "-d",
        "--density",
        "densities",
        multiple=True,
        type=int,
        default=(1, 2, 4, 8, 16),
        help="Mixture partials, not counting the target (repeatable; tone always uses 0).",
    )


def data_option(help: str, required: bool = False) -> Callable[[F], F]:
    """``--data SPEC`` (repeatable) into the tuple ``data``: audio folders or files and generated sets
    (``synth:N``, ...) a command reads through :class:`steerlab.capture.Corpus`."""
    return click.option("--data", "data", multiple=True, required=required, metavar="SPEC", help=help)


def clip_options(fn: F) -> F:
    """``--clip-seconds`` (generated clips' length, default 1) and ``--chunk-seconds`` (files longer
    than this are read in chunks, default 10): how a command's corpus cuts its audio."""
    fn = click.option("--chunk-seconds", type=float, default=10.0, help="Files longer than this are read in chunks.")(
        fn
    )
    return click.option("--clip-seconds", type=float, default=1.0, help="Length of generated clips (synth:N, ...).")(fn)


def split_names(values: tuple[str, ...]) -> tuple[str, ...]:
    """The names of a repeatable option whose values may each be comma-separated, blanks dropped."""
    return tuple(name.strip() for v in values for name in v.split(",") if name.strip())


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2))


class _PlainProgress:
    """What ``click.progressbar`` gives, for a stream that is not a terminal: one line when it
    starts (``LABEL: N items``), nothing per step (the bar would print its bare label instead)."""

    def __init__(self, label: str, length: int) -> None:
        self.label = label
        click.echo(f"{label}: {length} item{'s' if length != 1 else ''}", err=True)

    def update(self, n_steps: int = 1, current_item: Any = None) -> None:
        pass


@contextmanager
def progressbar(length: int, label: str, **options: Any) -> Iterator[Any]:
    """``click.progressbar`` on stderr when it is a terminal; otherwise (a log, a pipe) one plain
    line instead of the bar's bare labels."""
    err = sys.stderr  # (click.get_text_stream is deprecated since click 8.5)
    if not err.isatty():
        yield _PlainProgress(label, length)
        return
    with click.progressbar(length=length, label=label, file=err, **options) as bar:
        yield bar


def executor_options() -> Callable[[F], F]:
    """``--executor {local,ray}`` into ``executor`` and ``--address ADDR`` into ``address``: where
    independent work items run (:mod:`steerlab.executors`, docs/distributed.md)."""

    def decorate(fn: F) -> F:
        fn = click.option(
            "--address",
            default=None,
            metavar="ADDR",
            help="Ray cluster to use with --executor ray (auto, HOST:6379 or ray://HOST:10001).  "
            "[default: start a local cluster on this machine's CPUs]",
        )(fn)
        return click.option(
            "--executor",
            type=click.Choice(["local", "ray"]),
            default="local",
            help="Where work items run: in this process, or one Ray task per item, one torch thread per "
            'Ray worker (pip install "steerlab[ray]"); the rows are the same.',
        )(fn)

    return decorate
