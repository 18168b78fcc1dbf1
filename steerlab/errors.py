"""Domain errors. The library raises these with actionable text; the CLI turns
them into one-line messages and a non-zero exit (never a traceback)."""

from __future__ import annotations

import difflib
from typing import Iterable


class SteerlabError(Exception):
    """Base of every error steerlab reports to a user."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class AudioError(SteerlabError):
    """Audio that cannot be read, is empty, or holds non-finite samples."""


class UnknownNameError(SteerlabError, KeyError):
    """An unknown model, layer, intervention or scorer name."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]):
        valid = sorted(valid)
        self.kind, self.name, self.valid = kind, name, valid
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} Valid {kind}s: {', '.join(valid) or '(none)'}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DirectionError(SteerlabError):
    """A direction that cannot be loaded or does not fit the layer."""


class ModelLoadError(SteerlabError):
    """Weights that cannot be found or loaded."""


class OutputError(SteerlabError):
    """An output location that cannot be written."""


class PluginError(SteerlabError):
    """A plugin that failed while steerlab was calling it."""


class InterventionError(SteerlabError):
    """Invalid intervention options (non-finite strength, empty span, ...)."""
