"""Domain errors: every exception steerlab defines, in one hierarchy.

The library raises these with actionable text; the CLI turns them into one-line messages
and a non-zero exit (never a traceback). An error about a value the caller passed carries
the parameter's name in ``.parameters`` and its message names the Python parameter
(``chunk_s``); the CLI renders the flag that set it instead (``--chunk-s``, see
``steerlab/cli/errors.py``). :mod:`steerlab.validation` raises :class:`ConfigError` (or a
subclass) for every invalid value.

::

    SteerlabError
    +-- ConfigError (also a ValueError)  an invalid parameter, option or config value
    |   +-- StimulusError                  a stimulus spec or design input
    |   |   +-- Infeasible                 a valid spec whose mixture cannot be built
    |   +-- ArchError                      input to the architecture prediction
    +-- UnknownNameError (also a KeyError) an unknown registered name
    +-- DuplicateNameError                 a name two plugins registered
    +-- AudioError, DirectionError, InterventionError, ModelLoadError, OutputError, PluginError
    +-- ArtifactError                      a JSON artifact that does not match its schema
    |   +-- RunFolderError                 a training run folder's checkpoint or curve
    +-- CorpusError                      a corpus spec that names nothing, a corpus with no audio
    |   +-- BadFilesError                  unusable audio files, met without skip_bad_files
    +-- AnalysisError, DictionaryError, CorpusBuildError, PlanError, WeightsVariantError
    +-- SAEDataError                       SAE training data: empty, non-finite, wrong shape
        +-- NoVarianceError                vectors that are all equal
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steerlab.sae import DataStats

#: one parameter name, or several (an error about how two values relate names both)
Parameters = str | Sequence[str] | None


class SteerlabError(Exception):
    """Base of every error steerlab reports to a user.

    ``parameter``: the Python parameter(s) whose value is at fault, as the message spells them
    (``"chunk_s"``, ``("start_s", "end_s")``); kept in ``.parameters`` (a tuple, empty when
    none) so a front end can name its own spelling (a CLI flag) instead."""

    def __init__(self, *args: Any, parameter: Parameters = None) -> None:
        super().__init__(*args)
        self.parameters: tuple[str, ...] = (
            (parameter,) if isinstance(parameter, str) else tuple(parameter) if parameter else ()
        )

    @property
    def parameter(self) -> str | None:
        """The first (main) parameter at fault, or None."""
        return self.parameters[0] if self.parameters else None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class ConfigError(SteerlabError, ValueError):
    """An invalid parameter, option or config value (also a ValueError, as Python's own
    argument checks raise). Raised by every check of :mod:`steerlab.validation`."""


class StimulusError(ConfigError):
    """An invalid stimulus spec or design input, or a stimulus that cannot be rendered."""


class Infeasible(StimulusError):
    """A valid spec whose mixture cannot be built (collision, Nyquist); ``reason`` is its category."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


class ArchError(ConfigError):
    """Invalid input to the architecture prediction (targets, densities, layers)."""


class AudioError(SteerlabError):
    """Audio that cannot be read, is empty, or holds non-finite samples."""


class UnknownNameError(SteerlabError, KeyError):
    """An unknown model, layer, intervention or scorer name."""

    def __init__(self, what: str, name: str, valid: Iterable[str], parameter: Parameters = None):
        from steerlab.validation import did_you_mean

        valid = sorted(valid)
        self.what, self.name, self.valid = what, name, valid
        super().__init__(
            f"unknown {what} {name!r}.{did_you_mean(name, valid)} Valid {what}s: {', '.join(valid) or '(none)'}",
            parameter=parameter,
        )

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DuplicateNameError(SteerlabError):
    """Two plugins registered the same name."""


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


class ArtifactError(SteerlabError):
    """An artifact file that is missing, unreadable, or does not match its schema."""


class RunFolderError(ArtifactError):
    """A training run folder whose checkpoint or curve cannot be used."""


class CorpusError(SteerlabError):
    """A corpus spec (``--data``) that names nothing, or a corpus with no usable audio."""


class BadFilesError(CorpusError):
    """Audio files in a corpus that cannot be used, met without ``skip_bad_files``."""


class AnalysisError(SteerlabError):
    """A dictionary that does not fit the model, or analysis options that cannot be honoured."""


class DictionaryError(SteerlabError):
    """A dictionary folder that cannot be read: not one, an unknown version, or damaged."""


class CorpusBuildError(SteerlabError):
    """A corpus cannot be built from the given sources or options."""


class PlanError(SteerlabError):
    """A run folder or grid that cannot be executed as asked."""


class WeightsVariantError(SteerlabError):
    """A model whose first convolution cannot be found or replaced."""


class SAEDataError(SteerlabError):
    """Training or evaluation data that is empty, non-finite or of the wrong shape."""


class NoVarianceError(SAEDataError):
    """Training data whose vectors are all equal (to float32 round-off): nothing to learn,
    every latent would be dead. ``stats`` holds what the statistics pass measured (None when
    the refusal came from the audio itself, before any statistics)."""

    def __init__(self, message: str, stats: DataStats | None):
        super().__init__(message)
        self.stats = stats


class StoreError(CorpusError):
    """An activation store folder (:mod:`steerlab.activations`) that cannot be read, is
    incomplete, or does not fit the request."""


class ConsumerStopped(SteerlabError):
    """Internal to :func:`steerlab.activations.train_many`: another consumer of the shared reader
    (or the reader) failed, so this one stops too; the first failure is what is raised."""


class BrowserNotFound(SteerlabError):
    """No Chromium or Chrome to load a report with (:mod:`steerlab.reportcheck`)."""


class SteerlabWarning(UserWarning):
    """Something the user should know that does not stop the work (the CLI prints each as one
    ``warning: ...`` line on stderr; Python callers get a standard :mod:`warnings` warning)."""


class OversubscribedThreadsWarning(SteerlabWarning):
    """More torch threads were asked for than the machine has CPU cores
    (:func:`steerlab.devices.set_threads`): accepted, as torch accepts it, but the threads then
    share cores and a run is usually slower than with one thread per core."""


class PossiblyTruncatedWarning(SteerlabWarning):
    """An audio file decodes well short of what its header declares (:func:`steerlab.audio.scan`):
    it may be truncated or damaged. Issued once per file and message by every command that scans
    its inputs (``intervene``, ``learn``, ``analyze``, ``corpus clips``, ...)."""
