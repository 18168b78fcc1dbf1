"""Shared CLI helpers."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Iterator

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True}


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
    err = click.get_text_stream("stderr")
    if not err.isatty():
        yield _PlainProgress(label, length)
        return
    with click.progressbar(length=length, label=label, file=err, **options) as bar:
        yield bar
