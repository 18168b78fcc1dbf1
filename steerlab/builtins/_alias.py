"""The built-in plugins' names before the redesign (``steerlab_encodec``, ...), kept as deprecated
import aliases: ``import steerlab_encodec`` gives :mod:`steerlab.builtins.encodec` itself (the same
module object, so its files and dictionaries are where the old code looks for them) and a
:class:`DeprecationWarning` naming the new path. The aliases live in ``compat/`` (one two-line
package each) and register nothing: plugins load from ``steerlab.plugins.DEFAULT_PLUGINS`` only."""

from __future__ import annotations

import importlib
import sys
import warnings

#: old top-level package -> its built-in under steerlab.builtins
ALIASES = {f"steerlab_{name}": name for name in (
    "crepe", "encodec", "filterbank", "interventions", "samplecnn", "scorers", "stft", "tokenlm"
)}  # fmt: skip


def alias(old: str) -> None:
    """Make ``old`` (a name of :data:`ALIASES`) the built-in module it was renamed to."""
    new = f"steerlab.builtins.{ALIASES[old]}"
    warnings.warn(f"{old} is deprecated: import {new}", DeprecationWarning, stacklevel=3)
    sys.modules[old] = importlib.import_module(new)
