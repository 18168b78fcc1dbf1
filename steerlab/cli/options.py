"""Shared CLI helpers."""

from __future__ import annotations

import json
from typing import Any

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True}


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2))
